"""Judging a liveness burst fast: the cheap geometry on every frame, the towers on a few, and the
first failed check ends it.

Per frame (:meth:`BurstJudge.observe`): one YuNet pass at 320 px (the box), the face mesh and the
iris lids on the full-resolution crop, the pose from the mesh's 5 contract points, and a 64-bit hash
of the aligned face.
That is all the steps, rigidity, depth, landmark-jump and duplicate checks need. The towers (the
costly part of a verify) run only on the frames identity needs, chosen AFTER the geometry passed:
the most frontal frame (the identity decision) and one frame where a step was reached (the person
doing the steps is the user) -- :func:`identity_frames`.

Order (:meth:`BurstJudge.judge`), cheapest first, each refusing at once:
face_lost -> duplicate frames in the burst -> replayed bytes / earlier burst -> steps -> rigidity ->
depth -> landmark jump -> [towers on the identity frames] -> not the user / embedding jump ->
an enrolment photo. A refused burst therefore usually costs no tower pass at all.

The module knows nothing of the served model: the identity frames' embeddings and similarities come
back through the `identity` callable the service passes (it runs the full pipeline + towers).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from faceverify.align import arcface_chip
from faceverify.liveness.continuity import ContinuityRules, consecutive_cosines, landmark_jumps
from faceverify.liveness.depth import check_depth, face_size
from faceverify.liveness.freshness import FreshnessRules, hamming, perceptual_hash
from faceverify.liveness.rigidity import check_rigidity
from faceverify.liveness.steps import PoseSample, StepRules, check_steps
from faceverify.mesh import FaceMesh, FaceMeshModel, contract_points, eye_aspect_ratios, mouth_aspect_ratio
from faceverify.pose import head_pose
from faceverify.yunet import YuNetConfig, YuNetDetector

#: The judge's detector scale: YuNet only places the mesh's crop (pose comes from the mesh), and a
#: webcam face is large, so 320 px is enough (7 ms a 640x480 frame instead of 17 ms at full size).
DETECTION_MAX_SIDE = 320

MAX_MISSING_FACE_SHARE = 0.2  # frames without a face (blur, occlusion) tolerated before `face_lost`


@dataclass(frozen=True)
class DuplicateRules:
    """Two frames of one burst are the same capture (repeated, recompressed, resized) when the pixels
    of the first one's face box differ by less than `min_pixel_change` grey levels on average
    (64x64 grey, same region in both images) AND the second one's mesh, computed on the first one's
    crop, lies within `min_mesh_change` face sizes of the first one's mesh (mean point distance).
    Measured (benchmarks/results/liveness_attacks.txt, the clip, 33 pairs each): a frame and its JPEG
    q70-95 copy, pixel <= 0.99, mesh <= 0.010; the performer's frames 1/6 s apart, pixel >= 30.8,
    mesh >= 0.14 (5th pct); a photo held still with 0.5 degrees / 1.5 mm of jitter (the nearest the data
    has to a person holding still), pixel >= 4.2, mesh >= 0.0185; a photo on a head form held with
    1.5 degrees of jitter, two frames whose jitter happened to agree: pixel 1.6, mesh 0.011. So the
    limits sit just above the copies (a burst repeats many frames: catching ~90% of pairs catches
    the burst), far below anything that moved: a live face at rest moves more than 0.4 px."""

    min_pixel_change: float = 1.5
    min_mesh_change: float = 0.006


@dataclass
class FrameView:
    """What one frame showed, without the towers."""

    index: int
    sha256: str
    rgb: np.ndarray
    landmarks: np.ndarray  # (5, 2) YuNet, contract order
    box: tuple[float, float, float, float]
    mesh: FaceMesh | None
    sample: PoseSample
    chip_hash: int
    roi_eyes: np.ndarray  # the eye points that set the mesh crop's rotation (with `box`)


@dataclass(frozen=True)
class IdentityEvidence:
    """From the service, for the identity frames: best similarity to the user per frame, and the
    frames' L2-normalised embeddings."""

    similarities: list[float]
    embeddings: np.ndarray


@dataclass
class BurstVerdict:
    passed: bool
    reason: str | None  # "<check>:<why>" or face_lost
    checks: dict[str, dict[str, object]]
    frames: list[FrameView]
    frontal: int | None  # position in `frames` of the most frontal frame
    identity: list[int] = field(default_factory=list)  # positions in `frames` the towers ran on
    evidence: IdentityEvidence | None = None

    @property
    def sha256(self) -> list[str]:
        return [f.sha256 for f in self.frames]

    @property
    def chip_hashes(self) -> list[int]:
        return [f.chip_hash for f in self.frames]


def region64(rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """The box's pixels (clipped to the image) as 64x64 grey float32."""
    h, w = rgb.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(box[0] + box[2]) + 1), min(h, int(box[1] + box[3]) + 1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((64, 64), np.float32)
    grey = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)


