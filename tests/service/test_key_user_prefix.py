"""Issue 18 (item 2, optional part) on SQLite and PostgreSQL: keys restricted to a user-id prefix,
for one deployment serving several sites (`faceverify keys create --user-prefix kiosk1-`)."""

from __future__ import annotations

import json

import pytest
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.cli.main import main as cli_main
from service.security import keys
from service.storage.tables import AuditEntry

pytestmark = pytest.mark.lfw


def _key(client, name: str, scopes: set[str], prefix: str | None) -> dict[str, str]:
    with client.app.state.session_factory() as session:
        return {"X-API-Key": keys.create_key(session, name, frozenset(scopes), user_prefix=prefix)}


def _enrol(client, user_id: str, headers: dict[str, str] | None = None):
    files = [("images", ("p.jpg", lfw_bytes("George_W_Bush", 1), "image/jpeg"))]
    return client.post("/enroll", data={"user_id": user_id}, files=files, headers=headers)


def _refused(answer) -> None:
    assert (answer.status_code, answer.json()["reason"]) == (403, "user_not_allowed"), answer.text


def test_a_prefixed_key_acts_only_on_its_sites_users(client) -> None:
    assert _enrol(client, "hq-bob").status_code == 201  # another site's user (admin key)
    kiosk = _key(client, "kiosk1", {"enroll", "verify"}, "kiosk1-")
    ops = _key(client, "kiosk1-ops", {"manage"}, "kiosk1-")

    assert _enrol(client, "kiosk1-alice", kiosk).status_code == 201
    _refused(_enrol(client, "hq-bob", kiosk))
    probe = {"image": ("p.jpg", lfw_bytes("George_W_Bush", 1), "image/jpeg")}
    _refused(client.post("/verify", data={"user_id": "hq-bob"}, files=probe, headers=kiosk))
    assert (
        client.post("/verify", data={"user_id": "kiosk1-alice"}, files=probe, headers=kiosk).status_code
        == 200
    )
    _refused(client.post("/liveness/challenge", data={"user_id": "hq-bob"}, headers=kiosk))

    listed = client.get("/users", headers=ops).json()
    assert [u["user_id"] for u in listed["users"]] == ["kiosk1-alice"] and listed["total"] == 1
    _refused(client.get("/users/hq-bob", headers=ops))
    _refused(client.delete("/users/hq-bob", headers=ops))
    _refused(client.post("/users/hq-bob/unlock", headers=ops))
    assert client.get("/users/hq-bob").status_code == 200  # untouched, and the admin key sees all

    with client.app.state.session_factory() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.key_name == "kiosk1", AuditEntry.action == "enroll")
            .order_by(AuditEntry.seq.desc())
        ).first()  # fmt: skip
    assert entry is not None and (entry.user_id, entry.outcome, entry.reason) == (
        "hq-bob",
        "rejected",
        "user_not_allowed",
    )


def test_keys_create_with_a_user_prefix(client, settings, capsys) -> None:
    db = ["--data-dir", str(settings.data_dir), "--database-url", settings.database_url]
    capsys.readouterr()
    assert (
        cli_main(["keys", "create", "--name", "site2", "--scopes", "verify", "--user-prefix", "site2-", *db])
        == 0
    )
    out = capsys.readouterr().out
    assert "only for user ids starting with 'site2-'" in out
    secret = out.strip().splitlines()[-1]
    _refused(client.post("/liveness/challenge", data={"user_id": "hq-bob"}, headers={"X-API-Key": secret}))
    assert (
        cli_main(["keys", "create", "--name", "root2", "--scopes", "admin", "--user-prefix", "x-", *db]) == 1
    )
    with client.app.state.session_factory() as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.action == "key_create")).all()[-1]
    assert json.loads(entry.summary)["user_prefix"] == "site2-"
