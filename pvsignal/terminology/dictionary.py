"""The MedDRA dictionary a store counts with: reactions resolved to PTs, PTs to a level's terms.

A reaction resolves by its PT code, else its LLT code (a PT code that a later version demoted
to an LLT resolves as that LLT), else its PT or LLT name in any loaded language, compared
after ``normalise_term`` (case, width, hyphens and spacing do not matter). A name that two
PTs share after normalising resolves to neither. A PT counts at each level as:

- ``pt``: its name; ``hlt``, ``hlgt``, ``soc``: the terms on its primary path (``paths:
  primary``, the default) or on every path (``paths: all``);
- ``smq_narrow``, ``smq_broad``: the SMQs whose narrow (broad: narrow or broad) search holds it.

Terms are named in the English release of the version when loaded, else in the first loaded.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pvsignal.terminology.meddra import ENGLISH, Release
from pvsignal.terminology.normalise import normalise_term


class Level(StrEnum):
    """The event level a scope counts its pairs at."""

    pt = "pt"
    hlt = "hlt"
    hlgt = "hlgt"
    soc = "soc"
    smq_narrow = "smq_narrow"
    smq_broad = "smq_broad"


class Paths(StrEnum):
    """Which of a PT's paths to its SOCs count at the hlt, hlgt and soc levels."""

    primary = "primary"
    all = "all"


_NARROW, _BROAD = frozenset({"2"}), frozenset({"1", "2"})


@dataclass(frozen=True)
class Dictionary:
    """One MedDRA version, its releases' names merged (translations as aliases)."""

    version: str
    languages: tuple[str, ...]
    llt_pt: dict[str, str]  # llt_code -> pt_code
    pt_names: dict[str, str]  # pt_code -> the name terms count under
    by_name: dict[str, str]  # normalised PT or LLT name, any language -> pt_code
    grouped: dict[tuple[Level, Paths], dict[str, tuple[str, ...]]]  # level -> pt -> terms

    @classmethod
    def of(cls, releases: Iterable[Release]) -> Dictionary:
        """The dictionary of the releases of one version."""
        ordered = sorted(releases, key=lambda r: r.language != ENGLISH)  # stable: English first
        if not ordered or len({r.version for r in ordered}) != 1:
            raise ValueError("a dictionary is made of the releases of one version")
        main = ordered[0]
        llt_pt = {code: pt for code, (_, pt, _) in main.llts.items()}
        pt_names = {code: name for code, (name, _) in main.pts.items()}
        return cls(
            main.version,
            tuple(r.language for r in ordered),
            llt_pt,
            pt_names,
            _names(ordered),
            _grouped(main, llt_pt),
        )

    def resolve(
        self, pt: str | None, pt_code: str | None, llt_code: str | None, llt: str | None
    ) -> str | None:
        """The PT code a reaction resolves to, or None."""
        if pt_code is not None:
            if pt_code in self.pt_names:
                return pt_code
            if pt_code in self.llt_pt:
                return self.llt_pt[pt_code]
        if llt_code is not None and llt_code in self.llt_pt:
            return self.llt_pt[llt_code]
        for name in (pt, llt):
            if name is not None:
                found = self.by_name.get(normalise_term(name))
                if found is not None:
                    return found
        return None

    def terms(self, pt_code: str, level: Level, paths: Paths) -> tuple[str, ...]:
        """The terms the PT counts under at the level (none: an SMQ that does not hold it)."""
        if level is Level.pt:
            return (self.pt_names[pt_code],)
        return self.grouped[(level, paths)].get(pt_code, ())


def _names(releases: list[Release]) -> dict[str, str]:
    """Normalised names of every PT and LLT, in every language: PT names first; a name two
    different PTs share is dropped (ambiguous)."""
    found: dict[str, str | None] = {}
    for by_pt in (True, False):
        taken = set(found)
        for release in releases:
            items = (
                ((name, code) for code, (name, _) in release.pts.items())
                if by_pt
                else ((name, pt) for name, pt, _ in release.llts.values())
            )
            for name, pt in items:
                key = normalise_term(name)
                if key in taken:
                    continue
                found[key] = pt if found.get(key, pt) == pt else None
    return {key: pt for key, pt in found.items() if pt is not None}


def _grouped(
    main: Release, llt_pt: dict[str, str]
) -> dict[tuple[Level, Paths], dict[str, tuple[str, ...]]]:
    grouped: dict[tuple[Level, Paths], dict[str, tuple[str, ...]]] = {}
    columns = {Level.hlt: (1, main.hlts), Level.hlgt: (2, main.hlgts), Level.soc: (3, main.socs)}
    for level, (column, names) in columns.items():
        for paths in Paths:
            per_pt: dict[str, dict[str, None]] = {}
            for path in main.paths:
                if paths is Paths.all or path[4]:
                    per_pt.setdefault(path[0], {})[names[path[column]]] = None
            grouped[(level, paths)] = {pt: tuple(terms) for pt, terms in per_pt.items()}
    for level, scopes in ((Level.smq_narrow, _NARROW), (Level.smq_broad, _BROAD)):
        members = _smq_members(main, llt_pt, scopes)
        per_pt = {}
        for smq in sorted(members, key=lambda code: main.smqs[code]):
            for pt in members[smq]:
                per_pt.setdefault(pt, []).append(main.smqs[smq])
        table = {pt: tuple(names) for pt, names in per_pt.items()}
        for paths in Paths:
            grouped[(level, paths)] = table
    return grouped


def _smq_members(
    main: Release, llt_pt: dict[str, str], scopes: frozenset[str]
) -> dict[str, set[str]]:
    """SMQ code -> the PT codes its search at these scopes holds, sub-SMQs included."""
    direct: dict[str, set[str]] = {code: set() for code in main.smqs}
    children: dict[str, set[str]] = {code: set() for code in main.smqs}
    for smq, term, level, scope in main.smq_content:
        if level == "0":
            children[smq].add(term)
        elif scope in scopes:
            direct[smq].add(term if level == "4" else llt_pt[term])

    def members(code: str, seen: frozenset[str]) -> set[str]:
        found = set(direct.get(code, ()))
        for child in children.get(code, ()):
            if child not in seen:
                found |= members(child, seen | {child})
        return found

    return {code: members(code, frozenset({code})) for code in main.smqs}
