"""Simulated ICSR streams with a known truth, for the benchmarks, the stream tests and the demo.

``write_simulation(config, out)`` writes ``out`` (JSONL: one wire-format report per line, in
arrival order) and, beside it, ``<stem>.products.yaml`` (the registry, loadable with
``load_products``), ``<stem>.signals.json`` (the planted signals) and ``<stem>.truth.json`` (the
counts a test needs). The same config gives the same bytes.

What the stream holds, and why:

- Product and PT frequencies are Zipf-like, as in FAERS. Pilot-import products (Boao Lecheng,
  GBA Connect, rare-disease pilots) have a handful of cases each, sent by their designated
  hospitals, and none before their permit date.
- Cases have versions: follow-ups (a corrected PT, an added reaction or product, age and outcomes
  filled in), identical re-sends, nullifications, and duplicate cases from a second sender that a
  later version of the first case lists in ``duplicate_of_ids``. Some follow-ups arrive before
  the version they follow, and re-sends of old versions arrive late.
- Planted signals add, from their start date, cases with the pair at ``strength`` times the
  product's background count of that PT.
- Products are named by registry id, by an alias in Chinese or English, by a variant spelling
  that alias resolution must undo (capitals, full-width forms, stray spaces), or by free text the
  registry does not know.
- Malformed lines, when asked for, fail ``Report.model_validate_json`` in varied ways.

The truth an engine must reproduce is the latest version of each case, without nullified cases.
The duplicates come from another organisation than the case that names them, so they are only
suspected duplicates (a regulator decides) and still count. ``Report`` refuses received dates in the
future, so keep ``end`` in the past.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import orjson
import yaml

from pvsignal.argtypes import positive_int, share
from pvsignal.errors import InputError
from pvsignal.products import Kind, Pathway, RegisteredProduct, normalize_name
from pvsignal.reports import Outcome, Role, SenderType

# ---------------------------------------------------------------------------------------------
# Vocabulary. PT names are MedDRA preferred terms as they appear in public FAERS data, roughly
# in FAERS order of frequency; their 8-digit codes are pseudo codes ("99" + index), never real
# MedDRA codes.

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

# Free text the registry does not know: counted under ``unregistered:`` ids by the engine.
UNREGISTERED_NAMES = (
    "阿莫西林胶囊", "Amoxicillin", "布洛芬缓释胶囊", "Ibuprofen", "对乙酰氨基酚片",
    "Paracetamol 500 mg", "头孢曲松钠", "中药注射剂", "中药汤剂（自煎）", "感冒药",
    "降压药（具体不详）", "Antihypertensive, unknown", "保健品", "Vitamin supplement",
    "复方甘草片", "造影剂", "Contrast medium", "化疗药物（不详）", "Chemotherapy, unspecified",
    "Unknown antibiotic", "抗生素（不详）", "Herbal tea", "胰岛素", "Insulin, brand unknown",
    "阿司匹林肠溶片", "二甲双胍", "奥美拉唑", "地塞米松", "生理盐水", "Normal saline",
)  # fmt: skip

_SYLLABLES = (
    ("ba", "巴"), ("ze", "泽"), ("lo", "洛"), ("vo", "沃"), ("ri", "瑞"), ("ta", "塔"),
    ("mi", "米"), ("ne", "奈"), ("so", "索"), ("ka", "卡"), ("du", "度"), ("fe", "非"),
    ("gi", "吉"), ("ho", "霍"), ("ju", "朱"), ("ly", "莱"), ("py", "匹"), ("qu", "曲"),
    ("xy", "昔"), ("zu", "祖"), ("ve", "维"), ("ro", "罗"), ("da", "达"), ("le", "乐"),
    ("sy", "西"), ("no", "诺"), ("pe", "培"), ("va", "伐"), ("ke", "克"), ("mo", "莫"),
)  # fmt: skip
_STEMS: dict[Kind, tuple[tuple[str, str], ...]] = {
    Kind.drug: (
        ("tinib", "替尼"), ("ciclib", "西利"), ("gliptin", "格列汀"), ("sartan", "沙坦"),
        ("prazan", "拉赞"), ("previr", "瑞韦"), ("gliflozin", "格列净"), ("parib", "帕利"),
        ("rafenib", "拉非尼"), ("lisib", "利塞"), ("tegravir", "特韦"), ("dustat", "度司他"),
        ("pitant", "匹坦"), ("oxaban", "沙班"), ("rasib", "拉塞"), ("brutinib", "布替尼"),
    ),
    Kind.biologic: (
        ("mab", "单抗"), ("zumab", "珠单抗"), ("limab", "利单抗"), ("tamab", "妥单抗"),
        ("ximab", "昔单抗"), ("cept", "西普"), ("glutide", "鲁肽"), ("stim", "司亭"),
        ("mab vedotin", "单抗维汀"), ("tug", "单抗偶联物"),
    ),
    Kind.cell_gene_therapy: (
        ("cabtagene autoleucel", "仑赛"), ("leucel", "赛"), ("gene bexparvovec", "基因贝帕伐韦"),
    ),
}  # fmt: skip
_DOSAGE_FORMS = ("片", "胶囊", "注射液", "口服溶液", "缓释片")
_BRAND_HEADS = (
    "Zel", "Vor", "Ril", "Tav", "Lum", "Qua", "Nex", "Oby", "Pra", "Sol", "Xan", "Kyr",
    "Dal", "Fen", "Gav", "Hel", "Ivo", "Jor", "Myr", "Nol",
)  # fmt: skip
_BRAND_TAILS = ("vex", "ora", "lyn", "tra", "via", "ion", "ix", "eno", "uma", "ance", "ty", "ra")
_BRAND_CHARS = "安康瑞达益泰欣优诺宁舒倍乐佳捷恒立普信福美速健力维凯源和平晴"
_VACCINE_DISEASES = (
    ("zoster", "带状疱疹"), ("respiratory syncytial virus", "呼吸道合胞病毒"),
    ("human papillomavirus", "人乳头瘤病毒"), ("pneumococcal conjugate", "肺炎球菌结合"),
    ("meningococcal conjugate", "脑膜炎球菌结合"), ("influenza", "流感"), ("rabies", "狂犬病"),
    ("dengue", "登革热"), ("varicella", "水痘"), ("rotavirus", "轮状病毒"),
    ("hepatitis B", "乙型肝炎"), ("enterovirus 71", "肠道病毒71型"),
    ("chikungunya", "基孔肯雅热"), ("mpox", "猴痘"),
)  # fmt: skip
_VACCINE_TECHS = (
    ("Recombinant", "重组", " (CHO cell)", "（CHO细胞）"), ("mRNA", "mRNA", "", ""),
    ("Inactivated", "灭活", " (Vero cell)", "（Vero细胞）"), ("Live attenuated", "减毒活", "", ""),
    ("Adjuvanted", "佐剂", "", ""),
)  # fmt: skip
_DEVICES = (
    ("drug-eluting coronary stent system", "药物洗脱冠状动脉支架系统"),
    ("transcatheter aortic valve system", "经导管主动脉瓣膜系统"),
    ("leadless pacemaker", "无导线心脏起搏器"),
    ("implantable cardioverter defibrillator", "植入式心律转复除颤器"),
    ("cochlear implant system", "人工耳蜗植入系统"), ("intraocular lens", "人工晶状体"),
    ("phakic intraocular lens", "有晶体眼人工晶状体"),
    ("orthokeratology lens", "角膜塑形用硬性透气接触镜"),
    ("glaucoma drainage device", "青光眼引流装置"), ("insulin pump", "胰岛素泵"),
    ("continuous glucose monitoring system", "持续葡萄糖监测系统"),
    ("deep brain stimulation system", "脑深部电刺激系统"),
    ("spinal cord stimulation system", "脊髓刺激系统"),
    ("hyaluronic acid dermal filler", "透明质酸钠凝胶填充剂"),
    ("radiofrequency ablation catheter", "射频消融导管"),
    ("left atrial appendage occluder", "左心耳封堵器"),
    ("intracranial flow diverter", "颅内血流导向装置"),
    ("bioresorbable scaffold", "生物可吸收支架"), ("total knee prosthesis", "全膝关节假体"),
    ("ventricular assist device", "心室辅助装置"),
    ("mitral valve repair system", "二尖瓣修复系统"),
)  # fmt: skip

_KINDS = tuple(Kind)
_PATHWAYS = tuple(Pathway)
_ROLES = tuple(Role)
_OUTCOMES = (None, *Outcome)  # code 0 = not given
_SEXES = (None, "F", "M", "U")
_SERIOUS = (None, False, True)
_FATAL = _OUTCOMES.index(Outcome.fatal)
_UNKNOWN = _OUTCOMES.index(Outcome.unknown)
_KIND_P = (0.45, 0.22, 0.08, 0.20, 0.05)  # drug, biologic, vaccine, device, cell/gene therapy
_PATHWAY_P = (0.30, 0.10, 0.08, 0.07, 0.45)  # innovative, Lecheng, GBA, rare disease, conventional
_AFFINITY_P = (0.30, 0.35, 0.50, 0.60, 0.50)  # by kind: share of cases with a characteristic PT
_PILOT = np.array(
    [p is not Pathway.innovative and p is not Pathway.conventional for p in _PATHWAYS]
)
_NO_DATE = -(10**6)  # approval unknown: cases may come from the first day on

# Forms of a product entry: 0 id, 1 id and display name, 2-5 an alias, 6-9 a variant spelling.
_FORMS = 10
_FORM_P = (0.55, 0.10, 0.05, 0.05, 0.05, 0.05, 0.0375, 0.0375, 0.0375, 0.0375)
_PRODUCTS_PER_CASE_P = (0.55, 0.25, 0.12, 0.08)
_REACTIONS_PER_CASE_P = (0.30, 0.25, 0.18, 0.12, 0.09, 0.06)
_OTHER_ROLE_P = (0.45, 0.45, 0.08, 0.02)
_THIRD_VERSION = 0.2  # of cases with a follow-up, the share that gets a second one
# Follow-up changes, applied at version 2 (and 3): what the earlier version lacks.
_ADD_REACTION, _CORRECT_PT, _ADD_PRODUCT, _DETAILS = range(4)
_CHANGE_P = (0.35, 0.25, 0.15, 0.25)
_FULL = 9  # a line that shows the latest content whatever its version

# ---------------------------------------------------------------------------------------------
# Senders: designated hospitals of the pilot zones, general hospitals by province, provincial
# ADR monitoring centres, MAHs and individuals.

_PROVINCES = (
    ("BJ", 14), ("SH", 12), ("GD", 14), ("ZJ", 9), ("JS", 9), ("SC", 7), ("HB", 6), ("SD", 7),
    ("HN", 5), ("HA", 5), ("FJ", 4), ("CQ", 4), ("TJ", 4), ("LN", 4), ("SN", 4), ("YN", 3),
    ("GX", 3), ("AH", 3), ("HE", 3), ("HI", 3), ("JL", 2), ("HL", 2), ("JX", 2), ("SX", 2),
    ("GZ", 2), ("GS", 2), ("XJ", 2), ("NM", 1), ("NX", 1), ("QH", 1), ("XZ", 1),
)  # fmt: skip
_REGIONS = tuple(f"CN-{code}" for code, _ in _PROVINCES)
_COUNTRIES = ("CN", "HK", "MO", "US", "JP", "DE", "KR", "GB")
_LECHENG_HOSPITALS, _GBA_HOSPITALS = 10, 20
# Sender mix per group of the primary product: hospital, MAH, regulator, professional, patient,
# other. Groups: general (innovative, conventional, unregistered), Lecheng, GBA, rare disease.
_SENDER_P = np.array(
    [
        [0.70, 0.17, 0.03, 0.06, 0.03, 0.01],
        [0.85, 0.12, 0.03, 0.0, 0.0, 0.0],
        [0.85, 0.12, 0.03, 0.0, 0.0, 0.0],
        [0.80, 0.17, 0.03, 0.0, 0.0, 0.0],
    ]
)
_HOSPITAL, _MAH, _REGULATOR, _PROFESSIONAL, _PATIENT, _OTHER = range(6)
_GROUP_REGION = (-1, _REGIONS.index("CN-HI"), _REGIONS.index("CN-GD"), _REGIONS.index("CN-BJ"))

# ---------------------------------------------------------------------------------------------
# Malformed lines: each kind fails validation for a different, realistic reason.

MALFORMED_KINDS = (
    "not_json",
    "truncated_json",
    "missing_case_id",
    "negative_age",
    "unknown_role",
    "bad_date",
    "region_not_iso",
    "unknown_field",
    "no_reactions",
    "bad_pt_code",
)
_BAD_ROLES = ("primary suspect", "Suspect", "co-suspect", "treatment")
_BAD_DATES = ("2025-13-01", "31/12/2025", "2025-02-30", "yesterday")
_BAD_REGIONS = ("Hainan", "cn-hi", "CN_GD", "广东省")


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    """What to simulate. ``reports`` is the number of lines written, malformed ones included.

    Rates are shares of cases (follow-up, nullification, duplicate), of case versions
    (re-sends), of follow-up cases (out of order), of product mentions (unregistered) and of
    lines (malformed). ``products`` and ``pts`` (general PTs; kind-specific ones are added)
    follow from ``reports`` when not given. Each planted signal needs 50 cases: a tiny run
    plants fewer than ``signals``, the first always on a pilot-import product.
    """

    reports: int
    seed: int = 0
    follow_up_rate: float = 0.15
    nullification_rate: float = 0.01
    duplicate_rate: float = 0.02
    resend_rate: float = 0.02
    out_of_order_rate: float = 0.10
    malformed_rate: float = 0.0
    unregistered_rate: float = 0.04
    start: dt.date = dt.date(2024, 1, 1)
    end: dt.date = dt.date(2026, 6, 30)
    products: int | None = None
    pts: int | None = None
    signals: int = 6

    def __post_init__(self) -> None:
        if self.reports < 1:
            raise InputError(f"reports must be at least 1, got {self.reports!r}")
        if self.seed < 0:
            raise InputError(f"seed must not be negative, got {self.seed!r}")
        for name in (
            "follow_up_rate",
            "nullification_rate",
            "duplicate_rate",
            "resend_rate",
            "out_of_order_rate",
            "malformed_rate",
            "unregistered_rate",
        ):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise InputError(f"{name} must lie in [0, 1), got {value!r}")
        if self.nullification_rate + self.duplicate_rate > 0.5:
            raise InputError("nullification_rate + duplicate_rate must not exceed 0.5")
        if (self.end - self.start).days < 30:
            raise InputError(f"end {self.end} must lie at least 30 days after start {self.start}")
        if self.products is not None and self.products < 10:
            raise InputError(f"products must be at least 10, got {self.products!r}")
        if self.pts is not None and not 20 <= self.pts <= len(GENERAL_PTS):
            raise InputError(f"pts must lie in [20, {len(GENERAL_PTS)}], got {self.pts!r}")
        if self.signals < 0:
            raise InputError(f"signals must not be negative, got {self.signals!r}")


@dataclass(frozen=True, slots=True)
class PlantedSignal:
    """A product-PT pair reported, from ``start`` on, at ``strength`` times its background.

    ``expected_background`` is the number of the product's cases from ``start`` on times the
    share of all cases reporting the PT; ``cases`` extra cases with the pair were added, so
    ``strength = (expected_background + cases) / expected_background``.
    """

    product_id: str
    pt: str
    strength: float
    start: dt.date
    cases: int
    expected_background: float


@dataclass(frozen=True, slots=True)
class SimulationTruth:
    """Counts of what the stream holds, for tests (``<stem>.truth.json``).

    ``cases`` counts distinct case ids; ``live_cases`` those not nullified (a duplicate is
    named by another sender's case, so it is only suspected until a regulator decides, and it
    counts). ``follow_ups`` counts follow-up versions (2 and 3), ``nullifications`` and
    ``superseding_reports`` their own versions, ``resends`` identical copies of a version.
    Product mentions are counted over the latest versions of live cases.
    """

    lines: int
    valid_lines: int
    malformed: int
    malformed_by_kind: dict[str, int]
    malformed_lines: tuple[int, ...]  # 1-based line numbers
    cases: int
    live_cases: int
    cases_with_follow_up: int
    follow_up_rate: float
    follow_ups: int
    out_of_order_cases: int
    resends: int
    nullifications: int
    duplicates: int
    superseding_reports: int
    planted_cases: int
    product_mentions: int
    unregistered_mentions: int
    products: int
    pts: int


@dataclass(frozen=True, slots=True)
class SimulationSummary:
    """What ``write_simulation`` wrote."""

    reports_path: Path
    products_path: Path
    signals_path: Path
    truth_path: Path
    truth: SimulationTruth
    seconds: float


# ---------------------------------------------------------------------------------------------
# Internal tables. Arrays are columnar: per product, per case (content row), per slot of a
# case's products or reactions, per identity (case id) and per line.


@dataclass(frozen=True, slots=True)
class _Terms:
    names: tuple[str, ...]
    codes: tuple[str, ...]
    weights: np.ndarray
    provisional: np.ndarray  # the vaguer term a first version shows instead
    by_kind: tuple[np.ndarray, ...]  # term indices per kind
    general: int  # how many of ``names`` are general terms


@dataclass(frozen=True, slots=True)
class _Catalogue:
    products: list[RegisteredProduct]
    kind: np.ndarray
    pathway: np.ndarray
    mah: np.ndarray
    approved: np.ndarray  # day offset from start, _NO_DATE when unknown
    primary_p: np.ndarray
    other_p: np.ndarray
    affinity: np.ndarray  # (products, 3) characteristic terms
    mah_ids: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.products)


@dataclass(frozen=True, slots=True)
class _Institutions:
    codes: tuple[str | None, ...]  # institution_id
    prefixes: tuple[str, ...]  # the case-id part naming the sender
    types: tuple[SenderType, ...]
    region: np.ndarray  # index into _REGIONS, -1 none
    pools: tuple[np.ndarray, ...]  # hospitals per group
    pool_p: tuple[np.ndarray, ...]
    regulators: np.ndarray  # per region
    mah0: int  # index of the first MAH
    individual: tuple[int, int, int]  # professional, patient, other


@dataclass(slots=True)
class _Cases:
    n_prod: np.ndarray
    n_react: np.ndarray
    p_start: np.ndarray
    r_start: np.ndarray
    prod: np.ndarray
    form: np.ndarray
    role: np.ndarray
    pt: np.ndarray
    coded: np.ndarray
    serious: np.ndarray
    outcome: np.ndarray
    age: np.ndarray  # tenths of years, -1 unknown
    sex: np.ndarray
    received: np.ndarray  # day offset of the first version
    versions: np.ndarray  # content versions: 1, 2 or 3
    change: np.ndarray  # (cases, 2): change applied at version 2 and 3

    @property
    def size(self) -> int:
        return self.n_prod.size

    def primary(self) -> np.ndarray:
        return self.prod[self.p_start]


@dataclass(frozen=True, slots=True)
class _Identities:
    content: np.ndarray  # content row of each case id
    inst: np.ndarray
    country: np.ndarray
    region: np.ndarray


# One line of the stream; ``state`` is the content version the line shows (_FULL: the latest),
# ``bare`` marks a nullification without products and reactions, ``malformed`` indexes
# MALFORMED_KINDS (-1: valid) and ``aux`` is the random draw its malformation uses.
_LINE = np.dtype(
    [
        ("ident", np.int32),
        ("version", np.int16),
        ("state", np.int8),
        ("received", np.int32),
        ("arrival", np.int32),
        ("nullified", np.bool_),
        ("bare", np.bool_),
        ("duplicate_of", np.int32),
        ("malformed", np.int8),
        ("aux", np.int32),
    ]
)


# ---------------------------------------------------------------------------------------------
# Public API


class Simulation:
    """A simulated stream: its registry, planted signals, truth, and the lines themselves."""

    # orjson keeps a 4 KiB buffer behind each result: small chunks keep that bounded.
    _CHUNK = 4096

    def __init__(
        self,
        config: SimulationConfig,
        catalogue: _Catalogue,
        signals: tuple[PlantedSignal, ...],
        truth: SimulationTruth,
        renderer: _Renderer,
    ) -> None:
        self.config = config
        self.products: list[RegisteredProduct] = catalogue.products
        self.signals = signals
        self.truth = truth
        self._renderer = renderer

    def chunks(self) -> Iterator[list[bytes]]:
        """The lines (JSON without newline) in arrival order, a few thousand at a time."""
        for lo in range(0, self.truth.lines, self._CHUNK):
            yield self._renderer.render(lo, min(lo + self._CHUNK, self.truth.lines))

    def lines(self) -> Iterator[bytes]:
        for chunk in self.chunks():
            yield from chunk


def simulate(config: SimulationConfig) -> Simulation:
    """Draw a stream: registry, cases, versions and planted signals (lines render lazily)."""
    rng = np.random.default_rng(config.seed)
    names = random.Random(config.seed)  # product names: scalar draws, cheaper than numpy's
    span = (config.end - config.start).days
    plan = _plan(config)
    terms = _terms(config.pts or _general_pts(config.reports))
    n_products = config.products or _product_count(config.reports)
    catalogue = _catalogue(rng, names, n_products, terms, config.start, span, plan.cases)
    institutions = _institutions(rng, len(catalogue.mah_ids))
    cases = _sample_cases(rng, catalogue, terms, plan.cases, span, config.unregistered_rate)
    signals = _plant(rng, cases, catalogue, terms, span, config)
    _dedupe(rng, cases, catalogue, terms, config.unregistered_rate)
    _choose_changes(rng, cases, plan)
    dup_rows = rng.choice(plan.cases, plan.duplicates, replace=False)
    identities = _identities(rng, cases, catalogue, institutions, dup_rows)
    lines = _lines(rng, plan, cases, dup_rows, span)
    truth = _truth(config, plan, cases, catalogue, terms, lines, dup_rows, signals)
    start = np.datetime64(config.start, "D")
    days = np.datetime_as_string(start + np.arange(span + 1)).tolist()
    renderer = _Renderer(catalogue, terms, cases, identities, institutions, lines, days)
    planted = tuple(
        PlantedSignal(
            product_id=catalogue.products[p].product_id,
            pt=terms.names[e],
            strength=strength,
            start=config.start + dt.timedelta(days=int(t0)),
            cases=x,
            expected_background=a0,
        )
        for p, e, strength, t0, x, a0 in signals
    )
    return Simulation(config, catalogue, planted, truth, renderer)


def sidecar_paths(out: Path) -> tuple[Path, Path, Path]:
    """The registry, signals and truth files written beside ``out``."""
    return (
        out.with_name(f"{out.stem}.products.yaml"),
        out.with_name(f"{out.stem}.signals.json"),
        out.with_name(f"{out.stem}.truth.json"),
    )


def write_simulation(config: SimulationConfig, out: Path) -> SimulationSummary:
    """Simulate and write the JSONL stream and its registry, signals and truth beside it."""
    began = time.perf_counter()
    simulation = simulate(config)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb", buffering=1 << 20) as handle:
        for chunk in simulation.chunks():
            handle.write(b"\n".join(chunk))
            handle.write(b"\n")
    products_path, signals_path, truth_path = sidecar_paths(out)
    _write_registry(simulation.products, products_path)
    signals_path.write_bytes(
        orjson.dumps(list(simulation.signals), option=orjson.OPT_INDENT_2) + b"\n"
    )
    truth = {"config": asdict(config), **asdict(simulation.truth)}
    truth_path.write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2) + b"\n")
    return SimulationSummary(
        reports_path=out,
        products_path=products_path,
        signals_path=signals_path,
        truth_path=truth_path,
        truth=simulation.truth,
        seconds=time.perf_counter() - began,
    )


def add_simulate_command(commands: argparse._SubParsersAction) -> None:
    """Register ``pvsignal simulate`` on the CLI's subparsers."""
    parser = commands.add_parser(
        "simulate",
        help="write a simulated report stream with known signals",
        description="Write a JSONL stream of simulated wire-format reports (follow-ups, "
        "nullifications, duplicates, re-sends, planted signals) in arrival order, with the "
        "product registry, the planted signals and the truth counts beside it.",
    )
    parser.add_argument("--reports", type=positive_int, required=True, help="lines to write")
    parser.add_argument(
        "--seed", type=int, required=True, help="random seed (same seed, same bytes)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("simulated.jsonl"), help="the JSONL file to write"
    )
    parser.add_argument(
        "--malformed-rate", type=share, default=0.0, help="share of lines that fail validation"
    )
    parser.set_defaults(run=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        reports=args.reports, seed=args.seed, malformed_rate=args.malformed_rate
    )
    summary = write_simulation(config, args.out)
    truth = summary.truth
    print(
        f"wrote {truth.lines:,} reports to {summary.reports_path} in {summary.seconds:.1f} s: "
        f"{truth.cases:,} cases ({truth.live_cases:,} live), {truth.follow_ups:,} follow-ups, "
        f"{truth.resends:,} re-sends, {truth.nullifications:,} nullifications, "
        f"{truth.duplicates:,} duplicate cases, {truth.malformed:,} malformed"
    )
    print(f"registry {summary.products_path} ({truth.products} products)")
    print(f"planted signals {summary.signals_path}; truth {summary.truth_path}")
    return 0


