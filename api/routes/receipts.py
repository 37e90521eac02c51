"""GET /v1/receipts: submitters read back their own receipts (regulators read all)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.auth import Principal
from api.deps import StoreDep, Submitter
from api.problems import NotFoundError
from api.schemas import ReceiptList, SubmissionReceipt

router = APIRouter(prefix="/v1/receipts", tags=["reports"])


def _org_filter(principal: Principal) -> str | None:
    """Whose receipts the caller reads: its own organisation's, or all for a regulator."""
    return None if principal.sees_everything else principal.org or ""


@router.get("", response_model=ReceiptList, summary="List my submission receipts")
def list_receipts(
    principal: Submitter,
    store: StoreDep,
    before: Annotated[str | None, Query(max_length=64, description="submitted before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ReceiptList:
    found = store.receipts(org=_org_filter(principal), before=before, limit=limit)
    following = found[-1]["submitted_at"] if len(found) == limit else None
    return ReceiptList.model_validate({"receipts": found, "next_before": following})


@router.get(
    "/{receipt_id}",
    response_model=SubmissionReceipt,
    response_model_exclude_none=True,  # as POST answered it
    summary="One receipt in full",
)
def get_receipt(receipt_id: str, principal: Submitter, store: StoreDep) -> SubmissionReceipt:
    receipt = store.receipt(receipt_id)
    wanted = _org_filter(principal)
    if receipt is None or (wanted is not None and receipt["org"] != wanted):
        raise NotFoundError(f"no receipt {receipt_id!r}")
    del receipt["org"], receipt["role"]
    return SubmissionReceipt.model_validate(receipt)
