"""The issue-20 liveness checks: blink / open_mouth steps, the challenge draw, the dense-mesh rigidity
test, in-burst duplicates, and the burst judge against rendered single-photo attacks (real YuNet,
real face mesh, real frames). Each test has a case that must pass and one that must fail.
"""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from faceverify.liveness import attacks, render, synthetic
from faceverify.liveness.burst import BurstJudge, IdentityEvidence, near_duplicates
from faceverify.liveness.rigidity import check_rigidity
from faceverify.liveness.steps import (
    ACTION_STEPS,
    HORIZONTAL_STEPS,
    VERTICAL_STEPS,
    PoseSample,
    StepRules,
    check_steps,
    draw_challenge,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CLIP = DATA / "frames" / "short_hamilton_clip" / "frames"
LFW = DATA / "lfw" / "images"


def _still(n: int, eye: float = 0.3, mouth: float = 0.05) -> list[PoseSample]:
    return [PoseSample(0.0, 0.0, 100.0, eye, mouth) for _ in range(n)]


# ---------------------------------------------------------------------------------------- actions


def test_blink_is_eyes_closed_then_open_again() -> None:
    blink = _still(4) + _still(2, eye=0.06) + _still(3)
    assert check_steps(blink, ["blink"]).passed
    assert check_steps(_still(9), ["blink"]).reason == "steps_not_done"  # a photo: eyes never close
    ends_closed = _still(4) + _still(3, eye=0.06)  # a closed-eye still at the end is not a blink
    assert check_steps(ends_closed, ["blink"]).reason == "steps_not_done"
    half_closed = _still(4) + _still(2, eye=0.17) + _still(3)  # squinting, not closing
    assert check_steps(half_closed, ["blink"]).reason == "steps_not_done"
    closed_start = _still(3, eye=0.06) + _still(2) + _still(2, eye=0.06) + _still(2)
    assert check_steps(closed_start, ["blink"]).reason == "steps_not_done"  # the start must be open
    turned = _still(4) + [PoseSample(12.0, 9.0, 100.0, 0.06, 0.05)] * 2 + _still(3)  # another photo's pose
    assert check_steps(turned, ["blink"]).reason == "steps_not_done"
    slightly = _still(4) + [PoseSample(6.0, -5.0, 100.0, 0.06, 0.05)] * 2 + _still(3)  # a live head drifts
    assert check_steps(slightly, ["blink"]).passed
    no_mesh = [PoseSample(0.0, 0.0, 100.0) for _ in range(9)]
    assert check_steps(no_mesh, ["blink"]).reason == "steps_not_done"


def test_open_mouth_needs_a_wide_opening_not_talking() -> None:
    wide = _still(4) + _still(3, mouth=0.6) + _still(2)
    assert check_steps(wide, ["open_mouth"]).passed
    talking = _still(4) + _still(3, mouth=0.3) + _still(2)
    assert check_steps(talking, ["open_mouth"]).reason == "steps_not_done"
    open_from_start = _still(4, mouth=0.55) + _still(3, mouth=0.6) + _still(2, mouth=0.55)
    assert check_steps(open_from_start, ["open_mouth"]).reason == "steps_not_done"


def test_actions_count_only_in_their_turn_of_the_order() -> None:
    rng = np.random.default_rng(5)
    turn = [PoseSample(y, p, 100.0, 0.3, 0.05) for y, p, _ in synthetic.step_pose_track(["look_up"], rng)][3:]
    # A blink during the look_up (before the blink step is due) does not count for it.
    early = _still(4) + _still(1, eye=0.06) + turn + _still(3)
    assert check_steps(early, ["look_up", "blink"]).reason == "steps_not_done"
    timely = _still(4) + turn + _still(1, eye=0.06) + _still(2)
    assert check_steps(timely, ["look_up", "blink"]).passed
    # A natural blink while a head step is due is not a wrong step.
    blink_then_turn = _still(4) + _still(1, eye=0.06) + turn + _still(2)
    assert check_steps(blink_then_turn, ["look_up"]).passed


def test_every_drawn_challenge_has_an_action_and_a_vertical_step() -> None:
    rand = random.Random(7)
    draws = [draw_challenge(rand) for _ in range(400)]
    for steps in draws:
        assert sum(s in ACTION_STEPS for s in steps) == 1 and sum(s in VERTICAL_STEPS for s in steps) == 1
        assert sum(s in HORIZONTAL_STEPS for s in steps) == len(steps) - 2 and len(set(steps)) == len(steps)
    lengths = [len(s) for s in draws]
    assert 0.4 < lengths.count(3) / len(draws) < 0.6
    assert len({tuple(s) for s in draws}) == 4 * 2 + 4 * 4 * 3  # every order of every combination shows up


# -------------------------------------------------------------------------------------- rigidity


@pytest.fixture(scope="module")
def judge() -> BurstJudge:
    return BurstJudge()


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.mark.lfw
def test_rigidity_tells_a_turning_head_from_a_tilted_picture_of_it(judge: BurstJudge) -> None:
    """The real mesh of a clip frame is the head's 3-D template: turned rigidly it passes; the same
    points flattened onto a plane and tilted the same way (a photo of it) fail."""
    view = judge.observe(0, "", _rgb(CLIP / "frame_0178.jpg"))
    assert view is not None and view.mesh is not None
    points = view.mesh.points - view.mesh.points.mean(axis=0)
    points = points * (63.0 / np.linalg.norm(points[33, :2] - points[263, :2]))  # millimetres
    head = points * np.array([1.0, 1.0, -1.0])  # mesh z grows away from the camera; head frame: towards
    flat = head * np.array([1.0, 1.0, 0.0])
    camera = synthetic.Camera()

    def track(shape: np.ndarray) -> list[np.ndarray]:
        out = []
        for yaw, pitch, _ in synthetic.step_pose_track(["turn_left", "look_up"], np.random.default_rng(1)):
            cam = (synthetic.rotation(yaw, pitch) @ shape.T).T * np.array([1.0, 1.0, -1.0]) + [0, 0, 500.0]
            out.append(camera.project(cam) + np.random.default_rng(2).normal(0, 0.3, (468, 2)))
        return out

    assert check_rigidity(track(head)).passed
    assert check_rigidity(track(flat)).reason == "planar_motion"


# ------------------------------------------------------------------------------------ duplicates


@pytest.mark.lfw
def test_a_recompressed_copy_inside_a_burst_is_a_duplicate_a_new_frame_is_not(judge: BurstJudge) -> None:
    def view(index: int, rgb: np.ndarray, quality: int):
        data = render.jpeg(rgb, quality)
        decoded = cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
        return judge.observe(index, str(quality) + str(index), decoded)

    a, b = _rgb(CLIP / "frame_0180.jpg"), _rgb(CLIP / "frame_0185.jpg")
    fresh = [view(0, a, 90), view(1, b, 90)]
    assert near_duplicates(fresh, None, judge.mesh) is None
    assert near_duplicates([*fresh, view(2, a, 75)], None, judge.mesh) == (0, 2)
    assert near_duplicates([*fresh, view(2, b, 80)], None, judge.mesh) == (1, 2)


# ------------------------------------------------------------------------------- rendered attacks


def _frames(frames: list[np.ndarray]) -> list[tuple[str, np.ndarray]]:
    out = []
    for k, rgb in enumerate(frames):
        data = render.jpeg(rgb)
        decoded = cv2.cvtColor(
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
        )
        out.append((f"{k}", decoded))
    return out


def _always_the_user(frames) -> IdentityEvidence:  # the attacks are refused before identity
    raise AssertionError("the towers must not run for a refused burst")


@pytest.mark.lfw
@pytest.mark.parametrize("kind", ["warp_2d", "relief_3d"])
def test_a_single_photo_made_to_act_a_blink_challenge_is_refused(judge: BurstJudge, kind: str) -> None:
    photo = _rgb(LFW / "Tony_Blair" / "Tony_Blair_0010.jpg")
    marks = judge.detector.detect(photo)[0].landmarks
    rng = np.random.default_rng(11)
    steps = ["look_up", "blink"]
    make = attacks.warp_frames if kind == "warp_2d" else attacks.relief_frames
    verdict = judge.judge(_frames(make(photo, marks, steps, rng)), steps, _always_the_user, 0.5)
    assert not verdict.passed and verdict.reason is not None
    assert verdict.reason.split(":")[0] in {"steps", "rigidity"}, verdict.reason
    assert verdict.evidence is None  # refused early: no tower pass


@pytest.mark.lfw
def test_the_clip_performers_natural_motion_passes_every_geometric_check(judge: BurstJudge) -> None:
    """Genuine side: 20 frames at 6 fps of a real head (no challenge: no steps, any opening pose)."""
    relaxed = BurstJudge(judge.detector, judge.mesh, StepRules(neutral_max_deg=1e9, neutral_abs_max_deg=1e9))
    decoded = _frames([_rgb(CLIP / f"frame_{i:04d}.jpg") for i in range(111, 211, 5)])
    seen: list[int] = []

    def identity(frames) -> IdentityEvidence:
        seen.extend(f.index for f in frames)
        return IdentityEvidence([0.9] * len(frames), np.eye(len(frames), 8) + 1.0)

    verdict = relaxed.judge(decoded, [], identity, 0.5)
    assert verdict.passed, verdict.checks
    assert verdict.checks["rigidity"]["passed"] and verdict.checks["duplicates"]["passed"]
    assert seen == [decoded_index for decoded_index in seen] and len(seen) == 1  # towers on one frame
