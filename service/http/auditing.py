"""Audit from a route: who (key name), from where (client address), which request (X-Request-ID).

`AuditDep` gives a route a recorder bound to its request and its database session;
`with audit.around("enroll", user_id) as summary:` binds a `PendingAudit` to the session, so the
domain code writes the entry in the same transaction as the action (service.security.audit:
no audit, no action). When the domain wrote nothing (a refusal before any action, or a route whose
action needs no transaction), the entry is appended afterwards: `ok` with what the route put in
`summary`, or `rejected` with the domain error's reason (then re-raised). A failing append is 503
`audit_unavailable`, never a 500. Routes put counts, thresholds and versions in the summary, never
image bytes or embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.errors import DomainError
from service.http.clients import client_address
from service.http.deps import SessionDep
from service.http.errors import ApiError
from service.security import audit
from service.security.keys import Principal


class AuditRecorder:
    def __init__(self, request: Request, session: Session):
        self.request = request
        self.session = session

    def pending(self, action: str, user_id: str | None) -> audit.PendingAudit:
        principal: Principal | None = getattr(self.request.state, "principal", None)
        return audit.PendingAudit(
            action=action,
            user_id=user_id,
            key_name=principal.name if principal else None,
            request_id=getattr(self.request.state, "request_id", None),
            client=client_address(self.request, self.request.app.state.settings.trusted_proxy_networks),
        )

    @contextmanager
    def around(self, action: str, user_id: str | None) -> Iterator[dict[str, Any]]:
        summary: dict[str, Any] = {}
        pending = self.pending(action, user_id)
        audit.bind(self.session, pending)
        try:
            yield summary
        except (DomainError, ApiError) as exc:
            if not pending.written and not isinstance(exc, audit.AuditUnavailable):
                event = pending.event("rejected", exc.reason, {**summary, **getattr(exc, "audit", {})})
                audit.append(self.request.app.state.session_factory, event)
            raise
        finally:
            self.session.info.pop(audit.PENDING_KEY, None)
        if not pending.written:
            outcome = summary.pop("outcome", "ok")
            event = pending.event(outcome, summary.pop("reason", None), summary)
            audit.append(self.request.app.state.session_factory, event)


def get_audit(request: Request, session: SessionDep) -> AuditRecorder:
    return AuditRecorder(request, session)


AuditDep = Annotated[AuditRecorder, Depends(get_audit)]
