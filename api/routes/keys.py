"""API keys (admins): create (the key is shown once), list, revoke."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from api.auth import issue_key
from api.deps import Admin, AuditActor, StoreDep
from api.problems import NotFoundError
from api.schemas import KeyCreated, KeyIn, KeyList
from pvsignal.audit import recorded

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", status_code=201, response_model=KeyCreated, summary="Create an API key")
def create_key(body: KeyIn, principal: Admin, actor: AuditActor, store: StoreDep) -> KeyCreated:
    with recorded(store, actor, "key.create", "key", "") as recording:
        key, record = issue_key(store, body.role, body.org, body.name)
        recording.object_id, recording.after = record["key_id"], record
    return KeyCreated(**record, key=key)


@router.get("", response_model=KeyList, summary="Keys (never the keys themselves)")
def list_keys(principal: Admin, store: StoreDep) -> KeyList:
    return KeyList.model_validate({"keys": store.api_keys()})


@router.delete("/{key_id}", status_code=204, summary="Revoke a key")
def revoke_key(key_id: str, principal: Admin, actor: AuditActor, store: StoreDep) -> Response:
    with recorded(store, actor, "key.revoke", "key", key_id) as recording:
        if not store.revoke_api_key(key_id):
            raise NotFoundError(f"no live key {key_id!r}")
        recording.after = {"key_id": key_id, "revoked": True}
    return Response(status_code=204)
