"""The reaction vocabulary and the term table the cases draw from.

MedDRA preferred terms as they appear in public FAERS data (general ones roughly in order of
frequency, then the terms typical of each product kind), the vaguer terms a first report shows
before a follow-up corrects them, and ``_terms``, which turns them into ``_Terms``: names, pseudo
codes ("99" + index, never real MedDRA codes), Zipf weights and the terms of each kind. Also the
kind codes and the Zipf weights that the other tables share.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pvsignal.products import Kind

GENERAL_PTS = (
    "Drug ineffective", "Off label use", "Nausea", "Fatigue", "Headache", "Diarrhoea",
    "Dyspnoea", "Pain", "Dizziness", "Rash", "Vomiting", "Pruritus", "Pyrexia", "Arthralgia",
    "Malaise", "Asthenia", "Death", "Cough", "Product dose omission issue", "Pneumonia",
    "Abdominal pain", "Insomnia", "Anxiety", "Back pain", "Hypertension", "Pain in extremity",
    "Decreased appetite", "Weight decreased", "Myalgia", "Urticaria", "Alopecia",
    "Constipation", "Oedema peripheral", "Chest pain", "Fall", "Depression", "Hypersensitivity",
    "Somnolence", "Paraesthesia", "Tremor", "Hypotension", "Palpitations", "Dehydration",
    "Anaemia", "Weight increased", "Chills", "Influenza like illness", "Abdominal pain upper",
    "Dyspepsia", "Gait disturbance", "Erythema", "Hyperhidrosis", "Feeling abnormal",
    "Vision blurred", "Muscle spasms", "Confusional state", "Thrombocytopenia", "Neutropenia",
    "Febrile neutropenia", "Urinary tract infection", "Nasopharyngitis", "Infection", "Sepsis",
    "Syncope", "Tachycardia", "Blood pressure increased", "Dry mouth", "Stomatitis",
    "Dysgeusia", "Hypoaesthesia", "Musculoskeletal pain", "Peripheral swelling", "Flushing",
    "Dry skin", "Rash pruritic", "Rash maculo-papular", "Rash erythematous", "Skin exfoliation",
    "Dermatitis", "Eczema", "Acne", "Hepatic function abnormal",
    "Alanine aminotransferase increased", "Aspartate aminotransferase increased",
    "Liver function test increased", "Drug-induced liver injury", "Hepatotoxicity", "Jaundice",
    "Blood bilirubin increased", "Gamma-glutamyltransferase increased",
    "Blood creatinine increased", "Acute kidney injury", "Renal impairment", "Proteinuria",
    "Haematuria", "Hyperglycaemia", "Hypoglycaemia", "Diabetic ketoacidosis", "Hyponatraemia",
    "Hypokalaemia", "Hyperkalaemia", "Hypothyroidism", "Hyperthyroidism",
    "Adrenal insufficiency", "Interstitial lung disease", "Pneumonitis", "Pulmonary embolism",
    "Deep vein thrombosis", "Pleural effusion", "Respiratory failure", "Haemoptysis",
    "Epistaxis", "Atrial fibrillation", "Cardiac failure", "Myocardial infarction",
    "Myocarditis", "Electrocardiogram QT prolonged", "Bradycardia", "Cerebrovascular accident",
    "Cerebral haemorrhage", "Seizure", "Neuropathy peripheral", "Encephalopathy",
    "Memory impairment", "Anaphylactic reaction", "Anaphylactic shock", "Angioedema",
    "Infusion related reaction", "Stevens-Johnson syndrome", "Toxic epidermal necrolysis",
    "Drug reaction with eosinophilia and systemic symptoms", "Erythema multiforme",
    "Conjunctivitis", "Dry eye", "Eye pain", "Visual impairment", "Uveitis", "Cataract",
    "Retinal detachment", "Tinnitus", "Vertigo", "Hypoacusis", "Colitis", "Enterocolitis",
    "Gastrointestinal haemorrhage", "Pancreatitis", "Abdominal distension",
    "Gastrooesophageal reflux disease", "Haematochezia", "Intestinal obstruction",
    "Cholecystitis", "Hepatitis", "Immune-mediated hepatitis", "Leukopenia", "Lymphopenia",
    "Pancytopenia", "Neutrophil count decreased", "Platelet count decreased",
    "White blood cell count decreased", "Haemoglobin decreased",
    "Disseminated intravascular coagulation", "Haemorrhage", "Contusion", "Arthritis",
    "Muscular weakness", "Rhabdomyolysis", "Blood creatine phosphokinase increased",
    "Osteonecrosis of jaw", "Osteoporosis", "Herpes zoster", "Cellulitis", "COVID-19",
    "Influenza", "Bronchitis", "Upper respiratory tract infection", "Oral candidiasis",
    "Pneumocystis jirovecii pneumonia", "Cytomegalovirus infection",
    "Hepatitis B reactivation", "Tuberculosis", "Septic shock", "Tumour lysis syndrome",
    "Disease progression", "Malignant neoplasm progression", "Product quality issue",
    "Product use issue", "Incorrect dose administered", "Medication error", "Drug interaction",
    "Drug hypersensitivity", "Condition aggravated", "Hospitalisation",
    "Therapeutic response decreased", "Treatment failure", "Adverse drug reaction",
    "Adverse event", "Injection site pain", "Injection site reaction", "Injection site erythema",
    "Injection site swelling", "Injection site pruritus", "Lymphadenopathy",
    "Menstrual disorder", "Amenorrhoea", "Erectile dysfunction", "Libido decreased",
    "Gynaecomastia", "Hot flush", "Night sweats", "Agitation", "Hallucination", "Delirium",
    "Suicidal ideation", "Mood altered", "Irritability", "Nervousness", "Restlessness",
    "Lethargy", "Dysphagia", "Dysphonia", "Oropharyngeal pain", "Rhinorrhoea",
    "Nasal congestion", "Wheezing", "Bronchospasm", "Asthma", "Hypoxia",
    "Oxygen saturation decreased", "Cyanosis", "Pallor", "Skin discolouration",
    "Photosensitivity reaction", "Skin hyperpigmentation", "Nail disorder", "Paronychia",
    "Palmar-plantar erythrodysaesthesia syndrome", "Mucosal inflammation", "Ageusia",
    "Anosmia", "Taste disorder", "Cognitive disorder", "Aphasia", "Ataxia", "Balance disorder",
    "Dyskinesia", "Facial paralysis", "Guillain-Barre syndrome", "Myasthenia gravis",
    "Immune thrombocytopenia", "Haemolytic anaemia", "Vasculitis", "Sarcoidosis", "Thrombosis",
    "Embolism", "Capillary leak syndrome", "Fluid retention", "Ascites", "Hepatic failure",
    "Hepatic enzyme increased", "Lipase increased", "Amylase increased",
    "Blood alkaline phosphatase increased", "Blood glucose increased",
    "Glycosylated haemoglobin increased", "Blood cholesterol increased",
    "Hypertriglyceridaemia", "Hypomagnesaemia", "Hypocalcaemia", "Hypercalcaemia",
    "Hypophosphataemia", "Metabolic acidosis", "Lactic acidosis", "Cystitis", "Pollakiuria",
    "Urinary retention", "Nephrotic syndrome", "Glomerulonephritis",
    "Tubulointerstitial nephritis", "Pericardial effusion", "Pericarditis", "Cardiac arrest",
    "Ventricular tachycardia", "Angina pectoris", "Cardiomyopathy", "Ejection fraction decreased",
    "Hypertensive crisis", "Orthostatic hypotension", "Circulatory collapse", "Shock",
    "Loss of consciousness", "Coma", "Sudden death", "Exposure during pregnancy",
    "Abortion spontaneous",
)  # fmt: skip

# Terms typical of each kind: each product's characteristic reactions are drawn from these, and
# device problems and vaccine site reactions stay rare outside their kind.
KIND_PTS: dict[Kind, tuple[str, ...]] = {
    Kind.drug: (
        "Hepatic function abnormal", "Drug-induced liver injury", "Electrocardiogram QT prolonged",
        "Rash", "Diarrhoea", "Nausea", "Hyperglycaemia", "Hypertension", "Proteinuria",
        "Palmar-plantar erythrodysaesthesia syndrome", "Stomatitis", "Interstitial lung disease",
        "Neutropenia", "Stevens-Johnson syndrome", "Oedema peripheral", "Hypokalaemia",
        "Acute kidney injury", "Hypoglycaemia", "Diabetic ketoacidosis",
        "Vulvovaginal candidiasis", "Photosensitivity reaction", "Visual impairment",
    ),
    Kind.biologic: (
        "Infusion related reaction", "Interstitial lung disease", "Pneumonitis", "Colitis",
        "Immune-mediated hepatitis", "Hypothyroidism", "Hyperthyroidism", "Adrenal insufficiency",
        "Myocarditis", "Myasthenia gravis", "Type 1 diabetes mellitus", "Rash", "Pruritus",
        "Neutropenia", "Hypersensitivity", "Anaphylactic reaction", "Injection site reaction",
        "Herpes zoster", "Tuberculosis", "Hepatitis B reactivation",
        "Pneumocystis jirovecii pneumonia", "Immune-mediated enterocolitis",
    ),
    Kind.vaccine: (
        "Injection site pain", "Injection site erythema", "Injection site swelling",
        "Injection site pruritus", "Injection site induration", "Vaccination site pain",
        "Pyrexia", "Lymphadenopathy", "Syncope", "Myalgia", "Febrile convulsion",
        "Guillain-Barre syndrome", "Myocarditis", "Anaphylactic reaction",
        "Immune thrombocytopenia", "Vaccination failure", "Urticaria", "Herpes zoster",
    ),
    Kind.device: (
        "Device malfunction", "Device breakage", "Device dislocation", "Device occlusion",
        "Device failure", "Device leakage", "Device deployment issue", "Device related infection",
        "Device connection issue", "Device alarm issue", "Device physical property issue",
        "Device use error", "Device difficult to use", "Device issue", "Device expulsion",
        "Device embolisation", "Medical device site pain", "Medical device site reaction",
        "Implant site pain", "Implant site infection", "Stent thrombosis",
        "In-stent coronary artery restenosis", "Thrombosis in device",
        "Paravalvular regurgitation", "Atrioventricular block complete", "Endophthalmitis",
        "Keratitis", "Corneal abrasion", "Posterior capsule opacification",
        "Intraocular pressure increased",
    ),
    Kind.cell_gene_therapy: (
        "Cytokine release syndrome", "Immune effector cell-associated neurotoxicity syndrome",
        "Neurotoxicity", "Febrile neutropenia", "Neutropenia", "Thrombocytopenia", "Anaemia",
        "Hypogammaglobulinaemia", "Infection", "Hypotension", "Encephalopathy",
        "Tumour lysis syndrome", "Haemophagocytic lymphohistiocytosis", "Cytopenia",
        "Thrombotic microangiopathy", "Aphasia", "Second primary malignancy", "T-cell lymphoma",
        "Hepatic function abnormal", "Acute kidney injury",
    ),
}  # fmt: skip

# A follow-up often replaces the vague term of the first report by a precise one: the first
# version shows the term on the right, the follow-up the term on the left.
CORRECTIONS = {
    "Drug-induced liver injury": "Hepatic function abnormal",
    "Hepatotoxicity": "Liver function test increased",
    "Immune-mediated hepatitis": "Hepatic enzyme increased",
    "Anaphylactic reaction": "Hypersensitivity",
    "Anaphylactic shock": "Hypotension",
    "Rash maculo-papular": "Rash",
    "Stevens-Johnson syndrome": "Rash",
    "Toxic epidermal necrolysis": "Skin exfoliation",
    "Drug reaction with eosinophilia and systemic symptoms": "Rash",
    "Interstitial lung disease": "Dyspnoea",
    "Pneumonitis": "Cough",
    "Cytokine release syndrome": "Pyrexia",
    "Immune effector cell-associated neurotoxicity syndrome": "Confusional state",
    "Myocarditis": "Chest pain",
    "Atrial fibrillation": "Palpitations",
    "Pulmonary embolism": "Dyspnoea",
    "Acute kidney injury": "Blood creatinine increased",
    "Guillain-Barre syndrome": "Muscular weakness",
    "Pancreatitis": "Abdominal pain",
    "Colitis": "Diarrhoea",
    "Febrile neutropenia": "Pyrexia",
    "Cerebrovascular accident": "Dizziness",
    "Device dislocation": "Device malfunction",
    "Stent thrombosis": "Chest pain",
}

_VAGUE = "Adverse drug reaction"
_KINDS = tuple(Kind)


@dataclass(frozen=True, slots=True)
class _Terms:
    names: tuple[str, ...]
    codes: tuple[str, ...]
    weights: np.ndarray
    provisional: np.ndarray  # the vaguer term a first version shows instead
    by_kind: tuple[np.ndarray, ...]  # term indices per kind
    general: int  # how many of ``names`` are general terms


def _general_pts(reports: int) -> int:
    return int(np.clip(25 * reports**0.25, 80, len(GENERAL_PTS)))


def _zipf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


def _terms(general: int) -> _Terms:
    kind_terms = [term for kind in _KINDS for term in KIND_PTS[kind]]
    master = list(dict.fromkeys((*GENERAL_PTS, *kind_terms, *CORRECTIONS.values(), _VAGUE)))
    # Terms beyond the general ones used stay in, at the tail, so every kind keeps its terms.
    names = list(dict.fromkeys((*GENERAL_PTS[:general], *master)))
    chosen = set(GENERAL_PTS[:general]) | set(kind_terms) | set(CORRECTIONS.values()) | {_VAGUE}
    names = [name for name in names if name in chosen]
    index = {name: i for i, name in enumerate(names)}
    codes = tuple(f"99{master.index(name) + 1:06d}" for name in names)
    provisional = np.array([index[CORRECTIONS.get(name, _VAGUE)] for name in names], dtype=np.int32)
    by_kind = tuple(np.array([index[t] for t in KIND_PTS[kind]]) for kind in _KINDS)
    return _Terms(tuple(names), codes, _zipf(len(names), 0.9), provisional, by_kind, general)
