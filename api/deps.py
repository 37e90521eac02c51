"""Typed dependencies: the runtime, a pooled store, the caller and what the caller may see."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Sequence
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator

from api.auth import Principal, Role
from api.problems import ForbiddenError, NotFoundError, UnprocessableError
from api.runtime import Runtime
from api.tenancy import RegistrySnapshot
from pvsignal.audit import Actor
from pvsignal.products import RegisteredProduct
from pvsignal.store import SqlStore

_bearer = HTTPBearer(auto_error=False, description="an API key (pvs_...) or an OIDC token")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_store(runtime: RuntimeDep) -> Iterator[SqlStore]:
    with runtime.pool.store() as store:
        yield store


StoreDep = Annotated[SqlStore, Depends(get_store)]

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_8601(value: Any) -> Any:
    """A time in a query is ISO 8601 text (pydantic alone would read "0.95" as a Unix time)."""
    if isinstance(value, str) and not _ISO_DATE.match(value):
        raise ValueError(f"not an ISO 8601 time (e.g. 2026-11-30T08:00:00Z): {value!r}")
    return value


IsoTime = Annotated[dt.datetime, BeforeValidator(_iso_8601)]


def named_events(runtime: Runtime, texts: Sequence[str]) -> tuple[str, ...]:
    """The counting keys a caller's spellings of event terms name (TermStore.named_event)."""
    if not texts:
        return ()
    with runtime.pool.store() as store:
        return tuple(store.named_event(text) for text in texts)


def get_principal(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    principal = runtime.authenticator.authenticate(
        credentials.credentials if credentials is not None else None
    )
    request.state.principal = principal  # for the access log
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def audit_actor(principal: PrincipalDep) -> Actor:
    """The caller as the audit trail names it. Every write operation depends on this (a test
    checks it), and records its write with ``pvsignal.audit.recorded(store, actor, ...)``."""
    return Actor(principal.describe(), principal.role.value, principal.org)


AuditActor = Annotated[Actor, Depends(audit_actor)]


def get_clock(request: Request) -> Callable[[], dt.datetime]:
    """The app's clock (UTC now); tests give create_app one they can move."""
    return request.app.state.clock


ClockDep = Annotated[Callable[[], dt.datetime], Depends(get_clock)]


def require(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency admitting only the given roles (403 for the others)."""
    allowed = frozenset(roles)

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            raise ForbiddenError(
                f"role {principal.role.value!r} may not do this; "
                f"it needs {' or '.join(sorted(r.value for r in allowed))}"
            )
        return principal

    check.allowed_roles = allowed  # type: ignore[attr-defined]  # read by api.openapi (403)
    return check


Reader = Annotated[Principal, Depends(require(Role.mah, Role.regulator, Role.admin))]
Submitter = Annotated[
    Principal, Depends(require(Role.hospital, Role.mah, Role.regulator, Role.admin))
]
# Cases: every role reads some (api.tenancy.case_access says which, and which fields).
CaseReader = Annotated[
    Principal, Depends(require(Role.hospital, Role.mah, Role.regulator, Role.admin))
]
Regulator = Annotated[Principal, Depends(require(Role.regulator, Role.admin))]
Admin = Annotated[Principal, Depends(require(Role.admin))]


def get_registry(runtime: RuntimeDep) -> RegistrySnapshot:
    return runtime.registry.current()


RegistryDep = Annotated[RegistrySnapshot, Depends(get_registry)]


def visible_product(product_id: str, principal: Reader, registry: RegistryDep) -> RegisteredProduct:
    """The registered product, if the caller may see it; 404 alike for absent and foreign."""
    product = registry.get(product_id)
    if product is None or not registry.can_see(principal, product_id):
        raise NotFoundError(f"no product {product_id!r}")
    return product


VisibleProduct = Annotated[RegisteredProduct, Depends(visible_product)]


def refuse_undeclared_query(request: Request) -> None:
    """Refuse query parameters the operation does not declare, and a single-valued one given
    more than once (applied to every route): a misspelt filter (``pathways=``) must not
    silently widen a listing, nor ``scope=a&scope=b`` silently read one of them."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    declared = dict(_query_parameters(dependant))
    refused = []
    for name, value in request.query_params.multi_items():
        if name not in declared:
            refused.append(
                {"field": f"query.{name}", "reason": "unknown parameter", "value": value}
            )
        elif not declared[name] and len(request.query_params.getlist(name)) > 1:
            refused.append({"field": f"query.{name}", "reason": "takes one value", "value": value})
    if refused:
        known = ", ".join(sorted(declared)) or "none"
        raise UnprocessableError(
            f"{refused[0]['field']}: {refused[0]['reason']} (this operation's parameters: {known})",
            errors=refused,
        )


def _query_parameters(dependant: Dependant) -> Iterator[tuple[str, bool]]:
    """(name, takes several values) of each query parameter of the operation."""
    for param in dependant.query_params:
        yield param.alias, _is_sequence(param.field_info.annotation)
    for dependency in dependant.dependencies:
        yield from _query_parameters(dependency)


def _is_sequence(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return any(_is_sequence(arg) for arg in get_args(annotation))
    return (origin or annotation) in (list, tuple, set, frozenset)