# ---------------------------------------------------------------------------------------------
# Sizes and counts. Counts of follow-ups, nullifications and so on are exact (rounded shares),
# so tests can compare them with a tight tolerance; which cases get them is random.


@dataclass(frozen=True, slots=True)
class _Plan:
    cases: int  # content rows: the cases first reported by their first sender
    duplicates: int  # second case ids for the same patient and event
    follow_ups: int
    third_versions: int
    nullified: int
    duplicates_nullified: int  # duplicates also nullified by their own sender
    resends: int
    malformed: int
    out_of_order: int

    @property
    def identities(self) -> int:
        return self.cases + self.duplicates


def _product_count(reports: int) -> int:
    return int(np.clip(6 * reports**0.45, 60, 4000))


def _general_pts(reports: int) -> int:
    return int(np.clip(25 * reports**0.25, 80, len(GENERAL_PTS)))


def _plan(config: SimulationConfig) -> _Plan:
    malformed = min(round(config.reports * config.malformed_rate), config.reports - 1)
    valid = config.reports - malformed
    per_case = (
        1
        + config.duplicate_rate * 2.5
        + (config.follow_up_rate * (1 + _THIRD_VERSION) + config.nullification_rate)
        * (1 + config.duplicate_rate)
    )
    cases = max(1, int(valid / (per_case * (1 + config.resend_rate))))
    while True:
        plan = _counts(config, cases, malformed, valid)
        if plan.resends >= 0 or cases == 1:
            return plan
        cases -= 1


