"""`faceverify webcam verify --liveness`: ask the server for a challenge, prompt each step, record the
burst, send it, report the server's verdict.

The client only records and relays: the steps come from the server and the server judges the frames,
so a tampered client gains nothing. Recording follows a time plan: `--neutral-seconds` facing the
camera, then `--step-seconds` per step, at `--burst-fps` frames per second; the step being asked is
printed (and drawn on the window) when its time starts. A file or folder source with
`--no-realtime` is read as if recorded at `--burst-fps` (every `--step`-th frame from `--start`), which
is how the tests and benchmarks replay recorded bursts.

Exit codes are the verify ones: 0 verified (identity and liveness), 1 not verified (including a
failed liveness check), 3 server unavailable, 4 a refusal retrying cannot fix (unknown user, a used,
expired or foreign challenge), 2 a source that cannot be read.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from clients.display import Display
from clients.errors import EXIT_NOT_REACHED, EXIT_OK, RequestRejected, SourceError, TransientError
from clients.report import Reporter, Stats
from clients.runs import retry, scheduler_for, service_client
from clients.service_client import RetryPolicy, ServiceClient, detail_of, reason_of
from clients.sources import Frame, FrameSource, encode_jpeg, open_source

INSTRUCTIONS = {
    "neutral": "look straight at the camera",
    "turn_left": "turn your head to YOUR left, then back",
    "turn_right": "turn your head to YOUR right, then back",
    "look_up": "look up, then back",
    "look_down": "look down, then back",
    "move_closer": "move closer to the camera",
    # Actions a photo cannot perform; held long enough (~1/2 s) that a 6 frames/s burst sees them.
    "blink": "close your eyes for a moment, then open them",
    "open_mouth": "open your mouth wide, then close it",
}
# Refusals of the burst that mean "this attempt did not show a live, verified user" (exit 1), as
# opposed to refusals of the request itself (exit 4).
NOT_VERIFIED_REASONS = frozenset({"no_face", "too_few_frames"})


@dataclass(frozen=True)
class Phase:
    name: str
    start_s: float
    end_s: float


def burst_plan(steps: list[str], neutral_s: float, step_s: float) -> list[Phase]:
    """The recording's time plan: neutral first, then each step in the server's order."""
    phases = [Phase("neutral", 0.0, neutral_s)]
    for step in steps:
        start = phases[-1].end_s
        phases.append(Phase(step, start, start + step_s))
    return phases


def _phase_at(plan: list[Phase], t: float) -> Phase | None:
    return next((p for p in plan if p.start_s <= t < p.end_s), None)


def record_burst(
    args: argparse.Namespace, source: FrameSource, plan: list[Phase], reporter: Reporter, display: Display
) -> list[Frame]:
    """Frames over the plan: on the wall clock (camera, real-time replay), or by frame count
    (--no-realtime)."""
    realtime = not args.no_realtime
    scheduler = scheduler_for(args, source, 1.0 / args.burst_fps)
    frames: list[Frame] = []
    announced: str | None = None
    started = time.monotonic()
    while len(frames) < args.burst_max_frames:
        t = (time.monotonic() - started) if realtime else len(frames) / args.burst_fps
        phase = _phase_at(plan, t)
        if phase is None:
            break
        if phase.name != announced:
            announced = phase.name
            reporter.event(
                {"event": "step", "step": phase.name, "say": INSTRUCTIONS.get(phase.name, phase.name)}
            )
        frame = scheduler.next()
        if frame is None:
            break
        frames.append(frame)
        display.show(frame, None, INSTRUCTIONS.get(phase.name, phase.name), None)
    return frames


def _challenge(client: ServiceClient, args: argparse.Namespace, policy: RetryPolicy, stats: Stats,
               reporter: Reporter) -> dict[str, Any]:  # fmt: skip
    while True:
        stats.requests += 1
        try:
            response = client.challenge(args.user_id)
        except TransientError as exc:
            retry(exc, policy, stats, reporter, time.sleep)
            continue
        policy.succeeded()
        stats.answered += 1
        if response.status_code == 201:
            body: dict[str, Any] = response.json()
            return body
        if response.status_code == 404:
            raise RequestRejected(f"user {args.user_id!r} is not enrolled at {args.url} (HTTP 404)")
        raise RequestRejected(
            f"/liveness/challenge answered HTTP {response.status_code}: {detail_of(response)}"
        )


def run_liveness(args: argparse.Namespace, reporter: Reporter, stats: Stats, display: Display) -> int:
    policy = RetryPolicy(args.retries, args.backoff, args.backoff_max)
    source = open_source(args.source, args.source_fps)
    try:
        with service_client(args) as client:
            while True:
                challenge = _challenge(client, args, policy, stats, reporter)
                steps = [str(s) for s in challenge["steps"]]
                reporter.event(
                    {"event": "challenge", "steps": steps, "expires_in_s": challenge.get("expires_in_s")}
                )
                plan = burst_plan(steps, args.neutral_seconds, args.step_seconds)
                frames = record_burst(args, source, plan, reporter, display)
                if not frames:
                    raise SourceError("the source delivered no frame for the burst")
                jpegs = [encode_jpeg(f.image, args.jpeg_quality) for f in frames]
                stats.requests += 1
                try:
                    response = client.verify_liveness(
                        args.user_id,
                        str(challenge["challenge_id"]),
                        jpegs,
                        max(args.timeout, args.burst_timeout),
                    )
                except TransientError as exc:
                    retry(exc, policy, stats, reporter, time.sleep)  # a new challenge, a new burst
                    continue
                policy.succeeded()
                stats.answered += 1
                return _verdict(args, frames, response, reporter, stats)
    finally:
        source.close()


def _verdict(args: argparse.Namespace, frames: list[Frame], response: Any, reporter: Reporter,
             stats: Stats) -> int:  # fmt: skip
    record: dict[str, Any] = {"event": "liveness", "frames": len(frames)}
    reason = reason_of(response)
    if response.status_code == 200:
        body = response.json()
        liveness = body.get("liveness") or {}
        stats.ever_verified = bool(body.get("verified"))
        stats.liveness_passed = bool(liveness.get("passed"))
        stats.liveness_reason = liveness.get("reason")
        stats.decision = "VERIFIED" if stats.ever_verified else "NOT_VERIFIED"
        record.update(
            verified=stats.ever_verified,
            identity=f"{body.get('votes')}/{body.get('comparisons')}",
            similarity=body.get("best_similarity"),
            liveness_passed=stats.liveness_passed,
            liveness_reason=stats.liveness_reason,
            checks=liveness.get("checks") if args.json else None,
        )
        reporter.event(record)
        return EXIT_OK if stats.ever_verified else EXIT_NOT_REACHED
    if response.status_code in (413, 422) and reason in NOT_VERIFIED_REASONS:
        stats.liveness_passed, stats.liveness_reason = False, reason
        record.update(verified=False, liveness_passed=False, liveness_reason=reason)
        reporter.event(record)
        return EXIT_NOT_REACHED
    if response.status_code == 404 and reason == "unknown_user":
        raise RequestRejected(f"user {args.user_id!r} is not enrolled at {args.url} (HTTP 404)")
    raise RequestRejected(f"/verify answered HTTP {response.status_code} ({reason}): {detail_of(response)}")
