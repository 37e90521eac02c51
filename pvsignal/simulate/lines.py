"""The stream's lines, in arrival order, and the truth they add up to.

One ``_LINE`` record per line: first versions, follow-ups (some arriving before the version they
follow), the versions that supersede a duplicate, nullifications, identical re-sends and
malformed copies, with their received and arrival days, sorted by arrival. ``_truth`` counts
what the lines hold, for ``<stem>.truth.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pvsignal.simulate.cases import _Cases, _slots
from pvsignal.simulate.catalogue import _Catalogue
from pvsignal.simulate.config import SimulationConfig, SimulationTruth
from pvsignal.simulate.malformed import MALFORMED_KINDS
from pvsignal.simulate.plan import _Plan
from pvsignal.simulate.terms import _Terms

_FULL = 9  # a line that shows the latest content whatever its version

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
