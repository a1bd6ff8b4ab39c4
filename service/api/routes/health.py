"""GET /health (the process answers) and GET /ready (model loaded and warmed up, database reachable)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from service.api.schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness: the process is up")
def health() -> HealthOut:
    return HealthOut(status="ok")


@router.get(
    "/ready",
    response_model=ReadyOut,
    summary="Readiness: model loaded and warmed up, database reachable",
    responses={
        503: {"model": ReadyOut, "description": "Model not loaded or not warmed up, or database unreachable."}
    },
)
def ready(request: Request) -> ReadyOut | JSONResponse:
    engine = getattr(request.app.state, "face_engine", None)
    version = getattr(engine, "version", None)
    try:
        with request.app.state.db_engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # any failure means "not ready", reported, never raised
        database = f"unreachable: {type(exc).__name__}"
    # `warm` is set by the lifespan after the warm-up inference: ready means "a verify will be fast".
    if engine is None or not getattr(request.app.state, "warm", False) or database != "ok":
        body = ReadyOut(status="not_ready", model_version=version, database=database)
        return JSONResponse(status_code=503, content=body.model_dump())
    return ReadyOut(status="ready", model_version=version, database=database)
