"""Response bodies of POST /enroll."""

from __future__ import annotations

from pydantic import BaseModel, Field


class EnrolledImage(BaseModel):
    image_id: int = Field(description="Id of the stored image (use it to delete the image).")
    sha256: str = Field(description="sha256 of the uploaded bytes; the same photo twice is stored once.")


class RejectedImage(BaseModel):
    filename: str = Field(description="Name of the uploaded file as sent by the client.")
    reason: str = Field(
        description="no_face, multiple_faces, face_too_small, low_confidence, blurry, too_dark, too_bright, "
        "pose_too_far, not_an_image, unsupported_format, icc_profile_too_large, metadata_too_large, "
        "image_too_small, bad_aspect_ratio, empty, too_large, too_many_pixels."
    )


class EnrollOut(BaseModel):
    user_id: str
    enrolled: list[EnrolledImage] = Field(description="Images stored for the user (including re-sent ones).")
    rejected: list[RejectedImage] = Field(description="Images that could not be used, each with a reason.")
