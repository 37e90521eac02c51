"""Webhook subscriptions: each organisation manages its own; alerts are filtered and signed.

A subscription narrows what it receives with its ``filter`` (products, PTs, scopes, and which
measures and transitions moved) and may ask for a ``digest`` (hourly or daily): one delivery
per period listing each of its alerts once, instead of one delivery per alert."""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from starlette.responses import Response

from api.auth import Principal, Role
from api.deps import AuditActor, Reader, RegistryDep, RuntimeDep, StoreDep
from api.problems import NotFoundError, UnprocessableError
from api.schemas import (
    DeliveryList,
    SubscriptionCreated,
    SubscriptionIn,
    SubscriptionList,
    SubscriptionOut,
)
from api.webhooks import check_url
from pvsignal.audit import recorded

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])


def _owns(principal: Principal, subscription: dict[str, Any]) -> bool:
    if principal.role is Role.admin:
        return True
    return (subscription["owner_role"], subscription["owner_org"]) == (
        principal.role.value,
        principal.org,
    )


SubscriptionId = Annotated[int, Path(ge=1, le=2**62)]


def owned_subscription(
    subscription_id: SubscriptionId, principal: Reader, store: StoreDep
) -> dict[str, Any]:
    """The caller's subscription, or 404 (another organisation's is not revealed)."""
    found = store.subscription(subscription_id)
    if found is None or not _owns(principal, found):
        raise NotFoundError(f"no subscription {subscription_id}")
    return found


OwnedSubscription = Annotated[dict[str, Any], Depends(owned_subscription)]


@router.post(
    "",
    status_code=201,
    response_model=SubscriptionCreated,
    summary="Subscribe a webhook to alerts (the secret is shown once)",
)
def create_subscription(
    body: SubscriptionIn,
    principal: Reader,
    actor: AuditActor,
    store: StoreDep,
    registry: RegistryDep,
    runtime: RuntimeDep,
) -> SubscriptionCreated:
    url = str(body.url)
    check_url(url, runtime.settings)
    for i, product in enumerate(body.filter.products):
        if not registry.can_see(principal, product):
            # The same answer for a product that does not exist and one of another MAH.
            raise UnprocessableError(
                f"filter.products[{i}]: no product {product!r}",
                errors=[
                    {
                        "field": f"body.filter.products.{i}",
                        "reason": "no such product",
                        "value": product,
                    }
                ],
            )
    secret = "whsec_" + secrets.token_urlsafe(32)
    with recorded(store, actor, "subscription.create", "subscription", "") as recording:
        created = store.create_subscription(
            principal.role.value,
            principal.org,
            url,
            runtime.secrets.seal(secret),  # stored sealed, shown only in this answer
            body.filter.model_dump(),
            body.digest,
        )
        recording.object_id = str(created["subscription_id"])
        recording.after = _public(created)
    return SubscriptionCreated(**_public(created), secret=secret)


@router.get("", response_model=SubscriptionList, summary="My subscriptions")
def list_subscriptions(principal: Reader, store: StoreDep) -> SubscriptionList:
    every = store.subscriptions(owner_org=None if principal.role is Role.admin else principal.org)
    mine = [_public(s) for s in every if _owns(principal, s)]
    return SubscriptionList.model_validate({"subscriptions": mine})


@router.get("/{subscription_id}", response_model=SubscriptionOut, summary="One subscription")
def get_subscription(subscription: OwnedSubscription) -> SubscriptionOut:
    return SubscriptionOut.model_validate(_public(subscription))


@router.get(
    "/{subscription_id}/deliveries",
    response_model=DeliveryList,
    summary="Deliveries of a subscription: delivered, failed, next attempt",
)
def list_deliveries(
    subscription: OwnedSubscription,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeliveryList:
    return DeliveryList.model_validate(
        {"deliveries": store.deliveries(subscription["subscription_id"], limit)}
    )


@router.delete("/{subscription_id}", status_code=204, summary="Stop a subscription")
def delete_subscription(
    subscription: OwnedSubscription, actor: AuditActor, store: StoreDep
) -> Response:
    subscription_id = subscription["subscription_id"]
    before = _public(subscription)
    with recorded(
        store, actor, "subscription.delete", "subscription", str(subscription_id), before=before
    ):
        store.delete_subscription(subscription_id)
    return Response(status_code=204)


def _public(subscription: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in subscription.items() if k != "secret"}
