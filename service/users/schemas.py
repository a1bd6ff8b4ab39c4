"""Response bodies of the user administration routes."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class ImageOut(BaseModel):
    image_id: int
    sha256: str
    size: int = Field(description="Bytes of the stored file.")
    box: list[int] = Field(description="Face box used at enrolment, [x, y, w, h].")
    model_version: str = Field(description="Model version that produced the stored embedding.")
    created: dt.datetime


class UserOut(BaseModel):
    user_id: str
    created: dt.datetime
    image_count: int
    model_versions: list[str] = Field(description="Model versions of the stored embeddings.")


class UserDetailOut(BaseModel):
    user_id: str
    created: dt.datetime
    model_version: str = Field(
        description="Version of the served model; images of other versions need `faceverify reembed`."
    )
    images: list[ImageOut]


class UserPageOut(BaseModel):
    users: list[UserOut]
    total: int
    limit: int
    offset: int


class DeletedOut(BaseModel):
    user_id: str
    deleted_images: int


class UnlockOut(BaseModel):
    user_id: str
    was_locked: bool = Field(description="Whether the user was locked when the unlock arrived.")
