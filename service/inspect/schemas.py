"""Bodies of POST /faces, POST /compare, GET /model and GET /stats."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.verification.schemas import QualityOut


class FaceSeenOut(BaseModel):
    box: list[int] = Field(description="[x, y, w, h], pixels of the (EXIF-rotated) image.")
    quality: QualityOut | None = None
    reason: str | None = Field(
        default=None, description="The first enrolment quality threshold this face fails (null: good)."
    )


class FrameCheckOut(BaseModel):
    width: int
    height: int
    faces: list[FaceSeenOut] = Field(description="Every face found, largest first.")
    guidance: str | None = Field(
        description="null when this frame would be enrolled as it is; else why not: no_face, "
        "multiple_faces, face_too_small, low_confidence, too_dark, too_bright, blurry, pose_too_far."
    )


class CompareSideOut(BaseModel):
    width: int
    height: int
    faces: list[FaceSeenOut] = Field(description="Every face found, largest first.")
    chosen: int = Field(description="Index in `faces` of the face compared (the verify rule's choice).")


class LevelOut(BaseModel):
    target_far: float = Field(description="The calibrated false-accept rate of this level.")
    frr: float | None = Field(description="The card's measured false-reject rate at this level.")
    detection_threshold: float
    verification_threshold: float
    same: bool = Field(description="The decision at this level: the same person?")


class CompareOut(BaseModel):
    a: CompareSideOut
    b: CompareSideOut
    levels: list[LevelOut] = Field(description="Loosest first.")
    default_far: float | None = Field(description="The level POST /verify decides at by default.")
    similarity: float | None = Field(
        description="The model's similarity of the two faces (null unless the key is admin or "
        "expose_scores is set, like POST /verify)."
    )
    model_version: str


class OperatingPointOut(BaseModel):
    far: float
    frr: float | None
    detection_threshold: float
    verification_threshold: float


class ModelOut(BaseModel):
    name: str | None
    version: str
    default_far: float | None
    loosest_far: float | None
    operating_points: list[OperatingPointOut] = Field(description="Loosest first; the DET points.")


class StatsOut(BaseModel):
    decisions: dict[str, int] = Field(description="Verify decisions of this process, by outcome.")
    liveness: dict[str, int] = Field(description="Liveness checks of this process, by outcome.")
    latency_ms: dict[str, dict[str, float | None]] = Field(
        description="p50/p95/p99 per CPU-heavy route, estimated from the latency histogram's buckets."
    )
    requests: dict[str, int] = Field(description="Requests answered per CPU-heavy route.")
