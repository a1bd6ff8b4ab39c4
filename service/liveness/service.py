"""The liveness side of `POST /verify`: judge a burst of frames against the challenge's steps.

service.verification.service.verify_burst finds the user, the enrolled embeddings and the challenge;
this module decodes each frame once (bounded count and bytes), has `faceverify.liveness.burst` judge
the geometry on every frame (face mesh: steps with blink / open_mouth, rigidity, depth, duplicates,
freshness) and the towers on the few identity frames, and takes the usual identity decision (vote
rule) on the most frontal frame. `verified` is true only when identity AND liveness pass.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceverify.decision import Decision, Thresholds, decide
from faceverify.liveness.burst import BurstJudge, FrameView, IdentityEvidence
from faceverify.selection import select_verify_face
from service.errors import InvalidInput, TooLarge
from service.faces.engine import FaceEngine
from service.faces.images import Upload, check_pixel_budget, decode, rejection, usable_bytes
from service.runtime.config import Settings


def read_frames(frames: list[Upload], settings: Settings) -> list[tuple[str, np.ndarray]]:
    """(sha256, RGB) per frame, in upload order; 413/422 with the upload's reason otherwise.

    Memory is bounded by construction: the count, bytes and decoded-pixel budget are checked
    before any frame is decoded, frames are decoded one at a time, and each is shrunk right after
    decoding to at most `liveness_max_side` (the detector's 1280 px), so a burst keeps at most
    `liveness_max_frames` frames of that size, whatever the frames declare."""
    if len(frames) < settings.liveness_min_frames:
        raise InvalidInput(
            "too_few_frames", f"a liveness burst needs at least {settings.liveness_min_frames} frames"
        )
    if len(frames) > settings.liveness_max_frames:
        raise TooLarge(
            "too_many_files", f"a liveness burst has at most {settings.liveness_max_frames} frames"
        )
    datas = [usable_bytes(read, f"frame {number}") for number, read in enumerate(frames)]
    if sum(len(data) for data in datas) > settings.liveness_max_total_bytes:
        raise TooLarge("too_large", f"the frames exceed {settings.liveness_max_total_bytes} bytes in total")
    check_pixel_budget(datas, settings.liveness_max_pixels, "frames")
    out: list[tuple[str, np.ndarray]] = []
    for number, data in enumerate(datas):
        rgb, decode_reason = decode(
            data, settings.max_upload_bytes, settings.max_pixels, settings.liveness_max_side
        )
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
    views: list[FrameView] = field(default_factory=list)  # per-frame geometry (benchmarks read it)


_JUDGE: BurstJudge | None = None
_JUDGE_LOCK = threading.Lock()


def burst_judge() -> BurstJudge:
    """The process's one burst judge (YuNet at 320 px + the face mesh), loaded on first use: the
    mesh and iris weights are read and sha256-checked once; the judge is safe to share."""
    global _JUDGE
    with _JUDGE_LOCK:
        if _JUDGE is None:
            _JUDGE = BurstJudge()
        return _JUDGE


def judge_burst(
    engine: FaceEngine,
    decoded: list[tuple[str, np.ndarray]],
    steps: list[str],
    bank: np.ndarray,
    thresholds: Thresholds,
    known_sha256: set[str],
    earlier_hashes: list[int],
    judge: BurstJudge | None = None,
) -> BurstJudgement:
    """The liveness checks (faceverify.liveness.burst: geometry on every frame, first failure ends
    it) and the identity decision over decoded frames (sha256, RGB), no database: used by the route
    and the benchmarks. The towers run only on the identity frames (most frontal + one step frame),
    and only once the geometry passed; a burst refused before that is decided not verified without
    any tower pass (votes 0)."""
    judge = judge or burst_judge()

    def identity(frames: list[FrameView]) -> IdentityEvidence:
        faces = [select_verify_face(engine.faces(f.rgb)).face for f in frames]
        found = [f for f in faces if f is not None]
        if len(found) < len(faces):  # the full pipeline lost a face the mesh saw: not the user
            return IdentityEvidence([], np.zeros((0, bank.shape[-1])))
        embeddings = np.asarray(engine.embed_faces(found))
        return IdentityEvidence([float(np.max(engine.score(e, bank))) for e in embeddings], embeddings)

    verdict = judge.judge(decoded, steps, identity, thresholds.detection, known_sha256, earlier_hashes, bank)
    if not verdict.frames:
        raise InvalidInput("no_face", "no face found in any frame of the burst")
    decision = Decision(False, 0, int(len(bank)), 0.0, 0.0)
    evidence = verdict.evidence
    if evidence is not None and verdict.frontal in verdict.identity and len(evidence.embeddings):
        frontal = evidence.embeddings[verdict.identity.index(verdict.frontal)]
        decision = decide(engine.score(frontal, bank), thresholds)
    liveness = LivenessResult(
        passed=verdict.passed,
        reason=verdict.reason,
        steps=list(steps),
        frames=len(decoded),
        frames_with_face=len(verdict.frames),
        checks=verdict.checks,
    )
    front = verdict.frames[verdict.frontal or 0]
    box = [int(v) for v in front.box]
    return BurstJudgement(decision, liveness, box, verdict.sha256, verdict.chip_hashes, verdict.frames)
