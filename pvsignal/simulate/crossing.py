"""When each planted pair crosses Evans' PRR rule, by the simulator's own tables.

The stream's truth, counted the way the engine is meant to count it but from the case table and
the lines (never from rendered reports): each case identity in its latest version (the
highest-numbered valid line), nullified ones left out, at the month of that version's received
date; a case counts in the 2x2 table when its content names a product as suspect or interacting
(every case has a reaction), and counts for the pair when it names the product so and the PT.
The month is the first whose cumulative table, from the stream's start to its end, meets Evans
et al. [1]_: a >= 3, PRR >= 2 and Yates' chi-square >= 4.

References
----------
.. [1] Evans SJW, Waller PC, Davis S. Use of proportional reporting ratios (PRRs) for signal
   generation from spontaneous adverse drug reaction reports. Pharmacoepidemiol Drug Saf
   2001;10:483-486.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from pvsignal.reports import ProductRole
from pvsignal.simulate.cases import _ROLES, _Cases, _slots

_COUNTED_ROLES = (_ROLES.index(ProductRole.suspect), _ROLES.index(ProductRole.interacting))


def _evans_months(
    start: dt.date,
    cases: _Cases,
    lines: np.ndarray,
    dup_rows: np.ndarray,
    pairs: list[tuple[int, int]],
) -> list[str | None]:
    """Per (product, PT) code pair: the first received month (``YYYY-MM``) whose cumulative
    counts meet Evans' rule, None when no month's do."""
    if not pairs:
        return []
    k = cases.size
    valid = lines[lines["malformed"] < 0]
    # The latest version of each identity: the last line in (identity, version) order.
    ordered = valid[np.lexsort((valid["version"], valid["ident"]))]
    last = ordered[np.append(ordered["ident"][1:] != ordered["ident"][:-1], True)]
    last = last[~last["nullified"]]
    # A duplicate identity shows the content row it duplicates.
    row = np.concatenate([np.arange(k), dup_rows])[last["ident"]]
    days = np.datetime64(start, "D") + last["received"].astype("timedelta64[D]")
    month = days.astype("datetime64[M]")
    labels, month_index = np.unique(month, return_inverse=True)

    p_row = _slots(cases.n_prod)[1]
    r_row = _slots(cases.n_react)[1]
    counted = np.isin(cases.role, _COUNTED_ROLES)

    def rows_with(slot_rows: np.ndarray) -> np.ndarray:
        return (np.bincount(slot_rows, minlength=k) > 0)[row]

    def per_month(mask: np.ndarray) -> np.ndarray:
        return np.cumsum(np.bincount(month_index[mask], minlength=labels.size)).astype(float)

    in_table = rows_with(p_row[counted])
    n_total = per_month(in_table)
    found: list[str | None] = []
    for p, e in pairs:
        product = rows_with(p_row[counted & (cases.prod == p)]) & in_table
        event = rows_with(r_row[cases.pt == e]) & in_table
        a, n_product, n_event = per_month(product & event), per_month(product), per_month(event)
        b, c = n_product - a, n_event - a
        d = n_total - a - b - c
        with np.errstate(divide="ignore", invalid="ignore"):
            prr = (a / (a + b)) / (c / (c + d))
            excess = np.maximum(np.abs(a * d - b * c) - n_total / 2, 0)
            chi2 = n_total * excess**2 / ((a + b) * (c + d) * (a + c) * (b + d))
        flagged = np.flatnonzero((a >= 3) & (prr >= 2) & (chi2 >= 4))
        found.append(str(labels[flagged[0]]) if flagged.size else None)
    return found
