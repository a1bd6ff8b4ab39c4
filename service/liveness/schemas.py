"""Response bodies of the liveness challenge and of a burst's liveness verdict."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
