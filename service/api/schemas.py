"""Response bodies of the API, documented field by field for the OpenAPI page at /docs."""

from __future__ import annotations

import datetime as dt

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


class EnrolledImage(BaseModel):
    image_id: int = Field(description="Id of the stored image (use it to delete the image).")
    sha256: str = Field(description="sha256 of the uploaded bytes; the same photo twice is stored once.")


class RejectedImage(BaseModel):
    filename: str = Field(description="Name of the uploaded file as sent by the client.")
    reason: str = Field(
        description="no_face, multiple_faces, face_too_small, low_confidence, blurry, too_dark, too_bright, "
        "pose_too_far, not_an_image, unsupported_format, icc_profile_too_large, metadata_too_large, "
        "image_too_small, bad_aspect_ratio, empty, too_large, too_many_pixels."
    )


class EnrollOut(BaseModel):
    user_id: str
    enrolled: list[EnrolledImage] = Field(description="Images stored for the user (including re-sent ones).")
    rejected: list[RejectedImage] = Field(description="Images that could not be used, each with a reason.")


class QualityOut(BaseModel):
    face_width: float = Field(description="Width of the detector's face box, pixels of the image.")
    sharpness: float = Field(
        description="Variance of the Laplacian of the 112x112 aligned face (higher = sharper)."
    )
    brightness: float = Field(description="Mean grey level of the aligned face, 0-255.")
    yaw: float = Field(description="Degrees; > 0 when the subject turns towards their left.")
    pitch: float = Field(description="Degrees; > 0 when the subject looks up.")
    roll: float = Field(description="Degrees; > 0 when the head tilts towards the subject's left shoulder.")
    score: float = Field(description="Face detector confidence, 0-1.")


class FaceOut(BaseModel):
    box: list[int] = Field(description="Face box in the (EXIF-rotated) probe image: [x, y, w, h] pixels.")
    quality: QualityOut | None = Field(
        default=None, description="Face quality (see faceverify/quality.py; enrolment refuses low quality)."
    )


class LivenessOut(BaseModel):
    passed: bool = Field(
        description="All four checks passed (fresh frames, steps, 3D motion, one continuous face)."
    )
    reason: str | None = Field(
        description="None when passed; else face_lost or '<check>:<reason>', e.g. depth:planar_motion, "
        "steps:wrong_order, steps:steps_not_done, continuity:landmark_jump, fresh:replayed_burst."
    )
    steps: list[str] = Field(description="The challenge's steps, in the asked order.")
    frames: int = Field(description="Frames received.")
    frames_with_face: int = Field(description="Frames in which a face was found.")
    checks: dict[str, dict[str, object]] = Field(
        description="Each check's result and its measured statistic."
    )


class ChallengeOut(BaseModel):
    challenge_id: str = Field(description="Send it back with the frames to POST /verify; single use.")
    steps: list[str] = Field(
        description="Head movements to perform in this order, each from and back to facing the camera: "
        "turn_left, turn_right (the user's own left/right), look_up, look_down, move_closer."
    )
    expires_in_s: int = Field(description="The challenge must be answered within this many seconds.")


class VerifyOut(BaseModel):
    user_id: str
    verified: bool = Field(description="votes / comparisons > verification_threshold.")
    votes: int | None = Field(
        description="Enrolled images whose similarity to the probe > detection_threshold "
        "(null unless the key is admin or expose_scores is set)."
    )
    comparisons: int = Field(description="Enrolled images compared (those embedded by the served model).")
    vote_ratio: float | None = Field(description="votes / comparisons (null like votes).")
    detection_threshold: float = Field(description="Similarity threshold used for a vote.")
    verification_threshold: float = Field(description="Vote-ratio threshold used for the decision.")
    target_far: float | None = Field(
        default=None, description="Calibrated false-accept level decided at (None: card has no levels)."
    )
    best_similarity: float | None = Field(
        description="Highest similarity with any enrolled image (null like votes)."
    )
    face: FaceOut
    faces_found: int | None = Field(
        default=1, description="Faces detected in the probe (null for a liveness burst); the largest is used."
    )
    model_version: str = Field(description="Version of the served model (model_card.json).")
    elapsed_ms: float = Field(description="Server-side time of the request, milliseconds.")
    liveness: LivenessOut | None = Field(
        default=None, description="Only for a burst (challenge_id + frames): verified needs it passed."
    )


class ImageOut(BaseModel):
    image_id: int
    sha256: str
    size: int = Field(description="Bytes of the stored file.")
    box: list[int] = Field(description="Face box used at enrolment, [x, y, w, h].")
    model_version: str = Field(description="Model version that produced the stored embedding.")
    created: dt.datetime


class UserOut(BaseModel):
    user_id: str
    created: dt.datetime
    image_count: int
    model_versions: list[str] = Field(description="Model versions of the stored embeddings.")


class UserDetailOut(BaseModel):
    user_id: str
    created: dt.datetime
    model_version: str = Field(
        description="Version of the served model; images of other versions need `faceverify reembed`."
    )
    images: list[ImageOut]


class UserPageOut(BaseModel):
    users: list[UserOut]
    total: int
    limit: int
    offset: int


class DeletedOut(BaseModel):
    user_id: str
    deleted_images: int


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    model_version: str | None = None
    database: str | None = None


class UnlockOut(BaseModel):
    user_id: str
    was_locked: bool = Field(description="Whether the user was locked when the unlock arrived.")


class AuditEntryOut(BaseModel):
    seq: int = Field(description="Position in the hash chain (1, 2, 3, ...).")
    time: dt.datetime
    key_name: str | None = Field(description="Name of the API key that made the request.")
    user_id: str | None
    action: str = Field(description="enroll, verify, delete_user, delete_image, unlock, key_create, ...")
    outcome: str = Field(description="ok, denied (not verified) or rejected (an error, see reason).")
    reason: str | None
    summary: dict[str, object] = Field(description="Votes, comparisons, thresholds, model version, ...")
    request_id: str | None
    client: str | None = Field(description="Client address.")
    prev_hash: str
    entry_hash: str


class AuditPageOut(BaseModel):
    entries: list[AuditEntryOut]
    total: int
    limit: int
    offset: int
