"""Cost of encryption at rest and of the crash-safe photo write, per enrolled photo.

Why: every enrolled photo is now sealed with AES-256-GCM and written with temp file + fsync +
rename + directory fsync before its rows commit, and every verify opens each stored embedding. This
prints median / p95 microseconds for sealing and opening a real LFW photo and a 128-d embedding,
and for one durable photo write (which is dominated by fsync, i.e. by the disk)::

    .venv/bin/python benchmarks/bench_storage.py --runs 200 --out benchmarks/results/storage.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from service.storage.crypto import KeyRing, embedding_aad, photo_aad
from service.storage.photos import ImageStore, sha256_hex
from service.storage.tables import embedding_to_bytes

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO.parent / "shared" / "data" / "lfw" / "images" / "George_W_Bush" / "George_W_Bush_0001.jpg"


def _time(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    photo = PHOTO.read_bytes()
    vector = embedding_to_bytes(np.random.default_rng(0).standard_normal(128).astype(np.float32))
    lines = [
        f"# bench_storage.py --runs {args.runs}  ({dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
        f"# {platform.machine()}, {os.cpu_count()} cores, python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.1f} (shared machine: fsync times vary with other jobs)",
        f"# photo: {PHOTO.name}, {len(photo)} bytes; embedding: 128 float32",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        keyring = KeyRing.from_settings(Path(tmp), None)
        store = ImageStore(Path(tmp) / "images", keyring)
        sha = sha256_hex(photo)
        sealed_photo = keyring.seal(photo, photo_aad(1, sha))
        sealed_vector = keyring.seal(vector, embedding_aad(1, sha))
        cases: list[tuple[str, Callable[[], object]]] = [
            ("seal photo", lambda: keyring.seal(photo, photo_aad(1, sha))),
            ("open photo", lambda: keyring.open(sealed_photo, photo_aad(1, sha))),
            ("seal embedding", lambda: keyring.seal(vector, embedding_aad(1, sha))),
            ("open embedding", lambda: keyring.open(sealed_vector, embedding_aad(1, sha))),
            ("durable photo write (seal + temp + fsync + rename + dir fsync)",
             lambda: store.write_photo("bench", 1, sha, photo)),
        ]  # fmt: skip
        for name, fn in cases:
            median, p95 = _time(fn, args.runs)
            lines.append(f"{name:<66} median {median:9.1f} us   p95 {p95:9.1f} us")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
