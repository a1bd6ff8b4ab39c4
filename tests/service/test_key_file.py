"""Issue 18 item 8: the data-encryption key file is never silently replaced, and its loss is a
clear 503, not a 500.

Before: a restart without DATA_DIR/encryption-keys.json created a new key (existing users 409
`stored_data_unreadable`, new enrolments sealed under a second key generation); the file removed
while serving made every enrolment 500 while /ready said ready.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from service_testdata import lfw_bytes

from service.app import create_app
from service.cli.main import main as cli_main

pytestmark = pytest.mark.lfw

KEY_FILE = "encryption-keys.json"


def _client(settings, face_engine, key: str | None = None) -> TestClient:
    client = TestClient(create_app(settings, face_engine=face_engine), raise_server_exceptions=False)
    if key:
        client.headers["X-API-Key"] = key
    return client


def _enrol(client: TestClient, user_id: str, photo: tuple[str, int]):
    files = {"images": ("p.jpg", lfw_bytes(*photo), "image/jpeg")}
    return client.post("/enroll", data={"user_id": user_id}, files=files)


def _verify(client: TestClient, user_id: str, photo: tuple[str, int]):
    files = {"image": ("p.jpg", lfw_bytes(*photo), "image/jpeg")}
    return client.post("/verify", data={"user_id": user_id}, files=files)


def test_the_key_file_removed_while_serving_is_not_ready_and_503_then_recovers(settings, face_engine) -> None:
    key_file: Path = settings.data_dir / KEY_FILE
    with _client(settings, face_engine) as client:
        client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()
        assert _enrol(client, "bush", ("George_W_Bush", 1)).status_code == 201
        saved = key_file.read_bytes()
        key_file.unlink()  # an operator's mistake, a volume that went away

        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "encryption_key_unavailable"
        assert KEY_FILE in ready.json()["storage"]
        for answer in (
            _enrol(client, "powell", ("Colin_Powell", 1)),
            _verify(client, "bush", ("George_W_Bush", 1)),
        ):
            assert answer.status_code == 503, answer.text
            assert (
                answer.json()["reason"] == "encryption_key_unavailable"
                and KEY_FILE in answer.json()["detail"]
            )
            assert int(answer.headers["Retry-After"]) > 0
        assert not key_file.exists()  # no new key was made behind the operator's back

        key_file.write_bytes(saved)  # restored: back without a restart
        key_file.chmod(0o600)
        assert client.get("/ready").status_code == 200
        answer = _verify(client, "bush", ("George_W_Bush", 1))
        assert answer.status_code == 200 and answer.json()["votes"] == 1, answer.text


def test_a_restart_without_the_key_file_makes_no_new_key(
    settings, face_engine, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    key_file: Path = settings.data_dir / KEY_FILE
    with _client(settings, face_engine) as client:
        key = settings.admin_key_file.read_text().strip()
        client.headers["X-API-Key"] = key
        assert _enrol(client, "bush", ("George_W_Bush", 1)).status_code == 201
    saved = key_file.read_bytes()
    key_file.unlink()

    with _client(settings, face_engine, key) as client:
        ready = client.get("/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "encryption_key_unavailable"
        assert not key_file.exists()
        answer = _enrol(client, "powell", ("Colin_Powell", 1))  # would be sealed under a new key
        assert (answer.status_code, answer.json()["reason"]) == (503, "encryption_key_unavailable")

        monkeypatch.setenv("FACEVERIFY_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("FACEVERIFY_DATABASE_URL", settings.database_url)
        capsys.readouterr()
        assert cli_main(["store", "check"]) == 2  # the CLI refuses too, naming the file
        error = capsys.readouterr().err
        assert "1 sealed row" in error and str(key_file) in error and not key_file.exists()

        key_file.write_bytes(saved)
        key_file.chmod(0o600)
        assert client.get("/ready").status_code == 200
        assert _verify(client, "bush", ("George_W_Bush", 1)).json()["votes"] == 1
        assert _enrol(client, "powell", ("Colin_Powell", 1)).status_code == 201
