"""Webcam / kiosk client of the faceverify service: stream frames to `POST /verify`, or enrol from them.

The client is deliberately thin: it never detects faces itself (that would need the server's pipeline
and TensorFlow); it sends JPEG frames over HTTP and lets the server decide. It imports only OpenCV,
NumPy and httpx so it runs on a small door or kiosk machine, standalone
(`python clients/webcam.py verify ...`) or through the project CLI (`faceverify webcam verify ...`).

Sources (`--source`): a camera index (`0`), a video file, or a folder of frames (sorted by name).

verify
    Frames are sent at a bounded rate (`--fps`). When the server is slower than the camera, frames are
    dropped, never queued: the next request always carries the newest frame. A file or folder source is
    replayed in simulated real time (frames whose time passed while a request was in flight are skipped)
    unless `--no-realtime`, which sends every `--step`-th frame deterministically (tests, batch runs).
    Each answer feeds a sliding window of the last `--window` frames; the decision is VERIFIED once at
    least `--min-verified` of them are verified (a frame without a face counts as not verified), PENDING
    while the window could still reach that, NOT_VERIFIED otherwise. One line per answered frame.

enroll
    The client cannot know which frames hold exactly one usable face, so it sends candidate frames,
    spaced `--every` seconds apart (or every `--step`-th frame with `--no-realtime`), to `POST /enroll`
    in batches of `--batch`, and counts the images the server accepted until `--count` are enrolled.
    Frames the server rejects (no face, several faces, ...) are reported and the client moves on.

Robustness: connection errors, timeouts, HTTP 5xx and 429 are retried with exponential backoff
(`--retries`, `--backoff`, `--backoff-max`) and reported as one line on stderr; in real-time mode a retry
carries a fresh frame (a stale one is worthless), with `--no-realtime` the same frame is retried.
Ctrl-C stops cleanly and prints the summary.

Exit codes:
    0   verify: a VERIFIED decision was reached; enroll: `--count` images were enrolled
    1   verify: the stream ended without a VERIFIED decision; enroll: the source ended first
    2   bad usage or a source that cannot be opened/read
    3   server unavailable: gave up after the retries (down, too slow, or failing with 5xx)
    4   the server refused the request in a way retrying cannot fix (unknown user: 404, other 4xx)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import cv2
import httpx
import numpy as np

EXIT_OK = 0
EXIT_NOT_REACHED = 1
EXIT_USAGE = 2
EXIT_SERVER_UNAVAILABLE = 3
EXIT_REJECTED = 4
EXIT_INTERRUPTED = 130

DEFAULT_URL = "http://127.0.0.1:8000"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

# 422 reasons that concern the request, not the frame: resending other frames cannot help.
REQUEST_ERRORS = frozenset({"invalid_user_id", "missing_field", "invalid_request", "threshold_below_floor"})

DECISION_VERIFIED = "VERIFIED"
DECISION_PENDING = "PENDING"
DECISION_NOT_VERIFIED = "NOT_VERIFIED"


# --------------------------------------------------------------------------------------------- errors


class SourceError(Exception):
    """The frame source cannot be opened or read (exit 2)."""


class TransientError(Exception):
    """A failure that may go away by itself: connection refused, timeout, 5xx, 429."""


class ServerUnavailable(Exception):
    """Retries are exhausted (exit 3)."""


class RequestRejected(Exception):
    """The server answered with a 4xx that resending cannot fix (exit 4)."""


# -------------------------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Frame:
    """One frame of the source. `position` is 0-based in source order; `name` is for humans."""

    position: int
    name: str
    image: np.ndarray  # BGR uint8, as OpenCV reads it


class FrameSource(Protocol):
    live: bool
    fps: float

    def get(self, position: int) -> Frame | None: ...

    def close(self) -> None: ...


class FolderSource:
    """A folder of still frames, in file-name order, replayed at `fps` frames per second."""

    live = False

    def __init__(self, folder: Path, fps: float) -> None:
        self.paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
        self.fps = fps

    def get(self, position: int) -> Frame | None:
        if position >= len(self.paths):
            return None
        path = self.paths[position]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError(f"cannot read image {path}")
        return Frame(position, path.name, image)

    def close(self) -> None:
        return None


class VideoSource:
    """A video file read forwards only (seeking in compressed video is slow and inexact)."""

    live = False

    def __init__(self, path: Path, fps: float | None) -> None:
        self.capture = cv2.VideoCapture(str(path))
        if not self.capture.isOpened():
            raise SourceError(f"cannot open video file {path}")
        meta_fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps or (meta_fps if meta_fps > 0 else 30.0)
        self._next = 0  # position of the frame the next read() returns

    def get(self, position: int) -> Frame | None:
        if position < self._next:
            raise ValueError("a video source only moves forwards")
        while self._next < position:  # grab() skips decoding to pixels: cheap way to drop frames
            if not self.capture.grab():
                return None
            self._next += 1
        ok, image = self.capture.read()
        if not ok or image is None:
            return None
        self._next += 1
        return Frame(position, f"frame {position}", image)

    def close(self) -> None:
        self.capture.release()


class CameraSource:
    """A live camera. A background thread keeps only the newest frame, so a slow server never makes
    the client work through a backlog of old frames: whatever was not picked up is dropped."""

    live = True

    def __init__(self, index: int) -> None:
        self.capture = cv2.VideoCapture(index)
        if not self.capture.isOpened():
            raise SourceError(f"cannot open camera {index}")
        meta_fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = meta_fps if meta_fps > 0 else 30.0
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reader, name="camera-reader", daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        position = 0
        while not self._stop.is_set():
            ok, image = self.capture.read()
            with self._cond:
                if not ok or image is None:
                    self._ended = True
                    self._cond.notify_all()
                    return
                self._latest = Frame(position, f"camera frame {position}", image)
                self._cond.notify_all()
            position += 1

    def get(self, position: int) -> Frame | None:
        """The newest frame at or after `position`; None when the camera stopped delivering."""
        with self._cond:
            while not self._ended and (self._latest is None or self._latest.position < position):
                if not self._cond.wait(timeout=5.0):
                    raise SourceError("the camera delivered no frame for 5 s")
            if self._latest is None or self._latest.position < position:
                return None
            return self._latest

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        self.capture.release()


def open_source(spec: str, fps: float | None) -> FrameSource:
    """`spec` is a camera index, a folder of frames or a video file."""
    if spec.isdigit():
        return CameraSource(int(spec))
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, fps or 30.0)
    if path.is_file():
        return VideoSource(path, fps)
    raise SourceError(f"source {spec!r} is neither a camera index, a folder nor a file")


# ------------------------------------------------------------------------------------------ scheduler


@dataclass
class FrameScheduler:
    """Picks the next frame to send and counts the frames passed over because the client was busy.

    Real time: a file or folder is replayed on the wall clock from the first pick; the frame sent is the
    one "on screen" now, and at most one frame per `min_interval`. Offline (`realtime=False`): every
    `step`-th frame, no waiting, nothing dropped, so a run is reproducible.
    """

    source: FrameSource
    realtime: bool = True
    min_interval: float = 0.0
    step: int = 1
    start: int = 0
    stop: int | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    dropped: int = 0
    _t0: float | None = None
    _last_position: int | None = None
    _last_pick: float = -math.inf

    def next(self) -> Frame | None:
        if not self.realtime:
            position = self.start if self._last_position is None else self._last_position + self.step
            return self._take(position, count_drops=False)
        if self._last_position is None:
            self._t0 = self.clock()
            self._last_pick = self._t0
            return self._take(self.start, count_drops=False)
        earliest = self._last_pick + self.min_interval
        if not self.source.live:
            assert self._t0 is not None
            earliest = max(earliest, self._t0 + (self._last_position + 1 - self.start) / self.source.fps)
        now = self.clock()
        if now < earliest:
            self.sleep(earliest - now)
            now = max(self.clock(), earliest)
        self._last_pick = now
        if self.source.live:
            position = self._last_position + 1  # the camera returns its newest frame at or after this
        else:
            assert self._t0 is not None
            position = max(self.start + int((now - self._t0) * self.source.fps), self._last_position + 1)
        return self._take(position, count_drops=True)

    def _take(self, position: int, *, count_drops: bool) -> Frame | None:
        if self.stop is not None and position >= self.stop:
            return None
        frame = self.source.get(position)
        if frame is None:
            return None
        if count_drops and self._last_position is not None:
            self.dropped += frame.position - self._last_position - 1
        self._last_position = frame.position
        return frame


# ------------------------------------------------------------------------------------ decision window


@dataclass
class SlidingWindow:
    """The seed's real-time rule: verified when at least `need` of the last `size` frames verified."""

    size: int
    need: int
    results: deque[bool] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.size < 1 or not 1 <= self.need <= self.size:
            raise ValueError("need 1 <= min_verified <= window")
        self.results = deque(self.results, maxlen=self.size)

    def push(self, verified: bool) -> str:
        self.results.append(verified)
        return self.decision

    @property
    def verified(self) -> int:
        return sum(self.results)

    @property
    def decision(self) -> str:
        if self.verified >= self.need:
            return DECISION_VERIFIED
        if self.verified + (self.size - len(self.results)) >= self.need:
            return DECISION_PENDING  # the window is not full yet and could still get there
        return DECISION_NOT_VERIFIED


