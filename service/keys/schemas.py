"""Bodies of the /keys routes (the secret appears in KeyCreatedOut only, once)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class KeyOut(BaseModel):
    name: str
    scopes: list[str] = Field(description="verify, enroll, manage, admin (admin allows everything).")
    created: dt.datetime
    revoked: dt.datetime | None = Field(description="When it was revoked; null while active.")


class KeyListOut(BaseModel):
    keys: list[KeyOut]


class KeyCreateIn(BaseModel):
    name: str = Field(description="1-64 characters of A-Za-z0-9_.-, unique.", max_length=64)
    scopes: list[str] = Field(
        description="A non-empty subset of verify, enroll, manage, admin.", max_length=4
    )


class KeyCreatedOut(BaseModel):
    name: str
    scopes: list[str]
    secret: str = Field(description="The key, shown this once: send it as X-API-Key. Not stored.")


class KeyMeOut(BaseModel):
    name: str
    scopes: list[str]


class KeyRevokedOut(BaseModel):
    name: str
    revoked: bool = True
