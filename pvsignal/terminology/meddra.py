"""A user-supplied MedDRA ASCII distribution: read, checked, and turned into a dictionary.

MedDRA is licensed: pvsignal never ships it. A subscriber's release (the ``MedAscii`` folder
of e.g. ``MedDRA_27_0_English``) is read by ``read_release``. Every file is text, one record
per line, fields separated by ``$``, each line ending with a ``$`` (so a split gives one empty
field more). The columns (MedDRA "Distribution File Format" document; names as there):

==================  ===================================================================
file                fields, in order
==================  ===================================================================
llt.asc             llt_code, llt_name, pt_code, llt_whoart_code, llt_harts_code,
                    llt_costart_sym, llt_icd9_code, llt_icd9cm_code, llt_icd10_code,
                    llt_currency (Y current / N non-current), llt_jart_code
pt.asc              pt_code, pt_name, null_field, pt_soc_code (primary SOC),
                    pt_whoart_code, pt_harts_code, pt_costart_sym, pt_icd9_code,
                    pt_icd9cm_code, pt_icd10_code, pt_jart_code
hlt.asc             hlt_code, hlt_name, hlt_whoart_code, hlt_harts_code, hlt_costart_sym,
                    hlt_icd9_code, hlt_icd9cm_code, hlt_icd10_code, hlt_jart_code
hlgt.asc            hlgt_code, hlgt_name, hlgt_whoart_code, hlgt_harts_code,
                    hlgt_costart_sym, hlgt_icd9_code, hlgt_icd9cm_code, hlgt_icd10_code,
                    hlgt_jart_code
soc.asc             soc_code, soc_name, soc_abbrev, soc_whoart_code, soc_harts_code,
                    soc_costart_sym, soc_icd9_code, soc_icd9cm_code, soc_icd10_code,
                    soc_jart_code
hlt_pt.asc          hlt_code, pt_code
hlgt_hlt.asc        hlgt_code, hlt_code
soc_hlgt.asc        soc_code, hlgt_code
mdhier.asc          pt_code, hlt_code, hlgt_code, soc_code, pt_name, hlt_name, hlgt_name,
                    soc_name, soc_abbrev, null_field, pt_soc_code, primary_soc_fg (Y/N):
                    one row per path from a PT to a SOC; exactly one path is primary
smq_list.asc        smq_code, smq_name, smq_level, smq_description, smq_source, smq_note,
                    MedDRA_version, status (A/I), smq_algorithm (N, or the algorithm)
smq_content.asc     smq_code, term_code, term_level (0 a sub-SMQ, 4 PT, 5 LLT), term_scope
                    (1 broad, 2 narrow, 0 not applicable: a sub-SMQ), term_category,
                    term_weight, term_status (A active / I inactive),
                    term_addition_version, term_last_modified_version
meddra_release.asc  version (e.g. 27.0), language (e.g. English, Chinese)
==================  ===================================================================

Only the columns pvsignal uses are kept (codes, names, currency, the primary flag, SMQ scope
and status); a line with fewer fields than the used ones, a code that is not a number, or a
link to a term the release does not define is refused with the file, line and value.

The hierarchy's paths are mdhier.asc's rows, each checked against the link files (hlt_pt,
hlgt_hlt, soc_hlgt) and the primary one against pt.asc's pt_soc_code. An SMQ's narrow
search is its active narrow terms, its broad search its active narrow and broad terms (as
vigicaen's ``get_llt_smq`` reads them); a sub-SMQ's terms belong to its parents, and an LLT
listed in an SMQ brings its PT. Algorithmic SMQs are read as their term lists (the
algorithm itself is not applied).

A translated release (Chinese: ``meddra_release.asc`` says so, or ``--language zh``) has the
same codes with names in its language: loaded next to the English release of its version,
its names are aliases that resolve to the same terms; loaded alone, they are the names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from pvsignal.errors import InputError

ENGLISH = "en"
CHINESE = "zh"

# (file, the fields it must have at least, counting from 1): the columns read from each.
_FILES = {
    "llt.asc": 10,  # llt_code, llt_name, pt_code ... llt_currency (10th)
    "pt.asc": 4,  # pt_code, pt_name, null_field, pt_soc_code
    "hlt.asc": 2,
    "hlgt.asc": 2,
    "soc.asc": 2,
    "hlt_pt.asc": 2,
    "hlgt_hlt.asc": 2,
    "soc_hlgt.asc": 2,
    "mdhier.asc": 12,
    "smq_list.asc": 9,
    "smq_content.asc": 7,
}
RELEASE_FILE = "meddra_release.asc"
_LANGUAGES = {"english": ENGLISH, "en": ENGLISH, "chinese": CHINESE, "zh": CHINESE}


@dataclass(frozen=True)
class Release:
    """The parts of one MedDRA release (one version, one language) pvsignal uses."""

    version: str
    language: str
    llts: dict[str, tuple[str, str, bool]]  # llt_code -> (name, pt_code, current)
    pts: dict[str, tuple[str, str]]  # pt_code -> (name, primary soc_code)
    hlts: dict[str, str]
    hlgts: dict[str, str]
    socs: dict[str, str]
    paths: list[tuple[str, str, str, str, bool]]  # pt, hlt, hlgt, soc, primary
    smqs: dict[str, str]  # smq_code -> name (active SMQs)
    smq_content: list[tuple[str, str, str, str]] = field(default_factory=list)
    # (smq_code, term_code, term_level, term_scope) of the active terms

    def to_json(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str | bytes) -> Release:
        document: dict[str, Any] = orjson.loads(text)
        return cls(
            version=document["version"],
            language=document["language"],
            llts={k: (v[0], v[1], v[2]) for k, v in document["llts"].items()},
            pts={k: (v[0], v[1]) for k, v in document["pts"].items()},
            hlts=document["hlts"],
            hlgts=document["hlgts"],
            socs=document["socs"],
            paths=[tuple(p) for p in document["paths"]],  # type: ignore[misc]
            smqs=document["smqs"],
            smq_content=[tuple(c) for c in document["smq_content"]],  # type: ignore[misc]
        )

    def summary(self) -> dict[str, int]:
        return {
            "llt": len(self.llts),
            "pt": len(self.pts),
            "hlt": len(self.hlts),
            "hlgt": len(self.hlgts),
            "soc": len(self.socs),
            "smq": len(self.smqs),
        }


def read_release(
    folder: Path,
    *,
    version: str | None = None,
    language: str | None = None,
    encoding: str = "utf-8",
) -> Release:
    """Read and check the release in ``folder`` (see the module docstring for its files).

    ``version`` and ``language`` are taken from meddra_release.asc, else from these
    arguments (which, when both are given, must agree).

    Raises
    ------
    InputError
        Naming the file, line and value of whatever is missing or inconsistent.
    """
    if not folder.is_dir():
        raise InputError(f"MedDRA folder {str(folder)!r} does not exist or is not a folder")
    stated_version, stated_language = _release_file(folder, encoding)
    version = _agreed("version", stated_version, version, folder)
    stated = _agreed("language", stated_language, language, folder)
    if version is None:
        raise InputError(
            f"MedDRA folder {str(folder)!r} has no {RELEASE_FILE}: give the version (--version)"
        )
    rows = {name: list(_rows(folder, name, width, encoding)) for name, width in _FILES.items()}
    socs = {code: name for _, (code, name, *_) in rows["soc.asc"]}
    hlgts = {code: name for _, (code, name, *_) in rows["hlgt.asc"]}
    hlts = {code: name for _, (code, name, *_) in rows["hlt.asc"]}
    pts = {}
    for where, (code, name, _, soc, *_) in rows["pt.asc"]:
        pts[code] = (name, _defined(soc, socs, "pt_soc_code", where))
    llts = {}
    for where, (code, name, pt, *rest) in rows["llt.asc"]:
        llts[code] = (name, _defined(pt, pts, "pt_code", where), rest[6] != "N")
    paths = _paths(rows, pts, hlts, hlgts, socs)
    language = _language(stated) if stated else _told_from([name for name, _ in pts.values()])
    smqs, content = _smqs(rows, pts, llts)
    return Release(version, language, llts, pts, hlts, hlgts, socs, paths, smqs, content)


def _release_file(folder: Path, encoding: str) -> tuple[str | None, str | None]:
    path = folder / RELEASE_FILE
    if not path.exists():
        return None, None
    for _, fields in _rows(folder, RELEASE_FILE, 2, encoding):
        return fields[0].strip(), fields[1].strip()
    raise InputError(f"{path}: empty, expected version$language$")


def _agreed(what: str, stated: str | None, given: str | None, folder: Path) -> str | None:
    if stated and given and stated.casefold() != given.casefold():
        if what == "language" and _LANGUAGES.get(stated.casefold()) == _LANGUAGES.get(
            given.casefold()
        ):
            return stated
        raise InputError(
            f"{folder / RELEASE_FILE}: {what} {stated!r}, but --{what} {given!r} was given"
        )
    return stated or given


def _language(stated: str) -> str:
    language = _LANGUAGES.get(stated.casefold())
    if language is None:
        raise InputError(
            f"MedDRA language {stated!r}: pvsignal reads English and Chinese releases (en, zh)"
        )
    return language


def _told_from(names: list[str]) -> str:
    """A release without meddra_release.asc or --language: Chinese when its PT names are
    mostly written in CJK ideographs, else English."""
    cjk = sum(any("\u4e00" <= ch <= "\u9fff" for ch in name) for name in names)
    return CHINESE if names and cjk * 2 > len(names) else ENGLISH


def _rows(folder: Path, name: str, width: int, encoding: str) -> Iterator[tuple[str, list[str]]]:
    """(file:line, fields) of each non-empty line, with at least ``width`` fields."""
    path = folder / name
    try:
        text = path.read_text(encoding=encoding)
    except FileNotFoundError:
        raise InputError(f"MedDRA folder {str(folder)!r} has no {name}") from None
    except UnicodeDecodeError as error:
        raise InputError(
            f"{path}: not {encoding} text ({error}); give the release's encoding (--encoding)"
        ) from None
    for number, line in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("$")
        where = f"{path.name}:{number}"
        if len(fields) < width:
            raise InputError(
                f"{where}: {len(fields)} fields, expected at least {width} ($-separated): {line!r}"
            )
        if name != RELEASE_FILE and not fields[0].strip().isdigit():
            raise InputError(f"{where}: code {fields[0]!r} is not a number")
        yield where, [f.strip() for f in fields]


def _defined(code: str, terms: dict[str, Any], column: str, where: str) -> str:
    if code not in terms:
        raise InputError(f"{where}: {column} {code!r} is not defined in this release")
    return code


def _paths(
    rows: dict[str, list[tuple[str, list[str]]]],
    pts: dict[str, tuple[str, str]],
    hlts: dict[str, str],
    hlgts: dict[str, str],
    socs: dict[str, str],
) -> list[tuple[str, str, str, str, bool]]:
    links = {
        "hlt_pt": {(a, b) for _, (a, b, *_) in rows["hlt_pt.asc"]},
        "hlgt_hlt": {(a, b) for _, (a, b, *_) in rows["hlgt_hlt.asc"]},
        "soc_hlgt": {(a, b) for _, (a, b, *_) in rows["soc_hlgt.asc"]},
    }
    paths, primaries = [], {}
    for where, fields in rows["mdhier.asc"]:
        pt, hlt, hlgt, soc = fields[:4]
        primary = fields[11] == "Y"
        for code, terms, column in (
            (pt, pts, "pt_code"),
            (hlt, hlts, "hlt_code"),
            (hlgt, hlgts, "hlgt_code"),
            (soc, socs, "soc_code"),
        ):
            _defined(code, terms, column, where)
        for link, pair in (
            ("hlt_pt", (hlt, pt)),
            ("hlgt_hlt", (hlgt, hlt)),
            ("soc_hlgt", (soc, hlgt)),
        ):
            if pair not in links[link]:
                raise InputError(f"{where}: path {pair} is not in {link}.asc")
        if primary:
            if pt in primaries:
                raise InputError(f"{where}: PT {pt} has a second primary path")
            if pts[pt][1] != soc:
                raise InputError(
                    f"{where}: primary SOC {soc} of PT {pt}, but pt.asc says {pts[pt][1]}"
                )
            primaries[pt] = where
        paths.append((pt, hlt, hlgt, soc, primary))
    missing = sorted(set(pts) - set(primaries))
    if missing:
        raise InputError(f"mdhier.asc: no primary path (primary_soc_fg Y) for PT {missing[:5]}")
    return paths


def _smqs(
    rows: dict[str, list[tuple[str, list[str]]]],
    pts: dict[str, tuple[str, str]],
    llts: dict[str, tuple[str, str, bool]],
) -> tuple[dict[str, str], list[tuple[str, str, str, str]]]:
    smqs = {fields[0]: fields[1] for _, fields in rows["smq_list.asc"] if fields[7] != "I"}
    content = []
    for where, fields in rows["smq_content.asc"]:
        smq, term, level, scope, status = fields[0], fields[1], fields[2], fields[3], fields[6]
        if status == "I" or smq not in smqs:
            continue
        if level not in ("0", "4", "5"):
            raise InputError(f"{where}: term_level {level!r}, expected 0 (SMQ), 4 (PT), 5 (LLT)")
        if scope not in ("0", "1", "2"):
            raise InputError(f"{where}: term_scope {scope!r}, expected 0, 1 (broad), 2 (narrow)")
        known = {"0": smqs, "4": pts, "5": llts}[level]
        if term not in known and level != "0":
            raise InputError(f"{where}: term_code {term!r} (level {level}) is not in this release")
        content.append((smq, term, level, scope))
    return smqs, content
