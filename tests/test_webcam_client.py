"""Tests of the webcam client (`clients/webcam.py` and the modules it is built from).

Three layers:
* the decision and pacing logic (sliding window, frame scheduler, backoff) on their own;
* the client as a real subprocess against servers that misbehave on purpose: nothing listening, a
  tiny HTTP server that sleeps before answering, Ctrl-C in the middle of a run;
* the client against the LIVE service (`faceverify serve` on a free loopback port, real model) with the
  real frames of `short_hamilton_clip`: enrol from early performer frames, verify later ones, and the
  audience cut-aways must not verify.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
import pytest
from live_server import (
    FACEVERIFY,
    LiveService,
    free_port,
    release_model_dir,
    start_service,
    stop_service,
    wait_ready,
)

from clients import webcam
from clients.display import annotate
from clients.errors import ServerUnavailable
from clients.scheduler import (
    DECISION_NOT_VERIFIED,
    DECISION_PENDING,
    DECISION_VERIFIED,
    FrameScheduler,
    SlidingWindow,
)
from clients.service_client import RetryPolicy
from clients.sources import FolderSource, open_source

REPO = Path(__file__).resolve().parents[1]
CLIENT = REPO / "clients" / "webcam.py"
FRAMES = REPO.parent / "shared" / "data" / "frames" / "short_hamilton_clip" / "frames"


# ------------------------------------------------------------------------------------------ helpers


@pytest.fixture
def tiny_frames(tmp_path: Path) -> Path:
    """30 small synthetic frames: enough for the tests whose server never looks at the pixels."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(30):
        image = np.full((48, 64, 3), 8 * i, dtype=np.uint8)
        cv2.imwrite(str(folder / f"f_{i:03d}.png"), image)
    return folder


