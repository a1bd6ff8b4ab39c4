"""Domain errors: what the enrolment, verification, security and storage services raise.

Domain code knows nothing of HTTP; it raises a `DomainError` subclass carrying a stable `reason`
code and a human `detail`. `service.http.errors` maps each class to an HTTP status in ONE table
(`STATUS_BY_ERROR`), so a route never chooses a status code for a domain failure by hand.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base class: `reason` is the stable machine-readable code clients branch on.

    `audit` holds facts for the audit trail's summary of the refused request that the client is
    not shown (e.g. which stored rows could not be read); never image bytes or embeddings.
    """

    def __init__(
        self,
        reason: str,
        detail: Any = None,
        *,
        retry_after_s: int | None = None,
        audit: dict[str, Any] | None = None,
    ):
        super().__init__(detail if detail is not None else reason)
        self.reason = reason
        self.detail = detail if detail is not None else reason
        self.retry_after_s = retry_after_s
        self.audit = dict(audit or {})


class InvalidInput(DomainError):
    """The request's content cannot be used (no face, not an image, bad threshold, ...): 422."""


class TooLarge(DomainError):
    """Over a byte, pixel or count limit: 413."""


class NotFound(DomainError):
    """Unknown user, image or challenge: 404."""


class Conflict(DomainError):
    """State conflicts with the request (model version mismatch, quota, concurrent change): 409."""


class Unauthenticated(DomainError):
    """No or invalid credentials: 401."""


class Forbidden(DomainError):
    """Valid credentials without the needed scope: 403."""


class TooManyRequests(DomainError):
    """Lockout or rate limit: 429 with Retry-After."""


class Unavailable(DomainError):
    """A dependency (database, inference capacity) is down or saturated: 503 with Retry-After."""
