"""Web hardening: security headers on every response, CORS off unless allowed, the Host allow-list,
docs off by default (the schema still describing X-API-Key), no internals in error bodies, and a
browser's cross-site "simple" multipart POST failing for want of the key. SQLite and PostgreSQL.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_testdata import lfw_bytes

from service.app import create_app

pytestmark = pytest.mark.lfw

EVIL = "https://evil.example"


def _app_client(settings, face_engine, **overrides):
    return TestClient(create_app(settings.model_copy(update=overrides), face_engine=face_engine))


def _assert_hardened(response) -> None:
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Request-ID"]


def test_every_kind_of_response_carries_the_security_headers(client) -> None:
    answers = [
        client.get("/health"),
        client.get("/users"),
        client.get("/nowhere"),
        client.get("/users", headers={"X-API-Key": "wrong"}),
        client.post("/verify", data={"user_id": "bad id!"}),
        client.post(  # one byte over /verify's cap (a liveness burst of frames fits under it)
            "/verify",
            content=b"x" * (client.app.state.settings.max_request_bytes("/verify") + 1),
            headers={"Content-Type": "application/octet-stream"},
        ),
    ]
    assert [a.status_code for a in answers] == [200, 200, 404, 401, 422, 413]
    for answer in answers:
        _assert_hardened(answer)
    echoed = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    replaced = client.get("/health", headers={"X-Request-ID": "bad id <script>"})
    assert len(replaced.headers["X-Request-ID"]) == 32


def test_cross_site_simple_multipart_post_cannot_enrol(client) -> None:
    """What a hostile page can make a browser send: no custom header, so no X-API-Key."""
    files = [("images", ("a.jpg", lfw_bytes("George_W_Bush", 1), "image/jpeg"))]
    forged = client.post(
        "/enroll", data={"user_id": "victim"}, files=files, headers={"Origin": EVIL, "X-API-Key": ""}
    )
    assert (forged.status_code, forged.json()["reason"]) == (401, "missing_api_key")
    assert "access-control-allow-origin" not in forged.headers
    assert client.get("/users").json()["total"] == 0
    preflight = client.options(
        "/enroll", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                            "Access-Control-Request-Headers": "x-api-key"},
    )  # fmt: skip
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allow_list(settings, face_engine) -> None:
    with _app_client(settings, face_engine, cors_origins=["https://app.example"]) as web:
        headers = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
        allowed = web.options("/verify", headers={"Origin": "https://app.example", **headers})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
        refused = web.options("/verify", headers={"Origin": EVIL, **headers})
        assert "access-control-allow-origin" not in refused.headers


def test_trusted_hosts(settings, face_engine) -> None:
    with _app_client(settings, face_engine, trusted_hosts=["faceverify.lan", "*.corp.example"]) as web:
        assert web.get("/health", headers={"Host": "faceverify.lan:8000"}).status_code == 200
        assert web.get("/health", headers={"Host": "a.corp.example"}).status_code == 200
        rebound = web.get("/health", headers={"Host": "attacker.example"})
        assert (rebound.status_code, rebound.json()["reason"]) == (400, "invalid_host")
        _assert_hardened(rebound)
        assert web.get("/health", headers={"Host": "corp.example.attacker.net"}).status_code == 400


def test_docs_off_by_default_and_the_schema_describes_the_key(client, settings, face_engine) -> None:
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 404
    spec = client.app.openapi()
    assert spec["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "API key (`faceverify keys create`); scopes verify, enroll, manage, admin.",
    }
    assert spec["paths"]["/verify"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in spec["paths"]["/health"]["get"]
    with _app_client(settings, face_engine, docs_enabled=True) as web:
        assert web.get("/docs").status_code == 200
        assert "Content-Security-Policy" not in web.get("/docs").headers  # Swagger UI needs its assets
        assert (
            web.get("/openapi.json").json()["components"]["securitySchemes"]
            == spec["components"]["securitySchemes"]
        )


def test_a_server_fault_leaks_no_internals(client, monkeypatch: pytest.MonkeyPatch) -> None:
    photo = lfw_bytes("George_W_Bush", 1)
    client.post("/enroll", data={"user_id": "bush"}, files=[("images", ("a.jpg", photo, "image/jpeg"))])

    def broken(*_args, **_kwargs):
        raise RuntimeError("secret detail /srv/faceverify/models password=hunter2")

    monkeypatch.setattr(client.app.state.face_engine, "score", broken)
    answer = client.post("/verify", data={"user_id": "bush"}, files={"image": ("p.jpg", photo, "image/jpeg")})
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal server error", "reason": "internal_error"}
    _assert_hardened(answer)
