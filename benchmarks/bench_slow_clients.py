"""Which HTTP server cuts off slow and hostile clients: uvicorn, uvicorn + our guard, hypercorn, granian.

Why: uvicorn has no request-head read timeout, so slow-loris connections live for ever. Before
choosing (service/runtime/server.py says what we chose), each candidate serves the same tiny ASGI app
(reads the whole body, answers 200) with comparable settings (keep-alive 5 s, head/read timeout
10 s where the server has one), and three probes run against it:

* slow-loris: N connections each send one byte of an endless header every second;
* lying Content-Length: a POST promising 1,000 bytes more than it sends, then silence;
* idle: N connections that send nothing.

For each, the number the server closed (or answered) and when, within a 30 s observation window.
"ours" is uvicorn + `service.runtime.server.GuardedH11Protocol` + `service.http.guard` (the body
deadline lives in the app), exactly as `faceverify serve` configures them.

    PYTHONPATH=.:/tmp/robust-servers .venv/bin/python benchmarks/bench_slow_clients.py \\
        --out benchmarks/results/slow_clients.txt

hypercorn and granian are not dependencies of the project: install them into a scratch folder
(`pip install --target /tmp/robust-servers hypercorn granian`) to re-run their rows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import platform
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WINDOW_S = 30.0


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The served app: drain the body, answer 200."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


OURS = """
import sys
sys.path.insert(0, {bench!r})
from bench_slow_clients import app
from service.runtime.config import Settings
from service.http.guard import RequestGuardMiddleware
from service.runtime.server import make_config, raise_fd_limit
import uvicorn
settings = Settings(header_timeout_s=10, body_idle_timeout_s=5, keep_alive_s=5)
raise_fd_limit()
guarded = RequestGuardMiddleware(app, settings)
uvicorn.Server(make_config(guarded, settings, "127.0.0.1", {port}, "warning")).run()
"""


def server_command(name: str, port: int) -> list[str]:
    py = sys.executable
    if name == "uvicorn":
        return [py, "-m", "uvicorn", "bench_slow_clients:app", "--port", str(port),
                "--timeout-keep-alive", "5", "--log-level", "warning"]  # fmt: skip
    if name == "ours":
        return [py, "-c", OURS.format(bench=str(Path(__file__).parent), port=port)]
    if name == "hypercorn":
        return [py, "-m", "hypercorn", "bench_slow_clients:app", "--bind", f"127.0.0.1:{port}",
                "--keep-alive", "5", "--read-timeout", "10", "--log-level", "warning"]  # fmt: skip
    if name == "granian":
        return [py, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--http", "1", "--http1-header-read-timeout", "10000", "--log-level", "warning",
                "bench_slow_clients:app"]  # fmt: skip
    raise ValueError(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
                if sock.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server did not come up")


def observe(socks: list[socket.socket], tick: Any = None) -> list[float | None]:
    """Seconds until each socket was closed (EOF/reset) or answered, None if still open after WINDOW_S."""
    selector = selectors.DefaultSelector()
    started = time.monotonic()
    ended: list[float | None] = [None] * len(socks)
    for i, sock in enumerate(socks):
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, i)
    next_tick = started + 1.0
    while time.monotonic() - started < WINDOW_S and any(e is None for e in ended):
        for key, _ in selector.select(timeout=0.1):
            i = key.data
            try:
                key.fileobj.recv(65536)  # type: ignore[union-attr]
            except BlockingIOError:
                continue
            except OSError:
                pass
            ended[i] = time.monotonic() - started  # closed, reset, or answered: cut off either way
            selector.unregister(key.fileobj)
        if tick is not None and time.monotonic() >= next_tick:
            next_tick += 1.0
            for i, sock in enumerate(socks):
                if ended[i] is None:
                    with contextlib.suppress(OSError):
                        tick(sock)
    return ended


def summarise(ended: list[float | None]) -> str:
    cut = sorted(e for e in ended if e is not None)
    if not cut:
        return f"0/{len(ended)} cut off in {WINDOW_S:.0f} s"
    return f"{len(cut)}/{len(ended)} cut off, median {cut[len(cut) // 2]:.1f} s, last {cut[-1]:.1f} s"


def run_probes(port: int, n: int) -> dict[str, str]:
    results = {}
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    for sock in socks:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: b\r\nX-Slow: ")
    results["slow-loris"] = summarise(observe(socks, tick=lambda s: s.send(b"a")))
    for sock in socks:
        sock.close()

    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST / HTTP/1.1\r\nHost: b\r\nContent-Length: 1010\r\n\r\n0123456789")
    results["lying Content-Length"] = summarise(observe([sock]))
    sock.close()

    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    results["idle"] = summarise(observe(socks))
    for sock in socks:
        sock.close()
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--servers", default="uvicorn,ours,hypercorn,granian")
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [
        f"# bench_slow_clients.py, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"load average {os.getloadavg()[0]:.1f}",
        f"# {args.connections} connections per probe, observed for {WINDOW_S:.0f} s; "
        "keep-alive 5 s, head/read timeout 10 s where the server has one",
    ]
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    for name in args.servers.split(","):
        port = free_port()
        process = subprocess.Popen(
            server_command(name, port), cwd=Path(__file__).parent, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_listening(port, process)
            for probe, summary in run_probes(port, args.connections).items():
                lines.append(f"{name:10s} {probe:22s} {summary}")
        except RuntimeError as exc:
            lines.append(f"{name:10s} not run: {exc}")
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
