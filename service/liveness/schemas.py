"""Response bodies of the liveness challenge and of a burst's liveness verdict."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LivenessOut(BaseModel):
    passed: bool = Field(
        description="Every check passed (no repeated frames, fresh frames, steps, 3D motion of the face "
        "mesh and of the landmarks, one continuous face that is the user)."
    )
    reason: str | None = Field(
        description="None when passed; else face_lost or '<check>:<reason>' of the FIRST failed check (the "
        "later ones are not run), e.g. duplicates:repeated_frame, fresh:replayed_burst, steps:wrong_order, "
        "steps:steps_not_done, rigidity:planar_motion, depth:planar_motion, continuity:landmark_jump, "
        "continuity:not_the_user."
    )
    steps: list[str] = Field(description="The challenge's steps, in the asked order.")
    frames: int = Field(description="Frames received.")
    frames_with_face: int = Field(description="Frames in which a face was found.")
    checks: dict[str, dict[str, object]] = Field(
        description="Each check that ran: its `passed` and `reason`; its measured statistics only for "
        "admin keys (or with FACEVERIFY_EXPOSE_SCORES)."
    )


class ChallengeOut(BaseModel):
    challenge_id: str = Field(description="Send it back with the frames to POST /verify; single use.")
    steps: list[str] = Field(
        description="Steps to perform in this order, each from and back to facing the camera: always one "
        "action (blink: close the eyes, then open them; open_mouth: open the mouth wide, then close it) and "
        "one vertical step (look_up, look_down), on half of the challenges a turn (turn_left, turn_right: "
        "the user's own left/right), and move_closer where enabled."
    )
    expires_in_s: int = Field(description="The challenge must be answered within this many seconds.")
    frame_rate: float = Field(description="Record the burst at this many frames per second.")
    neutral_s: float = Field(description="Seconds facing the camera before the first step.")
    step_s: float = Field(description="Seconds for each step (from facing the camera, and back).")
    max_frames: int = Field(description="Most frames a burst may have (FACEVERIFY_LIVENESS_MAX_FRAMES).")
