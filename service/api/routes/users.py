"""Users and their stored images: list, inspect, delete (rows and files)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Security
from sqlalchemy import func, select

from service.api.auditing import AuditDep
from service.api.deps import EngineDep, SessionDep, StoreDep, require_scope
from service.api.errors import USER_ID_PATTERN
from service.api.schemas import DeletedOut, ErrorOut, ImageOut, UserDetailOut, UserOut, UserPageOut
from service.db_models import Image, User
from service.user_admin import delete_image as delete_image_of_user
from service.user_admin import delete_user as delete_user_and_images
from service.user_admin import require_user

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Security(require_scope("manage"))])

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")]
# Ids and offsets are bounded so that an out-of-range integer is a 422, never a database overflow
# (500) - PostgreSQL's INTEGER columns end at 2**31 - 1 (issue 8).
MAX_DB_INT = 2**31 - 1
ImageIdPath = Annotated[int, Path(ge=1, le=MAX_DB_INT, description="An image id from GET /users/{id}.")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown user or image."}
}


@router.get("", response_model=UserPageOut, summary="List enrolled users (paginated, by user_id)")
def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_DB_INT, description="Users to skip.")] = 0,
) -> UserPageOut:
    total = session.scalar(select(func.count()).select_from(User)) or 0
    users = session.scalars(select(User).order_by(User.user_id).limit(limit).offset(offset)).all()
    counts: dict[int, tuple[int, list[str]]] = {}
    if users:
        rows = session.execute(
            select(Image.user_pk, Image.model_version, func.count())
            .where(Image.user_pk.in_([u.id for u in users]))
            .group_by(Image.user_pk, Image.model_version)
        )
        for user_pk, version, count in rows:
            n, versions = counts.get(user_pk, (0, []))
            counts[user_pk] = (n + int(count), sorted([*versions, version]))
    return UserPageOut(
        users=[
            UserOut(
                user_id=u.user_id,
                created=u.created,
                image_count=counts.get(u.id, (0, []))[0],
                model_versions=counts.get(u.id, (0, []))[1],
            )
            for u in users
        ],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{user_id}", response_model=UserDetailOut, responses=_NOT_FOUND, summary="A user and their images"
)
def get_user(user_id: UserIdPath, session: SessionDep, engine: EngineDep) -> UserDetailOut:
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
