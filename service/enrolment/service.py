"""Enrolment as a domain service: judge each uploaded photo, embed the usable ones, store them.

Takes plain (filename, bytes) uploads and raises `service.errors` (no HTTP here).

Existing users (issue 18): anyone with an `enroll` key could append a stranger's photos to an
existing user_id and so take the identity over (with as many strange photos as own ones, the
victim no longer passed). A NEW photo for an EXISTING user is therefore kept only when it verifies
against the user's current enrolment (their readable embeddings of the served model, read under the
user's lock) at the card's strictest calibrated level; otherwise it is rejected on its own with
`not_same_person`. A key with `manage` (or admin) may add unmatched photos (`may_add_unmatched`).
A new user may be created with any photos: there is nobody to take over yet.

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
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from faceverify.decision import (
    TargetFarError,
    Thresholds,
    decide,
    resolve_request_thresholds,
    strictest_request_thresholds,
)
from faceverify.selection import FaceChoice, face_boxes, select_chosen_face
from service.errors import Conflict, InvalidInput, TooLarge
from service.faces.engine import FaceEngine
from service.faces.images import TOO_BIG_REASONS, check_pixel_budget, decode
from service.runtime import metrics
from service.runtime.config import Settings
from service.runtime.crashpoints import crash_point
from service.security import audit
from service.storage.crypto import DecryptionError
from service.storage.locks import lock_user_dir
from service.storage.photos import ImageStore, sha256_hex, user_dir_name
from service.storage.recovery import repair_dir
from service.storage.tables import UNREADABLE_ERRORS, Image, User, open_embedding, seal_embedding

log = logging.getLogger("faceverify.service")


@dataclass
class _Candidate:
    filename: str
    index: int  # position in the upload
    sha256: str
    data: bytes
    box: tuple[int, int, int, int]
    face: Any  # faceverify's Face: its chips feed every tower of the served model
    embedding: np.ndarray | None = None


# Refusals that list every face found, so that the client can say which one it meant.
LISTS_FACES = ("multiple_faces", "invalid_face_choice")


@dataclass(frozen=True)
class Rejection:
    """A photo not enrolled: its name and position in the upload, why, and (group photos) every
    face's box [x, y, w, h], largest first: the order a face choice's index refers to."""

    filename: str
    reason: str
    index: int
    faces: list[list[int]] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"filename": self.filename, "reason": self.reason, "index": self.index}
        if self.faces is not None:
            out["faces"] = self.faces
        return out


@dataclass
class EnrolResult:
    user_id: str
    enrolled: list[tuple[int, str]] = field(default_factory=list)  # (image_id, sha256), upload order
    rejected: list[Rejection] = field(default_factory=list)
    existing_user: bool = False  # photos were added to a user enrolled before this request
    unmatched_allowed: bool = False  # ... by a key that may add photos that do not match


@dataclass(frozen=True)
class _Stored:
    image_id: int
    path: str
    size: int
    photo_stored: bool
    embedding: bytes
    embedding_dim: int
    model_version: str


def enrol(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    settings: Settings,
    user_id: str,
    uploads: list[tuple[str, bytes]],
    choices: Sequence[FaceChoice] | None = None,
    may_add_unmatched: bool = True,
) -> EnrolResult:
    """Enrol the usable photos among `uploads` for `user_id`; see the module docstring.

    `choices` (one per upload, None = the usual rule) names the face to use in a group photo: an
    index into the boxes its `multiple_faces` refusal listed, or a box (faceverify.selection).
    `may_add_unmatched=False` (an `enroll`-only key): new photos of an existing user must match."""
    if len(uploads) > settings.max_images_per_enroll:
        raise TooLarge("too_many_files", f"at most {settings.max_images_per_enroll} images per request")
    if choices is not None and len(choices) != len(uploads):
        raise InvalidInput("invalid_face_choice", "send one face choice per image (empty: automatic)")
    check_pixel_budget([data for _, data in uploads], settings.max_request_pixels, "photos")
    result = EnrolResult(user_id)
    order, candidates = _judge(engine, settings, uploads, choices or [None] * len(uploads), result)
    for rejection in result.rejected:
        metrics.record_enrolment_rejection(rejection.reason)
    if not order:
        reasons = {r.reason for r in result.rejected}
        detail = {
            "message": "no image could be enrolled",
            "rejected": [r.as_dict() for r in result.rejected],
        }
        if reasons and reasons <= TOO_BIG_REASONS:
            raise TooLarge("no_usable_image", detail)
        raise InvalidInput("no_usable_image", detail)
    embeddings = engine.embed_faces([c.face for c in candidates.values()])
    for candidate, vector in zip(candidates.values(), embeddings, strict=True):
        candidate.embedding = vector
    ids = _persist(session, store, engine, settings, user_id, candidates, result, may_add_unmatched)
    result.enrolled = [(ids[digest], digest) for digest in order if digest in ids]
    return result


def _judge(
    engine: FaceEngine,
    settings: Settings,
    uploads: list[tuple[str, bytes]],
    choices: Sequence[FaceChoice],
    result: EnrolResult,
) -> tuple[list[str], dict[str, _Candidate]]:
    """Each photo on its own: one clear face (or the chosen one) -> candidate; else a rejection."""
    order: list[str] = []  # sha256 of each accepted upload, in upload order, once each
    candidates: dict[str, _Candidate] = {}
    for index, ((filename, data), choice) in enumerate(zip(uploads, choices, strict=True)):
        if len(data) > settings.max_upload_bytes:
            result.rejected.append(Rejection(filename, "too_large", index))
            continue
        if not data:
            result.rejected.append(Rejection(filename, "empty", index))
            continue
        digest = sha256_hex(data)
        if digest in candidates:
            continue
        rgb, reason = decode(
            data, settings.max_upload_bytes, settings.max_pixels, settings.max_decoded_side
        )
        if rgb is None:
            result.rejected.append(Rejection(filename, reason or "not_an_image", index))
            continue
        faces = engine.faces(rgb)
        selection = select_chosen_face(faces, choice)
        if selection.face is None:
            why = selection.reason or "no_face"
            boxes = face_boxes(faces) if why in LISTS_FACES else None
            result.rejected.append(Rejection(filename, why, index, boxes))
            continue
        settle = getattr(selection.face.chips, "settle", None)
        if settle is not None:  # keep the chips, not the decoded photo, until all are embedded
            settle()
        x, y, w, h = (int(v) for v in selection.face.box)
        candidates[digest] = _Candidate(filename, index, digest, data, (x, y, w, h), selection.face)
        order.append(digest)
    return order, candidates


def _persist(
    session: Session,
    store: ImageStore,
    engine: FaceEngine,
    settings: Settings,
    user_id: str,
    candidates: dict[str, _Candidate],
    result: EnrolResult,
    may_add_unmatched: bool = True,
) -> dict[str, int]:
    """The locked write transaction (steps 1-4 of the module docstring); sha256 -> image id.
    New photos of an existing user that do not match it are moved to `result.rejected`."""
    if session.in_transaction():
        session.commit()  # end any read transaction of the request: the lock must come first
    crash_point("before_lock")
    written: list[str] = []
    try:
        lock_user_dir(session, user_dir_name(user_id))
        user = session.scalar(select(User).where(User.user_id == user_id))
        result.existing_user = user is not None
        result.unmatched_allowed = result.existing_user and may_add_unmatched
        if user is None:
            user = User(user_id=user_id, store_dir=user_dir_name(user_id))
            session.add(user)
            session.flush()
        stored = _stored(session, user.id)
        new = [c for c in candidates.values() if c.sha256 not in stored]
        if result.existing_user and not may_add_unmatched and new:
            new = _matching(settings, store, engine, user.id, stored, new, result)
            if not new and not any(sha in stored for sha in candidates):
                reasons = [r.reason for r in result.rejected]
                raise InvalidInput(
                    "no_usable_image",
                    {
                        "message": "no image could be enrolled: new photos of an existing user must "
                        "match their enrolment (a key with the manage scope may add others)",
                        "rejected": [r.as_dict() for r in result.rejected],
                    },
                    audit={"rejected": reasons, "existing_user": True},
                )
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
        # The audit entry in this very transaction: no audit, no enrolment (issue 18).
        audit.record_in(session, "ok", None, {
            "enrolled": sum(1 for sha in candidates if sha in ids),
            "rejected": [r.reason for r in result.rejected],
            "existing_user": result.existing_user, "unmatched_allowed": result.unmatched_allowed,
        })  # fmt: skip
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


def match_thresholds(card: dict[str, Any], far: float | None) -> Thresholds:
    """What a new photo of an existing user must reach: the card's level at `far`
    (FACEVERIFY_ENROL_MATCH_FAR) or, unset or not a level the card can honour (logged), its
    strictest level."""
    if far is not None:
        try:
            return resolve_request_thresholds(card, far).thresholds
        except TargetFarError as exc:
            log.warning("FACEVERIFY_ENROL_MATCH_FAR=%g unusable (%s): using the strictest level", far, exc)
    return strictest_request_thresholds(card).thresholds


def _matching(
    settings: Settings,
    store: ImageStore,
    engine: FaceEngine,
    user_pk: int,
    stored: dict[str, _Stored],
    new: list[_Candidate],
    result: EnrolResult,
) -> list[_Candidate]:
    """The new photos that verify against the user's current enrolment at the strictest level;
    the others are rejected (`not_same_person`). No readable row of the served model: none match.
    Raises 422 `no_usable_image` when nothing is left to store or repair."""
    bank = []
    for sha, row in stored.items():
        if row.model_version != engine.version:
            continue
        try:
            bank.append(open_embedding(store.keyring, row.embedding, row.embedding_dim, user_pk, sha))
        except UNREADABLE_ERRORS:
            continue
    thresholds = match_thresholds(engine.card, settings.enrol_match_far)
    vectors = np.stack(bank) if bank else None
    kept: list[_Candidate] = []
    for candidate in new:
        assert candidate.embedding is not None
        same = vectors is not None and decide(engine.score(candidate.embedding, vectors), thresholds).verified
        if same:
            kept.append(candidate)
        else:
            result.rejected.append(Rejection(candidate.filename, "not_same_person", candidate.index))
            metrics.record_enrolment_rejection("not_same_person")
    return kept


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
            Image.embedding_dim, Image.model_version,
        ).where(Image.user_pk == user_pk)
    )  # fmt: skip
    return {
        str(sha): _Stored(int(image_id), str(path), int(size), bool(kept), bytes(blob), int(dim), str(v))
        for sha, image_id, path, size, kept, blob, dim, v in rows
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
