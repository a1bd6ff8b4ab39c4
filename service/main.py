"""The FastAPI application: `create_app(settings)`.

The lifespan opens the database (bringing the schema to head unless disabled), loads the face
pipeline and served model once, runs one warm-up inference (service/warmup.py) before setting
`app.state.warm` (which /ready requires), starts the Prometheus listener when a metrics port is set,
and shares everything through `app.state`; endpoints are plain `def` functions so FastAPI runs
inference in its thread pool, off the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from service import metrics
from service.api.errors import BodySizeLimitMiddleware, install_error_handlers
from service.api.routes import enroll, health, users, verify
from service.core.config import Settings
from service.core.db import create_db_engine, make_session_factory, upgrade_to_head
from service.engine import FaceEngine
from service.store import ImageStore
from service.warmup import warm_up

DESCRIPTION = """
Enrol people from a few photos and verify a new photo against them.

Errors are JSON `{"detail": ..., "reason": ...}` where `reason` is a stable code
(`no_face`, `multiple_faces`, `not_an_image`, `empty`, `too_large`, `too_many_pixels`,
`invalid_user_id`, `missing_field`, `unknown_user`, `model_version_mismatch`, ...).
"""


def create_app(settings: Settings | None = None, face_engine: FaceEngine | None = None) -> FastAPI:
    """Build the app. `face_engine` lets tests and benchmarks share one loaded model across apps."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db_engine = create_db_engine(settings.sqlalchemy_url)
        app.state.warm = False
        metrics_server = None
        try:
            if settings.migrate_on_startup:
                await run_in_threadpool(upgrade_to_head, db_engine)
            engine = face_engine or await run_in_threadpool(
                FaceEngine, settings.model_dir, None, settings.tf_threads
            )
            assert engine is not None
            settings.image_dir.mkdir(parents=True, exist_ok=True)
            app.state.settings = settings
            app.state.db_engine = db_engine
            app.state.session_factory = make_session_factory(db_engine)
            app.state.store = ImageStore(settings.image_dir)
            app.state.face_engine = engine
            metrics.set_model_info(getattr(engine, "card", {}))
            if settings.warm_up:
                await run_in_threadpool(warm_up, engine)
            app.state.warm = True
            if settings.metrics_port:
                metrics_server = metrics.serve_metrics(settings.metrics_host, settings.metrics_port)
            app.state.metrics_server = metrics_server
            yield
        finally:
            if metrics_server is not None:
                metrics_server.close()
            db_engine.dispose()

    app = FastAPI(title="faceverify", version="0.1.0", description=DESCRIPTION, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, settings=settings)
    app.add_middleware(metrics.MetricsMiddleware)  # outermost: sees every status, 413s included
    for module in (enroll, verify, users, health):
        app.include_router(module.router)
    return app
