"""A live `faceverify serve` under 48 concurrent verify clients, then SIGTERM under enrolment load.

Before: no shedding (48 clients: p99 3.3 s, /health p99 0.84 s on 2 cores; 128: p99 6.2 s).
Now the heavy routes admit about a core's worth of requests plus a short queue and answer the rest
503 `overloaded` with Retry-After at once. The timed targets of the issue (accepted p99 <= 1 s,
/health p99 <= 500 ms) are measured on a quiet machine by benchmarks/bench_overload.py; here only
the functional part is asserted (only 200/503, Retry-After on every 503, each 503 is a shed,
/health always answers), since wall-clock bounds on a shared CI machine are noise.

Graceful stop: SIGTERM while enrolments run; every request gets a complete answer, the process
exits by itself, and every acknowledged (201) image is in the database and the store afterwards.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from faults_support import api_headers, lfw_bytes
from live_server import LiveService, start_service, stop_service, wait_ready

pytestmark = pytest.mark.slow

CLIENTS = 48
REQUESTS_PER_CLIENT = 5


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[LiveService]:
    tmp = tmp_path_factory.mktemp("overload")
    service = start_service(
        tmp,
        {
            "FACEVERIFY_MODEL_DIR": str(tiny_model_dir),
            "FACEVERIFY_DATA_DIR": str(tmp / "data"),
            "FACEVERIFY_ADMISSION_MAX_ACTIVE": "2",
            "FACEVERIFY_ADMISSION_MAX_QUEUED": "2",
            "FACEVERIFY_GRACEFUL_TIMEOUT_S": "30",
            # This suite measures load shedding: the per-key rate limit and the verify lockout
            # (their own 429s, tested in tests/service) are lifted so every refusal here is the shedding.
            "FACEVERIFY_RATE_LIMIT_PER_MINUTE": "0",
            "FACEVERIFY_LOCKOUT_MAX_FAILURES": "1000000",
        },
    )
    wait_ready(service)
    try:
        yield service
    finally:
        stop_service(service)


def test_48_concurrent_verifies_are_served_or_shed_with_retry_after(live: LiveService) -> None:
    photo = lfw_bytes("Tony_Blair", 2)
    enrolled = httpx.post(
        live.url + "/enroll", data={"user_id": "tony"}, headers=api_headers(),
        files={"images": ("a.jpg", photo, "image/jpeg")}, timeout=60,
    )  # fmt: skip
    assert enrolled.status_code == 201, enrolled.text
    probe = lfw_bytes("Tony_Blair", 3)
    results: list[tuple[float, int, str | None, str | None]] = []
    health_s: list[float] = []
    health_failures: list[str] = []  # a failed assert in the prober thread would only be a warning
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=live.url, timeout=60) as http:
            for _ in range(REQUESTS_PER_CLIENT):
                started = time.monotonic()
                response = http.post(
                    "/verify", data={"user_id": "tony"}, headers=api_headers(),
                    files={"image": ("p.jpg", probe, "image/jpeg")},
                )  # fmt: skip
                reason = response.json().get("reason") if response.status_code != 200 else None
                retry = response.headers.get("retry-after")
                results.append((time.monotonic() - started, response.status_code, reason, retry))
                if response.status_code == 503:
                    time.sleep(0.05)

    def health() -> None:
        try:
            with httpx.Client(base_url=live.url, timeout=30) as http:
                while not stop.is_set():
                    started = time.monotonic()
                    status = http.get("/health", headers=api_headers()).status_code
                    if status != 200:
                        health_failures.append(f"/health answered {status}")
                    health_s.append(time.monotonic() - started)
                    time.sleep(0.1)
        except Exception as exc:  # reported below
            health_failures.append(f"/health: {exc!r}")

    prober = threading.Thread(target=health)
    prober.start()
    try:
        with ThreadPoolExecutor(CLIENTS) as pool:
            for future in [pool.submit(client) for _ in range(CLIENTS)]:
                future.result()
    finally:
        stop.set()
        prober.join(timeout=60)

    assert not prober.is_alive() and not health_failures, health_failures[:5]
    assert health_s  # /health was probed (and answered 200 each time) while the load ran
    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    statuses = {status for _, status, _, _ in results}
    assert statuses <= {200, 503}, statuses
    shed = [r for r in results if r[1] == 503]
    served = [r[0] for r in results if r[1] == 200]
    assert shed and all(reason == "overloaded" and retry for _, _, reason, retry in shed)
    assert served  # the admitted ones are answered (how many depends on the machine's load)
    p99 = float(np.percentile(served, 99))
    health_p99 = float(np.percentile(health_s, 99))
    # Reported, not asserted: on a shared CI machine (load average 14 on 2 cores when this was
    # written) wall-clock bounds are noise; benchmarks/bench_overload.py records the numbers.
    print(f"\n{len(served)} served p99 {p99:.2f} s, {len(shed)} shed, /health p99 {health_p99:.3f} s")


def test_sigterm_under_load_finishes_inflight_enrolments(live: LiveService) -> None:
    people = ["Colin_Powell", "Serena_Williams", "George_W_Bush", "Gerhard_Schroeder"]
    answers: list[tuple[float, httpx.Response | Exception]] = []
    sent = threading.Barrier(len(people) + 1)
    host, port = live.url.removeprefix("http://").split(":")

    def enrol(person: str) -> None:
        """Raw socket, so the test knows the whole request is on the wire before SIGTERM."""
        # Eight photos each: with YuNet an enrolment of three was over before the signal.
        files = [("images", (f"{i}.jpg", lfw_bytes(person, i), "image/jpeg")) for i in range(1, 9)]
        request = httpx.Request(
            "POST", live.url + "/enroll", data={"user_id": person}, files=files, headers=api_headers()
        )
        head = f"POST /enroll HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() not in ("host", "connection")
        )
        try:
            with socket.create_connection((host, int(port)), timeout=60) as sock:
                sock.sendall(head.encode() + b"\r\n" + request.read())
                sent.wait(timeout=30)
                raw = b""
                while chunk := sock.recv(65536):
                    raw += chunk
            status_line, _, rest = raw.partition(b"\r\n")
            body = rest.split(b"\r\n\r\n", 1)[1]
            response = httpx.Response(int(status_line.split()[1]), content=body)
            answers.append((time.monotonic(), response))
        except (OSError, IndexError, ValueError) as exc:
            answers.append((time.monotonic(), exc))

    threads = [threading.Thread(target=enrol, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    sent.wait(timeout=30)  # every request is on the wire
    time.sleep(0.2)  # and read by the server (enrolment takes a while: they are in flight)
    sigterm_at = time.monotonic()
    live.process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=90)
    assert not [t for t in threads if t.is_alive()], "an enrolment got no answer within 90 s"
    # uvicorn finishes the graceful shutdown, then re-raises the SIGTERM it caught (exit status -15)
    assert live.process.wait(timeout=60) in (0, -signal.SIGTERM)
    log = live.log.read_text()
    assert "Waiting for application shutdown" in log and "Finished server process" in log, log[-3000:]

    errors = [a for _, a in answers if isinstance(a, Exception)]
    assert not errors, errors
    assert len(answers) == len(people), answers  # every request was answered (none died uncaught)
    responses = [(t, a) for t, a in answers if isinstance(a, httpx.Response)]
    assert {a.status_code for _, a in responses} <= {201, 503}, [a.text for _, a in responses]
    acknowledged = [a.json() for t, a in responses if a.status_code == 201]
    assert any(t > sigterm_at for t, a in responses if a.status_code == 201), "nothing was in flight"

    data = Path(live.log).parent / "data"
    with sqlite3.connect(data / "faceverify.db") as db:
        stored = {
            (user, image_id): path
            for user, image_id, path in db.execute(
                "SELECT users.user_id, images.id, images.path"
                " FROM images JOIN users ON users.id = images.user_pk"
            )
        }
    for body in acknowledged:
        for image in body["enrolled"]:
            key = (body["user_id"], image["image_id"])
            assert key in stored, f"acknowledged {key} is not in the database"
            assert (data / "images" / stored[key]).is_file(), f"acknowledged {key} has no file"
