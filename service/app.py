"""The FastAPI application: `create_app(settings)`.

The lifespan opens the database (bringing the schema to head unless disabled), loads the face
pipeline and served model once, runs one warm-up inference (service/faces/warmup.py) before setting
`app.state.warm` (which /ready requires), starts the Prometheus listener when a metrics port is set,
and shares everything through `app.state`; endpoints are plain `def` functions so FastAPI runs
inference in its thread pool, off the event loop.

Middleware, outermost first: Metrics (every status) -> Security (headers, hosts, the API key and
its rate limit, before admission and the body) ->
RequestGuard (request id, body deadlines, the one 500 answer) -> Admission (sheds load on the
CPU-heavy routes before their body is read) -> CORS (when configured) -> BodySizeLimit.
"""

from __future__ import annotations

import logging
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
from service.http.middleware import UI_PREFIX, SecurityMiddleware
from service.inspect import routes as inspect_routes
from service.keys import routes as keys_routes
from service.liveness import routes as liveness_routes
from service.liveness.challenges import Sweeper
from service.runtime import metrics
from service.runtime.admission import AdmissionMiddleware
from service.runtime.config import Settings
from service.security.bootstrap import ensure_admin_key
from service.security.keys import Authenticator
from service.security.ratelimit import RateLimiter
from service.storage.database import create_db_engine, make_session_factory, upgrade_to_head
from service.storage.identity import StoreGuard
from service.storage.recovery import repair_store
from service.storage.setup import missing_key_message, open_storage, prepare_private_files
from service.ui import mount_ui
from service.users import routes as users_routes
from service.verification import routes as verification_routes

log = logging.getLogger("faceverify.service")

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
        await run_in_threadpool(prepare_private_files, settings)  # before SQLite creates its file
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
            app.state.liveness_sweeper = Sweeper(settings.liveness_sweep_interval_s)
            app.state.authenticator = Authenticator(app.state.session_factory, settings.auth_refused_ttl_s)
            if settings.bootstrap_admin_key:
                given = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
                await run_in_threadpool(
                    ensure_admin_key, app.state.session_factory, settings.admin_key_file, given
                )
            # No new key for a database that holds sealed rows (issue 18): then not ready instead.
            keyring, store = await run_in_threadpool(open_storage, settings, db_engine)
            if keyring.problem() is not None:
                log.error("not ready: %s", await run_in_threadpool(missing_key_message, settings, db_engine))
            app.state.keyring = keyring
            app.state.store = store
            guard = StoreGuard(store, check=settings.store_photos)
            app.state.store_guard = guard
            # The store must be this database's (else not ready, nothing touched); then the crash
            # check only REPORTS (logged): deleting rows or files is `faceverify store check --repair`.
            if await run_in_threadpool(guard.establish, app.state.session_factory) is None:
                await run_in_threadpool(repair_store, app.state.session_factory, store, apply=False)
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
        # No 307 from `/users/` to `/users`: Starlette builds that Location from the Host header,
        # which (with TRUSTED_HOSTS ["*"]) is whatever the client sent - an open redirect.
        redirect_slashes=False,
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
    app.add_middleware(
        SecurityMiddleware,
        trusted_hosts=settings.trusted_hosts,
        docs_enabled=docs,
        ui_enabled=settings.ui_enabled,
    )
    app.add_middleware(metrics.MetricsMiddleware)  # outermost: sees every status, 401s and 413s included
    for router in (
        enrolment_routes.router,
        verification_routes.router,
        liveness_routes.router,
        users_routes.router,
        users_routes.lock_router,
        audit_routes.router,
        keys_routes.router,
        inspect_routes.router,
        health.router,
    ):
        app.include_router(router)
    if settings.ui_enabled:
        mount_ui(app, UI_PREFIX)
    return app
