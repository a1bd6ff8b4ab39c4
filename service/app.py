"""The FastAPI application: `create_app(settings)`.

The lifespan opens the database (bringing the schema to head unless disabled), loads the face
pipeline and served model once, runs one warm-up inference (service/faces/warmup.py) before setting
`app.state.warm` (which /ready requires), starts the Prometheus listener when a metrics port is set,
and shares everything through `app.state`; endpoints are plain `def` functions so FastAPI runs
inference in its thread pool, off the event loop.

Middleware, outermost first: Metrics (every status) -> Security (headers, hosts, early 401) ->
RequestGuard (request id, body deadlines, the one 500 answer) -> Admission (sheds load on the
CPU-heavy routes before their body is read) -> CORS (when configured) -> BodySizeLimit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from service.audit import routes as audit_routes
from service.enrolment import routes as enrolment_routes
from service.faces.engine import FaceEngine
from service.faces.warmup import warm_up
from service.http import health
from service.http.errors import BodySizeLimitMiddleware, install_error_handlers
from service.http.guard import RequestGuardMiddleware
from service.http.health import DatabaseProbe
from service.http.middleware import SecurityMiddleware
from service.liveness import routes as liveness_routes
from service.runtime import metrics
from service.runtime.admission import AdmissionMiddleware
from service.runtime.config import Settings
from service.security.bootstrap import ensure_admin_key
from service.security.ratelimit import RateLimiter
from service.storage.database import create_db_engine, make_session_factory, upgrade_to_head
from service.storage.recovery import repair_store
from service.storage.setup import open_storage
from service.users import routes as users_routes
from service.verification import routes as verification_routes

DESCRIPTION = """
Enrol people from a few photos and verify a new photo against them.

Errors are JSON `{"detail": ..., "reason": ...}` where `reason` is a stable code
(`no_face`, `multiple_faces`, `not_an_image`, `empty`, `too_large`, `too_many_pixels`,
`invalid_user_id`, `missing_field`, `unknown_user`, `model_version_mismatch`, ...).

Every data route needs an API key in the `X-API-Key` header with the route's scope (`verify`,
`enroll`, `manage`; `admin` allows everything): 401 `missing_api_key` / `invalid_api_key`,
403 `insufficient_scope`, 429 `locked_out` / `rate_limited` with Retry-After.
"""


def create_app(settings: Settings | None = None, face_engine: FaceEngine | None = None) -> FastAPI:
    """Build the app. `face_engine` lets tests and benchmarks share one loaded model across apps."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keyring, store = await run_in_threadpool(open_storage, settings)  # before SQLite creates its file
        if settings.migrate_on_startup:
            # Unbounded engine: a migration (or waiting for another replica's) may take a while.
            migrate_engine = create_db_engine(settings.sqlalchemy_url, settings, bounded=False)
            try:
                await run_in_threadpool(upgrade_to_head, migrate_engine)
            finally:
                migrate_engine.dispose()
        db_engine = create_db_engine(settings.sqlalchemy_url, settings)
        ready_probe = DatabaseProbe()
        app.state.warm = False
        metrics_server = None
        try:
            engine = face_engine or await run_in_threadpool(
                FaceEngine, settings.model_dir, None, settings.tf_threads, settings.runtime_config()
            )
            assert engine is not None
            app.state.settings = settings
            app.state.db_engine = db_engine
            app.state.ready_probe = ready_probe
            app.state.session_factory = make_session_factory(db_engine)
            app.state.rate_limiter = RateLimiter(settings.rate_limit_per_minute)
            if settings.bootstrap_admin_key:
                given = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
                await run_in_threadpool(
                    ensure_admin_key, app.state.session_factory, settings.admin_key_file, given
                )
            app.state.keyring = keyring
            app.state.store = store
            # Crash repair: temp files, files without rows, rows without files (logged).
            await run_in_threadpool(repair_store, app.state.session_factory, store)
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
            ready_probe.close()
            if metrics_server is not None:
                metrics_server.close()
            db_engine.dispose()

    docs = settings.docs_enabled
    app = FastAPI(
        title="faceverify",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimitMiddleware, settings=settings)
    if settings.cors_origins:  # no CORS headers at all unless an allow-list is configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"],
        )
    app.add_middleware(AdmissionMiddleware, settings=settings)
    # Request id, body deadlines and the one answer to a crash (inside the security layer, so its
    # 500 and 408 answers carry the security headers too).
    app.add_middleware(RequestGuardMiddleware, settings=settings)
    # Outermost (added last): security headers and the Host allow-list apply to every response, and
    # a request without any key is refused before it takes an admission slot or sends its body.
    app.add_middleware(SecurityMiddleware, trusted_hosts=settings.trusted_hosts, docs_enabled=docs)
    app.add_middleware(metrics.MetricsMiddleware)  # outermost: sees every status, 401s and 413s included
    for router in (
        enrolment_routes.router,
        verification_routes.router,
        liveness_routes.router,
        users_routes.router,
        users_routes.lock_router,
        audit_routes.router,
        health.router,
    ):
        app.include_router(router)
    return app
