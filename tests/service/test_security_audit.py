"""The audit trail: API events recorded with who/what/outcome (never image bytes or embeddings), the
hash chain verified by `faceverify audit verify`, tampering (edited, deleted, truncated rows) detected,
pruning keeping the chain verifiable; and the `faceverify keys` commands. SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from service_testdata import lfw_bytes
from sqlalchemy import delete, update

from service.cli.main import main as cli
from service.security import audit
from service.storage.tables import AuditEntry, AuditHead

pytestmark = pytest.mark.lfw

BUSH, BLAIR = lfw_bytes("George_W_Bush", 1), lfw_bytes("Tony_Blair", 1)


def _db_args(settings) -> list[str]:
    return ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]


def _audit_verify(settings, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = cli(["audit", "verify", *_db_args(settings)])
    out = capsys.readouterr()
    return code, out.out + out.err


def _events(client) -> None:
    files = [("images", ("a.jpg", BUSH, "image/jpeg")), ("images", ("b.jpg", b"not an image", "image/jpeg"))]
    assert (
        client.post(
            "/enroll", data={"user_id": "bush"}, files=files, headers={"X-Request-ID": "req-1"}
        ).status_code
        == 201
    )
    for photo in (BUSH, BLAIR):
        client.post("/verify", data={"user_id": "bush"}, files={"image": ("p.jpg", photo, "image/jpeg")})
    client.post("/verify", data={"user_id": "ghost"}, files={"image": ("p.jpg", BUSH, "image/jpeg")})
    client.post("/users/bush/unlock")
    client.delete("/users/bush")


def test_api_events_are_audited_without_biometric_data(client) -> None:
    _events(client)
    page = client.get("/audit", params={"limit": 100})
    assert page.status_code == 200, page.text
    entries = list(reversed(page.json()["entries"]))  # oldest first
    assert [(e["action"], e["outcome"], e["reason"]) for e in entries] == [
        ("key_create", "ok", None),  # the bootstrap admin key
        ("enroll", "ok", None),
        ("verify", "ok", None),
        ("verify", "denied", "not_verified"),
        ("verify", "rejected", "unknown_user"),
        ("unlock", "ok", None),
        ("delete_user", "ok", None),
    ]
    enrol, granted = entries[1], entries[2]
    assert enrol["request_id"] == "req-1" and enrol["key_name"] == "bootstrap-admin"
    assert enrol["client"] and enrol["user_id"] == "bush"
    assert enrol["summary"] == {"enrolled": 1, "rejected": ["not_an_image"]}
    assert granted["summary"]["votes"] == 1 and granted["summary"]["comparisons"] == 1
    assert (
        granted["summary"]["model_version"] == "tiny-test-1" and "detection_threshold" in granted["summary"]
    )
    assert len(granted["request_id"]) == 32  # generated when the client sent none
    assert all(e["prev_hash"] == p["entry_hash"] for p, e in zip(entries, entries[1:], strict=False))
    raw = json.dumps(page.json())
    assert "embedding" not in raw and len(raw) < 20_000  # counts and codes only, no image bytes

    only = client.get("/audit", params={"action": "verify", "outcome": "denied"}).json()
    assert only["total"] == 1 and only["entries"][0]["reason"] == "not_verified"
    second = client.get("/audit", params={"limit": 2, "offset": 2}).json()
    assert [e["seq"] for e in second["entries"]] == [5, 4] and second["total"] == 7


def test_cli_detects_an_edited_a_deleted_and_a_truncated_row(client, settings, capsys) -> None:
    _events(client)
    assert _audit_verify(settings, capsys)[0] == 0
    factory = client.app.state.session_factory

    with factory() as session:  # hide a failed verify: 'denied' -> 'ok'
        session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(outcome="ok"))
        session.commit()
    code, text = _audit_verify(settings, capsys)
    assert code == 1 and "entry 4" in text and "changed" in text
    with factory() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 4).values(outcome="denied"))
        session.commit()
    assert _audit_verify(settings, capsys)[0] == 0

    with factory() as session:  # remove a row from the middle
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
        session.commit()
    code, text = _audit_verify(settings, capsys)
    assert code == 1 and "entry 3 is missing" in text

    with factory() as session:  # remove the tail: nothing after it would break, the head does
        session.execute(delete(AuditEntry).where(AuditEntry.seq >= 3))
        session.commit()
    code, text = _audit_verify(settings, capsys)
    assert code == 1 and "bad entry: 3" in text


def test_prune_keeps_the_remaining_chain_verifiable(client, settings, capsys) -> None:
    _events(client)
    factory = client.app.state.session_factory
    with factory() as session:  # the first three entries are 40 days old
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=40)
        session.execute(update(AuditEntry).where(AuditEntry.seq <= 3).values(time=old))
        session.commit()
    # Backdating changed the hashed time: the chain must say so, and prune must refuse.
    assert _audit_verify(settings, capsys)[0] == 1
    assert cli(["audit", "prune", "--days", "30", *_db_args(settings)]) == 1
    with factory() as session:  # re-seal as if those entries had been written 40 days ago
        rows = session.query(AuditEntry).order_by(AuditEntry.seq).all()
        prev = "0" * 64
        for row in rows:
            row.prev_hash = prev
            row.entry_hash = audit.entry_digest(row)
            prev = row.entry_hash
        session.execute(update(AuditHead).values(last_hash=prev))
        session.commit()
    assert _audit_verify(settings, capsys)[0] == 0
    assert cli(["audit", "prune", "--days", "30", *_db_args(settings)]) == 0
    assert "pruned 3" in capsys.readouterr().out
    code, text = _audit_verify(settings, capsys)
    assert code == 0 and "5 entries checked" in text  # 4 left + the prune event itself
    assert client.get("/audit").json()["entries"][0]["action"] == "audit_prune"


def test_concurrent_appends_form_one_chain(client, settings, capsys) -> None:
    import threading

    factory, errors = client.app.state.session_factory, []

    def write(n: int) -> None:
        try:
            for i in range(10):
                audit.append(factory, audit.AuditEvent("test", "ok", user_id=f"u{n}-{i}"))
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    code, text = _audit_verify(settings, capsys)
    assert code == 0 and "41 entries checked" in text, text


def test_keys_cli_create_list_revoke(client, settings, capsys) -> None:
    assert cli(["keys", "create", "--name", "kiosk", "--scopes", "verify,enroll", *_db_args(settings)]) == 0
    secret = capsys.readouterr().out.strip().splitlines()[-1]
    assert secret.startswith("fvk_")
    assert client.get("/users", headers={"X-API-Key": secret}).json()["reason"] == "insufficient_scope"
    probe = {"image": ("p.jpg", BUSH, "image/jpeg")}
    ok = client.post("/verify", data={"user_id": "x"}, files=probe, headers={"X-API-Key": secret})
    assert ok.json()["reason"] == "unknown_user"

    assert cli(["keys", "list", *_db_args(settings)]) == 0
    listing = capsys.readouterr().out
    assert "kiosk" in listing and "enroll,verify" in listing and secret not in listing

    assert cli(["keys", "create", "--name", "kiosk", "--scopes", "verify", *_db_args(settings)]) == 1
    assert cli(["keys", "create", "--name", "x", "--scopes", "root", *_db_args(settings)]) == 1
    assert cli(["keys", "revoke", "kiosk", *_db_args(settings)]) == 0
    revoked = client.post("/verify", data={"user_id": "x"}, files=probe, headers={"X-API-Key": secret})
    assert revoked.json()["reason"] == "invalid_api_key"
    assert cli(["keys", "revoke", "nobody", *_db_args(settings)]) == 1
    capsys.readouterr()
    actions = [e["action"] for e in client.get("/audit").json()["entries"]]
    assert actions[:2] == ["key_revoke", "verify"] and "key_create" in actions
