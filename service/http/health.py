"""GET /health (the process answers) and GET /ready (model loaded and warmed up, database reachable).

/health is an `async def` that touches nothing: it answers from the event loop even when every
worker thread is busy or stuck on a frozen database, so a liveness probe never restarts a node that
is only busy. /ready probes the database from ONE dedicated thread, at most one probe in flight
(concurrent /ready calls share it), and reports "unreachable" after `ready_timeout_s`.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future, ThreadPoolExecutor

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from service.http.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness: the process is up")
async def health() -> HealthOut:
    return HealthOut(status="ok")


class DatabaseProbe:
    """Single-flight `SELECT 1` on its own thread, so probes never queue in the request thread pool."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ready-probe")
        self._inflight: Future[None] | None = None
        self._waitable: asyncio.Future[None] | None = None

    @staticmethod
    def _select_one(engine: Engine) -> None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    async def check(self, engine: Engine, timeout_s: float) -> str:
        if self._inflight is None or self._inflight.done() or self._waitable is None:
            self._inflight = self._executor.submit(self._select_one, engine)
            self._waitable = asyncio.wrap_future(self._inflight)
            # A probe that outlives every waiter still has its outcome read (no "never retrieved").
            self._waitable.add_done_callback(lambda f: f.cancelled() or f.exception())
        try:
            await asyncio.wait_for(asyncio.shield(self._waitable), timeout_s)
        except TimeoutError:
            return f"unreachable: no answer within {timeout_s:g} s"
        except Exception as exc:  # any failure means "not ready", reported, never raised
            return f"unreachable: {type(exc).__name__}"
        return "ok"

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="Readiness: model loaded and warmed up, database reachable",
    responses={
        503: {"model": ReadyOut, "description": "Model not loaded or not warmed up, or database unreachable."}
    },
)
async def ready(request: Request) -> ReadyOut | JSONResponse:
    state = request.app.state
    engine = getattr(state, "face_engine", None)
    version = getattr(engine, "version", None)
    probe: DatabaseProbe = state.ready_probe
    database = await probe.check(state.db_engine, state.settings.ready_timeout_s)
    # `warm` is set by the lifespan after the warm-up inference: ready means "a verify will be fast".
    if engine is None or not getattr(state, "warm", False) or database != "ok":
        body = ReadyOut(status="not_ready", model_version=version, database=database)
        return JSONResponse(status_code=503, content=body.model_dump(), headers={"Retry-After": "2"})
    return ReadyOut(status="ready", model_version=version, database=database)
