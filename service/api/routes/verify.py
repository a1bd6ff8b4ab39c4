"""POST /verify: is the face in this photo the enrolled user? One CNN run, one vectorised score."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, Form, UploadFile
from sqlalchemy import select

from service import metrics
from service.api.deps import EngineDep, SessionDep, SettingsDep
from service.api.errors import USER_ID_PATTERN, ApiError
from service.api.schemas import ErrorOut, FaceOut, VerifyOut
from service.db_models import Image, User, embedding_from_bytes
from service.engine import select_verify_face
from service.uploads import TOO_BIG_REASONS, decode, read_upload
from service.verification import ThresholdError, decide, resolve_thresholds

router = APIRouter(tags=["verification"])


@router.post(
    "/verify",
    response_model=VerifyOut,
    summary="Verify a photo against a user's enrolled images",
    responses={
        404: {"model": ErrorOut, "description": "Unknown user_id (reason unknown_user)."},
        409: {"model": ErrorOut, "description": "No embeddings of the served model (run reembed)."},
        413: {"model": ErrorOut, "description": "Image over the byte or pixel limit."},
        422: {"model": ErrorOut, "description": "No face, not an image, empty, invalid field or threshold."},
    },
)
def verify(
    user_id: Annotated[str, Form(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")],
    image: Annotated[UploadFile, File(description="One photo or webcam frame; the largest face is used.")],
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    detection_threshold: Annotated[
        float | None, Form(description="Optional, >= the model card's floor: similarity needed for a vote.")
    ] = None,
    verification_threshold: Annotated[
        float | None, Form(description="Optional, >= the model card's floor: vote ratio needed.")
    ] = None,
) -> VerifyOut:
    """Embeds the probe once and scores it against every stored embedding of the served model version
    in one call; each similarity above detection_threshold is a vote; verified when
    votes/comparisons > verification_threshold (both default to the model card)."""
    started = time.perf_counter()
    try:
        thresholds = resolve_thresholds(engine.thresholds, detection_threshold, verification_threshold)
    except ThresholdError as exc:
        raise ApiError(422, "threshold_below_floor", str(exc)) from exc

    user = session.scalar(select(User).where(User.user_id == user_id))
    if user is None:
        raise ApiError(404, "unknown_user", f"user {user_id!r} is not enrolled")
    rows = session.execute(
        select(Image.embedding, Image.embedding_dim, Image.model_version).where(Image.user_pk == user.id)
    ).all()
    session.rollback()  # release the read transaction before the CNN runs
    current = [embedding_from_bytes(blob, dim) for blob, dim, version in rows if version == engine.version]
    if not current:
        if rows:
            versions = sorted({version for _, _, version in rows})
            raise ApiError(
                409,
                "model_version_mismatch",
                f"user {user_id!r} has embeddings of model version(s) {versions} only; the service runs "
                f"{engine.version!r}. Run `faceverify reembed` to recompute them from the stored images.",
            )
        raise ApiError(409, "no_enrolled_images", f"user {user_id!r} has no enrolled images")

    upload = read_upload(image, settings.max_upload_bytes)
    if upload.reason is not None or upload.data is None:
        reason = upload.reason or "empty"
        raise ApiError(413 if reason in TOO_BIG_REASONS else 422, reason, f"image rejected: {reason}")
    rgb, decode_reason = decode(upload.data, settings.max_upload_bytes, settings.max_pixels)
    if rgb is None:
        reason = decode_reason or "not_an_image"
        raise ApiError(413 if reason in TOO_BIG_REASONS else 422, reason, f"image rejected: {reason}")
    selection = select_verify_face(engine.faces(rgb))
    if selection.face is None:
        raise ApiError(422, "no_face", "no face found in the image")
    face = selection.face

    probe = engine.embed(face.chip[np.newaxis])[0]
    similarities = engine.score(probe, np.stack(current))
    decision = decide(similarities, thresholds)
    point = metrics.operating_point(engine.card, thresholds.detection, thresholds.verification)
    metrics.record_verify(decision.verified, point, decision.best_similarity)
    return VerifyOut(
        user_id=user_id,
        verified=decision.verified,
        votes=decision.votes,
        comparisons=decision.comparisons,
        vote_ratio=decision.vote_ratio,
        detection_threshold=thresholds.detection,
        verification_threshold=thresholds.verification,
        best_similarity=decision.best_similarity,
        face=FaceOut(box=[int(v) for v in face.box]),
        model_version=engine.version,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
    )
