"""Enrolment as a domain service: judge each uploaded photo, embed the usable ones, store them.

Takes plain (filename, bytes) uploads and raises `service.errors` (no HTTP here).

Crash safety (issue 8): after the CPU work (decode, detect, embed) the write happens in ONE
database transaction that holds the user's lock (service.storage.locks):

1. lock the user; create the user row if new; read the user's stored images (dedup, quotas);
2. insert the new image rows (embeddings sealed) and flush, so their ids are known;
3. write every photo file durably under its final name (sealed; temp -> fsync -> rename);
4. commit.

A crash before 4 leaves nothing visible: the rows were never committed, and the files without
rows (and any temp file) are removed by `service.storage.recovery` at the next start. A crash after 4
leaves the whole enrolment: every committed row already has its file. The lock makes enrol,
delete, repair and key rotation of one user take turns, across processes, so an enrolment never
acknowledges an image that is not stored, and ids come from this transaction's own rows.

A re-sent photo (same sha256) repairs its row in the same transaction: a missing or unreadable
photo file is written again, an unreadable embedding is replaced by the one just computed, so
"re-enrol the user" (what verify's 409 `stored_data_unreadable` asks for) works in place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faceverify.selection import select_enrolment_face
from service.errors import Conflict, InvalidInput, TooLarge
from service.faces.engine import FaceEngine
from service.faces.images import TOO_BIG_REASONS, decode
from service.runtime import metrics
from service.runtime.config import Settings
from service.runtime.crashpoints import crash_point
from service.storage.crypto import DecryptionError
from service.storage.locks import lock_user_dir
from service.storage.photos import ImageStore, sha256_hex, user_dir_name
from service.storage.recovery import repair_dir
from service.storage.tables import UNREADABLE_ERRORS, Image, User, open_embedding, seal_embedding


@dataclass
class _Candidate:
    sha256: str
    data: bytes
    box: tuple[int, int, int, int]
    face: Any  # faceverify's Face: its chips feed every tower of the served model
    embedding: np.ndarray | None = None


@dataclass
class EnrolResult:
    user_id: str
    enrolled: list[tuple[int, str]] = field(default_factory=list)  # (image_id, sha256), upload order
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (filename, reason)


@dataclass(frozen=True)
class _Stored:
    image_id: int
    path: str
    size: int
    photo_stored: bool
    embedding: bytes
    embedding_dim: int


def enrol(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    settings: Settings,
    user_id: str,
    uploads: list[tuple[str, bytes]],
) -> EnrolResult:
    """Enrol the usable photos among `uploads` for `user_id`; see the module docstring."""
    if len(uploads) > settings.max_images_per_enroll:
        raise TooLarge("too_many_files", f"at most {settings.max_images_per_enroll} images per request")
    result = EnrolResult(user_id)
    order, candidates = _judge(engine, settings, uploads, result)
    for _, reason in result.rejected:
        metrics.record_enrolment_rejection(reason)
    if not order:
        reasons = {reason for _, reason in result.rejected}
        detail = {
            "message": "no image could be enrolled",
            "rejected": [{"filename": f, "reason": r} for f, r in result.rejected],
        }
        if reasons and reasons <= TOO_BIG_REASONS:
            raise TooLarge("no_usable_image", detail)
        raise InvalidInput("no_usable_image", detail)
    embeddings = engine.embed_faces([c.face for c in candidates.values()])
    for candidate, vector in zip(candidates.values(), embeddings, strict=True):
        candidate.embedding = vector
    ids = _persist(session, store, engine, settings, user_id, candidates)
    result.enrolled = [(ids[digest], digest) for digest in order]
    return result


def _judge(
    engine: FaceEngine, settings: Settings, uploads: list[tuple[str, bytes]], result: EnrolResult
) -> tuple[list[str], dict[str, _Candidate]]:
    """Each photo on its own: one clear face -> candidate; else a rejection with a reason."""
    order: list[str] = []  # sha256 of each accepted upload, in upload order, once each
    candidates: dict[str, _Candidate] = {}
    for filename, data in uploads:
        if len(data) > settings.max_upload_bytes:
            result.rejected.append((filename, "too_large"))
            continue
        if not data:
            result.rejected.append((filename, "empty"))
            continue
        digest = sha256_hex(data)
        if digest in candidates:
            continue
        rgb, reason = decode(data, settings.max_upload_bytes, settings.max_pixels)
        if rgb is None:
            result.rejected.append((filename, reason or "not_an_image"))
            continue
        selection = select_enrolment_face(engine.faces(rgb))
        if selection.face is None:
            result.rejected.append((filename, selection.reason or "no_face"))
            continue
        x, y, w, h = (int(v) for v in selection.face.box)
        candidates[digest] = _Candidate(digest, data, (x, y, w, h), selection.face)
        order.append(digest)
    return order, candidates


def _persist(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    settings: Settings,
    user_id: str,
    candidates: dict[str, _Candidate],
) -> dict[str, int]:
    """The locked write transaction (steps 1-4 of the module docstring); sha256 -> image id."""
    if session.in_transaction():
        session.commit()  # end any read transaction of the request: the lock must come first
    crash_point("before_lock")
    written: list[str] = []
    try:
        lock_user_dir(session, user_dir_name(user_id))
        user = session.scalar(select(User).where(User.user_id == user_id))
        if user is None:
            user = User(user_id=user_id, store_dir=user_dir_name(user_id))
            session.add(user)
            session.flush()
        stored = _stored(session, user.id)
        new = [c for c in candidates.values() if c.sha256 not in stored]
        _check_quotas(settings, user_id, stored, new)
        rows = [_row(user, c, store, engine, settings) for c in new]
        session.add_all(rows)
        session.flush()
        crash_point("after_rows_flushed")
        ids = {sha: s.image_id for sha, s in stored.items()}
        ids.update({row.sha256: row.id for row in rows})
        if settings.store_photos:
            for index, candidate in enumerate(new):
                # Tracked before writing: a write that fails after its rename still gets cleaned up.
                written.append(store.relative_path(user_id, candidate.sha256))
                store.write_photo(user_id, user.id, candidate.sha256, candidate.data)
                if index == 0:
                    crash_point("after_first_publish")
            _restore_damaged_files(store, user_id, user.id, stored, candidates)
        _restore_unreadable_embeddings(session, store, engine, user.id, stored, candidates)
        crash_point("before_commit")
    except IntegrityError as exc:
        _abandon(session, store, written)
        raise Conflict("concurrent_change", "concurrent changes to this user; retry the request") from exc
    except BaseException:
        _abandon(session, store, written)
        raise
    try:
        session.commit()
    except BaseException:
        # A commit that raised may still have committed (connection lost after the server's
        # COMMIT), so the files are not simply deleted: the repair, under the lock, removes them
        # only if their rows are absent. If the database is gone, the start-up repair does it.
        session.rollback()
        with contextlib.suppress(Exception):
            repair_dir(session, store, user_dir_name(user_id), log_findings=False)
        raise
    crash_point("after_commit")
    return ids


def _abandon(session: Session, store: ImageStore, written: list[str]) -> None:
    """Remove the files written for rows that will never commit, THEN roll back: the lock is still
    held while deleting, so this cannot remove a file another request has just committed."""
    try:
        for relative in written:
            store.delete(relative)
    finally:
        session.rollback()


def _stored(session: Session, user_pk: int) -> dict[str, _Stored]:
    rows = session.execute(
        select(
            Image.sha256, Image.id, Image.path, Image.size, Image.photo_stored, Image.embedding,
            Image.embedding_dim,
        ).where(Image.user_pk == user_pk)
    )  # fmt: skip
    return {
        str(sha): _Stored(int(image_id), str(path), int(size), bool(kept), bytes(blob), int(dim))
        for sha, image_id, path, size, kept, blob, dim in rows
    }


def _check_quotas(
    settings: Settings, user_id: str, stored: dict[str, _Stored], new: list[_Candidate]
) -> None:
    """Checked under the user's lock, so concurrent enrolments cannot both squeeze past a quota."""
    count = len(stored) + len(new)
    if new and count > settings.max_images_per_user:
        raise Conflict(
            "image_quota_exceeded",
            f"user {user_id!r} would have {count} images; at most {settings.max_images_per_user} are "
            f"kept per user ({len(stored)} stored). Delete some images first.",
        )
    total = sum(s.size for s in stored.values()) + sum(len(c.data) for c in new)
    if new and total > settings.max_bytes_per_user:
        raise TooLarge(
            "byte_quota_exceeded",
            f"user {user_id!r} would store {total} bytes of photos; at most "
            f"{settings.max_bytes_per_user} are kept per user. Delete some images first.",
        )