# ------------------------------------------------------------------------------------------ HTTP side


@dataclass
class RetryPolicy:
    """Exponential backoff over *consecutive* failures; one success resets it."""

    retries: int = 5
    base: float = 0.5
    cap: float = 8.0
    failures: int = 0

    def failed(self, reason: str) -> float:
        """Record a failure; return the delay before the next attempt, or raise when exhausted."""
        self.failures += 1
        if self.failures > self.retries:
            raise ServerUnavailable(f"{reason}; gave up after {self.retries} retries")
        return min(self.base * 2 ** (self.failures - 1), self.cap)

    def succeeded(self) -> None:
        self.failures = 0


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip() or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        return detail if isinstance(detail, str) else json.dumps(detail)[:300]
    return json.dumps(body)[:300]


def _reason(response: httpx.Response) -> str | None:
    """The service's stable error code (`{"detail": ..., "reason": ...}`), if the body has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None


def post(
    client: httpx.Client, path: str, data: dict[str, str], files: list[tuple[str, Any]]
) -> httpx.Response:
    """One attempt. Transient failures become `TransientError` with a one-line reason."""
    try:
        response = client.post(path, data=data, files=files)
    except httpx.TimeoutException:
        raise TransientError(f"no answer from {client.base_url} within {client.timeout.read} s") from None
    except httpx.TransportError as exc:
        raise TransientError(f"cannot reach {client.base_url} ({type(exc).__name__}: {exc})") from None
    if response.status_code == 409 and _reason(response) == "conflict":  # concurrent change: resend
        raise TransientError(f"{client.base_url}{path} answered HTTP 409: {_detail(response)}")
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(
            f"{client.base_url}{path} answered HTTP {response.status_code}: {_detail(response)}"
        )
    return response


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SourceError("JPEG encoding failed")
    return buffer.tobytes()


# ------------------------------------------------------------------------------------------- display


def annotate(image: np.ndarray, box: Sequence[int] | None, label: str, ok: bool | None) -> np.ndarray:
    """Draw the face box and a verdict banner on a copy of the frame."""
    out = image.copy()
    color = (0, 200, 0) if ok else ((0, 0, 230) if ok is False else (0, 200, 230))
    cv2.rectangle(out, (0, 0), (out.shape[1], 28), (0, 0, 0), -1)
    cv2.putText(out, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, color, 2, cv2.LINE_AA)
    if box is not None and len(box) == 4:  # after the banner, so a face near the top stays visible
        x, y, w, h = (int(v) for v in box)
        cv2.rectangle(out, (x, y), (x + w, y + h), color, 2)
    return out


class Display:
    """Shows annotated frames when a display and a GUI build of OpenCV both exist.

    opencv-python-headless has no GUI backend: `namedWindow` raises `cv2.error`, which is how we detect
    it rather than parsing build information. `mode`: auto (show if possible), on (warn if impossible),
    off. `annotate_dir` additionally writes every annotated frame as JPEG (headless kiosks, audits).
    """

    WINDOW = "faceverify"

    def __init__(self, mode: str, annotate_dir: Path | None, err: TextIO) -> None:
        self.enabled = False
        self.annotate_dir = annotate_dir
        if annotate_dir is not None:
            annotate_dir.mkdir(parents=True, exist_ok=True)
        if mode == "off":
            return
        has_display = sys.platform in ("win32", "darwin") or bool(
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
        )
        reason = "no display (DISPLAY/WAYLAND_DISPLAY unset)"
        if has_display:
            try:
                cv2.namedWindow(self.WINDOW, cv2.WINDOW_NORMAL)
                self.enabled = True
            except cv2.error:
                reason = "this OpenCV build has no GUI (headless)"
        if not self.enabled and mode == "on":
            print(f"webcam: cannot show frames: {reason}; continuing without a window", file=err)

    def show(self, frame: Frame, box: Sequence[int] | None, label: str, ok: bool | None) -> bool:
        """Returns False when the user asked to stop (q or Esc in the window)."""
        if not self.enabled and self.annotate_dir is None:
            return True
        image = annotate(frame.image, box, label, ok)
        if self.annotate_dir is not None:
            cv2.imwrite(str(self.annotate_dir / f"{frame.position:06d}.jpg"), image)
        if self.enabled:
            cv2.imshow(self.WINDOW, image)
            key = cv2.waitKey(1) & 0xFF
            return key not in (ord("q"), 27)
        return True

    def close(self) -> None:
        if self.enabled:
            cv2.destroyWindow(self.WINDOW)


# ------------------------------------------------------------------------------------------ the runs


@dataclass
class Stats:
    mode: str
    requests: int = 0
    answered: int = 0
    failed_attempts: int = 0
    frames_verified: int = 0
    no_face: int = 0
    enrolled: int = 0
    rejected: int = 0
    decision: str = DECISION_PENDING
    ever_verified: bool = False
    dropped: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self, outcome: str) -> dict[str, Any]:
        common: dict[str, Any] = {
            "event": "summary",
            "mode": self.mode,
            "outcome": outcome,
            "requests": self.requests,
            "answered": self.answered,
            "failed_attempts": self.failed_attempts,
            "dropped": self.dropped,
            "elapsed_s": round(time.monotonic() - self.started, 2),
        }
        if self.mode == "verify":
            common.update(
                frames_verified=self.frames_verified,
                no_face=self.no_face,
                decision=self.decision,
                ever_verified=self.ever_verified,
            )
        else:
            common.update(enrolled=self.enrolled, rejected=self.rejected)
        return common


class Reporter:
    """One line per event on stdout: `key=value` for people, or JSON lines with `--json` for scripts."""

    def __init__(self, as_json: bool, out: TextIO, err: TextIO) -> None:
        self.as_json = as_json
        self.out = out
        self.err = err

    def event(self, record: dict[str, Any]) -> None:
        if self.as_json:
            line = json.dumps(record)
        else:
            parts = []
            for key, value in record.items():
                if value is None:
                    continue
                if isinstance(value, bool):
                    value = "yes" if value else "no"
                elif isinstance(value, float):
                    value = f"{value:.3f}"
                elif isinstance(value, list | tuple):
                    value = "[" + ",".join(str(v) for v in value) + "]"
                parts.append(f"{key}={value}")
            line = " ".join(parts)
        print(line, file=self.out, flush=True)

    def warn(self, message: str) -> None:
        print(f"webcam: {message}", file=self.err, flush=True)


def _scheduler(args: argparse.Namespace, source: FrameSource, min_interval: float) -> FrameScheduler:
    return FrameScheduler(
        source,
        realtime=not args.no_realtime,
        min_interval=min_interval,
        step=args.step,
        start=args.start,
        stop=args.stop,
    )


def _http_client(args: argparse.Namespace) -> httpx.Client:
    timeout = httpx.Timeout(args.timeout, connect=min(args.timeout, 5.0))
    headers = {"X-API-Key": args.api_key} if getattr(args, "api_key", None) else {}
    return httpx.Client(base_url=args.url.rstrip("/"), timeout=timeout, headers=headers)


def _retry(
    exc: TransientError, policy: RetryPolicy, stats: Stats, reporter: Reporter, sleep: Callable[[float], None]
) -> None:
    stats.failed_attempts += 1
    delay = policy.failed(str(exc))  # raises ServerUnavailable when exhausted
    reporter.warn(f"{exc}; retry {policy.failures}/{policy.retries} in {delay:.1f} s")
    sleep(delay)


def run_verify(args: argparse.Namespace, reporter: Reporter, stats: Stats, display: Display) -> int:
    window = SlidingWindow(args.window, args.min_verified)
    policy = RetryPolicy(args.retries, args.backoff, args.backoff_max)
    source = open_source(args.source, args.source_fps)
    scheduler = _scheduler(args, source, 1.0 / args.fps if args.fps > 0 else 0.0)
    try:
        with _http_client(args) as client:
            retry_frame: Frame | None = None
            while True:
                frame = retry_frame or scheduler.next()
                retry_frame = None
                stats.dropped = scheduler.dropped
                if frame is None:
                    break
                jpeg = encode_jpeg(frame.image, args.jpeg_quality)
                stats.requests += 1
                try:
                    response = post(
                        client,
                        "/verify",
                        {"user_id": args.user_id},
                        [("image", ("frame.jpg", jpeg, "image/jpeg"))],
                    )
                except TransientError as exc:
                    _retry(exc, policy, stats, reporter, time.sleep)
                    if not scheduler.realtime:
                        retry_frame = frame  # deterministic runs must not silently skip a frame
                    continue
                policy.succeeded()
                stats.answered += 1
                record, box, frame_ok = _verify_record(args, frame, response)
                stats.no_face += record["result"] == "no_face"
                stats.frames_verified += bool(frame_ok)
                stats.decision = window.push(bool(frame_ok))
                stats.ever_verified = stats.ever_verified or stats.decision == DECISION_VERIFIED
                record.update(
                    window=f"{window.verified}/{len(window.results)}",
                    need=window.need,
                    decision=stats.decision,
                )
                reporter.event(record)
                label = f"{stats.decision} {record['result']} sim={record.get('similarity') or 0:.2f}"
                verdict = None if stats.decision == DECISION_PENDING else stats.decision == DECISION_VERIFIED
                keep_going = display.show(frame, box, label, verdict)
                if not keep_going or (args.until_verified and stats.decision == DECISION_VERIFIED):
                    break
    finally:
        stats.dropped = scheduler.dropped
        source.close()
    return EXIT_OK if stats.ever_verified else EXIT_NOT_REACHED


def _verify_record(
    args: argparse.Namespace, frame: Frame, response: httpx.Response
) -> tuple[dict[str, Any], list[int] | None, bool]:
    """Turn one /verify answer into a report record; raise RequestRejected on answers we cannot use."""
    record: dict[str, Any] = {"event": "verify", "frame": frame.position, "name": frame.name}
    if response.status_code == 200:
        body = response.json()
        box = (body.get("face") or {}).get("box")
        verified = bool(body.get("verified"))
        record.update(
            result="verified" if verified else "rejected",
            similarity=body.get("best_similarity"),
            votes=f"{body.get('votes')}/{body.get('comparisons')}",
            box=box,
        )
        return record, box, verified
    reason = _reason(response)
    if response.status_code == 422 and reason not in REQUEST_ERRORS:
        # No usable face in this frame (or an undecodable frame): it simply does not count as verified.
        record.update(
            result="no_face" if reason == "no_face" else "unusable", reason=reason or _detail(response)
        )
        return record, None, False
    if response.status_code == 404:
        raise RequestRejected(f"user {args.user_id!r} is not enrolled at {args.url} (HTTP 404)")
    raise RequestRejected(f"/verify answered HTTP {response.status_code}: {_detail(response)}")


def run_enroll(args: argparse.Namespace, reporter: Reporter, stats: Stats, display: Display) -> int:
    policy = RetryPolicy(args.retries, args.backoff, args.backoff_max)
    source = open_source(args.source, args.source_fps)
    scheduler = _scheduler(args, source, args.every)
    try:
        with _http_client(args) as client:
            batch: list[Frame] = []
            while stats.enrolled < args.count:
                if not batch:  # after a transient failure the same batch is resent
                    while len(batch) < min(args.batch, args.count - stats.enrolled):
                        frame = scheduler.next()
                        if frame is None:
                            break
                        batch.append(frame)
                    stats.dropped = scheduler.dropped
                    if not batch:
                        break
                jpegs = [encode_jpeg(frame.image, args.jpeg_quality) for frame in batch]
                files = [
                    ("images", (_upload_name(frame), data, "image/jpeg"))
                    for frame, data in zip(batch, jpegs, strict=True)
                ]
                stats.requests += 1
                try:
                    response = post(client, "/enroll", {"user_id": args.user_id}, files)
                except TransientError as exc:
                    _retry(exc, policy, stats, reporter, time.sleep)
                    if scheduler.realtime:
                        batch = []  # a live client takes fresh frames rather than resending old ones
                    continue
                policy.succeeded()
                stats.answered += 1
                _enroll_answer(args, batch, jpegs, response, reporter, stats, display)
                batch = []
    finally:
        stats.dropped = scheduler.dropped
        source.close()
    return EXIT_OK if stats.enrolled >= args.count else EXIT_NOT_REACHED


def _upload_name(frame: Frame) -> str:
    """The multipart file name: the server reports rejected images by it."""
    return f"{Path(frame.name).stem.replace(' ', '_')}.jpg"


def _enroll_answer(
    args: argparse.Namespace,
    batch: list[Frame],
    jpegs: list[bytes],
    response: httpx.Response,
    reporter: Reporter,
    stats: Stats,
    display: Display,
) -> None:
    """Match the server's verdicts back to frames: accepted ones by sha256, rejected ones by file name."""
    if response.status_code not in (201, 422) or (
        response.status_code == 422 and _reason(response) in REQUEST_ERRORS
    ):
        raise RequestRejected(f"/enroll answered HTTP {response.status_code}: {_detail(response)}")
    try:
        body = response.json()
    except ValueError:
        body = {}
    if isinstance(body.get("detail"), dict):  # FastAPI puts a structured 422 body under "detail"
        body = body["detail"]
    enrolled = {item.get("sha256"): item for item in body.get("enrolled", []) if isinstance(item, dict)}
    reasons = {
        item.get("filename"): item.get("reason")
        for item in body.get("rejected", [])
        if isinstance(item, dict)
    }
    for frame, data in zip(batch, jpegs, strict=True):
        digest = hashlib.sha256(data).hexdigest()
        item = enrolled.get(digest)
        record: dict[str, Any] = {"event": "enroll", "frame": frame.position, "name": frame.name}
        if item is not None or (response.status_code == 201 and len(batch) == 1 and enrolled):
            item = item or next(iter(enrolled.values()))
            stats.enrolled += 1
            record.update(
                result="enrolled", image_id=item.get("image_id"), progress=f"{stats.enrolled}/{args.count}"
            )
            ok = True
        else:
            stats.rejected += 1
            reason = reasons.get(_upload_name(frame))
            if reason is None and len(batch) == 1:
                reason = next(iter(reasons.values()), None) or _detail(response)
            record.update(result="rejected", reason=reason, progress=f"{stats.enrolled}/{args.count}")
            ok = False
        reporter.event(record)
        display.show(frame, None, f"{record['result']} {stats.enrolled}/{args.count}", ok)


