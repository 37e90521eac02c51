"""Planted signals: product-PT pairs overwritten into the case table at a known strength.

The busiest pilot-import product gets the first signal from its approval on, innovative products
among the busier ones the rest, each with a term of its kind or of middling frequency; from the
signal's start, extra cases carry the pair at ``strength`` times its expected background.
"""

from __future__ import annotations

import numpy as np

from pvsignal.products import Kind, Pathway
from pvsignal.simulate.cases import _Cases, _first_received, _repeats, _slots
from pvsignal.simulate.catalogue import _NO_DATE, _PATHWAYS, _PILOT, _Catalogue
from pvsignal.simulate.config import SimulationConfig
from pvsignal.simulate.terms import _KINDS, _Terms


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
