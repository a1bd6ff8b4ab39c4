"""Hostile round three (issue 18, items 3, 4, 6, 7, 10, 13) against the real server configuration
(`make_config`: our guarded h11 protocol, the app's middleware) over real sockets, on SQLite.

Each test failed on the main branch before the fix it covers:
* item 4: four slow connections with a bogus key held every admission slot (legitimate verifies got
  503 `overloaded`); a well-formed unknown key with a 40 MiB /enroll Content-Length was read (here:
  waited for, 408) before its 401.
* item 10: Content-Length plus Transfer-Encoding was framed by TE and a smuggled request answered.
* item 7: every method string a client sent became a metrics label value.
* item 6: a verify key saw liveness check statistics (worst similarity = the hidden score).
* item 3: a liveness burst was decoded whole, at full size, whatever its frames declared.
* item 13: a 2 KB junk path cost 2 KB of log; `GET /users/` redirected to the Host header;
  /ready said "ok" while SQLite was write-locked; a malformed answer burned its challenge; a model
  card that is not JSON exited with a raw traceback, truncated weights ~20 s later with another.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import secrets
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from faults_support import REPO, InProcessServer, api_headers, lfw_bytes

pytestmark = pytest.mark.lfw

ACTIVE = 2  # admission slots
BODY_IDLE_S = 3.0
MIN_FRAMES = 2
LIVENESS_PIXELS = 50_000_000
ENROL_PIXELS = 60_000_000
BUSH = ("George_W_Bush", 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, face_engine: Any) -> Iterator[Any]:
    from service.runtime.config import Settings

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("hostile3") / "data", model_dir=tiny_model_dir,
        admission_max_active=ACTIVE, admission_max_queued=1, body_idle_timeout_s=BODY_IDLE_S,
        liveness_min_frames=MIN_FRAMES, liveness_max_pixels=LIVENESS_PIXELS,
        max_request_pixels=ENROL_PIXELS, rate_limit_per_minute=0,
    )  # fmt: skip
    with InProcessServer(settings, face_engine) as srv:
        srv.settings = settings
        with httpx.Client(base_url=srv.url, headers=api_headers(), timeout=60) as client:
            files = [("images", ("a.jpg", lfw_bytes(*BUSH), "image/jpeg"))]
            enrolled = client.post("/enroll", data={"user_id": "bush"}, files=files)
            assert enrolled.status_code == 201, enrolled.text
        yield srv


@pytest.fixture
def client(server: Any) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers=api_headers(), timeout=60) as c:
        yield c


def _make_key(server: Any, name: str, *scopes: str) -> str:
    from service.security.keys import create_key

    with server.app.state.session_factory() as session:
        return create_key(session, f"{name}-{secrets.token_hex(3)}", frozenset(scopes))


def _connect(server: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_all(sock: socket.socket, limit_s: float) -> bytes:
    """Everything the server sends until it closes the connection (or `limit_s` passes)."""
    sock.settimeout(0.2)
    data = b""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def _verify(client: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Response:
    files = {"image": ("p.jpg", lfw_bytes(*BUSH), "image/jpeg")}
    return client.post("/verify", data={"user_id": "bush"}, files=files, headers=headers)


# ------------------------------------------------------------------------------ item 4: auth first


def test_slow_bodies_with_a_bogus_key_do_not_starve_legitimate_verifies(
    server: Any, client: httpx.Client
) -> None:
    head = (
        b"POST /verify HTTP/1.1\r\nHost: t\r\nX-API-Key: not-a-key\r\nContent-Length: 20000000\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n"
        b'--x\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )  # a valid multipart start, then the "photo" one byte at a time
    socks = [_connect(server) for _ in range(2 * ACTIVE)]
    stop = threading.Event()

    def trickle() -> None:  # one body byte per connection every 0.5 s (under the idle timeout)
        while not stop.wait(0.5):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.send(b"a")

    for sock in socks:
        sock.sendall(head + b"a")
    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(1.0)  # before the fix, the slow requests now hold every admission slot
        answers = [_verify(client).status_code for _ in range(3)]
        refused = [_read_all(sock, 3.0) for sock in socks]
    finally:
        stop.set()
        thread.join()
        for sock in socks:
            sock.close()
    assert answers == [200, 200, 200], answers
    for raw in refused:  # each refused at once, and its connection closed (not drained)
        assert raw and _status(raw) == 401 and b"invalid_api_key" in raw, raw[:200]
        assert b"connection: close" in raw.lower()


def test_a_well_formed_unknown_key_is_refused_before_the_body_with_one_cached_lookup(server: Any) -> None:
    from service.security.keys import new_secret

    bogus = new_secret()
    authenticator = getattr(server.app.state, "authenticator", None)
    lookups = getattr(authenticator, "lookups", 0)
    for _ in range(5):
        with _connect(server) as sock:
            sock.sendall(
                (
                    f"POST /enroll HTTP/1.1\r\nHost: t\r\nX-API-Key: {bogus}\r\n"
                    f"Content-Length: {40 * 1024 * 1024}\r\n"
                    "Content-Type: multipart/form-data; boundary=x\r\n\r\n"
                ).encode()
            )
            raw = _read_all(sock, BODY_IDLE_S + 2)  # no body sent: before the fix, 408 after the idle time
        assert raw and _status(raw) == 401 and b"invalid_api_key" in raw, raw[:200]
    assert authenticator.lookups - lookups == 1  # the other four: a hash and a cached refusal


def test_revocation_still_holds_on_the_next_request(server: Any, client: httpx.Client) -> None:
    from service.security.keys import list_keys, revoke_key

    secret = _make_key(server, "soon-revoked", "manage")
    key = {"X-API-Key": secret}
    assert client.get("/users", headers=key).status_code == 200
    with server.app.state.session_factory() as session:
        name = next(k.name for k in list_keys(session) if k.name.startswith("soon-revoked"))
        revoke_key(session, name)
    refused = client.get("/users", headers=key)
    assert refused.status_code == 401 and refused.json()["reason"] == "invalid_api_key"


# ------------------------------------------------------------------------------- item 10: smuggling


def test_content_length_with_transfer_encoding_is_400_and_closed(server: Any) -> None:
    smuggled = (
        b"GET /users HTTP/1.1\r\nHost: t\r\nX-API-Key: " + api_headers()["X-API-Key"].encode() + b"\r\n\r\n"
    )
    with _connect(server) as sock:
        sock.sendall(
            b"POST /verify HTTP/1.1\r\nHost: t\r\nX-API-Key: " + api_headers()["X-API-Key"].encode()
            + b"\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
        )  # fmt: skip
        raw = _read_all(sock, 5.0)
    assert _status(raw) == 400, raw[:300]
    assert raw.count(b"HTTP/1.1 ") == 1, raw  # the smuggled GET /users is never answered


# --------------------------------------------------------------------------------- item 7: metrics


def test_metric_labels_stay_bounded_whatever_the_method(server: Any, client: httpx.Client) -> None:
    from service.runtime.metrics import HTTP_REQUESTS

    standard = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}

    for _ in range(20):
        method = "X" + secrets.token_hex(50).upper()
        client.request(method, f"/users/{secrets.token_hex(8)}")
        client.request(method, "/verify", headers={"X-API-Key": ""})
    methods = {s.labels["method"] for m in HTTP_REQUESTS.collect() for s in m.samples}
    routes = {s.labels["route"] for m in HTTP_REQUESTS.collect() for s in m.samples}
    assert methods <= standard | {"other"}, methods
    assert "other" in methods
    assert all(r == "unmatched" or r.startswith("/") for r in routes) and len(routes) < 30, routes


# ----------------------------------------------------------------------------- item 6: no details


def _face_frames(n: int) -> list[bytes]:
    return [lfw_bytes("Colin_Powell", 6)] * n


def _burst(client: httpx.Client, key: dict[str, str], frames: list[bytes], challenge_id: str | None = None):
    if challenge_id is None:
        issued = client.post("/liveness/challenge", data={"user_id": "bush"}, headers=key)
        assert issued.status_code == 201, issued.text
        challenge_id = issued.json()["challenge_id"]
    files = [("frames", (f"f{i}.png", data, "image/png")) for i, data in enumerate(frames)]
    answer = client.post(
        "/verify", data={"user_id": "bush", "challenge_id": challenge_id}, files=files, headers=key
    )
    return challenge_id, answer


def test_liveness_statistics_only_for_admin_keys(server: Any, client: httpx.Client) -> None:
    verify_key = {"X-API-Key": _make_key(server, "kiosk", "verify")}
    _, plain = _burst(client, verify_key, _face_frames(8))
    assert plain.status_code == 200, plain.text
    checks = plain.json()["liveness"]["checks"]
    assert checks  # the checks that ran (the burst judge stops at the first failure)
    for name, check in checks.items():
        assert set(check) == {"passed", "reason"}, (name, check)
    assert plain.json()["liveness"]["reason"]  # the reason stays
    _, admin = _burst(client, api_headers(), _face_frames(8))
    admin_checks = admin.json()["liveness"]["checks"]
    assert set(admin_checks) == set(checks)  # the same checks ran ...
    statistics = {k for check in admin_checks.values() for k in check} - {"passed", "reason"}
    assert statistics, admin_checks  # ... and an admin key sees what they measured


# -------------------------------------------------------------------------- item 3: memory budget


def _one_colour_png(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(out, "PNG")
    return out.getvalue()


def test_a_burst_over_the_pixel_budget_is_413_before_decoding_and_keeps_its_challenge(
    server: Any, client: httpx.Client
) -> None:
    huge = _one_colour_png(6000, 6000)  # 36 Mpx, ~120 KB: two are over the 50 Mpx budget
    challenge_id, refused = _burst(client, api_headers(), [huge, huge])
    assert refused.status_code == 413 and refused.json()["reason"] == "pixel_budget_exceeded", refused.text
    _, judged = _burst(client, api_headers(), _face_frames(2), challenge_id)
    assert judged.status_code == 200, judged.text  # the refused answer did not burn the challenge


def test_an_enrolment_over_the_pixel_budget_is_413(client: httpx.Client) -> None:
    files = [("images", (f"{i}.png", _one_colour_png(6000, 6000), "image/png")) for i in range(2)]
    refused = client.post("/enroll", data={"user_id": "budget"}, files=files)
    assert refused.status_code == 413 and refused.json()["reason"] == "pixel_budget_exceeded", refused.text


def test_liveness_frames_are_shrunk_to_the_detector_size_right_after_decoding(server: Any) -> None:
    import cv2

    from service.faces.images import Upload
    from service.liveness.service import read_frames

    ok, big = cv2.imencode(".jpg", np.full((2000, 3000, 3), 90, np.uint8))
    assert ok
    frames = [Upload(f"f{i}.jpg", big.tobytes(), None) for i in range(MIN_FRAMES)]
    decoded = read_frames(frames, server.settings)
    assert [rgb.shape for _, rgb in decoded] == [(853, 1280, 3)] * MIN_FRAMES


def test_an_enrolled_face_keeps_its_chips_not_the_decoded_photo(face_engine: Any) -> None:
    import weakref

    from faceverify.decode import decode_image

    rgb = decode_image(lfw_bytes(*BUSH))
    face = face_engine.faces(rgb)[0]
    face.chips.settle()
    photo = weakref.ref(rgb)
    del rgb
    assert photo() is None  # before: the lazy dlib150 maker held the whole picture
    assert face.chips["dlib150"].shape == (150, 150, 3)


# ------------------------------------------------------------------------------- item 13: small


def test_a_malformed_answer_does_not_burn_its_challenge(client: httpx.Client) -> None:
    challenge_id, refused = _burst(client, api_headers(), [b"not an image"] + _face_frames(2))
    assert refused.status_code == 422 and refused.json()["reason"] == "not_an_image", refused.text
    challenge_id, short = _burst(client, api_headers(), _face_frames(1), challenge_id)
    assert short.status_code == 422 and short.json()["reason"] == "too_few_frames", short.text
    _, judged = _burst(client, api_headers(), _face_frames(3), challenge_id)
    assert judged.status_code == 200, judged.text


def test_no_redirect_built_from_the_host_header(client: httpx.Client) -> None:
    response = client.get("/users/", headers={"Host": "evil.example"})
    assert response.status_code == 404, response.headers
    assert "location" not in response.headers


def test_ready_is_not_ok_while_sqlite_is_write_locked(server: Any, client: httpx.Client) -> None:
    assert client.get("/ready").status_code == 200
    holder = sqlite3.connect(server.settings.data_dir / "faceverify.db", timeout=1, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        locked = client.get("/ready")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert locked.status_code == 503, locked.text
    assert locked.json()["database"].startswith("locked"), locked.json()
    assert client.get("/ready").status_code == 200


def test_a_junk_path_or_method_costs_little_log(server: Any) -> None:
    from service.runtime.logs import JsonFormatter, RequestIdFilter

    handlers = [
        h for h in logging.getLogger().handlers if any(isinstance(f, RequestIdFilter) for f in h.filters)
    ]
    assert handlers, "the service's log handler is installed by make_config"
    sink = io.StringIO()
    copy = logging.StreamHandler(sink)
    copy.setFormatter(JsonFormatter())
    for f in handlers[0].filters:
        copy.addFilter(f)
    access = logging.getLogger("uvicorn.access")
    level = access.level
    access.setLevel(logging.INFO)
    logging.getLogger().addHandler(copy)
    try:
        with _connect(server) as sock:
            sock.sendall(
                ("GET /" + "a" * 2000 + " HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").encode()
            )
            assert _status(_read_all(sock, 5.0)) == 401
        with _connect(server) as sock:
            sock.sendall(("Z" * 2000 + " /users HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").encode())
            assert _status(_read_all(sock, 5.0)) == 401
        time.sleep(0.2)
    finally:
        logging.getLogger().removeHandler(copy)
        access.setLevel(level)
    lines = sink.getvalue().splitlines()
    assert len(lines) >= 2, lines  # the access lines were written
    assert all(len(line) < 800 for line in lines), [len(line) for line in lines]
    assert any("2001 chars" in json.loads(line)["message"] for line in lines), lines


def _serve_exit(tmp_path: Path, model_dir: Path) -> subprocess.CompletedProcess[str]:
    """`faceverify serve` from this checkout, with a broken model: it must exit, not serve."""
    argv = [sys.executable, "-m", "service.cli.main", "serve", "--port", "0", "--model-dir", str(model_dir),
            "--data-dir", str(tmp_path / "data")]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_a_model_card_that_is_not_json_is_one_clear_line_at_start(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model_card.json").write_text("{not json")
    result = _serve_exit(tmp_path, broken)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "model_card.json is not valid JSON" in lines[0], result.stderr


def test_truncated_weights_are_one_clear_line_at_start(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "model"
    shutil.copytree(tiny_model_dir, broken)
    (data,) = (broken / "variables").glob("variables.data-*")
    with data.open("r+b") as f:
        f.truncate(data.stat().st_size // 2)
    result = _serve_exit(tmp_path, broken)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "is truncated" in lines[0], result.stderr[-2000:]