# ---------------------------------------------------------------------------------------------- CLI


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("FACEVERIFY_URL", DEFAULT_URL),
        help="service base URL (default: $FACEVERIFY_URL or %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("FACEVERIFY_API_KEY"),
        help="API key sent as X-API-Key (default: $FACEVERIFY_API_KEY; prefer the variable, argv is visible)",
    )
    parser.add_argument("--user-id", required=True, help="the user to enrol or verify")
    parser.add_argument(
        "--source", required=True, help="camera index (0), video file, or folder of frames (sorted by name)"
    )
    parser.add_argument(
        "--source-fps",
        type=float,
        default=None,
        help="frame rate of a folder source (default 30) or override for a video file",
    )
    parser.add_argument("--start", type=int, default=0, help="first frame position, 0-based (default 0)")
    parser.add_argument("--stop", type=int, default=None, help="stop before this frame position")
    parser.add_argument(
        "--no-realtime",
        action="store_true",
        help="file/folder: send every --step-th frame, no pacing, nothing dropped",
    )
    parser.add_argument("--step", type=int, default=1, help="with --no-realtime: send every Nth frame")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    parser.add_argument("--retries", type=int, default=5, help="consecutive failed attempts before giving up")
    parser.add_argument(
        "--backoff", type=_positive_float, default=0.5, help="first retry delay, doubled each time"
    )
    parser.add_argument("--backoff-max", type=_positive_float, default=8.0, help="longest retry delay")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the uploads")
    parser.add_argument(
        "--display",
        choices=("auto", "on", "off"),
        default="auto",
        help="draw box and verdict in a window (needs a display and a GUI OpenCV build)",
    )
    parser.add_argument("--annotate-dir", type=Path, default=None, help="also write annotated frames here")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout instead of key=value")


