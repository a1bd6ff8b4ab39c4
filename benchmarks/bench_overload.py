"""Overload and soak runs against a live `faceverify serve` (admission control, issue 8).

* overload: C concurrent clients (default 48) verify for D seconds; a prober GETs /health every
  100 ms. Reports the 200s (count, p50/p99 latency), the 503s (count, all `overloaded` with
  Retry-After?), any other status or transport error, and /health p50/p99.
* soak: N verifies (default 10,000) from `--soak-clients` clients; the server's RSS is sampled
  20 times (flat = no leak) and every non-200 is counted.

The server runs as its own process (`faceverify serve` on a free loopback port, SQLite in a temp
dir, TF threads 1), with the model given (default: the release model, else the tiny test model).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_overload.py overload --out benchmarks/results/overload.txt
    PYTHONPATH=. .venv/bin/python benchmarks/bench_overload.py soak --requests 10000 \\
        --out benchmarks/results/soak.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from bench_server import start_server

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
FACEVERIFY = Path(sys.executable).parent / "faceverify"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def enrol(url: str, headers: dict[str, str]) -> bytes:
    photos = [(LFW / "Tony_Blair" / f"Tony_Blair_{i:04d}.jpg").read_bytes() for i in (1, 2, 3)]
    response = httpx.post(
        url + "/enroll", data={"user_id": "tony"}, headers=headers,
        files=[("images", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)], timeout=120,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return (LFW / "Tony_Blair" / "Tony_Blair_0010.jpg").read_bytes()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def overload(url: str, headers: dict[str, str], probe: bytes, clients: int, duration_s: float) -> list[str]:
    served: list[float] = []
    shed = {"count": 0, "without_retry_after": 0, "other_reason": 0}
    other: dict[str, int] = {}
    health: list[float] = []
    lock = threading.Lock()
    end = time.monotonic() + duration_s

    files = {"image": ("p.jpg", probe, "image/jpeg")}

    def client() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            while time.monotonic() < end:
                started = time.monotonic()
                try:
                    r = http.post("/verify", data={"user_id": "tony"}, files=files)
                except httpx.HTTPError as exc:
                    with lock:
                        other[type(exc).__name__] = other.get(type(exc).__name__, 0) + 1
                    continue
                elapsed = time.monotonic() - started
                with lock:
                    if r.status_code == 200:
                        served.append(elapsed)
                    elif r.status_code in (503, 429):
                        shed["count"] += 1
                        shed["without_retry_after"] += "retry-after" not in r.headers
                        shed["other_reason"] += r.json().get("reason") != "overloaded"
                    else:
                        other[str(r.status_code)] = other.get(str(r.status_code), 0) + 1
                if r.status_code != 200:
                    time.sleep(0.05)  # a client that honours nothing, but does not spin

    def prober() -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < end:
                started = time.monotonic()
                ok = http.get("/health").status_code == 200
                with lock:
                    health.append(time.monotonic() - started)
                    if not ok:
                        other["health-not-200"] = other.get("health-not-200", 0) + 1
                time.sleep(0.1)

    threads = [threading.Thread(target=client) for _ in range(clients)] + [threading.Thread(target=prober)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [
        f"{clients} clients for {duration_s:.0f} s",
        f"  200: {len(served)} ({len(served) / duration_s:.1f}/s), p50 {pct(served, 50):.3f} s, "
        f"p99 {pct(served, 99):.3f} s, max {max(served, default=float('nan')):.3f} s",
        f"  503/429: {shed['count']}, without Retry-After {shed['without_retry_after']}, "
        f"reason not 'overloaded' {shed['other_reason']}",
        f"  other: {other or 'none'}",
        f"  /health: {len(health)} probes, p50 {pct(health, 50) * 1000:.0f} ms, "
        f"p99 {pct(health, 99) * 1000:.0f} ms, max {max(health, default=float('nan')) * 1000:.0f} ms",
    ]


def soak(url: str, headers: dict[str, str], pid: int, probe: bytes, requests: int, clients: int) -> list[str]:
    counter = {"sent": 0, "ok": 0, "errors": 0}
    every = max(requests // 20, 1)  # 20 RSS samples
    samples: list[tuple[int, float]] = [(0, rss_mb(pid))]
    lock = threading.Lock()
    started = time.monotonic()

    files = {"image": ("p.jpg", probe, "image/jpeg")}

    def client() -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            while True:
                with lock:
                    if counter["sent"] >= requests:
                        return
                    counter["sent"] += 1
                try:
                    r = http.post("/verify", data={"user_id": "tony"}, files=files)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    counter["ok" if ok else "errors"] += 1
                    done = counter["ok"] + counter["errors"]
                    if done % every == 0:
                        samples.append((done, rss_mb(pid)))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    rss = [mb for _, mb in samples]
    warmup = requests // 10
    after_warmup = [mb for n, mb in samples if n >= warmup] or rss
    return [
        f"{requests} verifies from {clients} clients in {elapsed:.0f} s: {counter['ok']} ok, "
        f"{counter['errors']} not 200",
        f"  server RSS MB: start {rss[0]:.0f}, after {warmup} {after_warmup[0]:.0f}, end {rss[-1]:.0f}, "
        f"max {max(rss):.0f} (growth after warm-up {rss[-1] - after_warmup[0]:+.0f} MB)",
        "  samples (requests: MB): " + ", ".join(f"{n}: {mb:.0f}" for n, mb in samples),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["overload", "soak"])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--soak-clients", type=int, default=2)
    parser.add_argument(
        "--admission", default="", help="ACTIVE,QUEUED overrides (e.g. 1000,1000: admission control off)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faceverify-overload-") as tmp:
        overrides = {}
        if args.admission:
            active, queued = args.admission.split(",")
            overrides = {"FACEVERIFY_ADMISSION_MAX_ACTIVE": active, "FACEVERIFY_ADMISSION_MAX_QUEUED": queued}
        admission = f"active,queued = {args.admission}" if args.admission else "default (= core count)"
        server = start_server(args.model_dir, Path(tmp), env_extra=overrides)
        process, url, headers = server.process, server.url, server.headers
        try:
            probe = enrol(url, headers)
            header = [
                f"# bench_overload.py {args.mode}, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, "
                f"model {args.model_dir}",
                f"# machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
                f"load average at start {os.getloadavg()[0]:.1f} (shared machine)",
                f"# server: faceverify serve, admission {admission}, wait 0.5 s, TF threads 1, SQLite, "
                "per-key rate limit off",
            ]
            if args.mode == "overload":
                body = overload(url, headers, probe, args.clients, args.duration)
            else:
                body = soak(url, headers, process.pid, probe, args.requests, args.soak_clients)
            body.append(f"# load average at end {os.getloadavg()[0]:.1f}")
        finally:
            process.terminate()
            process.wait(timeout=60)
    text = "\n".join(header + body) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
