"""A synthetic MedDRA release in the real ASCII file format (MedDRA is licensed: never shipped).

Invented codes (9xxxxxxx), a handful of terms: two PTs with two SOCs each (different primary
SOCs), LLTs (one non-current), two SMQs (narrow and broad terms, an LLT entry, an inactive
entry, a sub-SMQ), Chinese names for a translated release. ``write_release`` writes the
files of pvsignal.terminology.meddra's docstring, ``$``-separated with the trailing ``$``.
"""

from __future__ import annotations

from pathlib import Path

SOCS = {
    "90000001": ("Skin and subcutaneous tissue disorders", "Skin", "皮肤及皮下组织类疾病"),
    "90000002": ("Immune system disorders", "Immun", "免疫系统疾病"),
    "90000003": ("Hepatobiliary disorders", "Hepat", "肝胆系统疾病"),
    "90000004": ("Gastrointestinal disorders", "Gastr", "胃肠系统疾病"),
}
HLGTS = {  # code: (name, soc, Chinese)
    "90000101": ("Epidermal and dermal conditions", "90000001", "表皮和真皮疾病"),
    "90000102": ("Allergic conditions", "90000002", "过敏性疾病"),
    "90000103": ("Hepatic and hepatobiliary disorders", "90000003", "肝脏和肝胆疾病"),
    "90000104": ("Gastrointestinal signs and symptoms", "90000004", "胃肠道体征和症状"),
}
HLTS = {  # code: (name, hlgt, Chinese)
    "90000201": ("Bullous conditions", "90000101", "大疱性疾病"),
    "90000202": ("Allergic conditions NEC", "90000102", "过敏性疾病NEC"),
    "90000203": ("Hepatic failure and associated disorders", "90000103", "肝衰竭及相关疾病"),
    "90000204": ("Rashes, eruptions and exanthems NEC", "90000101", "皮疹、疹和发疹NEC"),
    "90000205": ("Nausea and vomiting symptoms", "90000104", "恶心和呕吐症状"),
}
SJS, RASH, HEPATIC_FAILURE, NAUSEA, DRESS = (
    "90001001",
    "90001002",
    "90001003",
    "90001004",
    "90001005",
)
PTS = {  # code: (name, primary HLT, secondary HLTs, Chinese)
    SJS: ("Stevens-Johnson syndrome", "90000201", ("90000202",), "史蒂文斯-约翰逊综合征"),
    RASH: ("Rash", "90000204", (), "皮疹"),
    HEPATIC_FAILURE: ("Hepatic failure", "90000203", (), "肝衰竭"),
    NAUSEA: ("Nausea", "90000205", (), "恶心"),
    DRESS: (
        "Drug reaction with eosinophilia",
        "90000202",
        ("90000204",),
        "药物反应伴嗜酸粒细胞增多",
    ),
}
LLTS = {  # code: (name, pt, current, Chinese); every PT is also an LLT of its own code
    "90002001": ("SJS", SJS, True, "史约综合征"),
    "90002002": ("Stevens Johnson syndrome", SJS, False, "斯约综合征"),
    "90002003": ("Skin rash", RASH, True, "皮肤皮疹"),
    "90002004": ("Liver failure", HEPATIC_FAILURE, True, "肝功能衰竭"),
    "90002005": ("Feeling sick", NAUSEA, True, "感觉恶心"),
}
# Added in the newer release only: a report's "Queasiness" resolves there and not before.
NEWER_LLTS = {"90002006": ("Queasiness", NAUSEA, True, "反胃")}
SCAR, HEPATIC, HEPATIC_FAILURE_SMQ = "90003001", "90003002", "90003003"
SMQS = {
    SCAR: ("Severe cutaneous adverse reactions (SMQ)", "严重皮肤不良反应(SMQ)"),
    HEPATIC: ("Drug related hepatic disorders (SMQ)", "药物相关肝脏疾病(SMQ)"),
    HEPATIC_FAILURE_SMQ: ("Hepatic failure and cirrhosis (SMQ)", "肝衰竭和肝硬化(SMQ)"),
}
SMQ_CONTENT = [  # (smq, term, term_level, term_scope, term_status)
    (SCAR, SJS, "4", "2", "A"),  # narrow
    (SCAR, DRESS, "4", "2", "A"),  # narrow
    (SCAR, "90002003", "5", "1", "A"),  # broad, as an LLT: brings its PT, Rash
    (SCAR, NAUSEA, "4", "1", "I"),  # inactive: not in the SMQ
    (HEPATIC, HEPATIC_FAILURE_SMQ, "0", "0", "A"),  # a sub-SMQ
    (HEPATIC, NAUSEA, "4", "1", "A"),  # broad
    (HEPATIC_FAILURE_SMQ, HEPATIC_FAILURE, "4", "2", "A"),  # narrow (of the sub-SMQ)
]


