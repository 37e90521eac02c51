"""The product registry of a simulation: products, their names and their weights.

Each product gets a kind, a pathway (pilot imports get a handful of cases each and none before
their permit date), an MAH, an approval date, Zipf-like weights as primary suspect and in other
slots, its characteristic terms, an id (a UDI-DI for devices) and unique Chinese and English
names. Also the free-text names the registry does not know, the variant spellings senders type,
and the writer of the ``<stem>.products.yaml`` registry.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from pvsignal.products import Kind, Pathway, RegisteredProduct, normalize_name
from pvsignal.simulate.terms import _KINDS, _Terms, _zipf

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

_PATHWAYS = tuple(Pathway)
_KIND_P = (0.45, 0.22, 0.08, 0.20, 0.05)  # drug, biologic, vaccine, device, cell/gene therapy
_PATHWAY_P = (0.30, 0.10, 0.08, 0.07, 0.45)  # innovative, Lecheng, GBA, rare disease, conventional

_PILOT = np.array(
    [p is not Pathway.innovative and p is not Pathway.conventional for p in _PATHWAYS]
)

_NO_DATE = -(10**6)  # approval unknown: cases may come from the first day on


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


def _product_count(reports: int) -> int:
    return int(np.clip(6 * reports**0.45, 60, 4000))


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
