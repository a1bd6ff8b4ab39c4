"""The liveness checks as pure functions, on simulated landmark tracks (faceverify.liveness.synthetic).

Each check is tested on what it must accept AND on what it must refuse, so none can pass trivially.
"""

from __future__ import annotations

import numpy as np
import pytest

from faceverify.liveness import synthetic
from faceverify.liveness.continuity import check_continuity
from faceverify.liveness.depth import check_depth, nose_transfer_error
from faceverify.liveness.freshness import (
    check_freshness,
    from_signed64,
    hamming,
    perceptual_hash,
    to_signed64,
)
from faceverify.liveness.steps import PoseSample, check_steps


def _poses(track: list[tuple[float, float, float]]) -> list[PoseSample]:
    return [PoseSample(yaw, pitch, 100.0 / scale) for yaw, pitch, scale in track]


# ------------------------------------------------------------------------------------------- steps


def test_steps_in_the_asked_order_pass_and_other_orders_fail() -> None:
    rng = np.random.default_rng(1)
    track = _poses(synthetic.step_pose_track(["turn_left", "look_up"], rng))
    result = check_steps(track, ["turn_left", "look_up"])
    assert result.passed and result.reason is None and len(result.reached) == 2
    assert check_steps(track, ["look_up", "turn_left"]).reason == "wrong_order"
    assert check_steps(track, ["turn_right", "look_up"]).reason == "wrong_order"
    assert check_steps(track, ["turn_left", "look_up", "look_down"]).reason == "steps_not_done"


def test_steps_need_a_neutral_start_and_a_return_between_steps() -> None:
    rng = np.random.default_rng(2)
    track = _poses(synthetic.step_pose_track(["turn_left", "turn_right"], rng))
    assert check_steps(track, ["turn_left", "turn_right"]).passed
    turned = [PoseSample(24.0, 0.0, 100.0)] * 2 + track
    assert check_steps(turned, ["turn_left", "turn_right"]).reason == "no_neutral_start"
    # Looking up during the opening frames is not a steady start; a single noisy frame would be.
    unsteady = [PoseSample(0.0, p, 100.0) for p in (0.0, 0.0, 14.0, 14.0)] + track
    assert check_steps(unsteady, ["turn_left", "turn_right"]).reason == "no_neutral_start"
    one_glitch = [PoseSample(0.0, p, 100.0) for p in (0.0, 14.0, 0.0, 0.0)] + track
    assert check_steps(one_glitch, ["turn_left", "turn_right"]).passed
    # Held turned left then jumped to look_up without coming back: the second step does not count.
    held = [PoseSample(0, 0, 100)] * 3 + [PoseSample(20, 0, 100)] * 3 + [PoseSample(20, 20, 100)] * 3
    assert check_steps(held, ["turn_left", "look_up"]).reason == "steps_not_done"


def test_small_movements_do_not_count_as_steps() -> None:
    rng = np.random.default_rng(3)
    track = _poses(synthetic.step_pose_track(["turn_left", "look_down"], rng, amplitude_deg=9.0))
    result = check_steps(track, ["turn_left", "look_down"])
    assert not result.passed and result.reason == "steps_not_done"
    assert 7.0 < result.max_deviation["turn_left"] < 11.0


def test_move_closer_is_judged_on_the_face_scale() -> None:
    rng = np.random.default_rng(4)
    track = _poses(synthetic.step_pose_track(["move_closer", "turn_right"], rng))
    assert check_steps(track, ["move_closer", "turn_right"]).passed
    assert check_steps(track[:3] + track[3:] * 0 + [track[2]] * 8, ["move_closer"]).reason == "steps_not_done"


# ------------------------------------------------------------------------------------------- depth


def test_nose_transfer_error_is_zero_for_a_plane_and_large_for_a_head() -> None:
    flat_a = synthetic.photo_landmarks(0, 0)
    flat_b = synthetic.photo_landmarks(30, 10, 5, 420, (20, -10))
    assert nose_transfer_error(flat_a, flat_b) < 1e-6  # exact views of a plane: exact homography
    head_a = synthetic.head_landmarks(0, 0)
    head_b = synthetic.head_landmarks(25, 0)
    assert nose_transfer_error(head_a, head_b) > 0.15


@pytest.mark.parametrize("steps", [["turn_left", "look_up"], ["turn_right", "look_down", "turn_left"]])
def test_genuine_head_tracks_pass_and_tilted_photo_tracks_fail(steps: list[str]) -> None:
    rng = np.random.default_rng(5)
    genuine = [check_depth(synthetic.genuine_track(steps, rng, noise_px=1.0)) for _ in range(20)]
    photo = [check_depth(synthetic.photo_track(steps, rng, noise_px=1.0)) for _ in range(20)]
    assert all(r.passed for r in genuine), [r.statistic for r in genuine]
    assert not any(r.passed for r in photo), [r.statistic for r in photo]
    assert {r.reason for r in photo} == {"planar_motion"}
    assert min(r.statistic for r in genuine) > 2 * max(r.statistic for r in photo)


def test_depth_needs_enough_frames() -> None:
    track = [synthetic.head_landmarks(0, 0), synthetic.head_landmarks(20, 0)]
    assert check_depth(track).reason == "too_few_frames"


