"""N idle TCP connections (default 20,000) held against a live `faceverify serve` (issue 8).

The issue measured that ~20,000 idle connections exhausted the server's file descriptors and took
it down, writing 124 MB of "accept() out of system resource" log in 25 s. This run reproduces the
load and reports what the server does with it:

1. start `faceverify serve` on a free loopback port (SQLite and the image store in a temp dir, the
   admin key read from DATA_DIR/admin-api-key) and enrol one user with three LFW photos;
2. raise the client's RLIMIT_NOFILE (soft to hard; the hard limit too where the process may, i.e.
   root with CAP_SYS_RESOURCE) and spread the N sockets over client worker processes of at most
   `--per-process` sockets each, so the run also works where the hard limit is below N;
3. open N TCP connections to 127.0.0.1 in batches (round-robin over the workers), sending nothing,
   and hold them for `--hold-s` seconds after the last one; after each batch, and every
   `--probe-every-s` while they are held, a NEW connection asks GET /health and another POSTs a
   verify with the admin key (what a load balancer and a real client would do);
4. sample the server's open fds (/proc/PID/fd) and its log size throughout; the workers note when
   the server closed each idle socket; then close everything and stop the server.

Only loopback addresses are ever used. The run is bounded: `--max-s` (default 600) arms an alarm
that ends it (closing the sockets and stopping the server) whatever happens. It is I/O, not CPU.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_idle_connections.py \\
        --out benchmarks/results/idle_connections.txt
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime as dt
import errno
import multiprocessing
import os
import platform
import re
import resource
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path

import httpx
import numpy as np
from bench_server import LOOPBACK, Server, start_server  # LOOPBACK: the only address this benchmark ever uses

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
LOG_NEEDLES = ("connection cap", "accept()", "Too many open files", "Traceback")


def default_model_dir() -> Path:
    for name in ("FACEVERIFY_MODEL_DIR", "FACEVERIFY_TEST_MODEL_DIR"):
        if os.environ.get(name):
            return Path(os.environ[name])
    return REPO / "models" / "release"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_limit_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return f"{soft}/{hard}"
    return "?"


def raise_own_fd_limit(needed: int) -> tuple[int, int]:
    """RLIMIT_NOFILE of this process (inherited by the workers) up to `needed`: the hard limit too
    where allowed (root with CAP_SYS_RESOURCE), else the soft one up to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):  # "not allowed to raise maximum limit"
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def start_limited(model_dir: Path, scratch: Path, server_nofile: int | None, log_level: str) -> Server:
    """The benchmark server, with its open-files limit set to ``server_nofile`` when given."""

    def limit_fds() -> None:
        if server_nofile:
            resource.setrlimit(resource.RLIMIT_NOFILE, (server_nofile, server_nofile))

    return start_server(model_dir, scratch, log_level=log_level, preexec_fn=limit_fds)


def stop_server(server: Server) -> int | None:
    if server.process.poll() is None:
        server.process.terminate()
        try:
            server.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    return server.process.returncode


def enrol(server: Server) -> bytes:
    photos = [(LFW / "Tony_Blair" / f"Tony_Blair_{i:04d}.jpg").read_bytes() for i in (1, 2, 3)]
    response = httpx.post(
        server.url + "/enroll", data={"user_id": "tony"}, headers=server.headers,
        files=[("images", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)], timeout=120,
    )  # fmt: skip
    assert response.status_code == 201, response.text
    return (LFW / "Tony_Blair" / "Tony_Blair_0010.jpg").read_bytes()


# ------------------------------------------------------------------------------- idle connections