def add_modes(subparsers: Any) -> None:
    """Add the `enroll` and `verify` modes to an argparse subparsers object."""
    enroll = subparsers.add_parser(
        "enroll",
        help="enrol a user from frames of a camera, video or folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(enroll)
    enroll.add_argument("--count", type=int, default=5, help="images to enrol (default 5)")
    enroll.add_argument(
        "--every",
        type=_positive_float,
        default=0.5,
        help="seconds between candidate frames in real time (default 0.5)",
    )
    enroll.add_argument(
        "--batch", type=int, default=1, help="candidate frames per /enroll request (default 1)"
    )
    enroll.set_defaults(func=lambda args: run(args, "enroll"))

    verify = subparsers.add_parser(
        "verify",
        help="verify a user continuously over a sliding window",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(verify)
    verify.add_argument(
        "--fps",
        type=_positive_float,
        default=5.0,
        help="most requests per second in real time; 0 = as fast as the server answers",
    )
    verify.add_argument("--window", type=int, default=5, help="sliding window length N (default 5)")
    verify.add_argument(
        "--min-verified",
        type=int,
        default=3,
        help="verified when at least K of the last N frames are (default 3)",
    )
    verify.add_argument("--until-verified", action="store_true", help="stop at the first VERIFIED decision")
    verify.set_defaults(func=lambda args: run(args, "verify"))


def register(subparsers: Any) -> None:
    """Hook for the `faceverify` console script: adds `faceverify webcam enroll|verify`."""
    webcam = subparsers.add_parser(
        "webcam",
        help="stream a camera, video or frame folder to the service",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    modes = webcam.add_subparsers(dest="webcam_mode", metavar="MODE", required=True)
    add_modes(modes)


def _validate(args: argparse.Namespace, mode: str) -> str | None:
    if args.step < 1:
        return "--step must be >= 1"
    if args.start < 0 or (args.stop is not None and args.stop <= args.start):
        return "need 0 <= --start < --stop"
    if args.retries < 0 or args.timeout <= 0:
        return "--retries must be >= 0 and --timeout > 0"
    if mode == "verify" and not 1 <= args.min_verified <= args.window:
        return "need 1 <= --min-verified <= --window"
    if mode == "enroll" and (args.count < 1 or args.batch < 1):
        return "--count and --batch must be >= 1"
    return None


def run(args: argparse.Namespace, mode: str, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one mode; every failure ends in a one-line message, a summary line and an exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    reporter = Reporter(args.json, out, err)
    problem = _validate(args, mode)
    if problem:
        reporter.warn(problem)
        return EXIT_USAGE
    stats = Stats(mode)
    display = Display(args.display, args.annotate_dir, err)
    runner = run_verify if mode == "verify" else run_enroll
    try:
        code = runner(args, reporter, stats, display)
        outcome = "ok" if code == EXIT_OK else ("not_verified" if mode == "verify" else "incomplete")
    except KeyboardInterrupt:
        reporter.warn("interrupted")
        code, outcome = EXIT_INTERRUPTED, "interrupted"
    except SourceError as exc:
        reporter.warn(str(exc))
        code, outcome = EXIT_USAGE, "source_error"
    except ServerUnavailable as exc:
        reporter.warn(f"server unavailable: {exc}")
        code, outcome = EXIT_SERVER_UNAVAILABLE, "server_unavailable"
    except RequestRejected as exc:
        reporter.warn(str(exc))
        code, outcome = EXIT_REJECTED, "rejected"
    finally:
        display.close()
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while printing: still exit quietly
        reporter.event(stats.summary(outcome))
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="webcam.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    modes = parser.add_subparsers(dest="webcam_mode", metavar="MODE", required=True)
    add_modes(modes)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