# -------------------------------------------------------------------------------------- continuity


def _smooth_embeddings(n: int, rng: np.random.Generator) -> np.ndarray:
    base = rng.normal(size=128)
    return np.stack([base + 0.05 * rng.normal(size=128) for _ in range(n)])


def test_continuity_accepts_a_smooth_track_of_the_user() -> None:
    rng = np.random.default_rng(6)
    track = synthetic.genuine_track(["turn_left", "look_up"], rng)
    result = check_continuity([0.9] * len(track), _smooth_embeddings(len(track), rng), track, 0.67)
    assert result.passed, result


def test_continuity_refuses_a_stranger_frame_a_jump_and_a_swapped_face() -> None:
    rng = np.random.default_rng(7)
    track = synthetic.genuine_track(["turn_left", "look_up"], rng)
    emb = _smooth_embeddings(len(track), rng)
    sims = [0.9] * len(track)
    sims[5] = 0.3
    assert check_continuity(sims, emb, track, 0.67).reason == "not_the_user"
    # Moving fast across the frame and towards the camera is fine (the clip's performer does) ...
    moved = track[:6] + [pts * 1.6 + 80 for pts in track[6:]]
    assert check_continuity([0.9] * len(track), emb, moved, 0.67).passed
    # ... a face whose shape jumps between two frames (another still, another face) is not.
    jumped = track[:6] + [pts[[1, 0, 2, 4, 3]][:, ::-1] for pts in track[6:]]
    assert check_continuity([0.9] * len(track), emb, jumped, 0.67).reason == "landmark_jump"
    swapped = emb.copy()
    swapped[6:] = rng.normal(size=(len(track) - 6, 128))
    assert check_continuity([0.9] * len(track), swapped, track, 0.67).reason == "embedding_jump"


# --------------------------------------------------------------------------------------- freshness


def test_perceptual_hash_survives_reencoding_but_not_another_image() -> None:
    import cv2

    rng = np.random.default_rng(8)
    image = cv2.GaussianBlur(rng.integers(0, 255, (150, 150, 3), dtype=np.uint8), (0, 0), 4)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    assert ok
    again = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    other = cv2.GaussianBlur(rng.integers(0, 255, (150, 150, 3), dtype=np.uint8), (0, 0), 4)
    assert hamming(perceptual_hash(image), perceptual_hash(again)) <= 4
    assert hamming(perceptual_hash(image), perceptual_hash(other)) > 12
    for value in (0, 1, (1 << 63) - 1, 1 << 63, (1 << 64) - 1):
        assert from_signed64(to_signed64(value)) == value and -(1 << 63) <= to_signed64(value) < 1 << 63


def test_freshness_refuses_replayed_bytes_bursts_and_enrolment_photos() -> None:
    rng = np.random.default_rng(9)
    emb = rng.normal(size=(3, 16))
    enrolled = rng.normal(size=(2, 16))
    hashes = [0x0F0F, 0xFF00FF, 0x123456]
    base = dict(chip_hashes=hashes, embeddings=emb, earlier_hashes=[], enrolled_embeddings=enrolled)
    assert check_freshness(["a", "b", "c"], known_sha256=set(), **base).passed  # type: ignore[arg-type]
    assert check_freshness(["a", "b", "c"], known_sha256={"b"}, **base).reason == "replayed_bytes"  # type: ignore[arg-type]
    replay = check_freshness(["a", "b", "c"], hashes, emb, set(), [0x123456 ^ 0b111], enrolled)
    assert (replay.reason, replay.frame) == ("replayed_burst", 2)
    copy = check_freshness(
        ["a", "b", "c"], hashes, np.vstack([emb[:2], enrolled[1:] * 1.01]), set(), [], enrolled
    )
    assert (copy.reason, copy.frame) == ("enrolment_photo", 2)


# ---------------------------------------- both geometric checks on landmark tracks, through head_pose


@pytest.mark.parametrize("seed", range(5))
def test_simulated_genuine_head_passes_steps_and_depth_through_head_pose(seed: int) -> None:
    from faceverify.liveness.depth import face_size
    from faceverify.pose import head_pose

    rng = np.random.default_rng(100 + seed)
    steps = [
        str(s) for s in rng.choice(["turn_left", "turn_right", "look_up", "look_down"], 3, replace=False)
    ]
    track = synthetic.genuine_track(steps, rng, noise_px=1.0)
    poses = [PoseSample(head_pose(p).yaw, head_pose(p).pitch, face_size(p)) for p in track]
    assert check_steps(poses, steps).passed, (steps, check_steps(poses, steps))
    assert check_depth(track).passed
    # The same head doing the steps in another order fails the challenge.
    assert not check_steps(poses, steps[::-1]).passed
    # A photo tilted through the same steps: head_pose sees no turn (a plane keeps the nose on the
    # eye-mouth midline), and the landmarks fit a homography.
    photo = synthetic.photo_track(steps, rng, noise_px=1.0)
    photo_poses = [PoseSample(head_pose(p).yaw, head_pose(p).pitch, face_size(p)) for p in photo]
    assert not check_steps(photo_poses, steps).passed
    assert not check_depth(photo).passed
