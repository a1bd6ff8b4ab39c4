"""Enrolment: judge each uploaded photo, embed the usable ones once, store files and rows together.

Ordering that keeps the store and the database consistent (no orphan files, no orphan rows):

1. every new image is written to a temp file next to its final name (fsynced);
2. the rows (user if new, one image row per photo, with its embedding) are committed in ONE
   transaction;
3. only then are the temp files renamed to their final names.

If the commit fails, the temp files are deleted and nothing is visible. If a rename fails after the
commit, the just-committed rows are deleted again. A crash between 2 and 3 can leave a row whose file
is missing (never a file without a row); re-enrolling the same photo restores the file, and
`faceverify reembed` reports such rows.

Concurrency: the unique constraint on (user, sha256) and on users.user_id decide races between two
requests enrolling the same photo or creating the same user; the loser rolls back and retries,
then finds the winner's rows and reports them as enrolled (idempotent, never a 500).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from fastapi import UploadFile
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import metrics
from service.api.errors import ApiError
from service.core.config import Settings
from service.db_models import Image, User, embedding_to_bytes
from service.engine import FaceEngine, select_enrolment_face
from service.store import ImageStore, StagedFile, sha256_hex
from service.uploads import TOO_BIG_REASONS, decode, read_upload

_MAX_ATTEMPTS = 3


@dataclass
class _Candidate:
    sha256: str
    data: bytes
    box: tuple[int, int, int, int]
    chip: np.ndarray
    embedding: np.ndarray | None = None


@dataclass
class EnrolResult:
    user_id: str
    enrolled: list[tuple[int, str]] = field(default_factory=list)  # (image_id, sha256), upload order
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (filename, reason)


def _existing(session: Session, user_id: str) -> dict[str, tuple[int, str]]:
    """sha256 -> (image id, relative path) of the user's stored images (plain values, not ORM rows)."""
    rows = session.execute(
        select(Image.sha256, Image.id, Image.path).join(User).where(User.user_id == user_id)
    )
    return {sha: (image_id, path) for sha, image_id, path in rows}


def _get_or_create_user(session: Session, user_id: str) -> User:
    user = session.scalar(select(User).where(User.user_id == user_id))
    if user is None:
        user = User(user_id=user_id)
        session.add(user)
        session.flush()
    return user


def enrol(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    settings: Settings,
    user_id: str,
    uploads: list[UploadFile],
) -> EnrolResult:
    if len(uploads) > settings.max_images_per_enroll:
        raise ApiError(
            413, "too_many_files", f"at most {settings.max_images_per_enroll} images per request"
        )
    result = EnrolResult(user_id)
    existing = _existing(session, user_id)
    session.rollback()  # end the read transaction; the write transaction starts below
    order: list[str] = []  # sha256 of each accepted upload, in upload order
    candidates: dict[str, _Candidate] = {}

    for upload in uploads:
        item = read_upload(upload, settings.max_upload_bytes)
        if item.reason is not None or item.data is None:
            result.rejected.append((item.filename, item.reason or "empty"))
            continue
        digest = sha256_hex(item.data)
        if digest in existing or digest in candidates:
            order.append(digest)
            if digest in existing:
                _restore_missing_file(store, user_id, existing[digest], item.data)
            continue
        rgb, reason = decode(item.data, settings.max_upload_bytes, settings.max_pixels)
        if rgb is None:
            result.rejected.append((item.filename, reason or "not_an_image"))
            continue
        selection = select_enrolment_face(engine.faces(rgb))
        if selection.face is None:
            result.rejected.append((item.filename, selection.reason or "no_face"))
            continue
        face = selection.face
        box = tuple(int(v) for v in face.box)
        candidates[digest] = _Candidate(digest, item.data, (box[0], box[1], box[2], box[3]), face.chip)
        order.append(digest)

    for _, reason in result.rejected:
        metrics.record_enrolment_rejection(reason)
    if not order:
        reasons = {reason for _, reason in result.rejected}
        status = 413 if reasons and reasons <= TOO_BIG_REASONS else 422
        raise ApiError(
            status,
            "no_usable_image",
            {
                "message": "no image could be enrolled",
                "rejected": [{"filename": f, "reason": r} for f, r in result.rejected],
            },
        )

    pending = list(candidates.values())
    if pending:
        embeddings = engine.embed(np.stack([c.chip for c in pending]))
        for candidate, vector in zip(pending, embeddings, strict=True):
            candidate.embedding = vector

    ids = _persist(session, store, engine, user_id, pending, existing)
    result.enrolled = [(ids[digest], digest) for digest in dict.fromkeys(order)]
    return result


def _restore_missing_file(store: ImageStore, user_id: str, row: tuple[int, str], data: bytes) -> None:
    if not store.exists(row[1]):
        store.publish(store.stage(user_id, data))


def _persist(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    user_id: str,
    pending: list[_Candidate],
    existing: dict[str, tuple[int, str]],
) -> dict[str, int]:
    ids = {digest: row[0] for digest, row in existing.items()}
    for _attempt in range(_MAX_ATTEMPTS):
        todo = [c for c in pending if c.sha256 not in ids]
        if not todo and ids:
            # Everything was already stored (possibly by a concurrent request); nothing to write.
            return ids
        staged: list[StagedFile] = []
        try:
            staged = [store.stage(user_id, c.data) for c in todo]
            user = _get_or_create_user(session, user_id)
            rows = [_row(user, c, sf.relative_path, engine) for c, sf in zip(todo, staged, strict=True)]
            session.add_all(rows)
            session.commit()
        except IntegrityError:
            session.rollback()
            _discard(store, staged)
            ids.update({digest: row[0] for digest, row in _existing(session, user_id).items()})
            session.rollback()
            continue
        except BaseException:
            session.rollback()
            _discard(store, staged)
            raise
        try:
            for staged_file in staged:
                store.publish(staged_file)
        except BaseException:
            for row in rows:
                session.delete(row)
            session.commit()
            for staged_file in staged:
                store.delete(staged_file.relative_path)
            _discard(store, staged)
            raise
        ids.update({row.sha256: row.id for row in rows})
        return ids
    raise ApiError(409, "conflict", "concurrent changes to this user; retry the request")


def _row(user: User, candidate: _Candidate, relative_path: str, engine: FaceEngine) -> Image:
    assert candidate.embedding is not None
    x, y, w, h = candidate.box
    return Image(
        user_pk=user.id,
        sha256=candidate.sha256,
        path=relative_path,
        size=len(candidate.data),
        box_x=x,
        box_y=y,
        box_w=w,
        box_h=h,
        embedding=embedding_to_bytes(candidate.embedding),
        embedding_dim=int(candidate.embedding.shape[0]),
        model_version=engine.version,
    )


def _discard(store: ImageStore, staged: list[StagedFile]) -> None:
    for staged_file in staged:
        store.discard(staged_file)
