"""Bytes -> RGB uint8 image, safely.

Why a dedicated module: uploads come from the network, so decoding is an attack surface. We
refuse oversized payloads before touching them, read only the header to refuse decompression
bombs (a tiny PNG can claim 100k x 100k pixels), refuse truncated files instead of returning a
half-grey picture (Pillow would otherwise pad silently when LOAD_TRUNCATED_IMAGES is set), and
normalise every mode (grey, palette, RGBA, 16-bit, CMYK) to RGB uint8 with the EXIF orientation
applied, so a phone photo taken sideways is upright before face detection.
"""

from __future__ import annotations

import io
import struct
import warnings
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

DecodeFailure = Literal[
    "empty",
    "not_an_image",
    "too_large",
    "too_many_pixels",
    "image_too_small",
    "bad_aspect_ratio",
    "unsupported_format",
    "icc_profile_too_large",
    "metadata_too_large",
]

# ISO-BMFF brands of formats Pillow cannot decode without a plugin (HEIF/HEIC from phones, AVIF).
_UNSUPPORTED_BRANDS = {
    b"heic": "HEIC",
    b"heix": "HEIC",
    b"hevc": "HEIC",
    b"hevx": "HEIC",
    b"heim": "HEIC",
    b"heis": "HEIC",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
    b"avif": "AVIF",
    b"avis": "AVIF",
}

DEFAULT_MAX_BYTES = 10_000_000
DEFAULT_MAX_PIXELS = 40_000_000
#: Smallest side a photo may have: a usable face (>= 36 px) cannot fit in less.
MIN_SIDE = 32
#: Longest-to-shortest side ratio beyond which an image is a strip, not a photo (1xN, banners).
MAX_ASPECT_RATIO = 10.0


