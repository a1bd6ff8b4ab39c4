"""POST /verify: HTTP <-> the verification domain service (service.verify_service), audited.

The route reads the upload (with its byte cap), hands bytes and options to `verify_image`, and maps
the result to JSON; scores (votes, vote ratio, best similarity) are shown only to admin keys or when
`expose_scores` is set, because a raw score is a gradient an impostor can climb.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.api.auditing import AuditDep
from service.api.deps import EngineDep, SessionDep, SettingsDep, StoreDep, VerifyKey
from service.api.errors import USER_ID_PATTERN
from service.api.schemas import ErrorOut, FaceOut, QualityOut, VerifyOut
from service.domain_errors import InvalidInput, TooLarge
from service.uploads import TOO_BIG_REASONS, read_upload
from service.verify_service import VerifyOptions, verify_image

router = APIRouter(tags=["verification"])


def quality_out(face: object) -> QualityOut | None:
    """The face's quality for the response (faces without one, e.g. test doubles, give None)."""
    quality = getattr(face, "quality", None)
    return QualityOut(**quality.as_dict()) if quality is not None else None


@router.post(
    "/verify",
    response_model=VerifyOut,
    summary="Verify a photo against a user's enrolled images",
    responses={
        401: {"model": ErrorOut, "description": "No or invalid API key (missing_api_key, invalid_api_key)."},
        403: {"model": ErrorOut, "description": "The key lacks the verify scope (insufficient_scope)."},
        404: {"model": ErrorOut, "description": "Unknown user_id (reason unknown_user)."},
        409: {"model": ErrorOut, "description": "No embeddings of the served model (run reembed)."},
        413: {"model": ErrorOut, "description": "Image over the byte or pixel limit."},
        422: {"model": ErrorOut, "description": "No face, not an image, empty, invalid field or threshold."},
        429: {
            "model": ErrorOut,
            "description": "User locked out (locked_out) or key rate-limited; Retry-After.",
        },
    },
)
def verify(
    principal: VerifyKey,
    user_id: Annotated[str, Form(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")],
    image: Annotated[UploadFile, File(description="One photo or webcam frame; the largest face is used.")],
    session: SessionDep,
    engine: EngineDep,
    settings: SettingsDep,
    audit: AuditDep,
    store: StoreDep,
    detection_threshold: Annotated[
        float | None, Form(description="Optional, >= the model card's floor: similarity needed for a vote.")
    ] = None,
    verification_threshold: Annotated[
        float | None, Form(description="Optional, >= the model card's floor: vote ratio needed.")
    ] = None,
    target_far: Annotated[
        float | None,
        Form(
            description="Optional false-accept rate to decide at (default: the card's default_far). "
            "Looser than the card's loosest_far -> 422 target_far_too_loose; between listed levels -> "
            "the nearest stricter listed level."
        ),
    ] = None,
) -> VerifyOut:
    """Embeds the probe once and scores it against every stored embedding of the served model version
    in one call; each similarity above detection_threshold is a vote; verified when
    votes/comparisons > verification_threshold (both default to the model card). After
    `lockout_max_failures` failed verifies in `lockout_window_s` the user is locked (429 locked_out)."""
    started = time.perf_counter()
    with audit.around("verify", user_id) as summary:
        upload = read_upload(image, settings.max_upload_bytes)
        if upload.reason is not None or upload.data is None:
            reason = upload.reason or "empty"
            raise (TooLarge if reason in TOO_BIG_REASONS else InvalidInput)(
                reason, f"image rejected: {reason}"
            )
        options = VerifyOptions(detection_threshold, verification_threshold, target_far)
        result = verify_image(session, engine, settings, store.keyring, user_id, upload.data, options)
        decision = result.decision
        summary.update(
            outcome="ok" if decision.verified else "denied",
            reason=None if decision.verified else ("locked_out" if result.locked_for_s else "not_verified"),
            verified=decision.verified, votes=decision.votes, comparisons=decision.comparisons,
            detection_threshold=result.thresholds.detection,
            verification_threshold=result.thresholds.verification, target_far=result.target_far,
            model_version=result.model_version, locked_for_s=result.locked_for_s,
        )  # fmt: skip
    show = settings.expose_scores or "admin" in principal.scopes
    return VerifyOut(
        user_id=user_id,
        verified=decision.verified,
        votes=decision.votes if show else None,
        comparisons=decision.comparisons,
        vote_ratio=decision.vote_ratio if show else None,
        detection_threshold=result.thresholds.detection,
        verification_threshold=result.thresholds.verification,
        target_far=result.target_far,
        best_similarity=decision.best_similarity if show else None,
        face=FaceOut(box=result.probe.box, quality=quality_out(result.probe.face)),
        faces_found=result.probe.faces_found,
        model_version=result.model_version,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
    )
