"""Liveness error rates in ISO/IEC 30107-3 terms: APCER per attack type, BPCER on genuine head motion.

APCER (attack presentation classification error rate): share of attack presentations of one type
that the liveness decision accepts as bona fide. BPCER (bona fide presentation classification error
rate): share of genuine presentations it refuses. Here the "PAD subsystem" is `liveness.passed` of
service.liveness.judge_burst (all four checks); each check's own rate is listed too.

Part A, simulated landmark tracks (faceverify.liveness.synthetic; checks (1) steps and (2) depth):
  genuine = a rigid 3D face model acting out a random challenge (pinhole camera, sway, landmark noise);
  printed photo = the same face's frontal landmarks on a plane tilted to act out the steps, hand jitter;
  bent photo = on a sheet bent around a vertical axis. Steps come from faceverify.pose.head_pose.
Part B, camera frames through the real pipeline and the release model (all four checks):
  printed photo = an LFW still rendered on a tilted, moving plane acting out the steps (render.py);
  bent photo = the same on a cylinder; slideshow = several LFW stills of the person at different
  poses (chosen by head_pose), each held for a few frames, meant to act out the steps;
  replay = the recorded clip's performer frames (short_hamilton_clip 110-210 at 6 fps) sent against
  new random challenges. Genuine: the performer's natural head motion in the clip for checks (2)-(3)
  (windows of the clip); nobody in the data follows random steps, so no image-level BPCER for (1).
Not covered: 3D masks, a live deepfake injected into the camera stream, a replay of a burst recorded
against the SAME challenge (needs the attacker to know it in advance).

Usage: python benchmarks/bench_liveness.py [--trials 200] [--image-trials 20] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from faceverify.liveness import render, synthetic  # noqa: E402
from faceverify.liveness.depth import check_depth, face_size  # noqa: E402
from faceverify.liveness.steps import PoseSample, check_steps  # noqa: E402
from faceverify.pose import head_pose  # noqa: E402

DATA = REPO.parent / "shared" / "data"
LFW = DATA / "lfw" / "images"
FRAMES = DATA / "frames" / "short_hamilton_clip" / "frames"
STEPS = ("turn_left", "turn_right", "look_up", "look_down")
# People of LFW View 1 (peopleDevTrain) with many photos: attacks use their stills.
PEOPLE = ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder")


def random_challenge(rng: np.random.Generator) -> list[str]:
    return [str(s) for s in rng.choice(STEPS, size=int(rng.integers(2, 4)), replace=False)]


def poses_of(track: Sequence[np.ndarray]) -> list[PoseSample]:
    out = []
    for points in track:
        pose = head_pose(points)
        out.append(PoseSample(pose.yaw, pose.pitch, face_size(points)))
    return out


def rate(flags: Sequence[bool]) -> str:
    n = len(flags)
    k = int(sum(flags))
    return f"{100.0 * k / n:6.2f}% ({k}/{n})" if n else "   n/a"


# ------------------------------------------------------------------------------------------ part A


def part_a(trials: int, seed: int, emit: Callable[[str], None]) -> None:
    emit("Part A: simulated landmark tracks, random 2-3 step challenges, landmark noise sigma in px")
    emit("(face ~75 px between the eyes at 500 mm, f = 600 px; checks (1) steps and (2) depth)")
    emit(f"{'presentation':34} {'noise':>5}  {'steps pass':>18} {'depth pass':>18} {'both pass':>18}")
    rng = np.random.default_rng(seed)
    makers: list[tuple[str, Callable[[list[str], float], list[np.ndarray]]]] = [
        ("genuine 3D head (BPCER = 1-pass)", lambda s, n: synthetic.genuine_track(s, rng, n)),
        ("printed photo, tilted (APCER)", lambda s, n: synthetic.photo_track(s, rng, n)),
        ("bent photo r=80mm (APCER)", lambda s, n: synthetic.photo_track(s, rng, n, bend_radius_mm=80)),
        ("bent photo r=50mm (APCER)", lambda s, n: synthetic.photo_track(s, rng, n, bend_radius_mm=50)),
    ]
    for noise in (1.0, 2.0, 3.0):
        for name, make in makers:
            steps_ok, depth_ok = [], []
            for _ in range(trials):
                steps = random_challenge(rng)
                track = make(steps, noise)
                steps_ok.append(check_steps(poses_of(track), steps).passed)
                depth_ok.append(check_depth(track).passed)
            both = [a and b for a, b in zip(steps_ok, depth_ok, strict=True)]
            emit(f"{name:34} {noise:5.1f}  {rate(steps_ok):>18} {rate(depth_ok):>18} {rate(both):>18}")
    emit("")


# ------------------------------------------------------------------------------------------ part B


def load_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    if image is None:
        raise SystemExit(f"cannot read {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CachedFaces:
    """The engine with its face pipeline memoised by frame content: the clip's frames are judged
    against many challenges, and only the steps differ."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.version = engine.version
        self.thresholds = engine.thresholds
        self._faces: dict[bytes, list[Any]] = {}

    def faces(self, rgb: np.ndarray) -> list[Any]:
        key = hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).digest()
        if key not in self._faces:
            self._faces[key] = self.engine.faces(rgb)
        return self._faces[key]

    def embed(self, chips: np.ndarray) -> np.ndarray:
        return np.asarray(self.engine.embed(chips))

    def score(self, probe: np.ndarray, bank: np.ndarray) -> np.ndarray:
        return np.asarray(self.engine.score(probe, bank))


