"""The terms no dictionary entry resolves (``unmapped:<normalised text>``), with their cases.

Listed from the cases the reader may see (pvsignal.case_access: a regulator every case, a
hospital its own, an MAH those counted with its products), counting each case once per term
in the scope, so that a listing never reveals terms of cases its reader may not read.
"""

from __future__ import annotations

from collections import Counter
from typing import NamedTuple

from pvsignal.case_access import CaseAccess
from pvsignal.terminology.events import UNMAPPED
from pvsignal.terminology.store import TermStore

_CHUNK = 1000


class UnmappedTerm(NamedTuple):
    term: str  # the counting key, unmapped:<normalised text>
    cases: int  # active cases counting it in the scope


def unmapped_terms(store: TermStore, access: CaseAccess, scope: str) -> list[UnmappedTerm]:
    """The scope's unmapped terms in the cases ``access`` admits, most cases first."""
    if access.products is not None and not access.products:
        return []
    counts: Counter[str] = Counter()
    after = None
    while True:
        page = store.cases_with_unmapped_terms(after=after, chunk=_CHUNK, owner=access.owner)
        for case in page:
            counted = case.counted_in(scope)
            if counted is None or not access.admits(case):
                continue
            counts.update({event for event in counted[1] if event.startswith(UNMAPPED)})
        if len(page) < _CHUNK:
            break
        after = (page[-1].owner, page[-1].case_id)
    return [
        UnmappedTerm(term, n) for term, n in sorted(counts.items(), key=lambda x: (-x[1], x[0]))
    ]