def run_client(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the client the way a kiosk would: as a standalone script in its own process."""
    return subprocess.run(
        [sys.executable, str(CLIENT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@dataclass
class FakeBehaviour:
    """What the scripted server does; it records what it received so tests can check the traffic."""

    delay_s: float = 0.0
    status: int = 200
    requests: list[str] = field(default_factory=list)


Server = tuple[str, FakeBehaviour]


def _handler(behaviour: FakeBehaviour) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            behaviour.requests.append(self.path)
            time.sleep(behaviour.delay_s)
            if behaviour.status == 200:
                payload = {
                    "user_id": "u",
                    "verified": True,
                    "votes": 3,
                    "comparisons": 3,
                    "vote_ratio": 1.0,
                    "best_similarity": 0.9,
                    "face": {"box": [1, 2, 10, 10]},
                    "received_bytes": len(body),
                }
            else:
                payload = {"detail": "scripted failure"}
            data = json.dumps(payload).encode()
            try:
                self.send_response(behaviour.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: expected
                pass

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            return None

    return Handler


@pytest.fixture
def fake_server() -> Iterator[Server]:
    behaviour = FakeBehaviour()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(behaviour))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", behaviour
    finally:
        server.shutdown()
        server.server_close()


# -------------------------------------------------------------------------------------- pure logic


def test_sliding_window_follows_k_of_n_rule() -> None:
    window = SlidingWindow(size=4, need=3)
    # Not full yet and still able to reach 3 of 4: pending.
    assert window.push(True) == DECISION_PENDING
    assert window.push(False) == DECISION_PENDING
    assert window.push(True) == DECISION_PENDING
    assert window.push(True) == DECISION_VERIFIED  # T F T T: 3 of 4
    assert window.push(False) == DECISION_NOT_VERIFIED  # F T T F: 2 of 4, full
    assert window.push(True) == DECISION_VERIFIED  # T T F T
    assert window.push(False) == DECISION_NOT_VERIFIED  # T F T F
    assert window.push(False) == DECISION_NOT_VERIFIED  # F T F F
    assert (window.verified, len(window.results)) == (1, 4)


def test_sliding_window_early_failure_is_final_only_when_unreachable() -> None:
    window = SlidingWindow(size=3, need=3)
    assert window.push(False) == DECISION_NOT_VERIFIED  # 0 + 2 remaining slots < 3
    with pytest.raises(ValueError):
        SlidingWindow(size=2, need=3)


def test_retry_policy_backs_off_exponentially_then_gives_up() -> None:
    policy = RetryPolicy(retries=4, base=0.5, cap=2.0)
    assert [policy.failed("x") for _ in range(4)] == [0.5, 1.0, 2.0, 2.0]
    with pytest.raises(ServerUnavailable, match="gave up after 4 retries"):
        policy.failed("down")
    policy.succeeded()
    assert policy.failed("x") == 0.5


class FakeClock:
    """Deterministic time for the scheduler: `sleep` advances it, `spend` simulates a slow request."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def spend(self, seconds: float) -> None:
        self.now += seconds


def test_scheduler_replays_in_real_time_and_drops_what_a_slow_server_missed(tiny_frames: Path) -> None:
    clock = FakeClock()
    source = FolderSource(tiny_frames, fps=10.0)  # 30 frames = 3 s of "video"
    scheduler = FrameScheduler(source, realtime=True, min_interval=0.0, clock=clock, sleep=clock.sleep)
    sent = []
    while (frame := scheduler.next()) is not None:
        sent.append(frame.position)
        clock.spend(0.25)  # each request takes 2.5 frame periods
    # At 0.25 s per request the client sees the frame "on screen" then: 0, 2 (t=.25), 5 (t=.5), 7, 10, ...
    assert sent[:5] == [0, 2, 5, 7, 10]
    assert sent == sorted(set(sent))
    assert scheduler.dropped == sent[-1] + 1 - len(sent)
    assert scheduler.dropped > 15


def test_scheduler_rate_limit_and_fast_server(tiny_frames: Path) -> None:
    clock = FakeClock()
    source = FolderSource(tiny_frames, fps=10.0)
    # An instant server but at most 2 requests per second: one frame in five is sent.
    scheduler = FrameScheduler(source, realtime=True, min_interval=0.5, clock=clock, sleep=clock.sleep)
    sent = [f.position for f in iter(scheduler.next, None)]
    assert sent == [0, 5, 10, 15, 20, 25]
    assert scheduler.dropped == 20  # the 4 frames between consecutive sends, 5 times
    assert clock.now == pytest.approx(103.0)  # it waited for t=3.0 s to find the video over


def test_scheduler_never_waits_ahead_of_the_video(tiny_frames: Path) -> None:
    clock = FakeClock()
    source = FolderSource(tiny_frames, fps=10.0)
    scheduler = FrameScheduler(source, realtime=True, min_interval=0.0, clock=clock, sleep=clock.sleep)
    sent = [f.position for f in iter(scheduler.next, None)]
    assert sent == list(range(30))  # an instant server gets every frame, paced at the source rate
    assert scheduler.dropped == 0
    assert clock.now == pytest.approx(103.0)  # the last frame (t=2.9 s) lasts until 3.0 s


def test_scheduler_offline_mode_is_deterministic(tiny_frames: Path) -> None:
    source = FolderSource(tiny_frames, fps=10.0)
    scheduler = FrameScheduler(source, realtime=False, step=4, start=3, stop=20)
    assert [f.position for f in iter(scheduler.next, None)] == [3, 7, 11, 15, 19]
    assert [f.name for f in iter(FrameScheduler(source, realtime=False, start=28).next, None)] == [
        "f_028.png",
        "f_029.png",
    ]


def test_video_file_source_reads_forward(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened()
    for i in range(12):
        writer.write(np.full((48, 64, 3), 20 * i, dtype=np.uint8))
    writer.release()
    source = open_source(str(path), None)
    assert source.fps == pytest.approx(10.0)
    scheduler = FrameScheduler(source, realtime=False, step=5)
    frames = list(iter(scheduler.next, None))
    assert [f.position for f in frames] == [0, 5, 10]
    # Frame 5 was written with grey level 100: skipping by grab() must land on the right frame.
    assert abs(float(frames[1].image.mean()) - 100.0) < 6.0
    source.close()


def test_annotate_draws_box_and_banner(tiny_frames: Path) -> None:
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    out = annotate(image, [40, 50, 30, 30], "VERIFIED", True)
    assert image.sum() == 0  # the original frame is untouched
    assert out[50, 55].tolist() == [0, 200, 0]  # green top edge of the box
    assert out[100, 100].sum() == 0  # outside box and banner


# ----------------------------------------------------------------------- misbehaving servers (real IO)


def test_server_down_retries_then_fails_cleanly(tiny_frames: Path) -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    result = run_client(
        "verify", "--url", f"http://127.0.0.1:{port}", "--user-id", "alice", "--source", str(tiny_frames),
        "--retries", "3", "--backoff", "0.1", "--timeout", "2", "--json",
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == webcam.EXIT_SERVER_UNAVAILABLE, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    warnings = result.stderr.strip().splitlines()
    assert [line.split("; retry ")[-1] for line in warnings[:3]] == [
        "1/3 in 0.1 s",
        "2/3 in 0.2 s",
        "3/3 in 0.4 s",
    ]
    assert all("cannot reach http://127.0.0.1" in line for line in warnings[:3])
    assert warnings[-1].startswith("webcam: server unavailable:")
    summary = json_lines(result.stdout)[-1]
    assert summary["outcome"] == "server_unavailable"
    assert summary["answered"] == 0 and summary["failed_attempts"] == 4
    assert elapsed < 20  # bounded: 0.7 s of backoff plus interpreter start-up


def test_slow_server_times_out_and_gives_up(tiny_frames: Path, fake_server: Server) -> None:
    url, behaviour = fake_server
    behaviour.delay_s = 3.0
    result = run_client(
        "verify", "--url", url, "--user-id", "alice", "--source", str(tiny_frames),
        "--timeout", "0.3", "--retries", "2", "--backoff", "0.05",
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_SERVER_UNAVAILABLE
    assert "Traceback" not in result.stderr + result.stdout
    assert "no answer from http://127.0.0.1" in result.stderr and "within 0.3 s" in result.stderr
    assert len(behaviour.requests) == 3  # first attempt + 2 retries, each a fresh frame
    summary = result.stdout.strip().splitlines()[-1]
    assert summary.startswith("event=summary mode=verify outcome=server_unavailable")


def test_slow_server_makes_the_client_drop_frames_not_queue(tiny_frames: Path, fake_server: Server) -> None:
    url, behaviour = fake_server
    behaviour.delay_s = 0.25  # server needs ~7 frame periods at 30 fps per answer
    result = run_client(
        "verify", "--url", url, "--user-id", "alice", "--source", str(tiny_frames),
        "--source-fps", "30", "--fps", "0", "--window", "3", "--min-verified", "2", "--json",
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_OK, result.stderr
    assert "Traceback" not in result.stderr
    records = json_lines(result.stdout)
    decisions = [r for r in records if r["event"] == "verify"]
    summary = records[-1]
    positions = [r["frame"] for r in decisions]
    assert positions == sorted(set(positions))
    assert len(decisions) == len(behaviour.requests) == summary["answered"]
    assert len(decisions) <= 8  # ~1 s of video at 4 answers per second (shared CPU: some slack)
    assert summary["dropped"] >= 15 and summary["dropped"] == positions[-1] + 1 - len(positions)
    assert [r["decision"] for r in decisions[:2]] == [DECISION_PENDING, DECISION_VERIFIED]
    assert decisions[0]["box"] == [1, 2, 10, 10] and decisions[0]["votes"] == "3/3"


def test_server_errors_are_retried_then_reported(tiny_frames: Path, fake_server: Server) -> None:
    url, behaviour = fake_server
    behaviour.status = 503
    result = run_client(
        "enroll", "--url", url, "--user-id", "alice", "--source", str(tiny_frames), "--no-realtime",
        "--retries", "1", "--backoff", "0.05",
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_SERVER_UNAVAILABLE
    assert "answered HTTP 503: scripted failure; retry 1/1" in result.stderr
    assert behaviour.requests == ["/enroll", "/enroll"]
    assert "Traceback" not in result.stderr


def test_ctrl_c_exits_cleanly_with_a_summary(tiny_frames: Path, fake_server: Server) -> None:
    url, behaviour = fake_server
    behaviour.delay_s = 30.0
    proc = subprocess.Popen(
        [sys.executable, str(CLIENT), "verify", "--url", url, "--user-id", "alice",
         "--source", str(tiny_frames), "--timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not behaviour.requests and time.monotonic() < deadline:  # wait until a request is in flight
        time.sleep(0.05)
    assert behaviour.requests, "the client never sent a request"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == webcam.EXIT_INTERRUPTED
    assert "Traceback" not in stderr
    assert stderr.strip() == "webcam: interrupted"
    assert "outcome=interrupted" in stdout.strip().splitlines()[-1]


def test_display_degrades_gracefully_on_headless_opencv(
    tiny_frames: Path, fake_server: Server, tmp_path: Path
) -> None:
    """The project ships opencv-python-headless: asking for a window must warn once and carry on;
    --annotate-dir still gets the drawn frames."""
    url, _ = fake_server
    env = {**os.environ, "DISPLAY": ":0"}  # pretend a display exists: only the OpenCV build is missing
    result = subprocess.run(
        [sys.executable, str(CLIENT), "verify", "--url", url, "--user-id", "alice",
         "--source", str(tiny_frames), "--no-realtime", "--step", "10", "--display", "on",
         "--annotate-dir", str(tmp_path / "drawn")],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_OK, result.stderr
    assert result.stderr.count("cannot show frames: this OpenCV build has no GUI (headless)") == 1
    drawn = sorted(p.name for p in (tmp_path / "drawn").glob("*.jpg"))
    assert drawn == ["000000.jpg", "000010.jpg", "000020.jpg"]
    image = cv2.imread(str(tmp_path / "drawn" / "000020.jpg"))
    blue, green, red = image[7, 1].tolist()  # left edge of the server's box [1, 2, 10, 10]
    assert green > 120 and blue < 80 and red < 80  # green: the window says VERIFIED by then (JPEG: approx.)


def test_bad_source_and_bad_options_are_usage_errors(tmp_path: Path) -> None:
    result = run_client("verify", "--user-id", "a", "--source", str(tmp_path / "missing"))
    assert result.returncode == webcam.EXIT_USAGE
    assert "neither a camera index, a folder nor a file" in result.stderr
    result = run_client("verify", "--user-id", "a", "--source", str(tmp_path), "--window", "2",
                        "--min-verified", "3")  # fmt: skip
    assert result.returncode == webcam.EXIT_USAGE
    assert "Traceback" not in result.stderr


def test_faceverify_cli_exposes_the_webcam_modes() -> None:
    from service.cli.main import build_parser

    args = build_parser().parse_args(
        ["webcam", "verify", "--url", "http://h:1", "--user-id", "bob", "--source", "0", "--window", "7"]
    )
    assert (args.user_id, args.source, args.window, args.min_verified) == ("bob", "0", 7, 3)
    assert callable(args.func)


# ------------------------------------------------------------------------------ live service, real frames

@pytest.fixture(scope="module")
def live_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    if not FRAMES.is_dir():
        pytest.fail(f"real frames not found at {FRAMES} (../shared/data relative to the repo)")
    tmp = tmp_path_factory.mktemp("live")
    service = start_service(
        tmp,
        {
            "FACEVERIFY_DATA_DIR": str(tmp / "data"),
            "FACEVERIFY_DATABASE_URL": f"sqlite:///{tmp / 'faceverify.db'}",
            "FACEVERIFY_MODEL_DIR": str(release_model_dir()),
            # These tests stream many non-matching frames at one user on purpose; the lockout
            # (tests/service/test_security_lockout.py) would rightly stop them after five.
            "FACEVERIFY_LOCKOUT_MAX_FAILURES": "1000",
        },
    )
    wait_ready(service)
    try:
        yield service
    finally:
        stop_service(service)


@pytest.fixture(scope="module")
def enrolled_performer(live_service: LiveService) -> tuple[LiveService, list[dict]]:
    """Enrol the performer from early face-on frames (110-170), started as the README shows."""
    result = subprocess.run(
        [str(FACEVERIFY), "webcam", "enroll", "--url", live_service.url, "--api-key", live_service.api_key,
         "--user-id", "performer",
         "--source", str(FRAMES), "--start", "109", "--stop", "170", "--no-realtime", "--step", "6",
         "--count", "4", "--json"],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_OK, result.stdout + result.stderr
    return live_service, json_lines(result.stdout)


@pytest.mark.slow
def test_live_enrol_collects_the_requested_frames(enrolled_performer: tuple[LiveService, list[dict]]) -> None:
    _, records = enrolled_performer
    enrolled = [r for r in records if r.get("result") == "enrolled"]
    assert len(enrolled) == 4 and records[-1]["enrolled"] == 4
    assert all(r["image_id"] for r in enrolled)
    assert all(108 <= r["frame"] < 170 for r in enrolled)


@pytest.mark.slow
def test_live_performer_later_frames_are_verified(
    enrolled_performer: tuple[LiveService, list[dict]], tmp_path: Path
) -> None:
    service, _ = enrolled_performer
    result = run_client(
        "verify", "--url", service.url, "--api-key", service.api_key,
        "--user-id", "performer", "--source", str(FRAMES),
        "--start", "179", "--stop", "236", "--no-realtime", "--step", "8",
        "--window", "5", "--min-verified", "3", "--json", "--annotate-dir", str(tmp_path / "annotated"),
        timeout=600,
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_OK, result.stdout + result.stderr
    records = json_lines(result.stdout)
    decisions = [r for r in records if r["event"] == "verify"]
    assert [r["frame"] for r in decisions] == list(range(179, 236, 8))
    assert sum(r["result"] == "verified" for r in decisions) >= 6  # of 8 later performer frames
    assert decisions[-1]["decision"] == DECISION_VERIFIED
    assert all(len(r["box"]) == 4 for r in decisions if r["result"] != "no_face")
    assert records[-1]["ever_verified"] is True and records[-1]["outcome"] == "ok"
    assert len(list((tmp_path / "annotated").glob("*.jpg"))) == len(decisions)


@pytest.mark.slow
def test_live_audience_frames_are_not_verified(enrolled_performer: tuple[LiveService, list[dict]]) -> None:
    service, _ = enrolled_performer
    result = run_client(
        "verify", "--url", service.url, "--api-key", service.api_key,
        "--user-id", "performer", "--source", str(FRAMES),
        "--start", "240", "--no-realtime", "--step", "8", "--window", "5", "--min-verified", "3",
        timeout=600,
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_NOT_REACHED, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 9  # frames 241, 249, ..., 297 and the summary
    assert not any("decision=VERIFIED" in line for line in lines)
    assert sum("result=verified" in line for line in lines) <= 1
    assert "outcome=not_verified" in lines[-1] and "ever_verified=no" in lines[-1]


@pytest.mark.slow
def test_live_unknown_user_is_a_clear_error(live_service: LiveService) -> None:
    result = run_client(
        "verify", "--url", live_service.url, "--api-key", live_service.api_key,
        "--user-id", "nobody", "--source", str(FRAMES),
        "--start", "200", "--stop", "201", "--no-realtime",
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_REJECTED
    assert "user 'nobody' is not enrolled" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["verify", "enroll"])
def test_live_invalid_user_id_stops_at_once(live_service: LiveService, mode: str) -> None:
    """A 422 about the request (not the frame) must not make the client try frame after frame."""
    result = run_client(
        mode, "--url", live_service.url, "--api-key", live_service.api_key,
        "--user-id", "not a valid id!", "--source", str(FRAMES),
        "--start", "120", "--no-realtime", "--json",
    )  # fmt: skip
    assert result.returncode == webcam.EXIT_REJECTED, result.stdout + result.stderr
    assert "HTTP 422" in result.stderr and "Traceback" not in result.stderr
    assert json_lines(result.stdout)[-1]["requests"] == 1