class Judge:
    """The service's burst judgement (service.liveness.judge_burst) with the release model."""

    def __init__(self, model_dir: Path) -> None:
        from faceverify.decision import resolve_thresholds
        from service.faces.engine import FaceEngine

        self.engine: Any = CachedFaces(
            FaceEngine(model_dir, tf_threads=int(os.environ.get("BENCH_TF_THREADS", "2")))
        )
        self.thresholds = resolve_thresholds(self.engine.thresholds)

    def bank(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from faceverify.selection import select_enrolment_face

        chips = []
        for rgb in images:
            face = select_enrolment_face(self.engine.faces(rgb)).face
            if face is not None:
                chips.append(face.chip)
        return self.engine.embed(np.stack(chips))

    def __call__(self, frames: Sequence[np.ndarray], steps: list[str], bank: np.ndarray,
                 known: set[str] | None = None, earlier: list[int] | None = None):  # fmt: skip
        from service.errors import InvalidInput
        from service.liveness.service import judge_burst

        decoded = []
        for rgb in frames:
            data = render.jpeg(rgb)  # what the client sends: JPEG q90
            decoded.append(
                (
                    hashlib.sha256(data).hexdigest(),
                    cv2.cvtColor(
                        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
                    ),
                )
            )
        try:
            return judge_burst(
                self.engine, decoded, steps, bank, self.thresholds, known or set(), earlier or []
            )
        except InvalidInput:
            return None  # no face in any frame: refused


def _tally(name: str, results: list, emit: Callable[[str], None]) -> None:
    passed = [r is not None and r.liveness.passed for r in results]
    per_check = {
        check: [r is not None and bool(r.liveness.checks[check]["passed"]) for r in results]
        for check in ("fresh", "steps", "depth", "continuity")
    }
    reasons = Counter(r.liveness.reason if r is not None else "no_face" for r in results)
    line = f"{name:30} APCER {rate(passed):>16} | " + " ".join(
        f"{check} {rate(flags).split()[0]:>7}" for check, flags in per_check.items()
    )
    emit(line)
    emit(f"{'':30} refusal reasons: {dict(reasons.most_common())}")


def slideshow_stills(judge: Judge, person: str, count: int = 30) -> dict[str, np.ndarray]:
    """The person's most frontal still and, per step, the still whose pose goes furthest that way."""
    scored = []
    for path in sorted((LFW / person).glob("*.jpg"))[5 : 5 + count]:
        rgb = load_rgb(path)
        faces = judge.engine.faces(rgb)
        if not faces:
            continue
        face = max(faces, key=lambda f: int(f.box[2]) * int(f.box[3]))
        pose = head_pose(face.landmarks)
        scored.append((pose.yaw, pose.pitch, rgb))
    pick = {
        "neutral": min(scored, key=lambda s: abs(s[0]) + abs(s[1]))[2],
        "turn_left": max(scored, key=lambda s: s[0])[2],
        "turn_right": min(scored, key=lambda s: s[0])[2],
        "look_up": max(scored, key=lambda s: s[1])[2],
        "look_down": min(scored, key=lambda s: s[1])[2],
    }
    return pick


def slideshow_frames(
    stills: dict[str, np.ndarray], steps: list[str], rng: np.random.Generator
) -> list[np.ndarray]:
    """A phone or tablet held still, showing the neutral still, then each step's still and back."""
    order = ["neutral"] * 6
    for step in steps:
        order += [step] * 5 + ["neutral"] * 4
    back = render.background(int(rng.integers(1 << 16)))
    return [
        render.camera_noise(
            render.photo_frame(
                stills[name],
                rng.normal(0, 2),
                rng.normal(0, 2),
                rng.normal(0, 2),
                450.0,
                rng.normal(0, 4, 2),
                back=back,
            ),
            rng,
        )  # fmt: skip
        for name in order
    ]


def part_b(trials: int, seed: int, model_dir: Path, emit: Callable[[str], None]) -> None:
    emit("Part B: camera frames (640x480, JPEG q90) through the real pipeline and the release model")
    rng = np.random.default_rng(seed)
    judge = Judge(model_dir)
    banks = {p: judge.bank([load_rgb(LFW / p / f"{p}_{k:04d}.jpg") for k in range(1, 6)]) for p in PEOPLE}
    attacks: dict[str, list] = {"printed photo, tilted": [], "bent photo r=80mm": [], "slideshow": []}
    stills = {p: slideshow_stills(judge, p) for p in PEOPLE}
    started = time.perf_counter()
    for trial in range(trials):
        person = PEOPLE[trial % len(PEOPLE)]
        photo = load_rgb(LFW / person / f"{person}_{6 + trial // len(PEOPLE):04d}.jpg")  # not enrolled
        steps = random_challenge(rng)
        poses = synthetic.step_pose_track(steps, rng, amplitude_deg=35.0)
        attacks["printed photo, tilted"].append(
            judge(render.photo_attack_frames(photo, poses, rng), steps, banks[person])
        )
        attacks["bent photo r=80mm"].append(
            judge(render.photo_attack_frames(photo, poses, rng, bend_radius_mm=80.0), steps, banks[person])
        )
        attacks["slideshow"].append(judge(slideshow_frames(stills[person], steps, rng), steps, banks[person]))
    emit(f"{trials} trials per attack over {len(PEOPLE)} LFW people ({time.perf_counter() - started:.0f} s)")
    for name, results in attacks.items():
        _tally(name, results, emit)
    part_b_clip(judge, rng, emit)


def part_b_clip(judge: Judge, rng: np.random.Generator, emit: Callable[[str], None]) -> None:
    """The recorded clip: replayed against new random challenges (attack), and its natural head motion
    as the genuine sample for checks (2) depth and (3) continuity."""
    enrol = [load_rgb(FRAMES / f"frame_{i:04d}.jpg") for i in (112, 137, 162, 187)]
    bank = judge.bank(enrol)
    replays = []
    genuine = []
    for offset in range(5):  # five 6-fps samplings of frames 110-210 (every 5th frame, shifted)
        frames = [load_rgb(FRAMES / f"frame_{i:04d}.jpg") for i in range(110 + offset, 211, 5)]
        for _ in range(20):
            replays.append(judge(frames, random_challenge(rng), bank))
        genuine.append(replays[-1])
    emit("")
    _tally("replay of the clip (new challenges)", replays, emit)
    emit("genuine natural head motion, clip performer frames 110-210 at 6 fps (5 samplings):")
    for check in ("depth", "continuity"):
        refused = [r is None or not r.liveness.checks[check]["passed"] for r in genuine]
        stats = [r.liveness.checks[check] for r in genuine if r is not None]
        emit(f"  BPCER {check:11} {rate(refused):>16}   {stats}")


def machine_line() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cpu: {model}; nproc: {os.cpu_count()}; load average: {load}; python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=200, help="part A trials per row")
    parser.add_argument("--image-trials", type=int, default=20, help="part B trials per attack (0: skip)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--clip-only", action="store_true", help="only part B's clip (replay + genuine)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    emit("bench_liveness: APCER / BPCER of the liveness checks (benchmarks/bench_liveness.py)")
    emit(f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}")
    emit(machine_line())
    emit(f"command: python benchmarks/bench_liveness.py {' '.join(sys.argv[1:])}")
    emit("")
    if args.clip_only:
        part_b_clip(Judge(args.model_dir), np.random.default_rng(args.seed), emit)
    else:
        part_a(args.trials, args.seed, emit)
        if args.image_trials:
            part_b(args.image_trials, args.seed, args.model_dir, emit)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
