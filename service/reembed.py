"""Recompute stored embeddings with the served model, from the stored original images.

Needed when the model version changes: embeddings of different models are not comparable, so
verify only uses rows of the served version (and answers 409 until this has run). Work is done in
batches (one `embed` call and one commit per batch), so an interrupted run keeps its progress and
a rerun continues where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.db_models import Image, embedding_to_bytes
from service.engine import FaceEngine, select_enrolment_face
from service.store import ImageStore
from service.uploads import decode


@dataclass
class ReembedReport:
    updated: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)  # (image id, reason)


def reembed(
    session_factory: sessionmaker[Session],
    store: ImageStore,
    engine: FaceEngine,
    *,
    force: bool = False,
    batch_size: int = 32,
    max_pixels: int = 40_000_000,
) -> ReembedReport:
    """Re-embed every image whose model version differs from the served one (all with `force`)."""
    report = ReembedReport()
    with session_factory() as session:
        query = select(Image.id).order_by(Image.id)
        if not force:
            query = query.where(Image.model_version != engine.version)
        ids = list(session.scalars(query))
    for start in range(0, len(ids), batch_size):
        with session_factory() as session:
            rows = session.scalars(select(Image).where(Image.id.in_(ids[start : start + batch_size]))).all()
            ready: list[tuple[Image, Any, list[int]]] = []
            for row in rows:
                if not store.exists(row.path):
                    report.failed.append((row.id, "file_missing"))
                    continue
                data = store.read(row.path)
                rgb, reason = decode(data, max(len(data), 1), max_pixels)
                if rgb is None:
                    report.failed.append((row.id, reason or "not_an_image"))
                    continue
                selection = select_enrolment_face(engine.faces(rgb), quality_gate=False)
                if selection.face is None:
                    report.failed.append((row.id, selection.reason or "no_face"))
                    continue
                ready.append((row, selection.face, [int(v) for v in selection.face.box]))
            if ready:
                vectors = engine.embed_faces([face for _, face, _ in ready])
                for (row, _, box), vector in zip(ready, vectors, strict=True):
                    row.embedding = embedding_to_bytes(vector)
                    row.embedding_dim = int(vector.shape[0])
                    row.model_version = engine.version
                    row.box_x, row.box_y, row.box_w, row.box_h = box
                session.commit()
                report.updated += len(ready)
    return report
