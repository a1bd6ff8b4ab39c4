"""`faceverify serve` as a real process: uvicorn on a free loopback port, real sockets."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from service_testdata import lfw_bytes

pytestmark = [pytest.mark.lfw, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[str, str]]:
    """(URL, admin API key) of `faceverify serve` on SQLite; the key is the one created at first start."""
    data_dir = tmp_path_factory.mktemp("served")
    port = _free_port()
    env = {**os.environ, "FACEVERIFY_DATA_DIR": str(data_dir), "FACEVERIFY_MODEL_DIR": str(tiny_model_dir)}
    env.pop("FACEVERIFY_DATABASE_URL", None)  # the embedded default: SQLite under DATA_DIR
    log = (data_dir / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                output = (data_dir / "server.log").read_text()
                pytest.fail(f"server exited with {process.returncode}: {output}")
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("server did not become ready in 120 s")
        assert (data_dir / "faceverify.db").is_file()  # start-up migrated the embedded default
        yield url, (data_dir / "admin-api-key").read_text().strip()
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_enrol_and_verify_over_a_real_socket(served: tuple[str, str]) -> None:
    photo = lfw_bytes("George_W_Bush", 1)
    url, key = served
    with httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": key}) as client:
        enrolled = client.post("/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", photo))])
        assert enrolled.status_code == 201, enrolled.text
        result = client.post("/verify", data={"user_id": "bush"}, files={"image": ("b.jpg", photo)})
        assert result.status_code == 200 and result.json()["verified"] is True
        other = client.post(
            "/verify", data={"user_id": "bush"}, files={"image": ("c.jpg", lfw_bytes("Tony_Blair", 1))}
        )
        assert other.status_code == 200 and other.json()["verified"] is False
        assert client.get("/users").json()["total"] == 1


def _stream_chunked(url: str, path: str, key: str | None) -> tuple[bytes, int]:
    """POST up to 2 GB of chunked multipart to `path` until the server answers: (answer, bytes sent)."""
    host, port = url.removeprefix("http://").split(":")
    key_header = f"X-API-Key: {key}\r\n".encode() if key else b""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n".encode() + key_header
        + b"Content-Type: multipart/form-data; boundary=xyz\r\n\r\n"
    )
    preamble = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n'
    chunk = b"\0" * (1024 * 1024)
    sent = 0
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(head + f"{len(preamble):x}\r\n".encode() + preamble + b"\r\n")
        for _ in range(2048):
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except ConnectionResetError:
            pass
    return answer, sent


def test_a_huge_chunked_upload_is_cut_off_early(served: tuple[str, str]) -> None:
    """Stream up to 2 GB without Content-Length; the server must answer 413 after ~11 MB."""
    answer, sent = _stream_chunked(served[0], "/verify", served[1])
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 * 1024 * 1024, f"client pushed {sent} bytes before the server refused"


def test_an_upload_without_a_key_is_refused_before_its_body_is_read(served: tuple[str, str]) -> None:
    """/enroll accepts ~650 MB from a key holder; without a key the answer is 401 at once."""
    answer, sent = _stream_chunked(served[0], "/enroll", None)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert sent < 8 * 1024 * 1024, f"client pushed {sent} bytes before the server refused"


def test_serve_without_a_model_explains_how_to_build_it(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "service.cli.main", "serve", "--model-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "FACEVERIFY_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 2
    assert "faceverify export --release" in result.stderr and str(tmp_path / "none") in result.stderr