class ImageDecodeError(ValueError):
    """The bytes cannot be turned into an image; ``reason`` says why (stable API strings)."""

    def __init__(self, reason: DecodeFailure, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: DecodeFailure = reason
        self.detail = detail


def sniff_unsupported(data: bytes) -> str | None:
    """Name of a known image format we do not decode (HEIC, HEIF, AVIF, JPEG XL), else None: such an
    upload is a real photo, so "not_an_image" would mislead its sender."""
    if data[4:8] == b"ftyp":
        return _UNSUPPORTED_BRANDS.get(data[8:12])
    if data[:2] == b"\xff\x0a" or data[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "JPEG XL"
    return None


def check_geometry(width: int, height: int) -> None:
    """Refuse degenerate geometries (1x1, 1xN, Nx1, thin strips) with a precise reason: no face
    can be found in them, and several image operations assert on them (they used to be 500s)."""
    if min(width, height) < MIN_SIDE:
        raise ImageDecodeError("image_too_small", f"{width}x{height}: both sides must be >= {MIN_SIDE} px")
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise ImageDecodeError(
            "bad_aspect_ratio", f"{width}x{height}: longer side more than {MAX_ASPECT_RATIO:g}x the shorter"
        )


def _to_rgb_uint8(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> HxWx3 uint8 RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16/32-bit grey: scale the full range to 8 bits instead of clipping at 255.
        arr = np.asarray(img, dtype=np.uint32 if img.mode == "I" else np.uint16)
        top = 65535 if img.mode != "I" else max(int(arr.max()), 1)
        grey = (arr.astype(np.float64) * (255.0 / top)).round().clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        grey = (np.subtract(values, lo) * (255.0 / (hi - lo or 1.0))).round().clip(0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent areas on white, as a browser would show the picture.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = img.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8).copy()


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a malformed EXIF block must not cost us a valid picture."""
    try:
        return ImageOps.exif_transpose(img) or img
    except (ValueError, TypeError, KeyError, SyntaxError, struct.error):
        return img


def _scaled(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """`size` shrunk (aspect kept) so that its longer side is `max_side`."""
    width, height = size
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """The decoded image with its longer side cut to `max_side`, before any RGB copy is made (one
    full-size buffer at most). Modes Pillow cannot resize smoothly go to RGB(A) first."""
    if img.mode not in ("RGB", "RGBA", "L", "LA"):
        transparent = img.mode in ("PA", "La", "RGBa") or (img.mode == "P" and "transparency" in img.info)
        img = img.convert("RGBA" if transparent else "RGB")
    return img.resize(_scaled(img.size, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)


def declared_pixels(data: bytes) -> int:
    """width x height from the image header (nothing decoded); 0 when there is no readable header
    (decoding then says why). For pixel budgets over several images."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
    except Exception:  # any unreadable header: not an image, refused later with its reason
        return 0
    return max(0, width) * max(0, height)


def decode_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, WebP, BMP, GIF, TIFF ...) to RGB uint8 HxWx3; with
    `max_side`, an image whose longer side is above it is shrunk to it (JPEG decoded at a reduced
    scale; others resized right after decoding, before the RGB copy), which bounds the memory one
    image holds after decoding to ~3 * max_side**2 bytes.

    Raises :class:`ImageDecodeError` with ``reason``:
    ``empty`` (no bytes), ``too_large`` (more than ``max_bytes``), ``too_many_pixels`` (the
    header's width*height exceeds ``max_pixels``; checked before any pixel is decoded) or
    ``image_too_small`` / ``bad_aspect_ratio`` (:func:`check_geometry`, from the header),
    ``unsupported_format`` (a real photo format we do not decode: HEIC/HEIF, AVIF, JPEG XL),
    ``icc_profile_too_large`` / ``metadata_too_large`` (a PNG metadata chunk that inflates past
    Pillow's cap) or ``not_an_image`` (unknown format, corrupt or truncated data).
    """
    if not data:
        raise ImageDecodeError("empty", "no bytes received")
    if len(data) > max_bytes:
        raise ImageDecodeError("too_large", f"{len(data)} bytes > limit {max_bytes}")
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Someone flipped Pillow's global switch; we must not half-decode truncated uploads.
        raise RuntimeError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True; decode_image needs it False")
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb check warns/raises at its global limit; we apply ours instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))  # lazy: parses the header only
            width, height = img.size
            if width <= 0 or height <= 0:
                raise ImageDecodeError("not_an_image", f"invalid size {width}x{height}")
            if width * height > max_pixels:
                raise ImageDecodeError(
                    "too_many_pixels", f"{width}x{height} = {width * height} pixels > limit {max_pixels}"
                )
            check_geometry(width, height)
            if max_side is not None and max(width, height) > max_side:
                # JPEG: decode at 1/2, 1/4 or 1/8 scale straight away (no-op for other formats).
                img.draft(img.mode, _scaled((width, height), max_side))
            img.load()  # decodes; raises OSError on truncated/corrupt data
            upright = _upright(img)
            del img  # at most one full-size buffer alive from here on
            if max_side is not None and max(upright.size) > max_side:
                upright = _shrink(upright, max_side)
            return _to_rgb_uint8(upright)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError("too_many_pixels", str(exc)) from exc
    except UnidentifiedImageError as exc:
        fmt = sniff_unsupported(data)
        if fmt is not None:
            raise ImageDecodeError("unsupported_format", f"{fmt} is not supported; send JPEG or PNG") from exc
        raise ImageDecodeError("not_an_image", f"{type(exc).__name__}: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if isinstance(exc, ValueError) and "Decompressed data too large" in str(exc):
            # Pillow caps a PNG's compressed metadata chunk (iCCP, zTXt, iTXt) when it inflates it.
            icc = b"iCCP" in data[:65536]
            raise ImageDecodeError(
                "icc_profile_too_large" if icc else "metadata_too_large", str(exc)
            ) from exc
        raise ImageDecodeError("not_an_image", f"{type(exc).__name__}: {exc}") from exc
