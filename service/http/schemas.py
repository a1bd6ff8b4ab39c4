"""Response bodies shared by every route: the error body, and /health and /ready."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    detail: object = Field(description="Human-readable explanation (or the list of invalid fields).")
    reason: str = Field(
        description="Stable machine-readable code: no_face, multiple_faces, face_too_small, "
        "low_confidence, blurry, too_dark, too_bright, pose_too_far, not_an_image, unsupported_format, "
        "icc_profile_too_large, metadata_too_large, image_too_small, bad_aspect_ratio, empty, too_large, "
        "too_many_pixels, invalid_user_id, missing_field, invalid_request, threshold_below_floor, "
        "unknown_user, unknown_image, model_version_mismatch, no_enrolled_images, too_many_files, "
        "missing_api_key, invalid_api_key, insufficient_scope, locked_out, rate_limited, invalid_host, "
        "image_quota_exceeded, byte_quota_exceeded, "
        "liveness_required, unknown_challenge, challenge_used, challenge_expired, challenge_user_mismatch, "
        "challenge_key_mismatch, too_few_frames."
    )


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    model_version: str | None = None
    database: str | None = None
