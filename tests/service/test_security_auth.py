"""API keys and scopes over HTTP, on SQLite and PostgreSQL (the `client` fixture sends an admin key).

Every data route of the app's own route table refuses a request without a key, with a wrong key, with
a revoked key and with a key lacking the route's scope, so a route added later cannot be forgotten:
`REQUIRED_SCOPE` must name it or `test_every_route_has_a_required_scope` fails.
"""

from __future__ import annotations

import logging
import stat

import pytest
from fastapi.routing import iter_route_contexts
from service_testdata import lfw_bytes
from sqlalchemy import select

from service.app import create_app
from service.runtime.config import Settings
from service.security import keys
from service.security.ratelimit import RateLimiter
from service.storage.tables import ApiKey

pytestmark = pytest.mark.lfw

OPEN_ROUTES = {("GET", "/health"), ("GET", "/ready")}
REQUIRED_SCOPE = {
    ("POST", "/verify"): "verify",
    ("POST", "/liveness/challenge"): "verify",
    ("POST", "/enroll"): "enroll",
    ("GET", "/users"): "manage",
    ("GET", "/users/{user_id}"): "manage",
    ("DELETE", "/users/{user_id}"): "manage",
    ("DELETE", "/users/{user_id}/images/{image_id}"): "manage",
    ("POST", "/users/{user_id}/unlock"): "manage",
    ("GET", "/audit"): "admin",
}


def _route_table() -> list[tuple[str, str]]:
    """Every (method, path) the app serves (docs off, the default), except the open health probes."""
    app = create_app(Settings(docs_enabled=False))
    return sorted(
        (method, str(route.path))
        for route in iter_route_contexts(app.routes)
        for method in (getattr(route, "methods", None) or ())
        if (method, route.path) not in OPEN_ROUTES and method != "HEAD"
    )


ROUTES = _route_table()


def make_key(client, name: str, *scopes: str) -> str:
    with client.app.state.session_factory() as session:
        return keys.create_key(session, name, frozenset(scopes))


def call(client, method: str, path: str, key: str | None):
    """One request to a route, with plausible parameters (auth is checked before the body)."""
    url = path.replace("{user_id}", "alice").replace("{image_id}", "1")
    headers = {"X-API-Key": key} if key is not None else {}
    request = client.build_request(method, url, headers=headers)
    if key is None:
        request.headers.pop("X-API-Key", None)  # the fixture's default admin key
    return client.send(request)


def test_every_route_has_a_required_scope() -> None:
    assert set(ROUTES) == set(REQUIRED_SCOPE), "a new route needs its scope in REQUIRED_SCOPE"


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_data_route_refuses_missing_wrong_revoked_and_unscoped_keys(client, method: str, path: str) -> None:
    missing = call(client, method, path, None)
    assert (missing.status_code, missing.json()["reason"]) == (401, "missing_api_key"), missing.text

    wrong = call(client, method, path, "fvk_0123456789abcdef_" + "A" * 43)
    assert (wrong.status_code, wrong.json()["reason"]) == (401, "invalid_api_key"), wrong.text
    garbage = call(client, method, path, "not-a-key")
    assert (garbage.status_code, garbage.json()["reason"]) == (401, "invalid_api_key")

    needed = REQUIRED_SCOPE[(method, path)]
    full = make_key(client, "full", needed)
    assert call(client, method, path, full).status_code not in (401, 403)
    with client.app.state.session_factory() as session:
        keys.revoke_key(session, "full")
    revoked = call(client, method, path, full)
    assert (revoked.status_code, revoked.json()["reason"]) == (401, "invalid_api_key"), revoked.text

    others = [s for s in keys.SCOPES if s not in (needed, "admin")]
    lacking = make_key(client, "lacking", *others)
    denied = call(client, method, path, lacking)
    assert (denied.status_code, denied.json()["reason"]) == (403, "insufficient_scope"), denied.text


