"""Admission control semantics, in-process (no server): slots, a bounded queue with a bounded
wait, shedding before the body is read, and only the configured heavy paths."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from service.runtime.admission import AdmissionGate, AdmissionMiddleware
from service.runtime.config import Settings


def test_gate_admits_queues_and_sheds() -> None:
    async def scenario() -> None:
        gate = AdmissionGate(max_active=1, max_queued=1, max_wait_s=0.5)
        assert await gate.try_enter()  # takes the slot
        waiter = asyncio.create_task(gate.try_enter())  # queued
        await asyncio.sleep(0.05)
        started = time.monotonic()
        assert not await gate.try_enter()  # queue full: shed at once
        assert time.monotonic() - started < 0.05
        await gate.leave()
        assert await waiter  # the queued one got the slot
        # with the slot held, a waiter gives up after max_wait_s
        started = time.monotonic()
        late = await gate.try_enter()
        assert late is False and 0.4 < time.monotonic() - started < 1.5
        assert gate.queued == 0 and gate.active == 1

    asyncio.run(scenario())


def _middleware(**settings: Any) -> tuple[AdmissionMiddleware, list[str]]:
    calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        await asyncio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return AdmissionMiddleware(app, Settings(**settings)), calls


def test_middleware_sheds_before_reading_the_body_and_only_on_heavy_paths() -> None:
    middleware, calls = _middleware(
        admission_max_active=1, admission_max_queued=1, admission_max_wait_s=0.05
    )

    async def never_receive() -> Any:
        raise AssertionError("the body must not be read for a shed request")

    async def call(path: str, method: str = "POST") -> list[Any]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": method, "path": path, "headers": []}
        await middleware(scope, never_receive, send)
        return sent

    async def scenario() -> list[list[Any]]:
        return await asyncio.gather(
            call("/verify"), call("/verify"), call("/enroll"), call("/liveness/check"), call("/users", "GET")
        )

    results = asyncio.run(scenario())
    statuses = [r[0]["status"] for r in results]
    assert statuses[0] == 200 and statuses[-1] == 200  # first heavy one, and the light route
    shed = [r for r in results if r[0]["status"] == 503]
    assert len(shed) == 3
    for response in shed:
        headers = dict(response[0]["headers"])
        assert headers[b"retry-after"] == b"1"
        assert json.loads(response[1]["body"])["reason"] == "overloaded"
    assert "/users" in calls
