"""The case table: each case's content, drawn column by column, and what its follow-ups change.

``_Cases`` is columnar: one row per case (content row), and per slot of a case's products or
reactions. It holds the codes of product roles, entry forms, outcomes, seriousness and sex that
the renderer reads back, the draws of products, reactions, patients and first-receipt days, the
removal of repeats within a case, and the choice of which cases get follow-ups and what each adds
or corrects.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pvsignal.reports import Outcome, Role
from pvsignal.simulate.catalogue import UNREGISTERED_NAMES, _Catalogue
from pvsignal.simulate.plan import _Plan
from pvsignal.simulate.terms import _Terms, _zipf

_ROLES = tuple(Role)
_OUTCOMES = (None, *Outcome)  # code 0 = not given
_SEXES = (None, "F", "M", "U")
_SERIOUS = (None, False, True)
_FATAL = _OUTCOMES.index(Outcome.fatal)
_UNKNOWN = _OUTCOMES.index(Outcome.unknown)
_AFFINITY_P = (0.30, 0.35, 0.50, 0.60, 0.50)  # by kind: share of cases with a characteristic PT

# Forms of a product entry: 0 id, 1 id and display name, 2-5 an alias, 6-9 a variant spelling.
_FORMS = 10

_FORM_P = (0.55, 0.10, 0.05, 0.05, 0.05, 0.05, 0.0375, 0.0375, 0.0375, 0.0375)
_PRODUCTS_PER_CASE_P = (0.55, 0.25, 0.12, 0.08)
_REACTIONS_PER_CASE_P = (0.30, 0.25, 0.18, 0.12, 0.09, 0.06)
_OTHER_ROLE_P = (0.45, 0.45, 0.08, 0.02)

# Follow-up changes, applied at version 2 (and 3): what the earlier version lacks.
_ADD_REACTION, _CORRECT_PT, _ADD_PRODUCT, _DETAILS = range(4)

_CHANGE_P = (0.35, 0.25, 0.15, 0.25)


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
