"""Response bodies of GET /audit."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class AuditEntryOut(BaseModel):
    seq: int = Field(description="Position in the hash chain (1, 2, 3, ...).")
    time: dt.datetime
    key_name: str | None = Field(description="Name of the API key that made the request.")
    user_id: str | None
    action: str = Field(description="enroll, verify, delete_user, delete_image, unlock, key_create, ...")
    outcome: str = Field(description="ok, denied (not verified) or rejected (an error, see reason).")
    reason: str | None
    summary: dict[str, object] = Field(description="Votes, comparisons, thresholds, model version, ...")
    request_id: str | None
    client: str | None = Field(description="Client address.")
    prev_hash: str
    entry_hash: str


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    total: int
    limit: int
    offset: int
