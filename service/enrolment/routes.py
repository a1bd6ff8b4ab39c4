"""POST /enroll: store a user's reference photos and their embeddings (HTTP <-> service.enrolment)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from service.enrolment.schemas import EnrolledImage, EnrollOut, RejectedImage
from service.enrolment.service import enrol
from service.http.auditing import AuditDep
from service.http.deps import EnrollKey, FaceEngineDep, SessionDep, SettingsDep, StoreDep
from service.http.errors import USER_ID_PATTERN
from service.http.schemas import ErrorOut

router = APIRouter(tags=["enrolment"])


@router.post(
    "/enroll",
    status_code=201,
    response_model=EnrollOut,
    summary="Enrol reference photos of a user",
    responses={
        409: {"model": ErrorOut, "description": "Per-user image quota reached (image_quota_exceeded)."},
        413: {
            "model": ErrorOut,
            "description": "Request body, file count, every image, or the per-user byte quota "
            "(byte_quota_exceeded) too large.",
        },
        422: {"model": ErrorOut, "description": "Invalid user_id, missing field, or no image usable."},
    },
)
def enroll(
    _key: EnrollKey,
    user_id: Annotated[
        str, Form(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")
    ],
    images: Annotated[list[UploadFile], File(description="One or more photos, each with one clear face.")],
    session: SessionDep,
    engine: FaceEngineDep,
    settings: SettingsDep,
    store: StoreDep,
    audit: AuditDep,
) -> EnrollOut:
    """Each photo is judged on its own: exactly one clear face -> stored with its embedding; otherwise
    rejected with a reason. A photo with a second face at least half as wide as the largest is
    `multiple_faces`; smaller background faces are ignored. Re-sending a stored photo is idempotent
    (sha256). 422 when nothing could be enrolled (413 when every image was too large). Either the
    whole enrolment is stored or none of it, also across a crash."""
    with audit.around("enroll", user_id) as summary:
        # At most max_upload_bytes + 1 bytes per file: enough for the service to say `too_large`.
        uploads = [(u.filename or "", u.file.read(settings.max_upload_bytes + 1)) for u in images]
        result = enrol(session, store, engine, settings, user_id, uploads)
        summary.update(enrolled=len(result.enrolled), rejected=[r for _, r in result.rejected])
    return EnrollOut(
        user_id=result.user_id,
        enrolled=[EnrolledImage(image_id=i, sha256=s) for i, s in result.enrolled],
        rejected=[RejectedImage(filename=f, reason=r) for f, r in result.rejected],
    )
