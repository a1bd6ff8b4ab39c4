"""Check (4): the frames are fresh -- not copies of the enrolment photos or of an earlier burst.

A replayed file is caught by its bytes (sha256). A re-encoded, resized or re-photographed copy is not,
so two near-duplicate tests back it up:

* against an earlier burst: a 64-bit perceptual hash (DCT hash) of each frame's aligned face chip,
  stored per accepted burst; a new frame within `max_hash_distance` bits of a stored one is a copy;
* against the enrolment photos: the cosine of the frame's embedding with each enrolled embedding;
  a re-encoded copy of the same photo scores ~0.999+, a new capture of the same person far lower.

Two consecutive live frames can be near-identical to EACH OTHER, so frames are only compared with
what came before the burst, never within it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def perceptual_hash(rgb: np.ndarray) -> int:
    """64-bit DCT hash: 32x32 grey, 2-D DCT, the 8x8 lowest frequencies against their median."""
    grey = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = cv2.dct(small)[:8, :8].reshape(-1)
    bits = low > np.median(low[1:])
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return int((a ^ b).bit_count())


def to_signed64(value: int) -> int:
    """Store a 64-bit hash in a signed BIGINT column (and back with `from_signed64`)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def from_signed64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


@dataclass(frozen=True)
class FreshnessRules:
    max_hash_distance: int = 4
    max_enrolment_cosine: float = 0.995


@dataclass(frozen=True)
class FreshnessResult:
    passed: bool
    reason: str | None  # None; replayed_bytes, replayed_burst, enrolment_photo
    frame: int | None  # first frame found to be a copy

    def as_dict(self) -> dict[str, object]:
        return {"passed": self.passed, "reason": self.reason, "frame": self.frame}


def check_freshness(
    frame_sha256: Sequence[str],
    chip_hashes: Sequence[int],
    embeddings: np.ndarray,
    known_sha256: Iterable[str],
    earlier_hashes: Iterable[int],
    enrolled_embeddings: np.ndarray,
    rules: FreshnessRules | None = None,
) -> FreshnessResult:
    """First copy found, in frame order: same bytes, near-identical chip hash, or enrolment embedding."""
    rules = rules or FreshnessRules()
    known = set(known_sha256)
    earlier = list(earlier_hashes)
    enrolled = np.asarray(enrolled_embeddings, np.float64).reshape(-1, np.asarray(embeddings).shape[-1])
    enrolled = enrolled / np.maximum(np.linalg.norm(enrolled, axis=1, keepdims=True), 1e-12)
    for index, digest in enumerate(frame_sha256):
        if digest in known:
            return FreshnessResult(False, "replayed_bytes", index)
    for index, value in enumerate(chip_hashes):
        if any(hamming(value, old) <= rules.max_hash_distance for old in earlier):
            return FreshnessResult(False, "replayed_burst", index)
    if enrolled.size:
        e = np.asarray(embeddings, np.float64)
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        cos = e @ enrolled.T
        hits = np.nonzero(cos.max(axis=1) >= rules.max_enrolment_cosine)[0]
        if hits.size:
            return FreshnessResult(False, "enrolment_photo", int(hits[0]))
    return FreshnessResult(True, None, None)
