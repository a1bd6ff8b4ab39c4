"""Issue 18 item 5: no audit, no action; forwarded headers do not break (or forge) the audit.

Before (PostgreSQL): a 200-character X-Forwarded-For (believed from 127.0.0.1 by uvicorn's default)
overflowed the audit table's client column: the client got 500 while the enrolment, a DELETE and
the failed verifies that lock a user were committed with no audit row; short spoofed values were
stored as the client address. The entry was appended after the action in its own transaction, so
any failure there left the action done and unaudited.

The audit failure is made real: a trigger in the database refuses every insert into audit_log (as
a full disk or a broken column would), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from service_testdata import lfw_bytes
from sqlalchemy import Engine, func, select, text
from starlette.requests import Request

from service.runtime.config import Settings
from service.storage.tables import AuditEntry, Image, User, VerifyLockout

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/live_server.py
from live_server import start_service, stop_service, wait_ready  # noqa: E402

pytestmark = pytest.mark.lfw

BUSH = ("George_W_Bush", 1)
POWELL = ("Colin_Powell", 1)


@contextmanager
def audit_refused(engine: Engine) -> Iterator[None]:
    """Every INSERT into audit_log fails inside the database until the block ends."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(
                text(
                    "CREATE FUNCTION fv_refuse_audit() RETURNS trigger AS $$ BEGIN "
                    "RAISE EXCEPTION 'audit storage failed'; END $$ LANGUAGE plpgsql"
                )
            )
            connection.execute(
                text(
                    "CREATE TRIGGER fv_refuse_audit BEFORE INSERT ON audit_log "
                    "FOR EACH ROW EXECUTE FUNCTION fv_refuse_audit()"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE TRIGGER fv_refuse_audit BEFORE INSERT ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit storage failed'); END"
                )
            )
    try:
        yield
    finally:
        with engine.begin() as connection:
            connection.execute(text("DROP TRIGGER fv_refuse_audit" + (
                " ON audit_log" if engine.dialect.name == "postgresql" else ""
            )))  # fmt: skip
            if engine.dialect.name == "postgresql":
                connection.execute(text("DROP FUNCTION fv_refuse_audit()"))


def _files(photo: tuple[str, int], field: str = "images") -> list[tuple[str, tuple[str, bytes, str]]]:
    return [(field, ("p.jpg", lfw_bytes(*photo), "image/jpeg"))]


def _count(client, statement) -> int:
    with client.app.state.session_factory() as session:
        return int(session.scalar(statement) or 0)


def _assert_unavailable(answer) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.json()["reason"] == "audit_unavailable" and int(answer.headers["Retry-After"]) > 0


def test_an_audit_entry_that_cannot_be_written_undoes_its_action(client) -> None:
    assert client.post("/enroll", data={"user_id": "bush"}, files=_files(BUSH)).status_code == 201
    entries = _count(client, select(func.count()).select_from(AuditEntry))
    files = set(client.app.state.store.files())

    with audit_refused(client.app.state.db_engine):
        _assert_unavailable(client.post("/enroll", data={"user_id": "powell"}, files=_files(POWELL)))
        _assert_unavailable(client.post("/enroll", data={"user_id": "bush"}, files=_files(POWELL)))
        _assert_unavailable(client.post("/verify", data={"user_id": "bush"}, files=_files(POWELL, "image")))
        _assert_unavailable(client.post("/users/bush/unlock"))
        _assert_unavailable(client.delete("/users/bush"))

    # Nothing of it happened: no new user, no new image or file, no failure counted, bush still there.
    assert _count(client, select(func.count()).select_from(User)) == 1
    assert _count(client, select(func.count()).select_from(Image)) == 1
    assert set(client.app.state.store.files()) == files
    assert _count(client, select(func.coalesce(func.sum(VerifyLockout.failures), 0))) == 0
    assert _count(client, select(func.count()).select_from(AuditEntry)) == entries
    # And once the audit can be written again, everything works and the chain is intact.
    denied = client.post("/verify", data={"user_id": "bush"}, files=_files(POWELL, "image"))
    assert denied.status_code == 200 and denied.json()["verified"] is False
    assert client.delete("/users/bush").status_code == 200
    newest = client.get("/audit", params={"limit": 2}).json()["entries"]
    assert [(e["action"], e["outcome"]) for e in newest] == [("delete_user", "ok"), ("verify", "denied")]


def _request(peer: str, forwarded: str | None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return Request({"type": "http", "headers": headers, "client": (peer, 50000)})


def test_forwarded_addresses_count_only_from_configured_proxies() -> None:
    from service.http.clients import client_address

    none = Settings(_env_file=None).trusted_proxy_networks
    proxies = Settings(_env_file=None, trusted_proxies=["10.0.0.0/8"]).trusted_proxy_networks
    assert client_address(_request("10.1.2.3", "203.0.113.66"), none) == "10.1.2.3"  # not configured
    assert client_address(_request("10.1.2.3", "203.0.113.66"), proxies) == "203.0.113.66"
    assert (
        client_address(_request("10.1.2.3", "198.51.100.7, 203.0.113.66, 10.9.9.9"), proxies)
        == "203.0.113.66"
    )
    assert client_address(_request("192.0.2.1", "203.0.113.66"), proxies) == "192.0.2.1"  # peer not a proxy
    for junk in ("<script>alert(1)</script>", "1" * 200, "", "203.0.113.66, nonsense"):
        assert client_address(_request("10.1.2.3", junk), proxies) == "10.1.2.3", junk
    with pytest.raises(ValueError):
        Settings(_env_file=None, trusted_proxies=["not-a-network"])


@pytest.mark.slow
def test_a_long_or_spoofed_forwarded_header_on_a_real_server_is_audited_as_the_peer(
    tmp_path: Path, tiny_model_dir: Path, postgres_databases
) -> None:
    """`faceverify serve` (uvicorn as configured for production) on PostgreSQL, default settings."""
    env = {
        "FACEVERIFY_DATA_DIR": str(tmp_path / "data"),
        "FACEVERIFY_DATABASE_URL": postgres_databases(),
        "FACEVERIFY_MODEL_DIR": str(tiny_model_dir),
    }
    service = wait_ready(start_service(tmp_path, env))
    try:
        for forwarded in ("9" * 200, "203.0.113.66"):
            answer = httpx.post(
                f"{service.url}/enroll", data={"user_id": "bush"}, files=_files(BUSH),
                headers={**service.headers, "X-Forwarded-For": forwarded}, timeout=120,
            )  # fmt: skip
            assert answer.status_code == 201, answer.text
            audit = httpx.get(
                f"{service.url}/audit", params={"limit": 1}, headers=service.headers, timeout=30
            )
            assert audit.json()["entries"][0]["client"] == "127.0.0.1", audit.text
    finally:
        stop_service(service)
