"""GET /audit (admin): the hash-chained audit trail, filtered and paged, newest first."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from service.audit.schemas import AuditEntryOut, AuditPageOut
from service.http.deps import MAX_DB_INT, AdminKey, SessionDep
from service.http.schemas import ErrorOut
from service.security import audit as audit_log

router = APIRouter(tags=["security"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No or invalid API key."},
    403: {"model": ErrorOut, "description": "The key lacks the needed scope."},
}


@router.get("/audit", response_model=AuditPageOut, responses=_AUTH, summary="Audit trail, newest first")
def list_audit(
    _key: AdminKey,
    session: SessionDep,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    action: Annotated[str | None, Query(max_length=32)] = None,
    outcome: Annotated[str | None, Query(max_length=16)] = None,
    key_name: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[
        AwareDatetime | None, Query(description="Entries at or after this time (with a zone).")
    ] = None,
    until: Annotated[
        AwareDatetime | None, Query(description="Entries before this time (with a zone).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT)] = 0,
) -> AuditPageOut:
    filters = audit_log.AuditFilter(user_id, action, outcome, key_name, since, until)
    rows, total = audit_log.page(session, filters, limit, offset)
    return AuditPageOut(
        entries=[
            AuditEntryOut(
                seq=r.seq,
                time=r.time,
                key_name=r.key_name,
                user_id=r.user_id,
                action=r.action,
                outcome=r.outcome,
                reason=r.reason,
                summary=json.loads(r.summary),
                request_id=r.request_id,
                client=r.client,
                prev_hash=r.prev_hash,
                entry_hash=r.entry_hash,
            )  # fmt: skip
            for r in rows
        ],
        total=total,
        limit=limit,
        offset=offset,
    )