@dataclass
class Idle:
    """The client side of the idle connections: open sockets, and what happened to them."""

    sockets: list[socket.socket] = field(default_factory=list)
    opened_at: dict[int, float] = field(default_factory=dict)  # fileno -> when its connect completed
    cut_after_s: list[float] = field(default_factory=list)  # closed by the server, seconds after open
    cut_at: list[float] = field(default_factory=list)  # ... and when (time.monotonic, system-wide)
    connect_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    selector: selectors.BaseSelector = field(default_factory=selectors.DefaultSelector)

    def open_batch(self, port: int, count: int, timeout_s: float = 10.0) -> None:
        """`count` non-blocking connects to the loopback port; the ones that complete are kept."""
        connecting = selectors.DefaultSelector()
        pending = 0
        for _ in range(count):
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                self.connect_errors[errno.errorcode.get(exc.errno or 0, str(exc))] += 1
                continue
            sock.setblocking(False)
            code = sock.connect_ex((LOOPBACK, port))
            if code not in (0, errno.EINPROGRESS):
                self.connect_errors[errno.errorcode.get(code, str(code))] += 1
                sock.close()
                continue
            connecting.register(sock, selectors.EVENT_WRITE)
            pending += 1
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            for key, _ in connecting.select(timeout=0.2):
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                sock = ready
                connecting.unregister(sock)
                pending -= 1
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    self.connect_errors[errno.errorcode.get(code, str(code))] += 1
                    sock.close()
                    continue
                self.sockets.append(sock)
                self.opened_at[sock.fileno()] = time.monotonic()
                self.selector.register(sock, selectors.EVENT_READ)
        for key in list(connecting.get_map().values()):
            self.connect_errors["connect_timeout"] += 1
            connecting.unregister(key.fileobj)
            key.fileobj.close()  # type: ignore[union-attr]
        connecting.close()

    def collect_cuts(self) -> None:
        """Record every idle socket the server has closed (EOF or reset) since the last call."""
        while True:
            events = self.selector.select(timeout=0)
            if not events:
                return
            now = time.monotonic()
            for key, _ in events:
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(1)
                except (ConnectionResetError, BlockingIOError, OSError):
                    data = b""
                if data:
                    continue  # the server said something (it never should to a silent client)
                self.selector.unregister(sock)
                self.cut_after_s.append(now - self.opened_at.get(sock.fileno(), now))
                self.cut_at.append(now)

    @property
    def still_open(self) -> int:
        return len(self.selector.get_map())

    def close_all(self) -> None:
        """Close every client socket with an RST (linger 0): no TIME_WAIT left behind on loopback."""
        linger = struct.pack("ii", 1, 0)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            with contextlib.suppress(OSError):
                sock.close()
        self.selector.close()
        self.sockets.clear()


# ---------------------------------------------------------------------------------------- probes


@dataclass
class Probes:
    """Fresh-connection /health and verify requests while the idle connections are held."""

    health_ms: list[float] = field(default_factory=list)
    health_failed: collections.Counter[str] = field(default_factory=collections.Counter)
    verify_ms: list[float] = field(default_factory=list)
    verify_failed: collections.Counter[str] = field(default_factory=collections.Counter)

    def health(self, server: Server) -> None:
        started = time.monotonic()
        try:
            response = httpx.get(server.url + "/health", timeout=5)  # a new connection each time
        except httpx.HTTPError as exc:
            self.health_failed[type(exc).__name__] += 1
            return
        if response.status_code != 200:
            self.health_failed[str(response.status_code)] += 1
            return
        self.health_ms.append((time.monotonic() - started) * 1000)

    def verify(self, server: Server, probe: bytes) -> None:
        started = time.monotonic()
        try:
            response = httpx.post(
                server.url + "/verify", data={"user_id": "tony"}, headers=server.headers,
                files={"image": ("p.jpg", probe, "image/jpeg")}, timeout=30,
            )  # fmt: skip
        except httpx.HTTPError as exc:
            self.verify_failed[type(exc).__name__] += 1
            return
        if response.status_code != 200:
            self.verify_failed[f"{response.status_code} {response.json().get('reason')}"] += 1
            return
        self.verify_ms.append((time.monotonic() - started) * 1000)


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summary(name: str, ok_ms: list[float], failed: collections.Counter[str]) -> str:
    sent = len(ok_ms) + sum(failed.values())
    return (
        f"  {name}: {len(ok_ms)}/{sent} answered, p50 {pct(ok_ms, 50):.0f} ms, max "
        f"{max(ok_ms, default=float('nan')):.0f} ms; failed: {dict(failed) or 'none'}"
    )


# ----------------------------------------------------------------------------------- client workers


