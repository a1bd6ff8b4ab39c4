"""Issue 10 over HTTP (real app, SQLite and PostgreSQL): YuNet finds both faces of a side-by-side
photo, enrolment refuses low-quality faces with their own reason, verify reports quality and
faces_found, hostile geometries and formats are clear 4xx instead of 500s."""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest
import service_testdata as images
from PIL import Image
from service_testdata import jpeg, lfw_bytes, rgb_of

BUSH = ("George_W_Bush", 1)
POWELL = ("Colin_Powell", 1)


def _enroll(client, user_id: str, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post("/enroll", data={"user_id": user_id}, files=[("images", (name, data, "image/jpeg"))])


def _verify(client, user_id: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post("/verify", data={"user_id": user_id}, files={"image": ("p.jpg", data, "image/jpeg")})


def _rejected(response) -> list[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    assert response.json()["reason"] == "no_usable_image"
    return [r["reason"] for r in response.json()["detail"]["rejected"]]


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (width, height), 128).save(buf, "PNG")
    return buf.getvalue()


def test_side_by_side_is_multiple_faces(client) -> None:  # type: ignore[no-untyped-def]
    both = images.side_by_side(lfw_bytes(*BUSH), lfw_bytes(*POWELL))
    assert _rejected(_enroll(client, "two", "both.jpg", both)) == ["multiple_faces"]


def test_verify_reports_quality_and_faces_found(client) -> None:  # type: ignore[no-untyped-def]
    assert _enroll(client, "bush", "a.jpg", lfw_bytes(*BUSH)).status_code == 201
    body = _verify(client, "bush", images.side_by_side(lfw_bytes(*BUSH), lfw_bytes(*POWELL))).json()
    assert body["faces_found"] == 2
    q = body["face"]["quality"]
    assert set(q) == {"face_width", "sharpness", "brightness", "yaw", "pitch", "roll", "score"}
    assert 60 < q["face_width"] < 130 and q["score"] > 0.8 and 40 < q["brightness"] < 220
    single = _verify(client, "bush", lfw_bytes(*BUSH)).json()
    assert single["faces_found"] == 1 and single["verified"] is True


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (lambda rgb: cv2.GaussianBlur(rgb, (0, 0), 4), "blurry"),
        (lambda rgb: (rgb * 0.15).astype(np.uint8), "too_dark"),
        (lambda rgb: cv2.resize(rgb, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA), "face_too_small"),
    ],
    ids=["blurry", "too_dark", "face_too_small"],
)
def test_enrolment_refuses_low_quality_faces(client, transform, reason: str) -> None:  # type: ignore[no-untyped-def]
    photo = jpeg(np.ascontiguousarray(transform(rgb_of(lfw_bytes(*POWELL)))))
    assert _rejected(_enroll(client, "q", "q.jpg", photo)) == [reason]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_png(1, 1), "image_too_small"),
        (_png(1, 10000), "image_too_small"),
        (_png(10000, 1), "image_too_small"),
        (_png(40, 2000), "bad_aspect_ratio"),
        (struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00heicmif1" + b"\x00" * 64, "unsupported_format"),
    ],
    ids=["1x1", "1x10000", "10000x1", "40x2000", "heic"],
)
def test_hostile_images_are_clear_422(client, data: bytes, reason: str) -> None:  # type: ignore[no-untyped-def]
    assert _rejected(_enroll(client, "h", "h.png", data)) == [reason]
    assert _enroll(client, "bush", "a.jpg", lfw_bytes(*BUSH)).status_code == 201
    response = _verify(client, "bush", data)
    assert response.status_code == 422 and response.json()["reason"] == reason