def near_duplicates(
    frames: Sequence[FrameView], rules: DuplicateRules | None = None, mesh_model: FaceMeshModel | None = None
) -> tuple[int, int] | None:
    """The first pair (i, j) of frames of the burst that are one capture repeated (byte copy,
    recompression, resize), else None. Every pair is compared: a slideshow may repeat a frame later.

    Both measures are taken the same way on the two frames, so neither depends on where the tracker
    happened to put each frame's crop: the pixels of frame i's face box in both images, and (for
    the few pairs that close) the mesh of frame j recomputed on frame i's crop."""
    rules = rules or DuplicateRules()
    own = [region64(f.rgb, f.box) for f in frames]
    for j in range(1, len(frames)):
        for i in range(j):
            a, b = frames[i], frames[j]
            if a.sha256 == b.sha256:
                return i, j
            pixel = float(np.abs(own[i] - region64(b.rgb, a.box)).mean())
            if pixel >= rules.min_pixel_change:
                continue
            if a.mesh is None:
                return i, j
            other = b.mesh if mesh_model is None else mesh_model.mesh(b.rgb, a.box, a.roi_eyes, iris=False)
            if other is None:
                continue
            size = max(face_size(a.landmarks), 1e-6)
            mesh = float(np.linalg.norm(a.mesh.xy - other.xy, axis=1).mean()) / size
            if mesh < rules.min_mesh_change:
                return i, j
    return None


#: YuNet's box against the mesh's extent (clip + LFW, 94 faces): side 1.061 (sd 0.022) x the mesh's
#: larger side, centre 0.040 of it above the mesh's centre (sd 0.020).
TRACK_SIDE = 1.061
TRACK_UP = 0.040


def tracked_box(mesh: FaceMesh) -> tuple[float, float, float, float]:
    """The YuNet-like box (x, y, w, h) a face with this mesh would have: the next frame's crop."""
    xy = mesh.xy
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    extent = float(max(hi - lo))
    side = TRACK_SIDE * extent
    cx, cy = 0.5 * (lo + hi) - np.array([0.0, TRACK_UP * extent])
    return (float(cx - side / 2), float(cy - side / 2), side, side)


