"""Senders and case identities: who reports each case, from where, under which case id.

The senders are the designated hospitals of the pilot zones, general hospitals by province,
provincial ADR monitoring centres, MAHs and individuals (``_Institutions``); each case, and each
duplicate of it from a second sender, gets a sender, country and region by the pathway of its
primary product (``_Identities``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pvsignal.products import Pathway
from pvsignal.reports import SenderType
from pvsignal.simulate.cases import _Cases
from pvsignal.simulate.catalogue import _PATHWAYS, _Catalogue

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


@dataclass(frozen=True, slots=True)
class _Identities:
    content: np.ndarray  # content row of each case id
    inst: np.ndarray
    country: np.ndarray
    region: np.ndarray


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