def write_release(
    folder: Path,
    *,
    version: str = "26.0",
    chinese: bool = False,
    newer: bool = False,
    release_file: bool = True,
) -> Path:
    """Write the release's files into ``folder`` (made if needed) and return it.
    ``chinese``: names in Chinese (a translated release); ``newer``: with ``NEWER_LLTS``."""
    folder.mkdir(parents=True, exist_ok=True)
    llts = {**LLTS, **(NEWER_LLTS if newer else {})}

    def pick(english: str, translated: str) -> str:
        return translated if chinese else english

    def write(file: str, rows: list[list[str]]) -> None:
        lines = ["$".join(row) + "$" for row in rows]
        (folder / file).write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")

    write(
        "soc.asc",
        [[c, pick(n, zh), abbrev, *[""] * 7] for c, (n, abbrev, zh) in SOCS.items()],
    )
    write("hlgt.asc", [[c, pick(n, zh), *[""] * 7] for c, (n, _, zh) in HLGTS.items()])
    write("hlt.asc", [[c, pick(n, zh), *[""] * 7] for c, (n, _, zh) in HLTS.items()])
    write("soc_hlgt.asc", [[soc, c] for c, (_, soc, _) in HLGTS.items()])
    write("hlgt_hlt.asc", [[hlgt, c] for c, (_, hlgt, _) in HLTS.items()])
    write(
        "hlt_pt.asc",
        [[hlt, pt] for pt, (_, primary, others, _) in PTS.items() for hlt in (primary, *others)],
    )
    write(
        "pt.asc",
        [[c, pick(n, zh), "", soc_of(hlt), *[""] * 7] for c, (n, hlt, _, zh) in PTS.items()],
    )
    own = {c: (n, c, True, zh) for c, (n, _, _, zh) in PTS.items()}
    write(
        "llt.asc",
        [
            [c, pick(n, zh), pt, *[""] * 6, "Y" if current else "N", ""]
            for c, (n, pt, current, zh) in {**own, **llts}.items()
        ],
    )
    write("mdhier.asc", list(_mdhier(pick)))
    write(
        "smq_list.asc",
        [
            [c, pick(n, zh), "1", "description", "source", "", version, "A", "N"]
            for c, (n, zh) in SMQS.items()
        ],
    )
    write(
        "smq_content.asc",
        [
            [smq, term, level, scope, "A", "1", status, version, version]
            for smq, term, level, scope, status in SMQ_CONTENT
        ],
    )
    if release_file:
        write("meddra_release.asc", [[version, "Chinese" if chinese else "English", "", "", ""]])
    return folder


def soc_of(hlt: str) -> str:
    return HLGTS[HLTS[hlt][1]][1]


def _mdhier(pick):  # one row per path from a PT to a SOC
    for pt, (pt_name, primary, others, pt_zh) in PTS.items():
        for hlt in (primary, *others):
            hlgt = HLTS[hlt][1]
            soc = HLGTS[hlgt][1]
            yield [
                pt,
                hlt,
                hlgt,
                soc,
                pick(pt_name, pt_zh),
                pick(HLTS[hlt][0], HLTS[hlt][2]),
                pick(HLGTS[hlgt][0], HLGTS[hlgt][2]),
                pick(SOCS[soc][0], SOCS[soc][2]),
                SOCS[soc][1],
                "",
                soc_of(primary),
                "Y" if hlt == primary else "N",
            ]
