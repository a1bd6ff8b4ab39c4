"""The liveness side of `POST /verify`: judge a burst of frames against the challenge's steps.

service.verification.service.verify_burst finds the user, the enrolled embeddings and the challenge;
this module decodes the frames (bounded count and bytes), runs the face pipeline on each, and
combines the four checks of `faceverify.liveness` with the usual identity decision (vote rule on
the most frontal frame). `verified` is true only when identity AND liveness pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from faceverify.decision import Decision, Thresholds, decide
from faceverify.liveness.continuity import check_continuity
from faceverify.liveness.depth import check_depth, face_size
from faceverify.liveness.freshness import check_freshness, perceptual_hash
from faceverify.liveness.steps import PoseSample, check_steps
from faceverify.selection import select_verify_face
from service.errors import InvalidInput, TooLarge
from service.faces.engine import FaceEngine
from service.faces.images import Upload, decode, rejection, usable_bytes
from service.runtime.config import Settings

MAX_MISSING_FACE_SHARE = 0.2  # frames without a face (blur, occlusion) tolerated before `face_lost`


@dataclass(frozen=True)
class BurstFrame:
    index: int
    sha256: str
    face: Any  # the pipeline's face (box, landmarks, chip)


def read_frames(frames: list[Upload], settings: Settings) -> list[tuple[str, np.ndarray]]:
    """(sha256, RGB) per frame, in upload order; 413/422 with the upload's reason otherwise."""
    if len(frames) < settings.liveness_min_frames:
        raise InvalidInput(
            "too_few_frames", f"a liveness burst needs at least {settings.liveness_min_frames} frames"
        )
    if len(frames) > settings.liveness_max_frames:
        raise TooLarge(
            "too_many_files", f"a liveness burst has at most {settings.liveness_max_frames} frames"
        )
    out: list[tuple[str, np.ndarray]] = []
    total = 0
    for number, read in enumerate(frames):
        data = usable_bytes(read, f"frame {number}")
        total += len(data)
        if total > settings.liveness_max_total_bytes:
            raise TooLarge(
                "too_large", f"the frames exceed {settings.liveness_max_total_bytes} bytes in total"
            )
        rgb, decode_reason = decode(data, settings.max_upload_bytes, settings.max_pixels)
        if rgb is None:
            raise rejection(decode_reason or "not_an_image", f"frame {number}")
        out.append((hashlib.sha256(data).hexdigest(), rgb))
    return out


@dataclass(frozen=True)
class LivenessResult:
    """The liveness verdict of one burst: passed, the first failed check as `reason`, the steps asked
    for, frame counts and each check's details (shown only to keys that may see scores)."""

    passed: bool
    reason: str | None
    steps: list[str]
    frames: int
    frames_with_face: int
    checks: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class BurstJudgement:
    """Everything the burst showed: the identity decision on its most frontal frame and liveness."""

    decision: Decision
    liveness: LivenessResult
    probe_box: list[int]
    sha256: list[str]  # of the frames with a face, to remember
    chip_hashes: list[int]


def judge_burst(
    engine: FaceEngine,
    decoded: list[tuple[str, np.ndarray]],
    steps: list[str],
    bank: np.ndarray,
    thresholds: Thresholds,
    known_sha256: set[str],
    earlier_hashes: list[int],
) -> BurstJudgement:
    """The four checks and the identity decision over decoded frames (sha256, RGB), no database:
    used by the route and by benchmarks/bench_liveness.py."""
    burst: list[BurstFrame] = []
    for index, (digest, rgb) in enumerate(decoded):
        face = select_verify_face(engine.faces(rgb)).face
        if face is not None:
            burst.append(BurstFrame(index, digest, face))
    if not burst:
        raise InvalidInput("no_face", "no face found in any frame of the burst")
    embeddings = engine.embed_faces([f.face for f in burst])
    scores = [engine.score(e, bank) for e in embeddings]
    track = [np.asarray(f.face.landmarks, np.float64) for f in burst]
    poses = [_pose(points) for points in track]
    # Identity: the usual vote rule on the most frontal frame (usually one of the neutral start).
    frontal = int(np.argmin([abs(p.yaw) + abs(p.pitch) for p in poses]))
    decision = decide(scores[frontal], thresholds)
    chip_hashes = [perceptual_hash(f.face.chip) for f in burst]
    fresh = check_freshness(
        [f.sha256 for f in burst], chip_hashes, embeddings, known_sha256, earlier_hashes, bank
    )
    checks = {
        "fresh": fresh.as_dict(),
        "steps": check_steps(poses, steps).as_dict(),
        "depth": check_depth(track).as_dict(),
        "continuity": check_continuity(
            [float(s.max()) for s in scores], embeddings, track, thresholds.detection
        ).as_dict(),
    }
    reason = None
    if len(decoded) - len(burst) > MAX_MISSING_FACE_SHARE * len(decoded):
        reason = "face_lost"
    else:
        failed = [name for name in ("fresh", "steps", "depth", "continuity") if not checks[name]["passed"]]
        reason = f"{failed[0]}:{checks[failed[0]]['reason']}" if failed else None
    liveness = LivenessResult(
        passed=reason is None,
        reason=reason,
        steps=list(steps),
        frames=len(decoded),
        frames_with_face=len(burst),
        checks=checks,
    )
    box = [int(v) for v in burst[frontal].face.box]
    return BurstJudgement(decision, liveness, box, [f.sha256 for f in burst], chip_hashes)


def _pose(landmarks: np.ndarray) -> PoseSample:
    from faceverify.pose import head_pose  # the pipeline's pose, from the contract-order landmarks

    pose = head_pose(landmarks)
    return PoseSample(pose.yaw, pose.pitch, face_size(landmarks))