def _counts(config: SimulationConfig, cases: int, malformed: int, valid: int) -> _Plan:
    duplicates = min(round(config.duplicate_rate * cases), cases // 2)
    identities = cases + duplicates
    follow_ups = min(round(config.follow_up_rate * identities), cases)
    third = round(_THIRD_VERSION * follow_ups)
    nullified = min(round(config.nullification_rate * identities), cases - duplicates)
    dup_nullified = duplicates // 2
    without_resends = (
        identities + follow_ups + third + nullified + 2 * duplicates - (duplicates - dup_nullified)
    )
    return _Plan(
        cases=cases,
        duplicates=duplicates,
        follow_ups=follow_ups,
        third_versions=third,
        nullified=nullified,
        duplicates_nullified=dup_nullified,
        resends=valid - without_resends,
        malformed=malformed,
        out_of_order=round(config.out_of_order_rate * follow_ups),
    )


def _zipf(n: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    return weights / weights.sum()


# ---------------------------------------------------------------------------------------------
# Terms and products


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


def _catalogue(
    rng: np.random.Generator,
    names: random.Random,
    n: int,
    terms: _Terms,
    start: dt.date,
    span: int,
    cases: int,
) -> _Catalogue:
    kind = rng.choice(len(_KINDS), n, p=_KIND_P)
    pathway = rng.choice(len(_PATHWAYS), n, p=_PATHWAY_P)
    # Every kind and every pathway occurs, whatever the draw.
    kind[rng.permutation(n)[: len(_KINDS)]] = np.arange(len(_KINDS))
    pathway[rng.permutation(n)[: len(_PATHWAYS)]] = np.arange(len(_PATHWAYS))
    n_mah = int(np.clip(n // 12, 5, 80))
    mah = rng.choice(n_mah, n, p=_zipf(n_mah, 0.8))
    approved = _approval_days(rng, pathway, span)
    primary_p, other_p = _product_weights(rng, pathway, cases)
    affinity = np.empty((n, 3), dtype=np.int32)
    for k in range(len(_KINDS)):
        mine = np.flatnonzero(kind == k)
        affinity[mine, :2] = rng.choice(terms.by_kind[k], (mine.size, 2))
    affinity[:, 2] = rng.choice(len(terms.names), n, p=terms.weights)
    mah_ids = tuple(f"MAH-{i + 1:03d}" for i in range(n_mah))
    taken = {normalize_name(name) for name in UNREGISTERED_NAMES}
    products = []
    for i in range(n):
        product_kind = _KINDS[kind[i]]
        product_id = _product_id(product_kind, i)
        product_names = _unique_names(names, product_kind, taken)
        taken.update(normalize_name(name) for name in (product_id, *product_names))
        day = int(approved[i])
        products.append(
            RegisteredProduct(
                product_id=product_id,
                names=product_names,
                kind=product_kind,
                pathway=_PATHWAYS[pathway[i]],
                mah_id=mah_ids[mah[i]],
                approved=None if day == _NO_DATE else start + dt.timedelta(days=day),
            )
        )
    return _Catalogue(products, kind, pathway, mah, approved, primary_p, other_p, affinity, mah_ids)


def _approval_days(rng: np.random.Generator, pathway: np.ndarray, span: int) -> np.ndarray:
    n = pathway.size
    last = max(span - 150, 1)  # every product has at least a few months of use
    conventional = -rng.integers(365, 20 * 365, n)
    innovative = rng.integers(-4 * 365, last, n)
    pilot = rng.integers(-2 * 365, last, n)
    days = np.where(_PILOT[pathway], pilot, innovative)
    days = np.where(pathway == _PATHWAYS.index(Pathway.conventional), conventional, days)
    unknown = (pathway == _PATHWAYS.index(Pathway.conventional)) & (rng.random(n) < 0.03)
    return np.where(unknown, _NO_DATE, days)


def _product_weights(
    rng: np.random.Generator, pathway: np.ndarray, cases: int
) -> tuple[np.ndarray, np.ndarray]:
    """Primary-suspect and other-slot weights: Zipf by registry order, pilots a handful each."""
    pilot = _PILOT[pathway]
    rank = np.maximum(np.cumsum(~pilot), 1)  # pilots take no rank
    other = np.where(pilot, 0.0, 1.0 / rank**1.2)
    other /= other.sum()
    handful = np.where(pilot, rng.uniform(2, 20, pathway.size), 0.0)
    share = min(handful.sum() / cases, 0.1)
    primary = other * (1 - share) + handful / max(handful.sum(), 1.0) * share
    return primary / primary.sum(), other


def _product_id(kind: Kind, index: int) -> str:
    if kind is Kind.device:
        # A GS1 GTIN-14 as UDI-DI (China's GS1 prefix 69x), with its check digit.
        body = f"0697{index:09d}"
        total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
        return f"UDI-{body}{(10 - total % 10) % 10}"
    prefix = {
        Kind.drug: "DRG",
        Kind.biologic: "BIO",
        Kind.vaccine: "VAC",
        Kind.cell_gene_therapy: "CGT",
    }
    return f"{prefix[kind]}-{index + 1:05d}"


def _unique_names(r: random.Random, kind: Kind, taken: set[str]) -> list[str]:
    """Display name (Chinese) first, then English and brand aliases, none already taken."""
    for _ in range(1000):
        names = _names(r, kind)
        keys = [normalize_name(name) for name in names]
        if len(set(keys)) == len(keys) and not taken.intersection(keys):
            return names
    raise RuntimeError(f"cannot find unique names for a {kind} product")  # pragma: no cover


def _names(r: random.Random, kind: Kind) -> list[str]:
    middle = "".join(r.choice(_SYLLABLES)[0] for _ in range(r.choice((0, 1, 1, 2))))
    brand_en = r.choice(_BRAND_HEADS) + middle + r.choice(_BRAND_TAILS)
    brand_cn = "".join(r.choice(_BRAND_CHARS) for _ in range(r.choice((2, 3, 3))))
    if kind is Kind.vaccine:
        disease, disease_cn = r.choice(_VACCINE_DISEASES)
        tech, tech_cn, suffix, suffix_cn = r.choice(_VACCINE_TECHS)
        generic = f"{tech} {disease} vaccine{suffix}"
        generic_cn = f"{tech_cn}{disease_cn}疫苗{suffix_cn}"
        # Two MAHs may make the same vaccine: the brand tells them apart.
        return [f"{generic_cn}（{brand_cn}）", f"{generic} ({brand_en})", brand_en, brand_cn]
    if kind is Kind.device:
        generic, generic_cn = r.choice(_DEVICES)
        return [f"{generic_cn}（{brand_cn}）", f"{brand_en} {generic}", brand_en, brand_cn]
    syllables = [r.choice(_SYLLABLES) for _ in range(r.choice((2, 2, 3)))]
    stem, stem_cn = r.choice(_STEMS[kind])
    inn = ("".join(s for s, _ in syllables) + stem).capitalize()
    inn_cn = "".join(c for _, c in syllables) + stem_cn
    if kind is Kind.drug:
        generic_cn = inn_cn + r.choice(_DOSAGE_FORMS)
    elif kind is Kind.biologic and r.random() < 0.3:
        generic_cn = "注射用" + inn_cn
    else:
        generic_cn = inn_cn + "注射液"
    return [generic_cn, inn, brand_en, brand_cn]


def _variant(name: str, which: int) -> str:
    """A spelling of ``name`` that ``normalize_name`` maps back to it: what senders type."""
    match which % 4:
        case 0:
            return name.upper()
        case 1:  # full-width Latin letters, digits and spaces, as Chinese input methods give
            return "".join(
                "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c
                for c in name
            )
        case 2:
            return "  ".join(name.lower().split(" ")) + "  "
        case _:
            return " " + name.title()


def _write_registry(products: list[RegisteredProduct], path: Path) -> None:
    entries = [p.model_dump(mode="json", exclude_none=True) for p in products]
    for entry in entries:
        if "approved" in entry:
            entry["approved"] = dt.date.fromisoformat(entry["approved"])  # a YAML date
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    text = yaml.dump(entries, Dumper=dumper, allow_unicode=True, sort_keys=False, width=1000)
    path.write_text(text, encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Cases


def _slots(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start of each row's slots, and each slot's row and position within its row."""
    start = np.cumsum(counts, dtype=np.int64) - counts
    row = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    return start, row, (np.arange(row.size) - start[row]).astype(np.int8)


def _sample_cases(
    rng: np.random.Generator,
    cat: _Catalogue,
    terms: _Terms,
    n: int,
    span: int,
    unregistered_rate: float,
) -> _Cases:
    n_prod = rng.choice(len(_PRODUCTS_PER_CASE_P), n, p=_PRODUCTS_PER_CASE_P) + 1
    n_react = rng.choice(len(_REACTIONS_PER_CASE_P), n, p=_REACTIONS_PER_CASE_P) + 1
    p_start, _, p_pos = _slots(n_prod)
    r_start, _, r_pos = _slots(n_react)
    first = p_pos == 0
    prod = np.empty(p_pos.size, dtype=np.int32)
    prod[first] = rng.choice(cat.size, n, p=cat.primary_p)
    prod[~first] = rng.choice(cat.size, p_pos.size - n, p=cat.other_p)
    free = rng.random(prod.size) < unregistered_rate
    prod[free] = _unregistered(rng, int(free.sum()), cat.size)
    role = np.where(first, 0, rng.choice(len(_ROLES), prod.size, p=_OTHER_ROLE_P)).astype(np.int8)
    form = rng.choice(_FORMS, prod.size, p=_FORM_P).astype(np.int8)
    pt = rng.choice(len(terms.names), r_pos.size, p=terms.weights).astype(np.int32)
    # Products raise their own reactions: the background disproportionality MGPS shrinks.
    primary = prod[p_start]
    known = primary < cat.size
    kind = np.where(known, cat.kind[np.minimum(primary, cat.size - 1)], 0)
    typical = known & (rng.random(n) < np.asarray(_AFFINITY_P)[kind])
    pt[r_start[typical]] = cat.affinity[primary[typical], rng.integers(0, 3, int(typical.sum()))]
    outcome = rng.choice(
        len(_OUTCOMES), r_pos.size, p=(0.12, 0.35, 0.20, 0.15, 0.03, 0.02, 0.13)
    ).astype(np.int8)
    serious = rng.choice(len(_SERIOUS), r_pos.size, p=(0.10, 0.55, 0.35)).astype(np.int8)
    serious[outcome == _FATAL] = _SERIOUS.index(True)
    cases = _Cases(
        n_prod=n_prod.astype(np.int8),
        n_react=n_react.astype(np.int8),
        p_start=p_start,
        r_start=r_start,
        prod=prod,
        form=form,
        role=role,
        pt=pt,
        coded=rng.random(r_pos.size) < 0.85,
        serious=serious,
        outcome=outcome,
        age=_ages(rng, n),
        sex=rng.choice(len(_SEXES), n, p=(0.03, 0.54, 0.41, 0.02)).astype(np.int8),
        received=np.zeros(n, dtype=np.int32),
        versions=np.ones(n, dtype=np.int8),
        change=np.zeros((n, 2), dtype=np.int8),
    )
    cases.received[:] = _first_received(rng, cases, cat, np.arange(n), 0, span)
    return cases


def _unregistered(rng: np.random.Generator, n: int, offset: int) -> np.ndarray:
    return offset + rng.choice(len(UNREGISTERED_NAMES), n, p=_zipf(len(UNREGISTERED_NAMES), 1.0))


def _ages(rng: np.random.Generator, n: int) -> np.ndarray:
    """Ages in tenths of years: adults around 56, some children, 12% unknown."""
    adult = np.clip(rng.normal(56, 16, n).round(), 18, 100) * 10
    child = rng.integers(0, 18, n) * 10
    infant = rng.integers(1, 20, n)  # 0.1 to 1.9 years
    group = rng.random(n)
    age = np.where(group < 0.05, child, adult)
    age = np.where(group < 0.01, infant, age)
    return np.where(rng.random(n) < 0.12, -1, age).astype(np.int16)


def _first_received(
    rng: np.random.Generator,
    cases: _Cases,
    cat: _Catalogue,
    rows: np.ndarray,
    earliest: np.ndarray | int,
    span: int,
) -> np.ndarray:
    """Days of the first report, after the primary product's approval, rising over time."""
    primary = cases.primary()[rows]
    known = primary < cat.size
    approved = np.where(known, cat.approved[np.minimum(primary, cat.size - 1)], 0)
    lo = np.clip(np.maximum(approved, earliest), 0, span)
    return (lo + (span - lo + 1) * rng.random(rows.size) ** 0.85).astype(np.int32)


def _dedupe(rng: np.random.Generator, cases: _Cases, cat: _Catalogue, terms: _Terms, rate: float):
    """Redraw a product or term that repeats within its case (the first slot never changes)."""
    p_pos = _slots(cases.n_prod)[2]
    r_pos = _slots(cases.n_react)[2]

    def products(k: int) -> np.ndarray:
        drawn = rng.choice(cat.size, k, p=cat.other_p).astype(np.int32)
        free = rng.random(k) < rate
        drawn[free] = _unregistered(rng, int(free.sum()), cat.size)
        return drawn

    def reactions(k: int) -> np.ndarray:
        return rng.choice(len(terms.names), k, p=terms.weights)

    for values, pos, draw in ((cases.prod, p_pos, products), (cases.pt, r_pos, reactions)):
        for _ in range(4):
            repeated = _repeats(values, pos)
            if not repeated.any():
                break
            values[repeated] = draw(int(repeated.sum()))


def _repeats(values: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Slots whose value an earlier slot of the same row already holds."""
    repeated = np.zeros(values.size, dtype=bool)
    for k in range(1, int(pos.max(initial=0)) + 1):
        repeated[k:] |= (pos[k:] >= k) & (values[k:] == values[:-k])
    return repeated


def _choose_changes(rng: np.random.Generator, cases: _Cases, plan: _Plan) -> None:
    """Pick the cases with follow-ups and what each follow-up adds or corrects."""
    followed = rng.choice(cases.size, plan.follow_ups, replace=False)
    cases.versions[followed] = 2
    cases.versions[followed[: plan.third_versions]] = 3
    first = rng.choice(len(_CHANGE_P), cases.size, p=_CHANGE_P)
    second = (first + rng.integers(1, len(_CHANGE_P), cases.size)) % len(_CHANGE_P)
    for change in (first, second):
        # An added reaction or product needs one left in the earlier version.
        change[(change == _ADD_REACTION) & (cases.n_react < 2)] = _DETAILS
        change[(change == _ADD_PRODUCT) & (cases.n_prod < 2)] = _DETAILS
    second[second == first] = np.where(first[second == first] == _DETAILS, _CORRECT_PT, _DETAILS)
    cases.change[:, 0] = first
    cases.change[:, 1] = second


# ---------------------------------------------------------------------------------------------
# Planted signals


def _plant(
    rng: np.random.Generator,
    cases: _Cases,
    cat: _Catalogue,
    terms: _Terms,
    span: int,
    config: SimulationConfig,
) -> list[tuple[int, int, float, int, int, float]]:
    """Overwrite random cases with (product, PT) cases; returns (p, e, strength, t0, x, a0)."""
    n_signals = min(config.signals, cases.size // 50)
    if n_signals == 0:
        return []
    _, p_row, p_pos = _slots(cases.n_prod)
    r_pos = _slots(cases.n_react)[2]
    per_product = np.bincount(cases.prod, minlength=cat.size)[: cat.size]
    # Share of cases reporting each term (a term repeated within a case counts once).
    once = cases.pt[~_repeats(cases.pt, r_pos)]
    has_term = np.bincount(once, minlength=len(terms.names)) / cases.size
    first_mention = ~_repeats(cases.prod, p_pos)
    chosen = _signal_products(rng, cat, per_product, n_signals)
    planted, used = [], np.zeros(cases.size, dtype=bool)
    for number, p in enumerate(chosen):
        pilot = number == 0
        lo = max(int(cat.approved[p]), 0)
        t0 = lo if pilot else lo + int((span - lo) * rng.uniform(0.1, 0.4))
        rows = p_row[(cases.prod == p) & first_mention]
        n_after = int((cases.received[rows] >= t0).sum())
        candidates = _signal_terms(terms, cat, p, has_term)
        e = int(rng.choice(candidates))
        a0 = n_after * float(has_term[e])
        wanted = float(rng.choice((8.0,) if pilot else (3.0, 4.0, 6.0)))
        x = max(4 if pilot else 5, round((wanted - 1) * a0))
        if a0 == 0 or used.sum() + x > cases.size // 4:
            continue
        free = np.flatnonzero(~used)
        rows = rng.choice(free, x, replace=False)
        used[rows] = True
        cases.prod[cases.p_start[rows]] = p
        cases.pt[cases.r_start[rows]] = e
        cases.received[rows] = _first_received(rng, cases, cat, rows, t0, span)
        planted.append((int(p), e, (a0 + x) / a0, t0, x, a0))
    return planted


def _signal_products(
    rng: np.random.Generator, cat: _Catalogue, per_product: np.ndarray, n: int
) -> list[int]:
    """The busiest pilot-import product first, then innovative products among the busier.

    A product named in more than 3% of cases is left out: it makes up so much of its events'
    margins that even a strong excess hardly shows in its PRR.
    """
    pilot = np.flatnonzero(_PILOT[cat.pathway] & (cat.approved != _NO_DATE))
    busiest_pilot = int(pilot[np.argmax(per_product[pilot])])
    small = per_product <= 0.03 * per_product.sum()
    innovative = np.flatnonzero((cat.pathway == _PATHWAYS.index(Pathway.innovative)) & small)
    innovative = innovative[np.argsort(-per_product[innovative], kind="stable")][:15]
    innovative = innovative[per_product[innovative] > 0]
    others = rng.choice(innovative, min(n - 1, innovative.size), replace=False)
    return [busiest_pilot, *(int(p) for p in others)]


def _signal_terms(terms: _Terms, cat: _Catalogue, p: int, has_term: np.ndarray) -> np.ndarray:
    """Terms of the product's kind or of middling frequency, not already characteristic of it."""
    own = terms.by_kind[cat.kind[p]]
    # Devices raise device problems; the first 20 general terms (death, drug ineffective, ...)
    # are too common to make a credible signal.
    wanted = np.zeros(len(terms.names), dtype=bool)
    wanted[own] = True
    if _KINDS[cat.kind[p]] is not Kind.device:
        wanted[20 : min(150, terms.general)] = True
    wanted[cat.affinity[p]] = False
    pool = np.flatnonzero(wanted & (has_term > 0))
    return pool if pool.size else np.arange(len(terms.names))


# ---------------------------------------------------------------------------------------------
# Identities (case ids) and senders


def _institutions(rng: np.random.Generator, n_mah: int) -> _Institutions:
    codes: list[str | None] = []
    types: list[SenderType] = []
    regions: list[int] = []

    def add(code: str | None, sender: SenderType, region: int) -> int:
        codes.append(code)
        types.append(sender)
        regions.append(region)
        return len(codes) - 1

    hainan, guangdong = _REGIONS.index("CN-HI"), _REGIONS.index("CN-GD")
    lecheng = [
        add(f"LC-HOSP-{i:02d}", SenderType.hospital, hainan)
        for i in range(1, _LECHENG_HOSPITALS + 1)
    ]
    gba = [
        add(f"GBA-HOSP-{i:02d}", SenderType.hospital, guangdong)
        for i in range(1, _GBA_HOSPITALS + 1)
    ]
    general = [
        add(f"{code}-HOSP-{i:02d}", SenderType.hospital, r)
        for r, (code, count) in enumerate(_PROVINCES)
        for i in range(1, count + 1)
    ]
    # Beijing's Tianzhu pilot and Shanghai take the rare-disease imports.
    rare = [i for i in general if codes[i][:3] in ("BJ-", "SH-")][:7]
    regulators = np.array(
        [add(f"ADR-{code}", SenderType.regulator, r) for r, (code, _) in enumerate(_PROVINCES)]
    )
    mah0 = len(codes)
    for i in range(n_mah):
        add(f"MAH-{i + 1:03d}", SenderType.mah, -1)
    individual = (
        add(None, SenderType.health_professional, -1),
        add(None, SenderType.patient, -1),
        add(None, SenderType.other, -1),
    )
    everyone = np.array(general + lecheng + gba)
    pools = (everyone, np.array(lecheng), np.array(gba), np.array(rare))
    # Hospital sizes vary: some send many reports, most few.
    pool_p = tuple(_normalised(rng.lognormal(0, 0.8, pool.size)) for pool in pools)
    prefixes = tuple(
        code
        if code is not None
        else {"health_professional": "HCP", "patient": "PAT"}.get(sender.value, "OTH")
        for code, sender in zip(codes, types, strict=True)
    )
    return _Institutions(
        tuple(codes),
        prefixes,
        tuple(types),
        np.array(regions),
        pools,
        pool_p,
        regulators,
        mah0,
        individual,
    )


def _normalised(weights: np.ndarray) -> np.ndarray:
    return weights / weights.sum()


def _groups(cases: _Cases, cat: _Catalogue, rows: np.ndarray) -> np.ndarray:
    """Sender group of each case: 0 general, 1 Lecheng, 2 GBA, 3 rare disease."""
    primary = cases.primary()[rows]
    known = primary < cat.size
    pathway = np.where(known, cat.pathway[np.minimum(primary, cat.size - 1)], 0)
    lookup = np.zeros(len(_PATHWAYS), dtype=np.int8)
    for group, pw in enumerate(
        (Pathway.lecheng_special_import, Pathway.gba_hkmacao_connect, Pathway.rare_disease_pilot),
        start=1,
    ):
        lookup[_PATHWAYS.index(pw)] = group
    return np.where(known, lookup[pathway], 0)


def _mah_of(rng: np.random.Generator, cases: _Cases, cat: _Catalogue, rows: np.ndarray):
    primary = cases.primary()[rows]
    known = primary < cat.size
    return np.where(
        known,
        cat.mah[np.minimum(primary, cat.size - 1)],
        rng.integers(0, len(cat.mah_ids), rows.size),
    )


def _identities(
    rng: np.random.Generator,
    cases: _Cases,
    cat: _Catalogue,
    inst: _Institutions,
    dup_rows: np.ndarray,
) -> _Identities:
    rows = np.arange(cases.size)
    group = _groups(cases, cat, rows)
    mah = _mah_of(rng, cases, cat, rows)
    kind = (rng.random(cases.size)[:, None] > np.cumsum(_SENDER_P, axis=1)[group]).sum(axis=1)
    kind = np.minimum(kind, _OTHER)
    sender, country, region = _senders(rng, inst, group, mah, kind)
    # The duplicate comes from a second sender: the MAH when a hospital sent the first case,
    # else a hospital; same patient, so same country and region where both are known.
    second_kind = np.where(kind[dup_rows] == _HOSPITAL, _MAH, _HOSPITAL)
    dup_sender, dup_country, dup_region = _senders(
        rng, inst, group[dup_rows], mah[dup_rows], second_kind
    )
    dup_country = np.where(second_kind == _MAH, country[dup_rows], dup_country)
    dup_region = np.where(second_kind == _MAH, region[dup_rows], dup_region)
    return _Identities(
        content=np.concatenate([rows, dup_rows]).astype(np.int32),
        inst=np.concatenate([sender, dup_sender]).astype(np.int32),
        country=np.concatenate([country, dup_country]).astype(np.int8),
        region=np.concatenate([region, dup_region]).astype(np.int16),
    )


def _senders(
    rng: np.random.Generator,
    inst: _Institutions,
    group: np.ndarray,
    mah: np.ndarray,
    kind: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = group.size
    sender = np.empty(n, dtype=np.int64)
    for g, (pool, p) in enumerate(zip(inst.pools, inst.pool_p, strict=True)):
        mine = (group == g) & (kind == _HOSPITAL)
        sender[mine] = rng.choice(pool, int(mine.sum()), p=p)
    sender[kind == _MAH] = inst.mah0 + mah[kind == _MAH]
    for k, index in zip((_PROFESSIONAL, _PATIENT, _OTHER), inst.individual, strict=True):
        sender[kind == k] = index
    # Where the patient lives, for senders that are not hospitals.
    population = _normalised(np.array([count for _, count in _PROVINCES], dtype=float))
    home = rng.choice(len(_REGIONS), n, p=population)
    home = np.where(group > 0, np.asarray(_GROUP_REGION)[group], home)
    home = np.where((group == 0) & (rng.random(n) < 0.1), -1, home)
    regulator = kind == _REGULATOR
    sender[regulator] = inst.regulators[np.where(home[regulator] < 0, 0, home[regulator])]
    region = np.where(inst.region[sender] >= 0, inst.region[sender], home)
    # Some MAH reports come from abroad, some individual reports from Hong Kong and Macao.
    country = np.zeros(n, dtype=np.int64)
    draw = rng.random(n)
    abroad = (kind == _MAH) & (group == 0) & (draw < 0.08)
    country[abroad] = rng.integers(3, len(_COUNTRIES), int(abroad.sum()))
    near = np.isin(kind, (_PROFESSIONAL, _PATIENT)) & (draw < 0.03)
    country[near] = rng.integers(1, 3, int(near.sum()))
    region = np.where(country > 0, -1, region)
    return sender, country, region


# ---------------------------------------------------------------------------------------------
# Lines: versions, re-sends, nullifications, duplicates and malformed copies, in arrival order


def _delays(rng: np.random.Generator, n: int) -> np.ndarray:
    """Days between receipt and arrival: mostly the same day, some weeks late."""
    p = np.concatenate([[0.6], np.full(3, 0.1), np.full(27, 0.1 / 27)])
    return rng.choice(p.size, n, p=p).astype(np.int32)


def _group(
    ident: np.ndarray,
    version: np.ndarray | int,
    state: np.ndarray | int,
    received: np.ndarray,
    arrival: np.ndarray,
    *,
    nullified: np.ndarray | bool = False,
    bare: np.ndarray | bool = False,
    duplicate_of: np.ndarray | int = -1,
) -> np.ndarray:
    lines = np.zeros(ident.size, dtype=_LINE)
    lines["ident"], lines["version"], lines["state"] = ident, version, state
    lines["received"], lines["arrival"] = received, arrival
    lines["nullified"], lines["bare"], lines["duplicate_of"] = nullified, bare, duplicate_of
    lines["malformed"] = -1
    return lines


@dataclass(frozen=True, slots=True)
class _Dates:
    """Received and arrival days of each case's content versions (by identity, by content row)."""

    received1: np.ndarray
    received2: np.ndarray
    received3: np.ndarray
    last: np.ndarray  # received day of the latest content version
    arrival1: np.ndarray
    arrival2: np.ndarray
    arrival3: np.ndarray
    latest: np.ndarray  # last arrival among the content versions


def _version_dates(
    rng: np.random.Generator, plan: _Plan, cases: _Cases, dup_rows: np.ndarray, span: int
) -> _Dates:
    k = plan.cases
    versions = cases.versions
    first = cases.received
    dup_first = np.minimum(first[dup_rows] + rng.integers(0, 46, dup_rows.size, np.int32), span)
    received1 = np.concatenate([first, dup_first])
    received2 = np.minimum(first + rng.geometric(1 / 30, k).astype(np.int32), span)
    received3 = np.minimum(received2 + rng.geometric(1 / 30, k).astype(np.int32), span)
    last = np.select([versions >= 3, versions >= 2], [received3, received2], first)
    arrival1 = received1 + _delays(rng, received1.size)
    arrival2 = received2 + _delays(rng, k)
    arrival3 = received3 + _delays(rng, k)
    late = rng.choice(np.flatnonzero(versions >= 2), plan.out_of_order, replace=False)
    arrival1[late] = arrival2[late] + rng.integers(1, 6, late.size)  # version 2 comes first
    latest = arrival1.copy()
    latest[:k] = np.maximum(latest[:k], np.where(versions >= 2, arrival2, 0))
    latest[:k] = np.maximum(latest[:k], np.where(versions >= 3, arrival3, 0))
    return _Dates(received1, received2, received3, last, arrival1, arrival2, arrival3, latest)


def _lines(
    rng: np.random.Generator, plan: _Plan, cases: _Cases, dup_rows: np.ndarray, span: int
) -> np.ndarray:
    """Every line, in arrival order (ties in random order)."""
    k, d = plan.cases, plan.duplicates
    dup_ids = k + np.arange(d)
    dates = _version_dates(rng, plan, cases, dup_rows, span)
    versions = cases.versions
    second, third = np.flatnonzero(versions >= 2), np.flatnonzero(versions >= 3)
    groups = [
        _group(
            np.arange(k + d),
            1,
            np.concatenate([np.ones(k), np.full(d, _FULL)]),
            dates.received1,
            dates.arrival1,
        ),
        _group(second, 2, 2, dates.received2[second], dates.arrival2[second]),
        _group(third, 3, 3, dates.received3[third], dates.arrival3[third]),
    ]
    content_lines = sum(group.size for group in groups)

    # The first case, in a new version, supersedes its duplicate after both have arrived.
    received = np.maximum(dates.last[dup_rows], dates.received1[dup_ids])
    received = np.minimum(received + rng.integers(20, 121, d), span)
    arrival = np.maximum.reduce(
        [received + _delays(rng, d), dates.latest[dup_rows] + 1, dates.arrival1[dup_ids] + 1]
    )
    groups.append(
        _group(dup_rows, versions[dup_rows] + 1, _FULL, received, arrival, duplicate_of=dup_ids)
    )

    # Nullifications come last in their case; half carry the case's content, half only ids.
    eligible = np.ones(k, dtype=bool)
    eligible[dup_rows] = False
    nullified = rng.choice(np.flatnonzero(eligible), plan.nullified, replace=False)
    gone = np.concatenate([nullified, dup_ids[: plan.duplicates_nullified]])
    own = np.minimum(gone, k - 1)
    received = np.where(gone < k, dates.last[own], dates.received1[gone])
    received = np.minimum(received + rng.integers(10, 181, gone.size), span)
    arrival = np.maximum(received + _delays(rng, gone.size), dates.latest[gone] + 1)
    version = np.where(gone < k, versions[own] + 1, 2)
    bare = rng.random(gone.size) < 0.5
    groups.append(_group(gone, version, _FULL, received, arrival, nullified=True, bare=bare))
    base = np.concatenate(groups)

    # Identical re-sends of versions, a few days to weeks later; malformed copies of lines
    # that carry content, near the original.
    resent = base[rng.choice(content_lines, plan.resends, replace=plan.resends > content_lines)]
    resent["arrival"] += rng.integers(1, 31, resent.size)
    pool = np.flatnonzero(~base["nullified"])
    broken = base[rng.choice(pool, plan.malformed, replace=plan.malformed > pool.size)]
    broken["arrival"] += rng.integers(0, 4, broken.size)
    broken["malformed"] = rng.integers(0, len(MALFORMED_KINDS), broken.size)
    broken["aux"] = rng.integers(0, 2**31, broken.size)
    lines = np.concatenate([base, resent, broken])
    return lines[np.lexsort((rng.random(lines.size), lines["arrival"]))]


def _truth(
    config: SimulationConfig,
    plan: _Plan,
    cases: _Cases,
    cat: _Catalogue,
    terms: _Terms,
    lines: np.ndarray,
    dup_rows: np.ndarray,
    signals: list[tuple[int, int, float, int, int, float]],
) -> SimulationTruth:
    malformed = lines["malformed"][lines["malformed"] >= 0]
    counts = np.bincount(malformed, minlength=len(MALFORMED_KINDS))
    # A duplicate comes from another organisation than the case naming it, so the link is a
    # suspected duplicate for a regulator (pvsignal.cases): both count until one decides.
    live = np.ones(plan.identities, dtype=bool)
    live[lines["ident"][lines["nullified"]]] = False
    content = np.concatenate([np.arange(plan.cases), dup_rows])
    live_per_row = np.bincount(content[live], minlength=plan.cases)
    _, p_row, _ = _slots(cases.n_prod)
    mentions = live_per_row[p_row]
    return SimulationTruth(
        lines=int(lines.size),
        valid_lines=int(lines.size - malformed.size),
        malformed=int(malformed.size),
        malformed_by_kind={k: int(c) for k, c in zip(MALFORMED_KINDS, counts, strict=True)},
        malformed_lines=tuple((np.flatnonzero(lines["malformed"] >= 0) + 1).tolist()),
        cases=plan.identities,
        live_cases=int(live.sum()),
        cases_with_follow_up=plan.follow_ups,
        follow_up_rate=plan.follow_ups / plan.identities,
        follow_ups=plan.follow_ups + plan.third_versions,
        out_of_order_cases=plan.out_of_order,
        resends=plan.resends,
        nullifications=plan.nullified + plan.duplicates_nullified,
        duplicates=plan.duplicates,
        superseding_reports=int(dup_rows.size),
        planted_cases=sum(s[4] for s in signals),
        product_mentions=int(mentions.sum()),
        unregistered_mentions=int(mentions[cases.prod >= cat.size].sum()),
        products=cat.size,
        pts=len(terms.names),
    )


# ---------------------------------------------------------------------------------------------
# Rendering: per chunk, gather each line's slots with numpy, then assemble dicts from cached,
# shared fragments and let orjson serialise them. Fragments are never mutated.


class _Cache(dict):
    def __init__(self, make: Callable[[int], object]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: int) -> object:
        value = self[key] = self._make(key)
        return value


def _gather(start: np.ndarray, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slot indices of each line's run, concatenated, and each line's offset (n + 1 long)."""
    offsets = np.zeros(length.size + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    flat = np.repeat(start - offsets[:-1], length) + np.arange(offsets[-1])
    return flat, offsets


class _Renderer:
    def __init__(
        self,
        cat: _Catalogue,
        terms: _Terms,
        cases: _Cases,
        ids: _Identities,
        inst: _Institutions,
        lines: np.ndarray,
        days: list[str],
    ) -> None:
        self._cat, self._terms, self._cases = cat, terms, cases
        self._ids, self._inst, self._lines, self._days = ids, inst, lines, days
        self._n_cases = cases.size
        self._products = _Cache(self._product)
        self._reactions = _Cache(self._reaction)
        self._patients = _Cache(self._patient)
        self._senders = _Cache(self._sender)
        self._prefixes = _Cache(self._prefix)

    # Fragments, built once per distinct key.

    def _product(self, key: int) -> dict:
        key, role = divmod(key, len(_ROLES))
        product, form = divmod(key, _FORMS)
        entry: dict[str, object]
        if product >= self._cat.size:
            entry = {"name": UNREGISTERED_NAMES[product - self._cat.size]}
        else:
            registered = self._cat.products[product]
            names = registered.names
            if form == 0:
                entry = {"product_id": registered.product_id}
            elif form == 1:
                entry = {"product_id": registered.product_id, "name": names[0]}
            elif form < 6:
                entry = {"name": names[(form - 2) % len(names)]}
            else:  # a variant of an English name (Chinese has no case or width to vary)
                entry = {"name": _variant(names[1 + form % 2], form + product)}
        entry["role"] = _ROLES[role].value
        return entry

    def _reaction(self, key: int) -> dict:
        key, outcome = divmod(key, len(_OUTCOMES))
        key, serious = divmod(key, len(_SERIOUS))
        pt, coded = divmod(key, 2)
        entry: dict[str, object] = {"pt": self._terms.names[pt]}
        if coded:
            entry["pt_code"] = self._terms.codes[pt]
        if _SERIOUS[serious] is not None:
            entry["serious"] = _SERIOUS[serious]
        if _OUTCOMES[outcome] is not None:
            entry["outcome"] = _OUTCOMES[outcome].value
        return entry

    def _patient(self, key: int) -> dict:
        age, sex = divmod(key, len(_SEXES))
        entry: dict[str, object] = {}
        if age > 0:
            tenths = age - 1
            entry["age_years"] = tenths // 10 if tenths % 10 == 0 else tenths / 10
        if _SEXES[sex] is not None:
            entry["sex"] = _SEXES[sex]
        return entry

    def _sender(self, key: int) -> dict:
        entry: dict[str, object] = {"type": self._inst.types[key].value}
        if self._inst.codes[key] is not None:
            entry["institution_id"] = self._inst.codes[key]
        return entry

    def _prefix(self, key: int) -> str:
        country, sender = divmod(key, len(self._inst.codes))
        return f"{_COUNTRIES[country]}-{self._inst.prefixes[sender]}-"

    # Lines

    def render(self, lo: int, hi: int) -> list[bytes]:
        lines, cases, ids = self._lines, self._cases, self._ids
        part = slice(lo, hi)
        ident = lines["ident"][part]
        state = lines["state"][part]
        bare = lines["bare"][part]
        row = ids.content[ident]
        versions = cases.versions[row]
        change = cases.change[row]
        pending1 = (state < 2) & (versions >= 2)
        pending2 = (state < 3) & (versions >= 3)

        def pending(kind: int) -> np.ndarray:
            return (pending1 & (change[:, 0] == kind)) | (pending2 & (change[:, 1] == kind))

        drop_products = (pending1 & (change[:, 0] == _ADD_PRODUCT)).astype(np.int64) + (
            pending2 & (change[:, 1] == _ADD_PRODUCT)
        )
        drop_reactions = (pending1 & (change[:, 0] == _ADD_REACTION)).astype(np.int64) + (
            pending2 & (change[:, 1] == _ADD_REACTION)
        )
        hidden = pending(_DETAILS)
        products, p_off = self._product_entries(
            ident, row, np.where(bare, 0, cases.n_prod[row] - drop_products)
        )
        reactions, r_off = self._reaction_entries(
            row, np.where(bare, 0, cases.n_react[row] - drop_reactions), pending(_CORRECT_PT),
            hidden,
        )  # fmt: skip
        age = np.where(hidden, -1, cases.age[row]).astype(np.int64)
        patients = self._lookup(self._patients, (age + 1) * len(_SEXES) + cases.sex[row])
        n_inst = len(self._inst.codes)
        senders = self._lookup(self._senders, ids.inst[ident])
        country = ids.country[ident].astype(np.int64)
        prefixes = self._lookup(self._prefixes, country * n_inst + ids.inst[ident])
        duplicate_of = lines["duplicate_of"][part]
        dup_prefix = self._lookup(
            self._prefixes,
            np.where(duplicate_of >= 0, ids.country[duplicate_of].astype(np.int64) * n_inst
                     + ids.inst[duplicate_of], 0),
        )  # fmt: skip
        region = ids.region[ident]
        columns = zip(
            ident.tolist(),
            lines["version"][part].tolist(),
            lines["received"][part].tolist(),
            lines["nullified"][part].tolist(),
            bare.tolist(),
            duplicate_of.tolist(),
            prefixes,
            dup_prefix,
            senders,
            country.tolist(),
            region.tolist(),
            patients,
            p_off.tolist(),
            p_off[1:].tolist(),
            r_off.tolist(),
            r_off[1:].tolist(),
            lines["malformed"][part].tolist(),
            lines["aux"][part].tolist(),
            strict=False,
        )
        days, dumps, out = self._days, orjson.dumps, []
        for (case, version, received, nullified, no_content, dup, prefix, dprefix, sender,
             country, reg, patient, p0, p1, r0, r1, broken, aux) in columns:  # fmt: skip
            case_id = f"{prefix}{case:08d}"
            report: dict[str, object] = {
                "case_id": case_id,
                "report_id": f"{case_id}-V{version}",
                "version": version,
                "received": days[received],
            }
            if nullified:
                report["nullified"] = True
            if dup >= 0:
                report["duplicate_of_ids"] = [f"{dprefix}{dup:08d}"]
            report["sender"] = sender
            report["country"] = _COUNTRIES[country]
            if reg >= 0:
                report["region"] = _REGIONS[reg]
            if not no_content:
                report["patient"] = patient
                report["products"] = products[p0:p1]
                report["reactions"] = reactions[r0:r1]
            out.append(dumps(report) if broken < 0 else _malform(report, broken, aux))
        return out

    @staticmethod
    def _lookup(cache: _Cache, keys: np.ndarray) -> list:
        return [cache[k] for k in keys.tolist()]

    def _product_entries(
        self, ident: np.ndarray, row: np.ndarray, length: np.ndarray
    ) -> tuple[list, np.ndarray]:
        cases = self._cases
        flat, offsets = _gather(cases.p_start[row], length)
        form = cases.form[flat].astype(np.int64)
        # A duplicate case comes from another sender, who writes names where the first wrote ids.
        second = np.repeat(ident >= self._n_cases, length)
        form = np.where(second & (form < 2), 2 + (cases.prod[flat] + form) % 4, form)
        keys = (cases.prod[flat].astype(np.int64) * _FORMS + form) * len(_ROLES) + cases.role[flat]
        return self._lookup(self._products, keys), offsets

    def _reaction_entries(
        self, row: np.ndarray, length: np.ndarray, vague: np.ndarray, hidden: np.ndarray
    ) -> tuple[list, np.ndarray]:
        cases, terms = self._cases, self._terms
        flat, offsets = _gather(cases.r_start[row], length)
        pt = cases.pt[flat].astype(np.int64)
        first = offsets[:-1][vague & (length > 0)]
        pt[first] = terms.provisional[pt[first]]
        outcome = np.where(np.repeat(hidden, length), _UNKNOWN, cases.outcome[flat])
        keys = ((pt * 2 + cases.coded[flat]) * len(_SERIOUS) + cases.serious[flat]) * len(
            _OUTCOMES
        ) + outcome
        return self._lookup(self._reactions, keys), offsets


def _malform(report: dict, kind: int, aux: int) -> bytes:
    """The report broken in the given way; shared fragments are copied, never changed."""
    name = MALFORMED_KINDS[kind]
    report = dict(report)
    if name == "not_json":
        reaction = report["reactions"][0]["pt"]
        texts = (
            f"case_id={report['case_id']};pt={reaction}",
            f'<?xml version="1.0"?><ichicsr><safetyreportid>{report["report_id"]}</safetyreportid>',
            f"{report['case_id']},{report['received']},{reaction}",
            "HTTP/1.1 502 Bad Gateway",
        )
        return texts[aux % len(texts)].encode()
    if name == "truncated_json":
        text = orjson.dumps(report).decode()
        return text[: 1 + aux % (len(text) - 1)].encode()
    if name == "missing_case_id":
        del report["case_id"]
    elif name == "negative_age":
        report["patient"] = {**report["patient"], "age_years": -(1 + aux % 90)}
    elif name == "unknown_role":
        first = report["products"][0]
        role = _BAD_ROLES[aux % len(_BAD_ROLES)]
        report["products"] = [{**first, "role": role}, *report["products"][1:]]
    elif name == "bad_date":
        report["received"] = _BAD_DATES[aux % len(_BAD_DATES)]
    elif name == "region_not_iso":
        report["region"] = _BAD_REGIONS[aux % len(_BAD_REGIONS)]
    elif name == "unknown_field":
        report["patient_name"] = "张某某"  # E2B keeps patient identity out: the schema refuses it
    elif name == "no_reactions":
        report["reactions"] = []
    else:  # bad_pt_code
        first = report["reactions"][0]
        report["reactions"] = [
            {**first, "pt_code": "1002" + str(aux % 1000)},
            *report["reactions"][1:],
        ]
    return orjson.dumps(report)