def identity_frames(frames: Sequence[FrameView], reached: Sequence[int]) -> tuple[int, list[int]]:
    """The most frontal frame (smallest |yaw| + |pitch|: the identity decision) and one frame where a
    step was reached (the middle one): the person doing the steps is the user.

    Why one step frame, not one per step: each tower frame costs about one verify (pipeline + both
    towers; benchmarks/results/liveness_attacks.txt), and the frames between are tied together by
    the mesh tracking and the landmark-jump check (a swap of faces is a jump unless morphed, and a
    live morph is the out-of-scope deepfake)."""
    frontal = int(np.argmin([abs(f.sample.yaw) + abs(f.sample.pitch) for f in frames]))
    inside = [int(r) for r in reached if 0 <= r < len(frames)]
    chosen = {frontal}
    if inside:
        chosen.add(inside[len(inside) // 2])
    return frontal, sorted(chosen)


class BurstJudge:
    """The per-frame geometry and the ordered checks. Safe to share between threads (the detector and
    the mesh model keep per-thread state)."""

    def __init__(
        self,
        detector: YuNetDetector | None = None,
        mesh: FaceMeshModel | None = None,
        step_rules: StepRules | None = None,
        duplicate_rules: DuplicateRules | None = None,
        continuity_rules: ContinuityRules | None = None,
        freshness_rules: FreshnessRules | None = None,
    ) -> None:
        self.detector = detector or YuNetDetector(YuNetConfig(max_side=DETECTION_MAX_SIDE))
        self.mesh = mesh or FaceMeshModel()
        self.step_rules = step_rules or StepRules()
        self.duplicate_rules = duplicate_rules or DuplicateRules()
        self.continuity_rules = continuity_rules or ContinuityRules()
        self.freshness_rules = freshness_rules or FreshnessRules()

    def observe(
        self,
        index: int,
        sha256: str,
        rgb: np.ndarray,
        previous: FrameView | None = None,
        iris: bool = True,
    ) -> FrameView | None:
        """The frame's face: mesh + lids, pose, hashes; None without a face. Like MediaPipe, the
        previous frame's mesh places this frame's crop (a face moves little in 1/6 s); YuNet runs
        on the first frame and whenever the mesh on the tracked crop says no face is there."""
        mesh = None
        if previous is not None and previous.mesh is not None:
            box = tracked_box(previous.mesh)
            marks = contract_points(previous.mesh)
            mesh = self.mesh.mesh(rgb, box, marks, iris)
        if mesh is None:
            found = self.detector.detect(rgb)
            if not found:
                return None
            det = found[0]
            marks = np.asarray(det.landmarks, np.float64)
            box = det.box.as_tuple()
            mesh = self.mesh.mesh(rgb, box, marks, iris)
        roi_eyes = np.asarray(marks, np.float64)[:2].copy()
        eye = mouth = None
        if mesh is not None:
            eye = float(np.mean(eye_aspect_ratios(mesh)))
            mouth = mouth_aspect_ratio(mesh)
            marks = contract_points(mesh)  # finer than YuNet's at the judge's detection scale
        pose = head_pose(marks)
        chip = arcface_chip(rgb, marks)
        sample = PoseSample(pose.yaw, pose.pitch, face_size(marks), eye, mouth)
        return FrameView(index, sha256, rgb, marks, box, mesh, sample, perceptual_hash(chip), roi_eyes)

    def judge(
        self,
        decoded: Sequence[tuple[str, np.ndarray]],
        steps: Sequence[str],
        identity: Callable[[list[FrameView]], IdentityEvidence],
        detection_threshold: float,
        known_sha256: Iterable[str] = (),
        earlier_hashes: Iterable[int] = (),
        enrolled_embeddings: np.ndarray | None = None,
        iris: bool | None = None,
    ) -> BurstVerdict:
        """The checks in order over decoded frames (sha256, RGB); the first failure is the reason.
        The Iris lids run when a step reads the eyes (`blink`), or as `iris` says."""
        eyes = "blink" in steps if iris is None else iris
        frames: list[FrameView] = []
        for i, (digest, rgb) in enumerate(decoded):
            view = self.observe(i, digest, rgb, frames[-1] if frames else None, eyes)
            if view is not None:
                frames.append(view)
        checks: dict[str, dict[str, object]] = {}

        def refuse(name: str, why: str) -> BurstVerdict:
            frontal = identity_frames(frames, [])[0] if frames else None
            return BurstVerdict(False, f"{name}:{why}" if name else why, checks, frames, frontal)

        if not frames or len(decoded) - len(frames) > MAX_MISSING_FACE_SHARE * len(decoded):
            return refuse("", "face_lost")
        duplicate = near_duplicates(frames, self.duplicate_rules, self.mesh)
        checks["duplicates"] = {
            "passed": duplicate is None,
            "reason": None if duplicate is None else "repeated_frame",
            "frames": None if duplicate is None else [frames[k].index for k in duplicate],
        }
        if duplicate is not None:
            return refuse("duplicates", "repeated_frame")
        known = set(known_sha256)
        earlier = list(earlier_hashes)
        replay = next((f for f in frames if f.sha256 in known), None)
        why = "replayed_bytes"
        if replay is None:
            why = "replayed_burst"
            replay = next(
                (f for f in frames
                 if any(hamming(f.chip_hash, h) <= self.freshness_rules.max_hash_distance for h in earlier)),
                None,
            )  # fmt: skip
        checks["fresh"] = {
            "passed": replay is None,
            "reason": None if replay is None else why,
            "frame": None if replay is None else replay.index,
        }
        if replay is not None:
            return refuse("fresh", why)
        step_result = check_steps([f.sample for f in frames], steps, self.step_rules)
        checks["steps"] = step_result.as_dict()
        if not step_result.passed:
            return refuse("steps", str(step_result.reason))
        meshes = [f.mesh.points for f in frames if f.mesh is not None]
        rigid = check_rigidity(meshes)
        checks["rigidity"] = rigid.as_dict()
        if not rigid.passed:
            return refuse("rigidity", str(rigid.reason))
        track = [f.landmarks for f in frames]
        depth = check_depth(track)
        checks["depth"] = depth.as_dict()
        if not depth.passed:
            return refuse("depth", str(depth.reason))
        jumps = landmark_jumps(track)
        largest = float(jumps.max()) if jumps.size else 0.0
        checks["continuity"] = {"passed": False, "largest_jump": round(largest, 4)}
        if largest > self.continuity_rules.max_jump:
            checks["continuity"]["reason"] = "landmark_jump"
            return refuse("continuity", "landmark_jump")
        frontal, chosen = identity_frames(frames, step_result.reached)
        evidence = identity([frames[k] for k in chosen])
        sims = np.asarray(evidence.similarities, np.float64)
        worst = float(sims.min()) if sims.size else 0.0
        cosines = consecutive_cosines(evidence.embeddings) if len(evidence.embeddings) > 1 else np.ones(0)
        lowest = float(cosines.min()) if cosines.size else 1.0
        checks["continuity"].update(
            worst_user_similarity=round(worst, 4), lowest_consecutive_cosine=round(lowest, 4)
        )
        reason = None
        if not sims.size or worst <= detection_threshold:
            reason = "not_the_user"
        elif lowest < self.continuity_rules.min_consecutive_cosine:
            reason = "embedding_jump"
        checks["continuity"].update(passed=reason is None, reason=reason)
        verdict = BurstVerdict(False, None, checks, frames, frontal, chosen, evidence)
        if reason is not None:
            verdict.reason = f"continuity:{reason}"
            return verdict
        if enrolled_embeddings is not None and np.asarray(enrolled_embeddings).size:
            bank = np.asarray(enrolled_embeddings, np.float64).reshape(-1, evidence.embeddings.shape[-1])
            bank = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
            e = np.asarray(evidence.embeddings, np.float64)
            e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
            hits = np.nonzero((e @ bank.T).max(axis=1) >= self.freshness_rules.max_enrolment_cosine)[0]
            if hits.size:
                checks["fresh"].update(
                    passed=False, reason="enrolment_photo", frame=frames[chosen[hits[0]]].index
                )
                verdict.reason = "fresh:enrolment_photo"
                return verdict
        verdict.passed = True
        return verdict


def frame_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
