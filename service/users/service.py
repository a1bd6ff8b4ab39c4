"""Users as a domain service: look a user up ("user or 404"), list and search them, show a stored
photo (decrypted on request, as a small JPEG), delete a user or one image.

Deletes are crash-safe and serialised with enrolments of the same user (service.storage.locks): the
rows are deleted and committed under the lock, then the user's directory is repaired under the
lock again (service.storage.recovery.repair_dir), which removes every file that no longer has a row. A
crash between the two leaves only files without rows, which the start-up repair removes; never a
row without its file. An enrolment that slips in between keeps its (committed) files.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from faceverify.decode import ImageDecodeError, decode_image
from service.errors import Conflict, NotFound
from service.runtime.crashpoints import crash_point
from service.security import audit
from service.storage.locks import lock_user_dir
from service.storage.photos import ImageStore, user_dir_name
from service.storage.recovery import repair_dir
from service.storage.tables import UNREADABLE_ERRORS, Image, User

UNREADABLE: tuple[type[Exception], ...] = (*UNREADABLE_ERRORS, OSError, ImageDecodeError)
THUMBNAIL_PX = 256  # longest side of a photo shown in the console: enough to recognise a face


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


def list_users(session: Session, limit: int, offset: int, prefix: str | None = None) -> UserPage:
    """One page of users ordered by user_id (those whose id starts with `prefix`, when given), with
    their image counts and embedding model versions (two queries, whatever the page size)."""
    where = [User.user_id.startswith(prefix, autoescape=True)] if prefix else []
    total = session.scalar(select(func.count()).select_from(User).where(*where)) or 0
    users = session.scalars(
        select(User).where(*where).order_by(User.user_id).limit(limit).offset(offset)
    ).all()
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
        session.flush()
        audit.record_in(session, "ok", None, {"deleted_images": int(count)})  # no audit, no delete
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
        session.flush()
        audit.record_in(session, "ok", None, {"image_id": image_id})  # no audit, no delete
        session.commit()
    except BaseException:
        session.rollback()
        raise
    crash_point("delete_after_commit")
    repair_dir(session, store, user_dir_name(user_id), log_findings=False)


def photo_thumbnail(session: Session, store: ImageStore, user_id: str, image_id: int) -> bytes:
    """One stored photo of the user, decrypted now and shrunk to a JPEG of at most THUMBNAIL_PX
    on its longest side (the console shows it; the caller audits the view)."""
    user = require_user(session, user_id)
    image = session.scalar(select(Image).where(Image.id == image_id, Image.user_pk == user.id))
    if image is None:
        raise NotFound("unknown_image", f"user {user_id!r} has no image {image_id}")
    if not image.photo_stored:
        raise NotFound("photo_not_stored", f"image {image_id} was enrolled without keeping its photo")
    try:
        rgb = decode_image(store.read_photo(image.path, user.id, image.sha256))
    except UNREADABLE as exc:
        raise Conflict(
            "stored_data_unreadable", f"the stored photo of image {image_id} cannot be read"
        ) from exc
    height, width = rgb.shape[:2]
    scale = min(1.0, THUMBNAIL_PX / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok, "OpenCV could not encode a JPEG"
    return bytes(jpeg.tobytes())
