"""Audit from a route: who (key name), from where (client address), which request (X-Request-ID).

`AuditDep` gives a route a recorder bound to its request; `with audit.around("enroll", user_id) as
summary:` records `ok` with what the route put in `summary`, or `rejected` with the domain error's
reason (then re-raises). Routes put counts, thresholds and versions in the summary, never image
bytes or embeddings.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request

from service.errors import DomainError
from service.http.errors import ApiError
from service.security import audit
from service.security.keys import Principal


class AuditRecorder:
    def __init__(self, request: Request):
        self.request = request

    def record(
        self, action: str, user_id: str | None, outcome: str, reason: str | None = None,
        summary: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        principal: Principal | None = getattr(self.request.state, "principal", None)
        client = self.request.client.host if self.request.client else None
        audit.append(
            self.request.app.state.session_factory,
            audit.AuditEvent(
                action=action,
                outcome=outcome,
                user_id=user_id,
                key_name=principal.name if principal else None,
                reason=reason,
                summary=summary or {},
                request_id=getattr(self.request.state, "request_id", None),
                client=client,
            ),
        )

    @contextmanager
    def around(self, action: str, user_id: str | None) -> Iterator[dict[str, Any]]:
        summary: dict[str, Any] = {}
        try:
            yield summary
        except (DomainError, ApiError) as exc:
            self.record(action, user_id, "rejected", exc.reason, {**summary, **getattr(exc, "audit", {})})
            raise
        outcome = summary.pop("outcome", "ok")
        self.record(action, user_id, outcome, summary.pop("reason", None), summary)


def get_audit(request: Request) -> AuditRecorder:
    return AuditRecorder(request)


AuditDep = Annotated[AuditRecorder, Depends(get_audit)]