def client_worker(port: int, conn: Connection) -> None:
    """One client process: opens batches of idle sockets on command, watches them, reports, closes.

    Commands: ("batch", n) -> ("opened", n_ok, errors); ("report",) -> (still_open, cut_after_s,
    cut_at); ("close",) -> ("closed",). Between commands it notes every socket the server closes.
    """
    idle = Idle()
    try:
        while True:
            if conn.poll(0.05):
                command = conn.recv()
                if command[0] == "batch":
                    before = dict(idle.connect_errors)
                    opened = len(idle.sockets)
                    idle.open_batch(port, int(command[1]))
                    errors = {k: v - before.get(k, 0) for k, v in idle.connect_errors.items()}
                    conn.send(("opened", len(idle.sockets) - opened, {k: v for k, v in errors.items() if v}))
                elif command[0] == "report":
                    idle.collect_cuts()
                    conn.send((idle.still_open, idle.cut_after_s, idle.cut_at))
                else:
                    break
            idle.collect_cuts()
    finally:
        idle.close_all()
        with contextlib.suppress(OSError):
            conn.send(("closed",))


@dataclass
class Clients:
    """The worker processes holding the idle sockets."""

    workers: list[tuple[BaseProcess, Connection]]
    opened: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    @staticmethod
    def start(port: int, count: int) -> Clients:
        context = multiprocessing.get_context("fork")
        workers: list[tuple[BaseProcess, Connection]] = []
        for _ in range(count):
            mine, theirs = context.Pipe()
            process = context.Process(target=client_worker, args=(port, theirs), daemon=True)
            process.start()
            workers.append((process, mine))
        return Clients(workers)

    def open(self, worker: int, count: int) -> None:
        _, conn = self.workers[worker]
        conn.send(("batch", count))
        _, opened, errors = conn.recv()
        self.opened += opened
        self.errors.update(errors)

    def report(self) -> tuple[int, list[float], list[float]]:
        still, after, at = 0, [], []
        for _, conn in self.workers:
            conn.send(("report",))
            open_now, cut_after, cut_at = conn.recv()
            still += open_now
            after += cut_after
            at += cut_at
        return still, after, at

    def close(self) -> None:
        for process, conn in self.workers:
            with contextlib.suppress(OSError):
                conn.send(("close",))
            process.join(timeout=30)
            if process.is_alive():
                process.kill()


# ------------------------------------------------------------------------------------------- run


