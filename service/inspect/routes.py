"""POST /faces (one frame's faces and quality: the kiosk's guidance), POST /compare (two photos at
every calibrated level), GET /model (the served model's operating points), GET /stats (this
process's live figures). Nothing here stores anything or touches a user."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from service.faces.images import usable_bytes
from service.http.deps import AnyKey, FaceEngineDep, ManageKey, SettingsDep, VerifyKey, VerifyOrEnrollKey
from service.http.schemas import ErrorOut
from service.http.uploads import read_upload
from service.inspect.schemas import (
    CompareOut,
    CompareSideOut,
    FaceSeenOut,
    FrameCheckOut,
    LevelOut,
    ModelOut,
    OperatingPointOut,
    StatsOut,
)
from service.inspect.service import FaceSeen, Side, check_frame, compare_photos, decode_photo
from service.runtime.stats import live_figures
from service.verification.schemas import QualityOut

router = APIRouter(tags=["inspect"])

_PHOTO_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "Image over the byte or pixel limit."},
    422: {"model": ErrorOut, "description": "Not an image, empty, or (compare) no face in a photo."},
}


def _face_out(face: FaceSeen) -> FaceSeenOut:
    quality = QualityOut(**face.quality) if face.quality is not None else None
    return FaceSeenOut(box=face.box, quality=quality, reason=face.reason)


@router.post(
    "/faces",
    response_model=FrameCheckOut,
    responses=_PHOTO_ERRORS,
    summary="Faces and quality of one photo or frame, judged as enrolment would (nothing stored)",
)
def faces(
    _key: VerifyOrEnrollKey,
    image: Annotated[UploadFile, File(description="One photo or camera frame.")],
    engine: FaceEngineDep,
    settings: SettingsDep,
) -> FrameCheckOut:
    """For live guidance before capture: `guidance` is null when this frame would be enrolled as it
    is, else the reason (too far: face_too_small; turn towards the camera: pose_too_far; ...)."""
    rgb = decode_photo(
        usable_bytes(read_upload(image, settings.max_upload_bytes), "image"), settings, "image"
    )
    check = check_frame(engine.faces(rgb), rgb)
    return FrameCheckOut(
        width=check.width,
        height=check.height,
        faces=[_face_out(f) for f in check.faces],
        guidance=check.guidance,
    )


@router.post(
    "/compare",
    response_model=CompareOut,
    responses=_PHOTO_ERRORS,
    summary="Compare the faces of two photos at every calibrated level of the model card (nothing stored)",
)
def compare(
    principal: VerifyKey,
    image_a: Annotated[UploadFile, File(description="The first photo.")],
    image_b: Annotated[UploadFile, File(description="The second photo.")],
    engine: FaceEngineDep,
    settings: SettingsDep,
) -> CompareOut:
    """Each photo's face is the one POST /verify would use; the decision at each level is the verify
    rule with one enrolled image. The similarity is shown only to admin keys (or with expose_scores)."""
    photos = [
        decode_photo(usable_bytes(read_upload(upload, settings.max_upload_bytes), name), settings, name)
        for upload, name in ((image_a, "image_a"), (image_b, "image_b"))
    ]
    result = compare_photos(engine, photos[0], photos[1])
    show = settings.expose_scores or "admin" in principal.scopes

    def side(compared: Side, rgb: Any) -> CompareSideOut:
        check = check_frame(compared.faces, rgb)  # the same faces, with their quality verdicts
        return CompareSideOut(
            width=compared.width, height=compared.height, faces=[_face_out(f) for f in check.faces],
            chosen=compared.chosen,
        )  # fmt: skip

    return CompareOut(
        a=side(result.a, photos[0]),
        b=side(result.b, photos[1]),
        levels=[LevelOut(**vars(level)) for level in result.levels],
        default_far=result.default_far,
        similarity=result.similarity if show else None,
        model_version=result.model_version,
    )


@router.get("/model", response_model=ModelOut, summary="The served model's calibrated operating points")
def model(_key: AnyKey, engine: FaceEngineDep) -> ModelOut:
    card: dict[str, Any] = dict(getattr(engine, "card", {}) or {})
    points = sorted(card.get("operating_points") or [], key=lambda p: -float(p["far"]))

    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    return ModelOut(
        name=card.get("name"),
        version=str(engine.version),
        default_far=number(card.get("default_far")),
        loosest_far=number(card.get("loosest_far")),
        operating_points=[
            OperatingPointOut(
                far=float(p["far"]),
                frr=number(p.get("frr")),
                detection_threshold=float(p["detection_threshold"]),
                verification_threshold=float(p["verification_threshold"]),
            )
            for p in points
        ],
    )


@router.get("/stats", response_model=StatsOut, summary="Live figures of this process (decisions, latency)")
def stats(_key: ManageKey) -> StatsOut:
    figures = live_figures()
    return StatsOut(
        decisions=figures.decisions,
        liveness=figures.liveness,
        latency_ms=figures.latency_ms,
        requests=figures.requests,
    )
