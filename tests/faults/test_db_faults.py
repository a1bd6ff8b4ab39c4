"""Database faults on a live server: a PostgreSQL of the test's own stopped and frozen mid-traffic,
and a SQLite writer lock held by someone else.

Before: a stopped server gave 500 `internal_error` on every data route; a frozen one (SIGSTOP: its
kernel still ACKs, so no timeout fires) hung requests until the client gave up, and /health with
them. Now: 503 `database_unavailable` with Retry-After within seconds, /health unaffected, and
recovery by itself once the database is back.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from faults_support import InProcessServer, PrivatePostgres, api_headers, lfw_bytes

pytestmark = pytest.mark.slow

DEADLINE_S = 10.0  # the bound for "503 within"


def _settings(tmp_path: Path, url: str, model: Path) -> Any:
    from service.runtime.config import Settings

    return Settings(
        data_dir=tmp_path / "data", database_url=url, model_dir=model,
        db_deadline_s=2.0, db_statement_timeout_s=1.5, db_connect_timeout_s=2,
        db_pool_size=2, db_max_overflow=1, db_pool_timeout_s=1.0, ready_timeout_s=1.0,
    )  # fmt: skip


def _timed_get(url: str, path: str) -> tuple[float, httpx.Response]:
    started = time.monotonic()
    response = httpx.get(url + path, headers=api_headers(), timeout=30)
    return time.monotonic() - started, response


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["reason"] == "database_unavailable"
    assert int(response.headers["retry-after"]) >= 1


def _wait_until_ok(url: str, limit_s: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        if httpx.get(url + "/users", headers=api_headers(), timeout=30).status_code == 200:
            return time.monotonic() - started
        time.sleep(0.3)
    raise AssertionError(f"no recovery within {limit_s} s")


def test_postgres_stopped_then_frozen_gives_503_fast_and_recovers(
    tmp_path: Path, private_postgres: PrivatePostgres, tiny_model_dir: Path, face_engine: Any
) -> None:
    settings = _settings(tmp_path, private_postgres.url, tiny_model_dir)
    with InProcessServer(settings, face_engine) as server:
        assert _timed_get(server.url, "/users")[1].status_code == 200

        # --- stopped: connection refused
        private_postgres.stop()
        elapsed, response = _timed_get(server.url, "/users")
        _assert_unavailable(response)
        assert elapsed < DEADLINE_S
        elapsed, response = _timed_get(server.url, "/ready")
        assert response.status_code == 503 and elapsed < 3.0
        private_postgres.start()
        _wait_until_ok(server.url)

        # --- frozen mid-traffic: more concurrent requests than pooled connections
        private_postgres.freeze()
        try:
            with ThreadPoolExecutor(8) as pool:
                stuck = [pool.submit(_timed_get, server.url, "/users") for _ in range(8)]
                time.sleep(0.5)
                health_s, health = _timed_get(server.url, "/health")
                ready_s, ready = _timed_get(server.url, "/ready")
                results = [future.result() for future in stuck]
        finally:
            private_postgres.thaw()
        # Before: /health queued behind the stuck threads until the client gave up. (Loose bound:
        # this server shares the test process's GIL with 8 client threads on a busy machine.)
        assert health.status_code == 200 and health_s < 2.5, health_s
        assert ready.status_code == 503 and ready_s < 3.0, ready_s
        for elapsed, response in results:
            _assert_unavailable(response)
            assert elapsed < DEADLINE_S, [round(e, 2) for e, _ in results]
        _wait_until_ok(server.url)


def test_sqlite_writer_lock_gives_503_within_seconds(
    tmp_path: Path, tiny_model_dir: Path, face_engine: Any
) -> None:
    from service.runtime.config import Settings

    photo = lfw_bytes("Tony_Blair", 2)
    settings = Settings(data_dir=tmp_path / "data", model_dir=tiny_model_dir, sqlite_busy_timeout_s=1.0)
    with InProcessServer(settings, face_engine) as server:
        blocker = sqlite3.connect(tmp_path / "data" / "faceverify.db", timeout=1)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            started = time.monotonic()
            response = httpx.post(
                server.url + "/enroll", data={"user_id": "tony"}, headers=api_headers(),
                files={"images": ("a.jpg", photo, "image/jpeg")}, timeout=60,
            )  # fmt: skip
            elapsed = time.monotonic() - started
        finally:
            blocker.rollback()
            blocker.close()
        _assert_unavailable(response)
        assert elapsed < DEADLINE_S
        again = httpx.post(
            server.url + "/enroll", data={"user_id": "tony"}, headers=api_headers(),
            files={"images": ("a.jpg", photo, "image/jpeg")}, timeout=60,
        )  # fmt: skip
        assert again.status_code == 201, again.text
