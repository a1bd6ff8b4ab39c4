"""decode_image on real LFW JPEGs and on synthesised hostile / unusual inputs."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceverify.decode import ImageDecodeError, decode_image

LFW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "lfw"
SAMPLE = LFW / "images" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"


@pytest.fixture
def needs_lfw() -> None:
    """CI has the shared data: a missing sample is a failure, never a skip."""
    assert SAMPLE.is_file(), f"LFW not found at {LFW} (../shared/data)"


def _encode(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient_rgb(h: int = 60, w: int = 80) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 3 % 256, y * 4 % 256, (x + y) % 256], axis=2).astype(np.uint8)


def _reason(data: bytes, **kw: int) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(data, **kw)
    return info.value.reason


@pytest.mark.usefixtures("needs_lfw")
def test_lfw_jpeg_decodes_to_rgb_uint8_matching_pillow() -> None:
    data = SAMPLE.read_bytes()
    rgb = decode_image(data)
    assert rgb.shape == (250, 250, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.asarray(Image.open(SAMPLE).convert("RGB")))


@pytest.mark.usefixtures("needs_lfw")
def test_truncated_jpeg_is_rejected_not_half_decoded() -> None:
    data = SAMPLE.read_bytes()
    for cut in (len(data) // 2, len(data) - 64, 400):
        assert _reason(data[:cut]) == "not_an_image"


def test_empty_random_and_text_bytes() -> None:
    assert _reason(b"") == "empty"
    rng = np.random.default_rng(0)
    assert _reason(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()) == "not_an_image"
    assert _reason(b"<html>definitely not a picture</html>") == "not_an_image"
    # A valid JPEG signature followed by garbage.
    assert _reason(b"\xff\xd8\xff\xe0" + bytes(200)) == "not_an_image"


def test_too_large_is_checked_on_byte_count() -> None:
    data = _encode(Image.fromarray(_gradient_rgb()), "PNG")
    assert _reason(data, max_bytes=len(data) - 1) == "too_large"
    assert decode_image(data, max_bytes=len(data)).shape == (60, 80, 3)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny (invalid-length) IDAT: decoding the
    pixels would fail or explode, so only a header check can answer correctly."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_decompression_bomb_rejected_from_header() -> None:
    assert _reason(_png_header_only(100_000, 100_000)) == "too_many_pixels"
    # Above our limit but below Pillow's own bomb threshold: still ours to reject.
    assert _reason(_png_header_only(8000, 6000)) == "too_many_pixels"
    assert _reason(_png_header_only(100, 100), max_pixels=9_999) == "too_many_pixels"


def test_real_bomb_png_is_refused_quickly() -> None:
    # 8000 x 6000 = 48 MP of black compress to ~50 KB; a 40 MP limit must refuse it.
    img = Image.new("L", (8000, 6000))
    data = _encode(img, "PNG", optimize=False)
    assert len(data) < 10_000_000
    assert _reason(data) == "too_many_pixels"


@pytest.mark.usefixtures("needs_lfw")
def test_exif_orientation_is_applied() -> None:
    upright = np.asarray(Image.open(SAMPLE).convert("RGB")).copy()
    upright[:40, :, :] = 0  # mark the top so a wrong rotation cannot pass by symmetry
    # Store the picture rotated 90 degrees counter-clockwise, tagged "rotate 90 CW to display"
    # (EXIF orientation 6), as a phone held sideways does.
    stored = Image.fromarray(np.rot90(upright, k=1).copy())
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    out = decode_image(data)
    assert out.shape == upright.shape
    diff = np.abs(out.astype(int) - upright.astype(int)).mean()
    wrong = np.abs(np.asarray(stored).astype(int)[:250, :250] - upright.astype(int)).mean()
    assert diff < 3.0, diff
    assert wrong > 20.0


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb_uint8(mode: str) -> None:
    base = Image.fromarray(_gradient_rgb())
    if mode == "I;16":
        arr16 = (np.asarray(base.convert("L")).astype(np.uint16) * 257).astype(np.uint16)
        img = Image.fromarray(arr16)
        assert img.mode.startswith("I;16")
    else:
        img = base.convert(mode)
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    out = decode_image(_encode(img, fmt))
    assert out.shape == (60, 80, 3) and out.dtype == np.uint8
    if mode in ("L", "I;16"):
        # grey ends as three equal channels with the original grey levels (16-bit scaled back)
        grey = np.asarray(base.convert("L"))
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        assert np.abs(out[..., 0].astype(int) - grey).max() <= 1


def test_transparent_pixels_composite_on_white() -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)  # >= decode.MIN_SIDE
    rgba[:, :20] = (255, 0, 0, 255)  # opaque red left half, fully transparent right half
    out = decode_image(_encode(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert (out[:, :20] == (255, 0, 0)).all()
    assert (out[:, 20:] == 255).all()


# ------------------------------------------------------------------ precise reasons (issue 10)


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        ((1, 1), "image_too_small"),
        ((1, 10000), "image_too_small"),
        ((10000, 1), "image_too_small"),
        ((31, 200), "image_too_small"),
        ((40, 2000), "bad_aspect_ratio"),
        ((3000, 100), "bad_aspect_ratio"),
    ],
)
def test_degenerate_geometries_are_refused_from_the_header(size: tuple[int, int], reason: str) -> None:
    data = _encode(Image.new("L", size, 128), "PNG")
    assert _reason(data) == reason


def test_ordinary_geometries_still_decode() -> None:
    for size in [(32, 32), (92, 112), (1000, 100), (100, 1000)]:
        assert decode_image(_encode(Image.new("RGB", size, (9, 9, 9)), "PNG")).shape == (size[1], size[0], 3)


def _ftyp(brand: bytes) -> bytes:
    """The start of an ISO-BMFF file (HEIC / AVIF from a phone): ftyp box, then an empty meta box."""
    ftyp = struct.pack(">I", 24) + b"ftyp" + brand + b"\x00\x00\x00\x00" + brand + b"mif1"
    return ftyp + struct.pack(">I", 8) + b"meta" + b"\x00" * 64


@pytest.mark.parametrize("brand", [b"heic", b"heix", b"mif1", b"avif"])
def test_heic_and_avif_are_unsupported_format_not_garbage(brand: bytes) -> None:
    assert _reason(_ftyp(brand)) == "unsupported_format"


def test_jpeg_xl_is_unsupported_format() -> None:
    assert _reason(b"\xff\x0a" + b"\x00" * 100) == "unsupported_format"
    assert _reason(b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 100) == "unsupported_format"


def test_other_mp4_like_bytes_are_still_not_an_image() -> None:
    assert _reason(_ftyp(b"isom")) == "not_an_image"


def test_png_with_huge_icc_profile_has_its_own_reason() -> None:
    data = _encode(Image.new("RGB", (64, 64), (120, 90, 60)), "PNG", icc_profile=b"\0" * 20_000_000)
    assert len(data) < 100_000  # a small upload that would inflate to 20 MB of metadata
    assert _reason(data) == "icc_profile_too_large"


def test_png_with_huge_text_chunk_is_metadata_too_large() -> None:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "x" * 20_000_000, zip=True)
    data = _encode(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG", pnginfo=info)
    assert _reason(data) == "metadata_too_large"


def test_png_with_ordinary_icc_profile_decodes() -> None:
    data = _encode(Image.new("RGB", (64, 64), (120, 90, 60)), "PNG", icc_profile=b"\0" * 3000)
    assert decode_image(data).shape == (64, 64, 3)
