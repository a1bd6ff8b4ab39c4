"""Users as a domain service: look a user up ("user or 404"), delete a user or one image.

Deletes are crash-safe and serialised with enrolments of the same user (service.storage.locks): the
rows are deleted and committed under the lock, then the user's directory is repaired under the
lock again (service.storage.recovery.repair_dir), which removes every file that no longer has a row. A
crash between the two leaves only files without rows, which the start-up repair removes; never a
row without its file. An enrolment that slips in between keeps its (committed) files.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.runtime.crashpoints import crash_point
from service.storage.locks import lock_user_dir
from service.storage.photos import ImageStore, user_dir_name
from service.storage.recovery import repair_dir
from service.storage.tables import Image, User


def require_user(session: Session, user_id: str) -> User:
    """The user row, or NotFound("unknown_user") (404) - the one place that says so."""
    user = session.scalar(select(User).where(User.user_id == user_id))
    if user is None:
        raise NotFound("unknown_user", f"user {user_id!r} is not enrolled")
    return user


@dataclass(frozen=True)
class UserSummary:
    user: User
    image_count: int
    model_versions: list[str]  # of the user's stored embeddings, one entry per version


@dataclass(frozen=True)
class UserPage:
    users: list[UserSummary]
    total: int


def list_users(session: Session, limit: int, offset: int) -> UserPage:
    """One page of users ordered by user_id, with their image counts and embedding model versions
    (two queries, whatever the page size)."""
    total = session.scalar(select(func.count()).select_from(User)) or 0
    users = session.scalars(select(User).order_by(User.user_id).limit(limit).offset(offset)).all()
    counts: dict[int, tuple[int, list[str]]] = {}
    if users:
        rows = session.execute(
            select(Image.user_pk, Image.model_version, func.count())
            .where(Image.user_pk.in_([u.id for u in users]))
            .group_by(Image.user_pk, Image.model_version)
        )
        for user_pk, version, count in rows:
            n, versions = counts.get(user_pk, (0, []))
            counts[user_pk] = (n + int(count), sorted([*versions, version]))
    return UserPage([UserSummary(u, *counts.get(u.id, (0, []))) for u in users], total)


def delete_user(session: Session, store: ImageStore, user_id: str) -> int:
    """Delete the user, their rows and their files; returns how many images were deleted."""
    if session.in_transaction():
        session.commit()
    try:
        lock_user_dir(session, user_dir_name(user_id))
        user = require_user(session, user_id)
        count = session.scalar(select(func.count()).select_from(Image).where(Image.user_pk == user.id)) or 0
        session.delete(user)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    crash_point("delete_after_commit")
    repair_dir(session, store, user_dir_name(user_id), log_findings=False)
    return int(count)


def delete_image(session: Session, store: ImageStore, user_id: str, image_id: int) -> None:
    """Delete one image (row and file) of the user; NotFound("unknown_image") if it is not theirs."""
    if session.in_transaction():
        session.commit()
    try:
        lock_user_dir(session, user_dir_name(user_id))
        user = require_user(session, user_id)
        image = session.scalar(select(Image).where(Image.id == image_id, Image.user_pk == user.id))
        if image is None:
            raise NotFound("unknown_image", f"user {user_id!r} has no image {image_id}")
        session.delete(image)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    crash_point("delete_after_commit")
    repair_dir(session, store, user_dir_name(user_id), log_findings=False)