def test_health_and_ready_stay_open(client) -> None:
    del client.headers["X-API-Key"]
    assert client.get("/health").status_code == 200
    assert client.get("/ready").status_code == 200


def test_scoped_keys_do_their_job_and_scores_are_hidden_from_verify_keys(client) -> None:
    photo = lfw_bytes("George_W_Bush", 1)
    enroller, verifier = make_key(client, "kiosk-enrol", "enroll"), make_key(client, "kiosk", "verify")
    files = [("images", ("a.jpg", photo, "image/jpeg"))]
    enrolled = client.post("/enroll", data={"user_id": "bush"}, files=files, headers={"X-API-Key": enroller})
    assert enrolled.status_code == 201, enrolled.text
    probe = {"image": ("p.jpg", photo, "image/jpeg")}
    body = client.post(
        "/verify", data={"user_id": "bush"}, files=probe, headers={"X-API-Key": verifier}
    ).json()
    assert body["verified"] is True and body["comparisons"] == 1
    assert body["votes"] is None and body["vote_ratio"] is None and body["best_similarity"] is None
    admin = client.post("/verify", data={"user_id": "bush"}, files=probe).json()  # the fixture's admin key
    assert admin["votes"] == 1 and admin["best_similarity"] > 0.9

    client.app.state.settings.expose_scores = True
    shown = client.post("/verify", data={"user_id": "bush"}, files=probe, headers={"X-API-Key": verifier})
    assert shown.json()["votes"] == 1 and shown.json()["vote_ratio"] == 1.0


def test_keys_are_stored_only_as_a_hash_of_a_256_bit_secret(client) -> None:
    secret = make_key(client, "ops", "manage")
    prefix, key_id, random_part = secret.split("_", 2)
    assert prefix == "fvk" and len(bytes.fromhex(key_id)) == 8 and len(random_part) == 43  # 32 bytes
    with client.app.state.session_factory() as session:
        row = session.scalars(select(ApiKey).where(ApiKey.name == "ops")).one()
        stored = " ".join(str(getattr(row, c.key)) for c in ApiKey.__table__.columns)
    assert random_part not in stored and secret not in stored
    assert client.get("/users", headers={"X-API-Key": secret}).status_code == 200


def test_first_start_creates_an_admin_key_file_0600_and_never_logs_the_secret(
    settings, face_engine, caplog: pytest.LogCaptureFixture
) -> None:
    from fastapi.testclient import TestClient

    with caplog.at_level(logging.INFO), TestClient(create_app(settings, face_engine=face_engine)) as fresh:
        secret = settings.admin_key_file.read_text().strip()
        assert stat.S_IMODE(settings.admin_key_file.stat().st_mode) == 0o600
        assert fresh.get("/audit", headers={"X-API-Key": secret}).status_code == 200
    assert str(settings.admin_key_file.resolve()) in caplog.text and secret not in caplog.text
    settings.admin_key_file.unlink()
    with TestClient(create_app(settings, face_engine=face_engine)):  # keys exist now: no new key
        assert not settings.admin_key_file.exists()


def test_per_key_rate_limit_answers_429_with_retry_after(client) -> None:
    client.app.state.rate_limiter = RateLimiter(3)
    other = make_key(client, "other", "manage")
    assert [client.get("/users").status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get("/users")
    assert (limited.status_code, limited.json()["reason"]) == (429, "rate_limited")
    assert int(limited.headers["Retry-After"]) >= 1
    assert client.get("/users", headers={"X-API-Key": other}).status_code == 200  # per key


def test_token_bucket_refills_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter(60, clock=lambda: now[0])  # one per second
    for _ in range(60):
        limiter.check("k")
    with pytest.raises(Exception, match="requests per minute") as raised:
        limiter.check("k")
    assert getattr(raised.value, "retry_after_s", None) == 1
    now[0] += 1.0
    limiter.check("k")
