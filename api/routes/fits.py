"""GET /v1/fits: the MGPS prior fits of each scope with their convergence reports.

Each record also says where the prior came from (``theta_source``: fitted, borrowed, given),
the ``decision`` ("borrowed from all") and its ``reason``, with the scope's own fit under
``own_fit`` when it was made but not used (see pvsignal.priors).

A fit is a scope-level aggregate (θ, likelihood, numbers of pairs and cases): it names no
product and carries no product's count, the same kind of figure as the ``n_total`` every signal
row shows. So MAHs may read fits (they need θ to check their own EBGMs); hospitals may not.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import Reader, StoreDep
from api.schemas import FitList

router = APIRouter(prefix="/v1/fits", tags=["fits"])

# What a fit report may show; anything else a future fit report adds stays out until reviewed.
_SHOWN = (
    "scope",
    "fitted_at",
    "theta_source",
    "decision",
    "reason",
    "borrowed_from",
    "parent_theta_source",
    "prior",
    "own_fit",
    "fitted_by",
    "theta",
    "neg_log_likelihood",
    "converged",
    "iterations",
    "starts",
    "starts_agreeing",
    "on_bound",
    "warnings",
    "pairs",
    "points",
    "cases",
    "warm_start",
    "seconds",
    "squashing",
    "runs",
)


@router.get("", response_model=FitList, summary="MGPS fits per scope, newest last")
def list_fits(
    principal: Reader,
    store: StoreDep,
    scope: Annotated[str | None, Query(max_length=63)] = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="the last N fits")] = 20,
) -> FitList:
    fits = store.fits(scope, last=limit)
    return FitList.model_validate(
        {"fits": [{k: fit[k] for k in _SHOWN if k in fit} for fit in fits]}
    )
