"""`faceverify serve` as a real process on a free loopback port, for tests that need a live service
(the webcam client, two replicas sharing one database). One implementation of start, readiness wait,
stop and "which model" so those tests cannot drift apart. A fresh service creates an admin API key in
DATA_DIR/admin-api-key on first start; `LiveService.api_key` / `.headers` read it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
FACEVERIFY = Path(sys.executable).parent / "faceverify"
RELEASE_MODEL = REPO / "models" / "release"  # where `make release-model` puts it (git-ignored)
READY_TIMEOUT_S = 240.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def release_model_dir() -> Path:
    """The real served model: $FACEVERIFY_TEST_MODEL_DIR, else the repo's models/release, built once
    with the README's command (into a temporary folder first, so an interrupted export leaves nothing)."""
    override = os.environ.get("FACEVERIFY_TEST_MODEL_DIR")
    if override:
        return Path(override)
    if (RELEASE_MODEL / "saved_model.pb").is_file():
        return RELEASE_MODEL
    staging = RELEASE_MODEL.parent / f".release-staging-{os.getpid()}"
    result = subprocess.run(
        [str(FACEVERIFY), "export", "--release", "--out", str(staging)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, f"release model export failed:\n{result.stdout}\n{result.stderr}"
    if not (RELEASE_MODEL / "saved_model.pb").is_file():  # another process may have won the race
        staging.rename(RELEASE_MODEL)
    return RELEASE_MODEL


@dataclass
class LiveService:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    key_file: Path  # DATA_DIR/admin-api-key, written by the service on its first start (no key yet)

    @property
    def api_key(self) -> str:
        """The admin key the service (or, with a shared database, its sibling replica) created."""
        return self.key_file.read_text().strip()

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.api_key}


def start_service(tmp: Path, env_extra: dict[str, str], name: str = "api") -> LiveService:
    """Start `faceverify serve` (output to tmp/<name>.log) without waiting; see `wait_ready`."""
    port = free_port()
    env = {**os.environ, "FACEVERIFY_TF_THREADS": "1", **env_extra}
    log = tmp / f"{name}.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(FACEVERIFY), "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp,
        )  # fmt: skip
    data_dir = Path(env.get("FACEVERIFY_DATA_DIR", "data"))
    key_file = (data_dir if data_dir.is_absolute() else tmp / data_dir) / "admin-api-key"
    return LiveService(name, f"http://127.0.0.1:{port}", process, log, key_file)


def wait_ready(service: LiveService, deadline: float | None = None) -> LiveService:
    """Poll GET /ready until 200; fail with the service's log if it exits or the deadline passes."""
    deadline = deadline if deadline is not None else time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise AssertionError(
                f"{service.name} exited with {service.process.returncode}:\n{service.log.read_text()[-4000:]}"
            )
        try:
            if httpx.get(f"{service.url}/ready", timeout=2).status_code == 200:
                return service
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    stop_service(service)
    raise AssertionError(f"{service.name} not ready in time:\n{service.log.read_text()[-4000:]}")


def stop_service(service: LiveService) -> None:
    """Ctrl-C (graceful shutdown), then kill if it does not exit within 20 s."""
    if service.process.poll() is not None:
        return
    service.process.send_signal(signal.SIGINT)
    try:
        service.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait(timeout=10)


def post_like_a_client(url: str, attempts: int = 20, **kwargs: object) -> httpx.Response:
    """POST as a well-behaved client: a 503 (overloaded, database busy) is retried after its
    Retry-After (at most `attempts` tries). Tests that send concurrent requests use this, so a
    busy box sheds load exactly as the service promises instead of failing the test (issue 18)."""
    answer = httpx.post(url, **kwargs)  # type: ignore[arg-type]
    for _ in range(attempts - 1):
        if answer.status_code != 503:
            break
        time.sleep(min(float(answer.headers.get("Retry-After", "1")), 10.0))
        answer = httpx.post(url, **kwargs)  # type: ignore[arg-type]
    return answer
