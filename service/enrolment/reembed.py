"""Recompute stored embeddings with the served model, from the stored (encrypted) photos.

Needed when the model version changes: embeddings of different models are not comparable, so
verify only uses rows of the served version (and answers 409 until this has run). Work is done in
batches (one `embed` call and one commit per batch), so an interrupted run keeps its progress and
a rerun continues where it stopped. The CNN runs outside any lock; each row is then updated by id,
so a row deleted meanwhile is simply skipped.

It is also the repair for a stored embedding that cannot be read (changed in the database, copied
from another row): verify leaves such rows out (409 `stored_data_unreadable` when none is left), and
a plain run re-embeds them too, from their photo, whose own authentication (bound to the row's user
and sha256) shows it is the row's real photo. A photo that fails too is reported: re-enrol.

Rows enrolled in embeddings-only mode (`FACEVERIFY_STORE_PHOTOS=false`) have no photo to embed
again: they are reported apart (`embeddings_only`), and those users must re-enrol. That is the
price of keeping no photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session, sessionmaker

from faceverify.selection import select_enrolment_face
from service.faces.engine import FaceEngine
from service.faces.images import decode
from service.storage.crypto import DecryptionError, KeyRing
from service.storage.photos import ImageStore
from service.storage.tables import UNREADABLE_ERRORS, Image, open_embedding, seal_embedding


@dataclass
class ReembedReport:
    updated: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)
    embeddings_only: list[int] = field(default_factory=list)  # image ids without a stored photo
    unreadable: list[int] = field(default_factory=list)  # rows of the served model queued as unreadable


@dataclass(frozen=True)
class _Ready:
    image_id: int
    user_pk: int
    sha256: str
    face: Any  # faceverify's Face: its chips feed every tower of the served model
    box: list[int]


def reembed(
    session_factory: sessionmaker[Session],
    store: ImageStore,
    engine: FaceEngine,
    *,
    force: bool = False,
    batch_size: int = 32,
    max_pixels: int = 40_000_000,
) -> ReembedReport:
    """Re-embed every image whose model version differs from the served one, or whose stored
    embedding cannot be read (all with `force`)."""
    report = ReembedReport()
    with session_factory() as session:
        query = select(Image.id).order_by(Image.id)
        if not force:
            query = query.where(Image.model_version != engine.version)
        ids = list(session.scalars(query))
        if not force:
            report.unreadable = _unreadable_current(session, store.keyring, engine.version)
            ids = sorted(set(ids) | set(report.unreadable))
        session.rollback()
    for start in range(0, len(ids), batch_size):
        with session_factory() as session:
            rows = session.execute(
                select(Image.id, Image.user_pk, Image.sha256, Image.path, Image.photo_stored).where(
                    Image.id.in_(ids[start : start + batch_size])
                )
            ).all()
            session.rollback()
            ready = [r for r in (_prepare(store, engine, row, max_pixels, report) for row in rows) if r]
            if not ready:
                continue
            vectors = engine.embed_faces([r.face for r in ready])
            for item, vector in zip(ready, vectors, strict=True):
                result = session.execute(
                    update(Image)
                    .where(Image.id == item.image_id, Image.sha256 == item.sha256)
                    .values(
                        embedding=seal_embedding(store.keyring, vector, item.user_pk, item.sha256),
                        embedding_dim=int(vector.shape[0]),
                        model_version=engine.version,
                        box_x=item.box[0],
                        box_y=item.box[1],
                        box_w=item.box[2],
                        box_h=item.box[3],
                        key_id=store.keyring.current_id,
                    )
                )
                report.updated += int(getattr(result, "rowcount", 0) or 0)
            session.commit()
    return report


def _unreadable_current(session: Session, keyring: KeyRing, version: str) -> list[int]:
    """Ids of the served model's rows whose stored embedding cannot be opened (read in chunks)."""
    rows = session.execute(
        select(Image.id, Image.embedding, Image.embedding_dim, Image.user_pk, Image.sha256)
        .where(Image.model_version == version)
        .order_by(Image.id)
        .execution_options(yield_per=500)
    )
    bad = []
    for image_id, blob, dim, user_pk, sha256 in rows:
        try:
            open_embedding(keyring, blob, dim, user_pk, sha256)
        except UNREADABLE_ERRORS:
            bad.append(int(image_id))
    return bad


def _prepare(
    store: ImageStore,
    engine: FaceEngine,
    row: Row[int, int, str, str, bool],
    max_pixels: int,
    report: ReembedReport,
) -> _Ready | None:
    image_id, user_pk, sha256, path, photo_stored = row
    if not photo_stored:
        report.embeddings_only.append(int(image_id))
        return None
    if not store.exists(path):
        report.failed.append((int(image_id), "file_missing"))
        return None
    try:
        data = store.read_photo(path, int(user_pk), str(sha256))
    except DecryptionError:
        report.failed.append((int(image_id), "undecryptable"))
        return None
    rgb, reason = decode(data, max(len(data), 1), max_pixels)
    if rgb is None:
        report.failed.append((int(image_id), reason or "not_an_image"))
        return None
    selection = select_enrolment_face(engine.faces(rgb), quality_gate=False)
    if selection.face is None:
        report.failed.append((int(image_id), selection.reason or "no_face"))
        return None
    box = [int(v) for v in selection.face.box]
    return _Ready(int(image_id), int(user_pk), str(sha256), selection.face, box)
