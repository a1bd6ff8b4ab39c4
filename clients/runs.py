"""The client's two streaming runs: `verify` (sliding window over frames) and `enroll` (candidate frames).

Each run takes the parsed options, a `Reporter`, a `Stats` and a `Display`, and returns an exit code;
failures it cannot handle are raised as the exceptions of `clients.errors` (the CLI maps them).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from clients.display import Display
from clients.errors import EXIT_NOT_REACHED, EXIT_OK, RequestRejected, TransientError
from clients.report import Reporter, Stats
from clients.scheduler import DECISION_PENDING, DECISION_VERIFIED, FrameScheduler, SlidingWindow
from clients.service_client import REQUEST_ERRORS, RetryPolicy, ServiceClient, detail_of, reason_of
from clients.sources import Frame, FrameSource, encode_jpeg, open_source


def scheduler_for(args: argparse.Namespace, source: FrameSource, min_interval: float) -> FrameScheduler:
    return FrameScheduler(
        source,
        realtime=not args.no_realtime,
        min_interval=min_interval,
        step=args.step,
        start=args.start,
        stop=args.stop,
    )


def service_client(args: argparse.Namespace) -> ServiceClient:
    return ServiceClient(args.url, args.timeout, args.api_key)


def retry(
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
    scheduler = scheduler_for(args, source, 1.0 / args.fps if args.fps > 0 else 0.0)
    try:
        with service_client(args) as client:
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
                    response = client.verify(args.user_id, jpeg)
                except TransientError as exc:
                    retry(exc, policy, stats, reporter, time.sleep)
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
    reason = reason_of(response)
    if response.status_code == 422 and reason not in REQUEST_ERRORS:
        # No usable face in this frame (or an undecodable frame): it simply does not count as verified.
        record.update(
            result="no_face" if reason == "no_face" else "unusable", reason=reason or detail_of(response)
        )
        return record, None, False
    if response.status_code == 404:
        raise RequestRejected(f"user {args.user_id!r} is not enrolled at {args.url} (HTTP 404)")
    raise RequestRejected(f"/verify answered HTTP {response.status_code}: {detail_of(response)}")


def run_enroll(args: argparse.Namespace, reporter: Reporter, stats: Stats, display: Display) -> int:
    policy = RetryPolicy(args.retries, args.backoff, args.backoff_max)
    source = open_source(args.source, args.source_fps)
    scheduler = scheduler_for(args, source, args.every)
    try:
        with service_client(args) as client:
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
                named = [(_upload_name(frame), data) for frame, data in zip(batch, jpegs, strict=True)]
                stats.requests += 1
                try:
                    response = client.enroll(args.user_id, named)
                except TransientError as exc:
                    retry(exc, policy, stats, reporter, time.sleep)
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
        response.status_code == 422 and reason_of(response) in REQUEST_ERRORS
    ):
        raise RequestRejected(f"/enroll answered HTTP {response.status_code}: {detail_of(response)}")
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
                reason = next(iter(reasons.values()), None) or detail_of(response)
            record.update(result="rejected", reason=reason, progress=f"{stats.enrolled}/{args.count}")
            ok = False
        reporter.event(record)
        display.show(frame, None, f"{record['result']} {stats.enrolled}/{args.count}", ok)
