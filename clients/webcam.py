"""Webcam / kiosk client of the faceverify service: stream frames to `POST /verify`, or enrol from them.

The client is deliberately thin: it never detects faces itself (that would need the server's pipeline
and TensorFlow); it sends JPEG frames over HTTP and lets the server decide. It imports only OpenCV,
NumPy and httpx so it runs on a small door or kiosk machine, standalone
(`python clients/webcam.py verify ...`) or through the project CLI (`faceverify webcam verify ...`).

This module is only the command line; the parts are reusable on their own: `clients.service_client`
(`ServiceClient`: enroll, verify, challenge, verify_liveness), `clients.sources` (camera, video,
folder), `clients.scheduler` (pacing, sliding window), `clients.display`, `clients.report`, and the
runs in `clients.runs` and `clients.liveness_run`. `--api-key` (or $FACEVERIFY_API_KEY) is sent as
the `X-API-Key` header.

Sources (`--source`): a camera index (`0`), a video file, or a folder of frames (sorted by name).

verify
    Frames are sent at a bounded rate (`--fps`). When the server is slower than the camera, frames are
    dropped, never queued: the next request always carries the newest frame. A file or folder source is
    replayed in simulated real time (frames whose time passed while a request was in flight are skipped)
    unless `--no-realtime`, which sends every `--step`-th frame deterministically (tests, batch runs).
    Each answer feeds a sliding window of the last `--window` frames; the decision is VERIFIED once at
    least `--min-verified` of them are verified (a frame without a face counts as not verified), PENDING
    while the window could still reach that, NOT_VERIFIED otherwise. One line per answered frame.

verify --liveness
    One challenge-response round instead of the stream: ask POST /liveness/challenge for the steps,
    print each step when it is due (and draw it in the window), record the burst (`--neutral-seconds`,
    then `--step-seconds` per step, at `--burst-fps`), send it to POST /verify with the challenge, and
    print the verdict (identity AND liveness). See clients/liveness_run.py.

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
    0   verify: a VERIFIED decision was reached (--liveness: identity and liveness passed);
        enroll: `--count` images were enrolled
    1   verify: the stream ended without a VERIFIED decision; enroll: the source ended first
    2   bad usage or a source that cannot be opened/read
    3   server unavailable: gave up after the retries (down, too slow, or failing with 5xx)
    4   the server refused the request in a way retrying cannot fix (unknown user: 404, other 4xx)
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

if __package__ in (None, ""):  # run as a script (python clients/webcam.py): make `clients` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients.display import Display, annotate  # noqa: E402
from clients.errors import (  # noqa: E402
    EXIT_INTERRUPTED,
    EXIT_NOT_REACHED,
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_SERVER_UNAVAILABLE,
    EXIT_USAGE,
    RequestRejected,
    ServerUnavailable,
    SourceError,
)
from clients.liveness_run import run_liveness  # noqa: E402
from clients.report import Reporter, Stats  # noqa: E402
from clients.runs import run_enroll, run_verify  # noqa: E402
from clients.service_client import API_KEY_ENV, DEFAULT_URL  # noqa: E402
from clients.sources import open_source  # noqa: E402

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOT_REACHED",
    "EXIT_OK",
    "EXIT_REJECTED",
    "EXIT_SERVER_UNAVAILABLE",
    "EXIT_USAGE",
    "annotate",
    "main",
    "open_source",
    "register",
    "run",
]


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
    parser.add_argument(
        "--api-key",
        default=None,
        help=f"sent as X-API-Key (default: ${API_KEY_ENV} when set)",
    )


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
    verify.add_argument(
        "--liveness",
        action="store_true",
        help="one challenge-response round: get steps from the server, record the burst, send it",
    )
    verify.add_argument("--burst-fps", type=float, default=6.0, help="--liveness: frames per second (6)")
    verify.add_argument(
        "--neutral-seconds", type=float, default=1.0, help="--liveness: facing the camera first (1.0)"
    )
    verify.add_argument("--step-seconds", type=float, default=2.0, help="--liveness: seconds per step (2.0)")
    verify.add_argument(
        "--burst-timeout",
        type=float,
        default=60.0,
        help="--liveness: seconds to wait for the burst's verdict (the server judges every frame; 60)",
    )
    verify.add_argument(
        "--burst-max-frames", type=int, default=48, help="--liveness: most frames sent (server limit: 48)"
    )
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
    if (
        mode == "verify"
        and args.liveness
        and (
            args.burst_fps <= 0
            or args.step_seconds <= 0
            or args.neutral_seconds < 0
            or args.burst_max_frames < 2
        )
    ):
        return (
            "--liveness needs --burst-fps and --step-seconds > 0, "
            "--neutral-seconds >= 0, --burst-max-frames >= 2"
        )
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
    liveness = mode == "verify" and bool(getattr(args, "liveness", False))
    stats = Stats("liveness" if liveness else mode)
    display = Display(args.display, args.annotate_dir, err)
    runner = run_liveness if liveness else (run_verify if mode == "verify" else run_enroll)
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
