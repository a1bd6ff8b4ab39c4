"""What the kiosk's live guidance costs the server: one frame check (POST /faces: decode, detect,
landmarks, quality) against one verify of the same frame (the same plus both towers' embedding).

Why: the kiosk asks the server about a camera frame about twice a second while a person gets into
place. Doing it in the browser would need a face detector shipped to the page (a model and a WASM
runtime, several MB, and a second detector that could disagree with the service's quality gate);
asking the service reuses its own detector and gate, so the guidance says exactly what enrolment
will judge. This measures whether that is cheap: the per-frame time of each path, in-process on
the real pipeline and release model, on 640x360 frames of the shared clip, interleaved A/B.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_frame_check.py --model-dir models/release \\
        --out benchmarks/results/frame_check.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FRAMES = REPO.parent / "shared" / "data" / "frames" / "short_hamilton_clip" / "frames"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--frames", type=int, default=40, help="clip frames 109.. (the performer)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from faceverify.decode import decode_image
    from faceverify.model import ServedModel
    from faceverify.pipeline import FacePipeline
    from faceverify.selection import select_enrolment_face, select_verify_face

    pipeline = FacePipeline()
    model = ServedModel(args.model_dir)
    data = [(FRAMES / f"frame_{n:04d}.jpg").read_bytes() for n in range(109, 109 + args.frames)]

    def frame_check(raw: bytes) -> None:
        select_enrolment_face(pipeline.faces(decode_image(raw)))

    def verify_frame(raw: bytes) -> None:
        face = select_verify_face(pipeline.faces(decode_image(raw))).face
        if face is not None:
            model.embed_faces([face])

    for raw in data[:3]:  # warm-up: graph tracing, caches
        frame_check(raw)
        verify_frame(raw)
    times: dict[str, list[float]] = {"frame check": [], "verify (same frame)": []}
    for _ in range(args.rounds):
        for raw in data:  # interleaved: both paths see the same load
            for name, job in (("frame check", frame_check), ("verify (same frame)", verify_frame)):
                start = time.perf_counter()
                job(raw)
                times[name].append(1000 * (time.perf_counter() - start))
    lines = [
        f"# bench_frame_check {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        f"# CPU: {cpu_model()}; {args.frames} frames x {args.rounds} rounds, interleaved; in-process",
        f"# model: {args.model_dir}",
    ]
    for name, values in times.items():
        ordered = sorted(values)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        lines.append(
            f"{name:<22} median {statistics.median(values):7.1f} ms   p95 {p95:7.1f} ms   n={len(values)}"
        )
    ratio = statistics.median(times["frame check"]) / statistics.median(times["verify (same frame)"])
    lines.append(f"frame check / verify (medians): {ratio:.2f}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
