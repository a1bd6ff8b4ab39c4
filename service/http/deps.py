"""FastAPI dependencies (Annotated aliases), resolved from what the lifespan put on `app.state`.

Authentication: service.http.middleware checks the `X-API-Key` header against the database on
every request (so a revoked key fails on the next request on every replica) and takes the per-key
rate limit, before admission and before the body is read; `Security(require_scope("verify"))` on a
route (or a router) then checks the key's scope (and authenticates itself where that middleware
is absent).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from service.errors import Forbidden, Unauthenticated, Unavailable
from service.faces.engine import FaceEngine
from service.http.errors import USER_ID_PATTERN
from service.runtime.config import Settings
from service.security.keys import Principal, authenticate
from service.security.ratelimit import RateLimiter
from service.storage.identity import storage_problem
from service.storage.photos import ImageStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; closed (and rolled back if uncommitted) when the request ends."""
    with request.app.state.session_factory() as session:
        yield session


def get_face_engine(request: Request) -> FaceEngine:
    """The loaded face pipeline + served model."""
    engine: FaceEngine = request.app.state.face_engine
    return engine


def get_store(request: Request) -> ImageStore:
    """The photo store (and its key ring), or 503 while either cannot be used: the key file is gone
    (`encryption_key_unavailable`) or the store is missing or another database's
    (`store_unavailable`); see service.storage.identity. Re-checked per request, so restoring the
    file or mounting the volume brings the routes back without a restart."""
    state = request.app.state
    problem = storage_problem(state.store_guard, state.keyring)
    if problem is not None:
        raise Unavailable(problem[0], problem[1], retry_after_s=30)
    store: ImageStore = state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
FaceEngineDep = Annotated[FaceEngine, Depends(get_face_engine)]
StoreDep = Annotated[ImageStore, Depends(get_store)]

# auto_error=False: a missing key is our 401 `missing_api_key`, not FastAPI's generic 403.
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="API key (`faceverify keys create`); scopes verify, enroll, manage, admin.",
)


def require_scope(*scopes: str) -> Callable[..., Principal]:
    """Dependency factory: the request's key must be valid, unrevoked and carry one of `scopes` (or
    admin); with no scope named, any valid key will do (GET /keys/me, GET /model)."""

    def authenticated(
        request: Request, session: SessionDep, presented: Annotated[str | None, Security(api_key_header)]
    ) -> Principal:
        if not presented:
            raise Unauthenticated("missing_api_key", "send an API key in the X-API-Key header")
        # Normally authenticated and rate-limited already, before the body was read
        # (service.http.middleware); this path serves an app mounted without that middleware.
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            principal = authenticate(session, presented)
            session.rollback()  # end the read transaction; the route starts its own
            if principal is None:
                raise Unauthenticated("invalid_api_key", "the API key is unknown or revoked")
            limiter: RateLimiter = request.app.state.rate_limiter
            limiter.check(principal.name)
            request.state.principal = principal
        if scopes and not any(principal.allows(scope) for scope in scopes):
            raise Forbidden("insufficient_scope", f"this API key lacks the {' or '.join(scopes)} scope")
        path_user = request.path_params.get("user_id")
        if isinstance(path_user, str):
            principal.require_user(path_user)  # a key restricted to a user-id prefix
        return principal

    return authenticated


VerifyKey = Annotated[Principal, Security(require_scope("verify"))]
EnrollKey = Annotated[Principal, Security(require_scope("enroll"))]
ManageKey = Annotated[Principal, Security(require_scope("manage"))]
AdminKey = Annotated[Principal, Security(require_scope("admin"))]
AnyKey = Annotated[Principal, Security(require_scope())]
# The kiosk's frame check serves both its enrol and its verify flow.
VerifyOrEnrollKey = Annotated[Principal, Security(require_scope("verify", "enroll"))]

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")]
# Ids and offsets are bounded so that an out-of-range integer is a 422, never a database overflow
# (500) - PostgreSQL's INTEGER columns end at 2**31 - 1.
MAX_DB_INT = 2**31 - 1
ImageIdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="An image id from GET /users/{id}.")]
