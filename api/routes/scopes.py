"""GET /v1/scopes: each scope's filters, sizes and last MGPS fit.

Scope-level aggregates, like the fits (see api.routes.fits): MAHs may read them, but the pair
count an MAH sees counts only its own products' pairs. Hospitals read no statistics.
"""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import Reader, RegistryDep, RuntimeDep, StoreDep
from api.series_schemas import ScopeList

router = APIRouter(prefix="/v1/scopes", tags=["scopes"])


@router.get(
    "", response_model=ScopeList, summary="Every configured scope: filters, sizes, last fit"
)
def list_scopes(
    principal: Reader, runtime: RuntimeDep, registry: RegistryDep, store: StoreDep
) -> ScopeList:
    sizes = store.scope_sizes()
    found = []
    for scope in runtime.scopes.all_scopes():
        reports, pairs = sizes.get(scope.name, (0, 0))
        if not principal.sees_everything:
            snapshot = runtime.signals.get(scope.name) if pairs else None
            pairs = 0
            if snapshot is not None:
                mask = registry.visibility_mask(principal, snapshot.products)
                pairs = snapshot.size if mask is None else int(mask[snapshot.product_code].sum())
        fits = store.fits(scope.name, last=1)
        last = fits[-1] if fits else None
        found.append(
            {
                "name": scope.name,
                "description": scope.description,
                "filter": scope.filter.model_dump(mode="json", exclude_defaults=True),
                "level": scope.level.value,
                "paths": scope.paths.value,
                "reports": reports,
                "pairs": pairs,
                "last_fit": None
                if last is None
                else {
                    "fitted_at": last["fitted_at"],
                    "theta": last.get("theta"),
                    "converged": last.get("converged"),
                    "warnings": list(last.get("warnings") or []),
                },
            }
        )
    return ScopeList.model_validate({"scopes": found})
