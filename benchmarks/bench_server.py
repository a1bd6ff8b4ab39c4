"""A live `faceverify serve` for the benchmarks that need one: one start, readiness wait and key.

Why one module: the overload, soak and idle-connection benchmarks each used to start the server their
own way; they must measure the same server (SQLite in a scratch DATA_DIR, TF threads 1, per-key rate
limit off because one key drives every client) and read the admin key it creates on first start.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

FACEVERIFY = Path(sys.executable).parent / "faceverify"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    headers: dict[str, str]  # the admin key the server created
    log: Path


def start_server(
    model_dir: Path,
    scratch: Path,
    *,
    env_extra: dict[str, str] | None = None,
    log_level: str = "warning",
    preexec_fn: Callable[[], None] | None = None,
    ready_timeout_s: float = 300.0,
    command: list[str] | None = None,
) -> Server:
    """`faceverify serve` on a free loopback port, data in ``scratch/data``; returns once /ready is 200.
    ``command``: how to start the CLI instead of the venv's `faceverify` script (e.g. ``[python, "-m",
    "service.cli"]`` with PYTHONPATH in ``env_extra``, to serve another checkout's code)."""
    port = free_port()
    env = {**os.environ, "FACEVERIFY_TF_THREADS": "1", "FACEVERIFY_MODEL_DIR": str(model_dir),
           "FACEVERIFY_DATA_DIR": str(scratch / "data"), "FACEVERIFY_RATE_LIMIT_PER_MINUTE": "0",
           **(env_extra or {})}  # fmt: skip
    env.pop("FACEVERIFY_DATABASE_URL", None)  # SQLite under DATA_DIR
    log = scratch / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [*(command or [str(FACEVERIFY)]), "serve", "--host", LOOPBACK, "--port", str(port),
             "--log-level", log_level],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=scratch, preexec_fn=preexec_fn,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}"
    deadline = time.monotonic() + ready_timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/ready", timeout=2).status_code == 200:
                key = (scratch / "data" / "admin-api-key").read_text().strip()
                return Server(process, url, port, {"X-API-Key": key}, log)
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"server not ready in {ready_timeout_s:.0f} s")