def run(args: argparse.Namespace, scratch: Path, lines: list[str]) -> None:
    server = start_limited(args.model_dir, scratch, args.server_nofile, args.log_level)
    clients: Clients | None = None
    try:
        probe = enrol(server)
        pid = server.process.pid
        limit = raise_own_fd_limit(min(args.connections, args.per_process) + 1024)
        per_process = max(1, min(args.per_process, limit[0] - 1024))
        processes = -(-args.connections // per_process)
        lines.append(
            f"# server: faceverify serve pid {pid}, open-files limit {fd_limit_of(pid)}, "
            f"{_server_line(server.log)}; log level {args.log_level}"
        )
        lines.append(
            f"# client: open-files limit {limit[0]}/{limit[1]} per process, {processes} client "
            f"process(es) of <= {per_process} sockets"
        )
        base_fds, base_log = open_fds(pid), server.log.stat().st_size
        before = Probes()
        before.health(server)
        before.verify(server, probe)
        lines.append(
            f"before: server fds {base_fds}, log {base_log} B, /health {pct(before.health_ms, 50):.0f} ms, "
            f"verify {pct(before.verify_ms, 50):.0f} ms"
        )
        clients = Clients.start(server.port, processes)
        during = Probes()
        peak_fds = base_fds
        first_connect = time.monotonic()
        flood = Probes()  # between batches: what a client sees while the connections pour in
        for number, start in enumerate(range(0, args.connections, args.batch)):
            clients.open(number % processes, min(args.batch, args.connections - start))
            peak_fds = max(peak_fds, open_fds(pid))
            flood.health(server)
            flood.verify(server, probe)
        all_open = time.monotonic()
        lines.append(
            f"opened {clients.opened} of {args.connections} idle connections in "
            f"{all_open - first_connect:.1f} s (batches of {args.batch}); connect errors: "
            f"{dict(clients.errors) or 'none'}"
        )
        hold_until = all_open + args.hold_s
        next_probe = time.monotonic()
        samples: list[tuple[float, int, int]] = []
        next_sample = time.monotonic()
        while time.monotonic() < hold_until:
            fds = open_fds(pid)
            peak_fds = max(peak_fds, fds)
            if time.monotonic() >= next_sample:
                samples.append((time.monotonic() - first_connect, fds, clients.report()[0]))
                next_sample = time.monotonic() + 1.0
            if time.monotonic() >= next_probe:
                during.health(server)
                during.verify(server, probe)
                next_probe = time.monotonic() + args.probe_every_s
            time.sleep(0.1)
        still_open, cut_after, cut_at = clients.report()
        alive = server.process.poll() is None
        log_growth = server.log.stat().st_size - base_log
        lines += [
            f"held for {args.hold_s:.0f} s after the last connect: server alive {alive}, server fds peak "
            f"{peak_fds} (before {base_fds}), log grew {log_growth} B",
            f"  idle connections closed by the server: {len(cut_after)} of {clients.opened}; "
            f"{sum(a < 2 for a in cut_after)} within 2 s of their connect (the cap making room for "
            f"newer ones), {sum(a >= 9 for a in cut_after)} after >= 9 s (the 10 s head deadline); "
            f"last one {max(cut_at, default=all_open) - all_open:.1f} s after the last connect; "
            f"still open at the end: {still_open}",
            "  samples (s since first connect: server fds / idle still open): "
            + ", ".join(f"{t:.0f}: {f}/{o}" for t, f, o in samples),
            summary("while opening, after each batch: /health", flood.health_ms, flood.health_failed),
            summary("while opening, after each batch: verify", flood.verify_ms, flood.verify_failed),
            summary("while held: /health, new connection each", during.health_ms, during.health_failed),
            summary("while held: verify, new connection each", during.verify_ms, during.verify_failed),
        ]
        clients.close()
        clients = None
        time.sleep(1.0)
        after = Probes()
        after.health(server)
        after.verify(server, probe)
        lines += [
            f"after closing them: server fds {open_fds(pid)}, /health "
            f"{'ok' if after.health_ms else dict(after.health_failed)}, "
            f"verify {'ok' if after.verify_ms else dict(after.verify_failed)}",
            "log lines mentioning: " + str(_log_mentions(server.log, LOG_NEEDLES)),
        ]
    finally:
        if clients is not None:
            clients.close()
        code = stop_server(server)
        lines.append(f"server stopped, exit code {code} (-15: SIGTERM, as sent)")


def _server_line(log: Path) -> str:
    """What the server logged at start about its fd limit and connection cap."""
    text = log.read_text(errors="replace")
    found = re.search(r"open-files limit \d+ \(hard \d+\), connection cap \d+", text)
    return f"it logged: {found.group(0)}" if found else "connection cap not logged"


def _log_mentions(log: Path, needles: tuple[str, ...]) -> dict[str, int]:
    text = log.read_text(errors="replace").splitlines()
    return {needle: sum(needle in line for line in text) for needle in needles}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--per-process", type=int, default=10_000, help="idle sockets per client process")
    parser.add_argument("--hold-s", type=float, default=20.0, help="how long the idle connections are held")
    parser.add_argument("--probe-every-s", type=float, default=1.0)
    parser.add_argument("--server-nofile", type=int, help="the server's RLIMIT_NOFILE (default: inherited)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--model-dir", type=Path, default=default_model_dir())
    parser.add_argument("--max-s", type=int, default=600, help="hard bound on the whole run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    def out_of_time(_signum: int, _frame: object) -> None:
        raise SystemExit(f"bench_idle_connections: stopped after --max-s {args.max_s} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(args.max_s)
    lines = [
        f"# bench_idle_connections.py, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, model {args.model_dir}",
        f"# machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"load average at start {os.getloadavg()[0]:.1f} (shared machine)",
        f"# {args.connections} idle connections to {LOOPBACK}, batches of {args.batch}, held "
        f"{args.hold_s:.0f} s, a fresh-connection /health and verify every {args.probe_every_s:g} s",
    ]
    try:
        with tempfile.TemporaryDirectory(prefix="faceverify-idle-") as tmp:
            run(args, Path(tmp), lines)
    finally:
        signal.alarm(0)
        lines.append(f"# load average at end {os.getloadavg()[0]:.1f}")
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
