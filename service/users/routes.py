"""Users and their stored images: list, inspect, delete (rows and files)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Security

from service.http.auditing import AuditDep
from service.http.deps import (
    MAX_DB_INT,
    FaceEngineDep,
    ImageIdPath,
    ManageKey,
    SessionDep,
    StoreDep,
    UserIdPath,
    require_scope,
)
from service.http.schemas import ErrorOut
from service.security import lockout
from service.users.schemas import DeletedOut, ImageOut, UnlockOut, UserDetailOut, UserOut, UserPageOut
from service.users.service import delete_image as delete_image_of_user
from service.users.service import delete_user as delete_user_and_images
from service.users.service import list_users as list_users_page
from service.users.service import require_user

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Security(require_scope("manage"))])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown user or image."}
}


@router.get("", response_model=UserPageOut, summary="List enrolled users (paginated, by user_id)")
def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Users to skip.")] = 0,
) -> UserPageOut:
    page = list_users_page(session, limit, offset)
    return UserPageOut(
        users=[
            UserOut(
                user_id=s.user.user_id,
                created=s.user.created,
                image_count=s.image_count,
                model_versions=s.model_versions,
            )
            for s in page.users
        ],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{user_id}", response_model=UserDetailOut, responses=_NOT_FOUND, summary="A user and their images"
)
def get_user(user_id: UserIdPath, session: SessionDep, engine: FaceEngineDep) -> UserDetailOut:
    user = require_user(session, user_id)
    return UserDetailOut(
        user_id=user.user_id,
        created=user.created,
        model_version=engine.version,
        images=[
            ImageOut(
                image_id=i.id,
                sha256=i.sha256,
                size=i.size,
                box=i.box,
                model_version=i.model_version,
                created=i.created,
            )
            for i in user.images
        ],
    )


@router.delete(
    "/{user_id}", response_model=DeletedOut, responses=_NOT_FOUND, summary="Delete a user, rows and files"
)
def delete_user(user_id: UserIdPath, session: SessionDep, store: StoreDep, audit: AuditDep) -> DeletedOut:
    """Rows first (committed under the user's lock), then the files: a crash in between leaves
    files without rows (removed at the next start), never rows pointing at missing files."""
    with audit.around("delete_user", user_id) as summary:
        deleted = delete_user_and_images(session, store, user_id)
        summary["deleted_images"] = deleted
    return DeletedOut(user_id=user_id, deleted_images=deleted)


@router.delete(
    "/{user_id}/images/{image_id}",
    response_model=DeletedOut,
    responses=_NOT_FOUND,
    summary="Delete one enrolled image (row and file)",
)
def delete_image(
    user_id: UserIdPath, image_id: ImageIdPath, session: SessionDep, store: StoreDep, audit: AuditDep
) -> DeletedOut:
    with audit.around("delete_image", user_id) as summary:
        summary["image_id"] = image_id
        delete_image_of_user(session, store, user_id, image_id)
    return DeletedOut(user_id=user_id, deleted_images=1)


# The unlock route keeps the "security" tag it has always had in the API schema, and its own
# scope check (manage), so it sits on a router of its own.
lock_router = APIRouter(tags=["security"])


@lock_router.post(
    "/users/{user_id}/unlock",
    response_model=UnlockOut,
    responses={
        401: {"model": ErrorOut, "description": "No or invalid API key."},
        403: {"model": ErrorOut, "description": "The key lacks the needed scope."},
        404: {"model": ErrorOut, "description": "Unknown user."},
    },
    summary="Lift a verify lockout and forget the user's failed verifies",
)
def unlock(_key: ManageKey, user_id: UserIdPath, session: SessionDep, audit: AuditDep) -> UnlockOut:
    user = require_user(session, user_id)
    with audit.around("unlock", user.user_id) as summary:
        was_locked = lockout.unlock(session, user.user_id)
        summary["was_locked"] = was_locked
    return UnlockOut(user_id=user.user_id, was_locked=was_locked)