def _restore_damaged_files(
    store: ImageStore,
    user_id: str,
    user_pk: int,
    stored: dict[str, _Stored],
    candidates: dict[str, _Candidate],
) -> None:
    """A re-sent photo whose row lost its file (removed by hand) or whose file cannot be read
    (changed, or copied from another row) gets its file back: same bytes, same sha256."""
    for sha, candidate in candidates.items():
        existing = stored.get(sha)
        if existing is None or not existing.photo_stored:
            continue
        if not _photo_readable(store, existing, user_pk, sha):
            store.write_photo(user_id, user_pk, sha, candidate.data)


def _photo_readable(store: ImageStore, existing: _Stored, user_pk: int, sha256: str) -> bool:
    """The row's photo file exists and authenticates as this row's photo."""
    try:
        store.read_photo(existing.path, user_pk, sha256)
    except (FileNotFoundError, DecryptionError):
        return False
    return True


def _restore_unreadable_embeddings(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    user_pk: int,
    stored: dict[str, _Stored],
    candidates: dict[str, _Candidate],
) -> None:
    """A re-sent photo whose stored embedding cannot be read (verify leaves such rows out) gets the
    embedding just computed from the same bytes, so "re-enrol the user" repairs the row in place."""
    for sha, candidate in candidates.items():
        existing = stored.get(sha)
        if existing is None or candidate.embedding is None:
            continue
        try:
            open_embedding(store.keyring, existing.embedding, existing.embedding_dim, user_pk, sha)
            continue
        except UNREADABLE_ERRORS:
            pass
        x, y, w, h = candidate.box
        session.execute(
            update(Image)
            .where(Image.id == existing.image_id)
            .values(
                embedding=seal_embedding(store.keyring, candidate.embedding, user_pk, sha),
                embedding_dim=int(candidate.embedding.shape[0]), model_version=engine.version,
                box_x=x, box_y=y, box_w=w, box_h=h, key_id=store.keyring.current_id,
            )
        )  # fmt: skip


def _row(
    user: User, candidate: _Candidate, store: ImageStore, engine: FaceEngine, settings: Settings
) -> Image:
    assert candidate.embedding is not None
    x, y, w, h = candidate.box
    keyring = store.keyring
    return Image(
        user_pk=user.id,
        sha256=candidate.sha256,
        path=store.relative_path(user.user_id, candidate.sha256) if settings.store_photos else "",
        size=len(candidate.data),
        box_x=x,
        box_y=y,
        box_w=w,
        box_h=h,
        embedding=seal_embedding(keyring, candidate.embedding, user.id, candidate.sha256),
        embedding_dim=int(candidate.embedding.shape[0]),
        model_version=engine.version,
        photo_stored=settings.store_photos,
        key_id=keyring.current_id,
    )
