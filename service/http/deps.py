"""FastAPI dependencies (Annotated aliases), resolved from what the lifespan put on `app.state`.

Authentication is a dependency too: `Security(require_scope("verify"))` on a route (or a router)
checks the `X-API-Key` header against the database on every request (so a revoked key fails on
the next request on every replica), then the key's scope, then the per-key rate limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import APIKeyHeader
from sqlalchemy.orm import Session

from service.errors import Forbidden, Unauthenticated
from service.faces.engine import FaceEngine
from service.http.errors import USER_ID_PATTERN
from service.runtime.config import Settings
from service.security.keys import Principal, authenticate
from service.security.ratelimit import RateLimiter
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
    store: ImageStore = request.app.state.store
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


def require_scope(scope: str) -> Callable[..., Principal]:
    """Dependency factory: the request's key must be valid, unrevoked and carry `scope` (or admin)."""

    def authenticated(
        request: Request, session: SessionDep, presented: Annotated[str | None, Security(api_key_header)]
    ) -> Principal:
        if not presented:
            raise Unauthenticated("missing_api_key", "send an API key in the X-API-Key header")
        principal = authenticate(session, presented)
        session.rollback()  # end the read transaction; the route starts its own
        if principal is None:
            raise Unauthenticated("invalid_api_key", "the API key is unknown or revoked")
        if not principal.allows(scope):
            raise Forbidden("insufficient_scope", f"this API key lacks the {scope!r} scope")
        limiter: RateLimiter = request.app.state.rate_limiter
        limiter.check(principal.name)
        request.state.principal = principal
        return principal

    return authenticated


VerifyKey = Annotated[Principal, Security(require_scope("verify"))]
EnrollKey = Annotated[Principal, Security(require_scope("enroll"))]
ManageKey = Annotated[Principal, Security(require_scope("manage"))]
AdminKey = Annotated[Principal, Security(require_scope("admin"))]

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")]
# Ids and offsets are bounded so that an out-of-range integer is a 422, never a database overflow
# (500) - PostgreSQL's INTEGER columns end at 2**31 - 1.
MAX_DB_INT = 2**31 - 1
ImageIdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="An image id from GET /users/{id}.")]

