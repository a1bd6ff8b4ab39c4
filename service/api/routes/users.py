"""Users and their stored images: list, inspect, delete (rows and files)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Security
from sqlalchemy import func, select

from service.api.auditing import AuditDep
from service.api.deps import EngineDep, SessionDep, StoreDep, require_scope
from service.api.errors import USER_ID_PATTERN, ApiError
from service.api.schemas import DeletedOut, ErrorOut, ImageOut, UserDetailOut, UserOut, UserPageOut
from service.db_models import Image, User

router = APIRouter(prefix="/users", tags=["users"], dependencies=[Security(require_scope("manage"))])

UserIdPath = Annotated[str, Path(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown user or image."}
}


def _user_or_404(session: SessionDep, user_id: str) -> User:
    user = session.scalar(select(User).where(User.user_id == user_id))
    if user is None:
        raise ApiError(404, "unknown_user", f"user {user_id!r} is not enrolled")
    return user


@router.get("", response_model=UserPageOut, summary="List enrolled users (paginated, by user_id)")
def list_users(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500, description="Page size.")] = 50,
    offset: Annotated[int, Query(ge=0, description="Users to skip.")] = 0,
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
    user = _user_or_404(session, user_id)
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
    """Rows are deleted first (committed), then the files: a failure in between leaves unreferenced
    files, never rows pointing at missing files."""
    with audit.around("delete_user", user_id) as summary:
        user = _user_or_404(session, user_id)
        paths = [image.path for image in user.images]
        session.delete(user)
        session.commit()
        summary["deleted_images"] = len(paths)
    for path in paths:
        store.delete(path)
    store.delete_user(user_id)
    return DeletedOut(user_id=user_id, deleted_images=len(paths))


@router.delete(
    "/{user_id}/images/{image_id}",
    response_model=DeletedOut,
    responses=_NOT_FOUND,
    summary="Delete one enrolled image (row and file)",
)
def delete_image(
    user_id: UserIdPath, image_id: int, session: SessionDep, store: StoreDep, audit: AuditDep
) -> DeletedOut:
    with audit.around("delete_image", user_id) as summary:
        summary["image_id"] = image_id
        user = _user_or_404(session, user_id)
        image = session.scalar(select(Image).where(Image.id == image_id, Image.user_pk == user.id))
        if image is None:
            raise ApiError(404, "unknown_image", f"user {user_id!r} has no image {image_id}")
        path = image.path
        session.delete(image)
        session.commit()
    store.delete(path)
    return DeletedOut(user_id=user_id, deleted_images=1)
