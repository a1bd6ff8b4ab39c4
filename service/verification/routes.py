"""POST /verify: HTTP <-> the verification domain service (service.verification.service), audited.

The route reads the upload(s) (with their byte caps), hands bytes and options to `verify_image` (one
photo) or `verify_burst` (a burst of frames answering a liveness challenge), and maps the result to
JSON; scores (votes, vote ratio, best similarity) are shown only to admin keys or when
`expose_scores` is set, because a raw score is a gradient an impostor can climb.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.errors import InvalidInput
from service.faces.images import usable_bytes
from service.http.auditing import AuditDep
from service.http.deps import FaceEngineDep, SessionDep, SettingsDep, StoreDep, VerifyKey
from service.http.errors import USER_ID_PATTERN
from service.http.schemas import ErrorOut
from service.http.uploads import read_upload
from service.liveness.schemas import LivenessOut
from service.runtime import metrics
from service.verification.schemas import FaceOut, QualityOut, VerifyOut
from service.verification.service import VerifyOptions, VerifyResult, verify_burst, verify_image

router = APIRouter(tags=["verification"])


def quality_out(face: object) -> QualityOut | None:
    """The face's quality for the response (faces without one, e.g. test doubles, give None)."""
    quality = getattr(face, "quality", None)
    return QualityOut(**quality.as_dict()) if quality is not None else None


@router.post(
    "/verify",
    response_model=VerifyOut,
    summary="Verify a photo (or a liveness burst of frames) against a user's enrolled images",
    responses={
        401: {"model": ErrorOut, "description": "No or invalid API key (missing_api_key, invalid_api_key)."},
        403: {
            "model": ErrorOut,
            "description": "The key lacks the verify scope (insufficient_scope), or the challenge belongs "
            "to another user or key (challenge_user_mismatch, challenge_key_mismatch).",
        },
        404: {"model": ErrorOut, "description": "Unknown user_id (unknown_user) or challenge_id."},
        409: {
            "model": ErrorOut,
            "description": "No embeddings of the served model (model_version_mismatch: run reembed); "
            "none of the user's stored embeddings can be read (stored_data_unreadable); challenge "
            "used or expired.",
        },
        413: {"model": ErrorOut, "description": "Image(s) over the byte, pixel or frame-count limit."},
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
    session: SessionDep,
    engine: FaceEngineDep,
    settings: SettingsDep,
    audit: AuditDep,
    store: StoreDep,
    image: Annotated[
        UploadFile | None, File(description="One photo or webcam frame; the largest face is used.")
    ] = None,
    challenge_id: Annotated[
        str | None, Form(max_length=64, description="Liveness: the challenge being answered (with frames).")
    ] = None,
    frames: Annotated[
        list[UploadFile] | None, File(description="Liveness: the burst of frames, in capture order.")
    ] = None,
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
    votes/comparisons > verification_threshold (at the card's default operating point unless
    `target_far` or stricter thresholds are given). With `challenge_id` + `frames` the burst must
    also pass liveness. After `lockout_max_failures` failed verifies in `lockout_window_s` the user
    is locked (429 locked_out)."""
    started = time.perf_counter()
    if challenge_id is None and settings.liveness_required:
        raise InvalidInput("liveness_required", "this service verifies only with a liveness challenge")
    if (challenge_id is None) != (not frames) or (challenge_id is None and image is None):
        raise InvalidInput("missing_field", "send either `image`, or `challenge_id` with `frames`")
    options = VerifyOptions(detection_threshold, verification_threshold, target_far)
    with audit.around("verify", user_id) as summary:
        result: VerifyResult
        if challenge_id is not None and frames:
            uploads = [read_upload(frame, settings.max_upload_bytes) for frame in frames]
            result = verify_burst(
                session, engine, settings, store.keyring, user_id, challenge_id, uploads,
                principal.name, options,
            )  # fmt: skip
        else:
            assert image is not None
            data = usable_bytes(read_upload(image, settings.max_upload_bytes), "image")
            result = verify_image(session, engine, settings, store.keyring, user_id, data, options)
        decision = result.decision
        denied_reason = "locked_out" if result.locked_for_s else "not_verified"
        if result.liveness is not None and not result.liveness.passed:
            denied_reason = f"liveness_failed:{result.liveness.reason}"
        summary.update(
            outcome="ok" if result.verified else "denied",
            reason=None if result.verified else denied_reason,
            verified=result.verified, votes=decision.votes, comparisons=decision.comparisons,
            detection_threshold=result.thresholds.detection,
            verification_threshold=result.thresholds.verification, target_far=result.target_far,
            model_version=result.model_version, locked_for_s=result.locked_for_s,
            liveness=None if result.liveness is None else result.liveness.passed,
        )  # fmt: skip
        if result.unreadable_image_ids:  # left out of the comparison (logged and counted too)
            summary["unreadable_images"] = list(result.unreadable_image_ids)
    metrics.record_verify(result.verified, result.operating_point, decision.best_similarity)
    show = settings.expose_scores or "admin" in principal.scopes
    return VerifyOut(
        user_id=user_id,
        verified=result.verified,
        votes=decision.votes if show else None,
        comparisons=decision.comparisons,
        vote_ratio=decision.vote_ratio if show else None,
        detection_threshold=result.thresholds.detection,
        verification_threshold=result.thresholds.verification,
        target_far=result.target_far,
        best_similarity=decision.best_similarity if show else None,
        face=FaceOut(box=result.box, quality=quality_out(result.face)),
        faces_found=result.faces_found,
        model_version=result.model_version,
        elapsed_ms=(time.perf_counter() - started) * 1000.0,
        liveness=None if result.liveness is None else LivenessOut(**dataclasses.asdict(result.liveness)),
    )
