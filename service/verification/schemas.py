"""Response bodies of POST /verify."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.liveness.schemas import LivenessOut


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
