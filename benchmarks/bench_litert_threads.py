"""LiteRT interpreter pool and thread count for 2 cores, with 1 and with 2 requests in flight.

Why: a LiteRT interpreter is not thread-safe, so the served model keeps a pool of them per tower
(faceverify.litert). How many interpreters, and how many XNNPACK threads each, decides whether two
concurrent verifies share the 2 cores well (pool 2 x 1 thread), or one verify runs its towers on
both cores and the other waits (pool 1 x 2 threads), or both oversubscribe (pool 2 x 2 threads).
This script measures each choice on the whole in-process frame (decode -> YuNet -> landmarks ->
chips -> both towers), interleaved in rounds so load drift hits every choice alike; the
TensorFlow SavedModel (release 2026.12.1's runtime) is the reference row.

Usage:
    python benchmarks/bench_litert_threads.py --out benchmarks/results/litert_threads.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench_frame import letterboxed_frame
from bench_peers import cpu_line

REPO = Path(__file__).resolve().parents[1]
CHOICES = ((1, 2), (2, 1), (2, 2))  # (interpreters per tower, threads per interpreter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--frames", type=int, default=12, help="frames per client per round")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from faceverify.config import RuntimeConfig
    from faceverify.decode import decode_image
    from faceverify.model import ServedModel
    from faceverify.pipeline import FacePipeline
    from faceverify.selection import select_verify_face

    header = cpu_line()  # the load average before this run
    pipeline = FacePipeline()
    models = {
        f"litert pool {p} x {t} thread(s)": ServedModel(args.model_dir, runtime=RuntimeConfig("litert", p, t))
        for p, t in CHOICES
    }
    models["tensorflow SavedModel (2026.12.1)"] = ServedModel(
        args.model_dir, runtime=RuntimeConfig(runtime="tensorflow")
    )
    data = letterboxed_frame(180)

    def frame(model: ServedModel) -> float:
        started = time.perf_counter()
        face = select_verify_face(pipeline.faces(decode_image(data))).face
        assert face is not None
        model.embed_faces([face])
        return (time.perf_counter() - started) * 1000.0

    lat: dict[tuple[str, int], list[float]] = {(n, k): [] for n in models for k in (1, 2)}
    rate: dict[tuple[str, int], list[float]] = {(n, k): [] for n in models for k in (1, 2)}
    for model in models.values():
        for _ in range(3):
            frame(model)

    def client(model: ServedModel) -> list[float]:
        return [frame(model) for _ in range(args.frames)]

    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(args.rounds):
            for name, model in models.items():
                for clients in (1, 2):
                    started = time.perf_counter()
                    runs = [pool.submit(client, model) for _ in range(clients)]
                    samples = [s for r in runs for s in r.result()]
                    wall = time.perf_counter() - started
                    lat[(name, clients)] += samples
                    rate[(name, clients)].append(len(samples) / wall)
    lines = [
        "bench_litert_threads: whole in-process frame (decode -> YuNet -> landmarks -> chips -> both "
        "towers), 1 and 2 clients in flight (benchmarks/bench_litert_threads.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        header,
        f"model: {args.model_dir}; frame: short_hamilton_clip frame_0180 640x480 JPEG; "
        f"{args.rounds} interleaved rounds x {args.frames} frames per client",
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        "",
        f"{'runtime':<36}{'1 client p50 ms':>16}{'frames/s':>10}{'2 clients p50 ms':>18}{'frames/s':>10}",
    ]
    for name in models:
        row = f"{name:<36}"
        for k in (1, 2):
            row += f"{statistics.median(lat[(name, k)]):>16.1f}{statistics.median(rate[(name, k)]):>10.1f}"
            row += "  " if k == 1 else ""
        lines.append(row)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
