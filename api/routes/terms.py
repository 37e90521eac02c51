"""GET /v1/terms/unmapped: the event terms no MedDRA entry resolves, with their cases.

Listed from the cases the caller may read (api.tenancy.case_access, the rule of /v1/cases):
a regulator every case, a hospital its own, an MAH those counted with its products. Each
term is counted once per case in the scope; the terms themselves are the reports' reaction
texts, normalised (what a coder fixes in the source or adds to MedDRA's aliases).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import CaseReader, RegistryDep, RuntimeDep, StoreDep
from api.problems import NotFoundError
from api.tenancy import case_access
from pvsignal.terminology.unmapped import unmapped_terms

router = APIRouter(prefix="/v1/terms", tags=["terms"])


class UnmappedTerm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    term: str = Field(description="the counting key, unmapped:<normalised text>")
    cases: int = Field(description="active cases the caller may read that count it")


class UnmappedList(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: str
    meddra_version: str | None = Field(description="the MedDRA version terms resolve in")
    terms: list[UnmappedTerm]


@router.get(
    "/unmapped",
    response_model=UnmappedList,
    summary="Event terms no MedDRA entry resolves, with their cases (most first)",
    responses={404: {"description": "no such scope"}},
)
def list_unmapped(
    principal: CaseReader,
    runtime: RuntimeDep,
    registry: RegistryDep,
    store: StoreDep,
    scope: Annotated[str, Query(max_length=63)] = "all",
) -> UnmappedList:
    if scope not in {s.name for s in runtime.scopes.all_scopes()}:
        raise NotFoundError(f"no scope {scope!r}")
    # The key signs case references; a term listing shows none.
    access = case_access(principal, registry, b"")
    found = unmapped_terms(store, access, scope)
    dictionary = store.meddra_dictionary()
    return UnmappedList(
        scope=scope,
        meddra_version=None if dictionary is None else dictionary.version,
        terms=[UnmappedTerm(term=t.term, cases=t.cases) for t in found],
    )
