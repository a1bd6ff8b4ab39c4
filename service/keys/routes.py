"""API keys over REST: GET /keys, POST /keys, DELETE /keys/{name} (admin), GET /keys/me (any key).

The same domain code and rules as `faceverify keys` (service.security.keys: name pattern, scopes
from verify/enroll/manage/admin, a 256-bit secret made once and only its SHA-256 stored, revocation
effective from the next request on every replica). Creations and revocations are audited as
`key_create` / `key_revoke` with the key's name (and scopes), like the CLI's entries; the secret is
in the 201 answer only, never in the audit trail or a log. `GET /keys/me` lets a page learn which
scopes the key it was given has, to hide what it cannot do (the service checks again anyway).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path

from service.http.auditing import AuditDep
from service.http.deps import AdminKey, AnyKey, SessionDep
from service.http.schemas import ErrorOut
from service.keys.schemas import KeyCreatedOut, KeyCreateIn, KeyListOut, KeyMeOut, KeyOut, KeyRevokedOut
from service.security import keys

router = APIRouter(prefix="/keys", tags=["keys"])

KeyNamePath = Annotated[str, Path(pattern=keys.NAME_PATTERN.pattern, description="The key's name.")]
_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No or invalid API key."},
    403: {"model": ErrorOut, "description": "The key lacks the admin scope."},
}


@router.get("/me", response_model=KeyMeOut, responses=_AUTH, summary="The calling key's name and scopes")
def me(principal: AnyKey) -> KeyMeOut:
    return KeyMeOut(name=principal.name, scopes=sorted(principal.scopes))


@router.get("", response_model=KeyListOut, responses=_AUTH, summary="List API keys (never their secrets)")
def list_keys(_key: AdminKey, session: SessionDep) -> KeyListOut:
    return KeyListOut(
        keys=[
            KeyOut(name=row.name, scopes=sorted(row.scope_set), created=row.created, revoked=row.revoked)
            for row in keys.list_keys(session)
        ]
    )


@router.post(
    "",
    status_code=201,
    response_model=KeyCreatedOut,
    responses={
        **_AUTH,
        409: {"model": ErrorOut, "description": "A key with this name exists (key_exists)."},
        422: {"model": ErrorOut, "description": "Bad name (invalid_key_name) or scopes (invalid_scopes)."},
    },
    summary="Create an API key; its secret is in this answer only",
)
def create_key(
    _key: AdminKey, body: Annotated[KeyCreateIn, Body()], session: SessionDep, audit: AuditDep
) -> KeyCreatedOut:
    with audit.around("key_create", None) as summary:
        summary.update(name=body.name, scopes=sorted(set(body.scopes)))
        scopes = keys.parse_scopes(",".join(body.scopes))
        secret = keys.create_key(session, body.name, scopes)
    return KeyCreatedOut(name=body.name, scopes=sorted(scopes), secret=secret)


@router.delete(
    "/{name}",
    response_model=KeyRevokedOut,
    responses={**_AUTH, 404: {"model": ErrorOut, "description": "No key has this name (unknown_key)."}},
    summary="Revoke an API key (refused from its next request on; it stays listed)",
)
def revoke_key(_key: AdminKey, name: KeyNamePath, session: SessionDep, audit: AuditDep) -> KeyRevokedOut:
    with audit.around("key_revoke", None) as summary:
        summary["name"] = name
        keys.revoke_key(session, name)
    return KeyRevokedOut(name=name)
