"""API keys (admins): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.auth import issue_key
from api.deps import Admin, StoreDep
from api.problems import NotFoundError
from api.schemas import KeyCreated, KeyIn, KeyList

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
def create_key(body: KeyIn, principal: Admin, store: StoreDep) -> KeyCreated:
    key, record = issue_key(store, body.role, body.org, body.name)
    return KeyCreated(**record, key=key)


@router.get("", response_model=KeyList, summary="Keys (never the keys themselves)")
def list_keys(principal: Admin, store: StoreDep) -> KeyList:
    return KeyList.model_validate({"keys": store.api_keys()})


@router.delete("/{key_id}", status_code=204, summary="Revoke a key")
def revoke_key(key_id: str, principal: Admin, store: StoreDep) -> Response:
    if not store.revoke_api_key(key_id):
        raise NotFoundError(f"no live key {key_id!r}")
    return Response(status_code=204)
