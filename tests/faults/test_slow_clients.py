"""Slow and hostile clients against the real server configuration over real sockets, plus the
500 path and request ids.

Before: a slow-loris connection (one header byte every few seconds) and a request whose
Content-Length promised more than it sent were held for good; every 500 closed the keep-alive
connection (Starlette re-raised to uvicorn) and logged its traceback twice.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults_support import InProcessServer, api_headers

HEAD_TIMEOUT_S = 1.5
BODY_IDLE_S = 1.5
MAX_CONNECTIONS = 60
HOLD_ENTERED = threading.Event()  # /test-hold: its request is in the handler
HOLD_RELEASE = threading.Event()  # /test-hold: let it answer


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, face_engine: Any) -> Iterator[Any]:
    from service.runtime.config import Settings

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("slow") / "data", model_dir=tiny_model_dir,
        header_timeout_s=HEAD_TIMEOUT_S, body_idle_timeout_s=BODY_IDLE_S, keep_alive_s=2,
        max_connections=MAX_CONNECTIONS,
    )  # fmt: skip
    srv = InProcessServer(settings, face_engine)

    def boom() -> None:
        raise RuntimeError("deliberate test failure")

    def hold() -> dict[str, bool]:
        """A request that stays in flight until the test lets it finish."""
        HOLD_ENTERED.set()
        return {"released": HOLD_RELEASE.wait(30)}

    srv.app.add_api_route("/test-boom", boom)
    srv.app.add_api_route("/test-hold", hold)
    with srv:
        yield srv


def _connect(server: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _headers_text(extra: dict[str, str]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in {**api_headers(), **extra}.items())


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response head: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body


def _closed_within(sock: socket.socket, limit_s: float) -> float | None:
    """Seconds until the server closed `sock` (EOF or reset), None if still open after limit_s."""
    started = time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - started < limit_s:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except ConnectionError:
            return time.monotonic() - started
    return None


def test_a_500_keeps_the_connection_and_logs_one_line(server: Any) -> None:
    collector = _Records()
    logging.getLogger().addHandler(collector)
    try:
        with _connect(server) as sock:
            sock.sendall(b"GET /test-boom HTTP/1.1\r\nHost: t\r\n" + _headers_text({}) + b"\r\n")
            status, _, body = _read_response(sock)
            assert status == 500 and b'"internal_error"' in body
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + _headers_text({}) + b"\r\n")
            status, _, body = _read_response(sock)  # same connection: still open
            assert status == 200, body
    finally:
        logging.getLogger().removeHandler(collector)
    with_traceback = [r for r in collector.records if r.exc_info]
    assert len(with_traceback) == 1, [r.getMessage() for r in with_traceback]
    assert "deliberate test failure" in str(with_traceback[0].exc_info[1])


def test_request_id_is_kept_when_sane_and_replaced_otherwise(server: Any) -> None:
    for sent, kept in (("abc-123.X_y", True), ("bad id", False), ("x" * 65, False)):
        with _connect(server) as sock:
            sock.sendall(
                b"GET /health HTTP/1.1\r\nHost: t\r\n" + _headers_text({"X-Request-ID": sent}) + b"\r\n"
            )
            status, headers, _ = _read_response(sock)
        assert status == 200
        if kept:
            assert headers["x-request-id"] == sent
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", headers["x-request-id"]), headers["x-request-id"]


def test_lying_content_length_is_answered_408_and_closed(server: Any) -> None:
    body = b'--b\r\nContent-Disposition: form-data; name="user_id"\r\n\r\nbob\r\n'
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /verify HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + _headers_text({"Content-Length": str(len(body) + 1000)}) + b"\r\n" + body
        )  # fmt: skip
        status, headers, answer = _read_response(sock)
        elapsed = time.monotonic() - started
        assert status == 408 and b'"body_timeout"' in answer
        assert headers.get("connection") == "close"
        assert elapsed < BODY_IDLE_S + 3
        assert _closed_within(sock, 3) is not None


def test_slow_loris_connections_are_cut_off_and_health_still_answers(server: Any) -> None:
    socks = [_connect(server) for _ in range(40)]
    try:
        for sock in socks:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        started = time.monotonic()
        # keep trickling one byte each until the server hangs up
        open_socks = list(socks)
        while open_socks and time.monotonic() - started < HEAD_TIMEOUT_S + 5:
            still = []
            for sock in open_socks:
                try:
                    sock.sendall(b"a")
                    still.append(sock)
                except OSError:
                    pass
            open_socks = [s for s in still if _closed_within(s, 0.01) is None]
            with _connect(server) as probe:
                probe.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + _headers_text({}) + b"\r\n")
                assert _read_response(probe)[0] == 200
            time.sleep(0.3)
        elapsed = time.monotonic() - started
        assert not open_socks, f"{len(open_socks)} slow-loris connections still open after {elapsed:.1f} s"
    finally:
        for sock in socks:
            sock.close()


def test_connections_above_the_cap_are_closed_at_once(server: Any) -> None:
    started = time.monotonic()
    socks = [_connect(server) for _ in range(MAX_CONNECTIONS + 30)]
    try:
        time.sleep(0.3)
        states = []
        for sock in socks:
            sock.setblocking(False)
            try:
                states.append("closed" if sock.recv(1) == b"" else "data")
            except BlockingIOError:
                states.append("open")
            except ConnectionError:
                states.append("closed")
        # checked before any head deadline could have fired: only the cap closed these
        assert time.monotonic() - started < HEAD_TIMEOUT_S
        assert states.count("closed") >= 25, states.count("closed")
        assert states.count("open") >= MAX_CONNECTIONS - 5, states.count("open")
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    with _connect(server) as probe:
        probe.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + _headers_text({}) + b"\r\n")
        assert _read_response(probe)[0] == 200


def _state(sock: socket.socket) -> str:
    """'open', or 'closed' if the server has closed it (EOF or reset); never blocks."""
    sock.setblocking(False)
    try:
        return "closed" if sock.recv(1) == b"" else "data"
    except BlockingIOError:
        return "open"
    except ConnectionError:
        return "closed"
    finally:
        sock.setblocking(True)


def test_at_the_cap_a_new_client_is_served_and_the_longest_waiting_idle_connection_makes_room(
    server: Any,
) -> None:
    """Issue 8 (~20,000 idle connections): at the cap, new connections used to be closed at once,
    so whoever held MAX_CONNECTIONS idle connections locked every client and health probe out.
    Now the connection that has waited longest without a request gives way; a connection with a
    request in flight never does."""
    HOLD_ENTERED.clear()
    HOLD_RELEASE.clear()
    connections = server.server.server_state.connections
    deadline = time.monotonic() + 10
    while connections and time.monotonic() < deadline:  # earlier tests' connections are gone
        time.sleep(0.05)
    assert not connections
    busy = _connect(server)  # the oldest connection of all, with a request in flight
    idle: list[socket.socket] = []
    try:
        busy.sendall(b"GET /test-hold HTTP/1.1\r\nHost: t\r\n" + _headers_text({}) + b"\r\n")
        assert HOLD_ENTERED.wait(10)
        started = time.monotonic()
        idle = [_connect(server) for _ in range(MAX_CONNECTIONS)]  # one more than the cap has room for
        time.sleep(0.3)
        with _connect(server) as probe:  # and a new client on top
            probe.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n" + _headers_text({}) + b"\r\n")
            assert _read_response(probe)[0] == 200
        time.sleep(0.3)
        states = [_state(sock) for sock in idle]
        # checked before any head deadline could have fired: only the cap closed these
        assert time.monotonic() - started < HEAD_TIMEOUT_S
        assert states[:2] == ["closed", "closed"], states  # the two that had waited longest
        assert states[2:] == ["open"] * (MAX_CONNECTIONS - 2), states
        HOLD_RELEASE.set()
        status, _, body = _read_response(busy)  # the request in flight was never cut off
        assert status == 200 and b'"released":true' in body
    finally:
        HOLD_RELEASE.set()
        busy.close()
        for sock in idle:
            sock.close()
