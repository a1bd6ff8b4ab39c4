"""Timing of two pipeline levers that would change chips (so embeddings): not adopted, sized here.

* Reduced-size JPEG decoding for large photos: a 12-megapixel JPEG decoded whole (what
  decode_image does today; YuNet then searches a copy shrunk to 1280 px) against Pillow's DCT-domain
  ``draft`` at 1/2 and 1/4 and OpenCV's ``IMREAD_REDUCED_COLOR_2/4``. The photo is synthetic (a
  frame upscaled to 4000x3000, JPEG q90): it has a phone photo's pixel count, not its detail.
* Detection on a reduced input: YuNet on the 640x480 webcam frame against the same frame halved
  (320x240), with how far the five landmarks move (px in the full frame): the ArcFace chip is cut
  from them, so any move changes SFace's embedding.

Both change the chips a face gets, so adopting either needs View 1 accuracy / FRR at the operating
points measured first (not done here). Interleaved rounds; medians.

Usage: python benchmarks/bench_speed_levers.py --out benchmarks/results/speed_levers.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from bench_frame import letterboxed_frame
from bench_peers import cpu_line
from PIL import Image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    header = cpu_line()

    from faceverify.decode import decode_image
    from faceverify.yunet import YuNetDetector

    frame = letterboxed_frame(180)
    rgb = decode_image(frame)
    big = cv2.resize(rgb[60:420], (4000, 3000), interpolation=cv2.INTER_CUBIC)
    ok, enc = cv2.imencode(".jpg", big[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    photo = enc.tobytes()

    def pil_draft(scale: int) -> Callable[[], object]:
        def run() -> object:
            img = Image.open(io.BytesIO(photo))
            img.draft("RGB", (img.size[0] // scale, img.size[1] // scale))
            return np.asarray(img.convert("RGB"))

        return run

    def cv_reduced(flag: int) -> Callable[[], object]:
        return lambda: cv2.imdecode(np.frombuffer(photo, np.uint8), flag)

    detector = YuNetDetector()
    half = cv2.resize(rgb, (320, 240), interpolation=cv2.INTER_AREA)
    cases: dict[str, Callable[[], object]] = {
        "12 MP JPEG: decode_image (whole, Pillow, EXIF)": lambda: decode_image(photo),
        "12 MP JPEG: Pillow draft 1/2": pil_draft(2),
        "12 MP JPEG: Pillow draft 1/4": pil_draft(4),
        "12 MP JPEG: cv2 IMREAD_REDUCED_COLOR_2": cv_reduced(cv2.IMREAD_REDUCED_COLOR_2),
        "12 MP JPEG: cv2 IMREAD_REDUCED_COLOR_4": cv_reduced(cv2.IMREAD_REDUCED_COLOR_4),
        "YuNet on the 640x480 frame": lambda: detector.detect(rgb),
        "YuNet on the frame halved (320x240)": lambda: detector.detect(half),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()
    for _ in range(args.rounds):
        for name, fn in cases.items():
            started = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - started) * 1000.0)
    full = detector.detect(rgb)[0]
    halved = detector.detect(half)[0]
    shift = np.linalg.norm(full.landmarks - halved.landmarks * 2.0, axis=1)
    lines = [
        "bench_speed_levers: reduced JPEG decoding and reduced-input detection, timing only "
        "(benchmarks/bench_speed_levers.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        header,
        f"{args.rounds} interleaved rounds; 12 MP photo = short_hamilton_clip frame_0180 upscaled to "
        f"4000x3000, JPEG q90, {len(photo) // 1024} KiB",
        "",
        f"{'case':<50}{'median ms':>10}",
    ]
    lines += [f"{name:<50}{statistics.median(v):>10.2f}" for name, v in times.items()]
    lines += [
        "",
        f"face width {full.box.w:.0f} px; landmarks found on the halved frame, mapped back, move "
        f"{shift.mean():.2f} px on average (max {shift.max():.2f}) from the full frame's: the ArcFace "
        "chip moves with them, so SFace's embedding changes (View 1 accuracy not measured here).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
