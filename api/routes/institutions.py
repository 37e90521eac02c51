"""The institution registry: who sends reports and owns cases. Regulators keep it."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from api.deps import AuditActor, RegistryDep, Regulator, RuntimeDep
from api.problems import ConflictError
from api.schemas import InstitutionIn, InstitutionList, InstitutionOut
from pvsignal.audit import Actor, recorded
from pvsignal.errors import InputError
from pvsignal.institutions import Institution
from pvsignal.rebuild import register_institutions

router = APIRouter(prefix="/v1/institutions", tags=["institutions"])


@router.get("", response_model=InstitutionList, summary="Registered institutions (regulators)")
def list_institutions(principal: Regulator, registry: RegistryDep) -> InstitutionList:
    return InstitutionList(
        institutions=[
            InstitutionOut(**institution.model_dump())
            for institution in sorted(registry.institutions, key=lambda i: i.institution_id)
        ]
    )


@router.put(
    "/{institution_id}",
    response_model=InstitutionOut,
    summary="Register or change an institution (regulators)",
    description="Cases sent under one of the institution's names become its cases (the owner "
    "is renamed to the institution id), and when cases exist they are recounted, since an "
    "institution's region counts for reports that state none. A name already used by another "
    "institution answers 409.",
    responses={409: {"description": "a name of another institution, or cases that would merge"}},
)
async def put_institution(
    institution_id: str,
    body: InstitutionIn,
    principal: Regulator,
    actor: AuditActor,
    runtime: RuntimeDep,
) -> InstitutionOut:
    return await run_in_threadpool(_save, runtime, institution_id, body, actor)


def _save(
    runtime: RuntimeDep, institution_id: str, body: InstitutionIn, actor: Actor
) -> InstitutionOut:
    try:
        institution = Institution(institution_id=institution_id, **body.model_dump())
    except ValueError as error:
        raise InputError(f"institution {institution_id!r}: {error}") from None
    previous = runtime.registry.current().institutions.get(institution_id)
    before = None if previous is None else previous.model_dump(mode="json")
    with runtime.pool.store() as store:
        try:
            with recorded(
                store, actor, "institution.put", "institution", institution_id, before=before
            ) as rec:
                renamed = register_institutions(store, [institution])
                rec.after = {**institution.model_dump(mode="json"), "renamed": renamed}
        except InputError as error:  # a name of another institution; cases that would merge
            raise ConflictError(str(error)) from None
        has_cases = bool(store.count_cases().get("active"))
    runtime.registry.invalidate()
    recounted = runtime.intake.recount() if has_cases else None
    return InstitutionOut(
        **institution.model_dump(), renamed_owners=sorted(renamed), recounted_cases=recounted
    )
