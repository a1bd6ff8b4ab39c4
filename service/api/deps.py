"""FastAPI dependencies (Annotated aliases), resolved from what the lifespan put on `app.state`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.core.config import Settings
from service.engine import FaceEngine
from service.store import ImageStore


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """One session per request; closed (and rolled back if uncommitted) when the request ends."""
    with request.app.state.session_factory() as session:
        yield session


def get_engine(request: Request) -> FaceEngine:
    """The loaded face pipeline + served model."""
    engine: FaceEngine = request.app.state.face_engine
    return engine


def get_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
EngineDep = Annotated[FaceEngine, Depends(get_engine)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
