"""POST /enroll: store a user's reference photos and their embeddings (HTTP <-> service.enrolment)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from faceverify.selection import FaceChoice, parse_face_choice
from service.enrolment.schemas import EnrolledImage, EnrollOut, RejectedImage
from service.enrolment.service import enrol
from service.errors import InvalidInput
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
    principal: EnrollKey,
    user_id: Annotated[
        str, Form(pattern=USER_ID_PATTERN, description="1-64 characters of A-Za-z0-9_.-")
    ],
    images: Annotated[list[UploadFile], File(description="One or more photos, each with one clear face.")],
    session: SessionDep,
    engine: FaceEngineDep,
    settings: SettingsDep,
    store: StoreDep,
    audit: AuditDep,
    faces: Annotated[
        list[str] | None,
        Form(
            description="Optional, one per image in order: which face to use in a group photo, the index "
            "into the boxes its multiple_faces refusal listed (0 = largest) or `x,y,w,h`; empty = automatic."
        ),
    ] = None,
) -> EnrollOut:
    """Each photo is judged on its own: exactly one clear face -> stored with its embedding; otherwise
    rejected with a reason. A photo with a second face at least half as wide as the largest is
    `multiple_faces`; smaller background faces are ignored. Re-sending a stored photo is idempotent
    (sha256). 422 when nothing could be enrolled (413 when every image was too large). Either the
    whole enrolment is stored or none of it, also across a crash. A `multiple_faces` refusal lists
    every face's box; send the photo again with `faces` naming the one meant. For an EXISTING user,
    a key without the manage scope adds only new photos that verify against the user's current
    enrolment at the model's strictest calibrated level; the others are rejected `not_same_person`."""
    with audit.around("enroll", user_id) as summary:
        principal.require_user(user_id)
        choices = _face_choices(faces, len(images))
        # At most max_upload_bytes + 1 bytes per file: enough for the service to say `too_large`.
        uploads = [(u.filename or "", u.file.read(settings.max_upload_bytes + 1)) for u in images]
        # An enroll-only key may create a user, but adds to an existing one only photos that match it.
        may_add_unmatched = principal.allows("manage")
        result = enrol(session, store, engine, settings, user_id, uploads, choices, may_add_unmatched)
        summary.update(
            enrolled=len(result.enrolled), rejected=[r.reason for r in result.rejected],
            existing_user=result.existing_user, unmatched_allowed=result.unmatched_allowed,
        )  # fmt: skip
        if choices is not None:
            summary["face_choices"] = sum(c is not None for c in choices)
    return EnrollOut(
        user_id=result.user_id,
        enrolled=[EnrolledImage(image_id=i, sha256=s) for i, s in result.enrolled],
        rejected=[RejectedImage(**r.as_dict()) for r in result.rejected],
    )


def _face_choices(texts: list[str] | None, images: int) -> list[FaceChoice] | None:
    """The `faces` form values, one per image, parsed; 422 invalid_face_choice when malformed."""
    if texts is None:
        return None
    if len(texts) != images:
        raise InvalidInput(
            "invalid_face_choice", f"send one `faces` value per image ({images}), empty = automatic"
        )
    try:
        return [parse_face_choice(text) for text in texts]
    except ValueError as exc:
        raise InvalidInput("invalid_face_choice", str(exc)) from exc
