"""Time one-chip embeddings with the Keras rebuild of dlib's ResNet.

Why: the service embeds one face per request, so latency at batch size 1 is what matters, and
``model.predict`` carries a fixed per-call overhead (it builds a data pipeline each time) that a
traced ``tf.function`` avoids. This prints median / p95 milliseconds per chip for each path::

    .venv/bin/python benchmarks/bench_embedding.py --runs 100 --out benchmarks/results/embedding.txt

Optionally ``--dlib-python /tmp/dlibenv/bin/python`` also times dlib's own
``compute_face_descriptor`` on the same chip in that (separate, offline) environment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "dlib_resnet_golden.npz"

_DLIB_TIMER = """
import sys, time, numpy as np, dlib
chip = np.load(sys.argv[1])["chips"][0]
net = dlib.face_recognition_model_v1(sys.argv[2])
runs, warmup = int(sys.argv[3]), int(sys.argv[4])
for _ in range(warmup):
    net.compute_face_descriptor(chip)
for _ in range(runs):
    t = time.perf_counter(); net.compute_face_descriptor(chip); print((time.perf_counter() - t) * 1e3)
"""


def time_calls(fn: Callable[[], object], runs: int, warmup: int) -> list[float]:
    """Wall-clock milliseconds of ``runs`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def summary(samples: list[float]) -> tuple[float, float, float]:
    return statistics.median(samples), float(np.percentile(samples, 95)), min(samples)


def machine_header(threads: int | None) -> list[str]:
    cpu = "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        cpu = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")), cpu
        )
    except OSError:
        pass
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else ["?"] * 3
    import tensorflow as tf

    return [
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"nproc: {os.cpu_count()}   CPU: {cpu}",
        f"python {platform.python_version()}   tensorflow {tf.__version__}",
        f"TF threads: {'default (all cores)' if threads is None else threads}",
        f"load average before the run (1/5/15 min): {' '.join(load)}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="TF intra/inter-op threads (default: TF's)")
    parser.add_argument("--no-xla", action="store_true", help="skip the jit_compile=True variant")
    parser.add_argument("--dlib-python", type=Path, default=None, help="a python with dlib, to time dlib too")
    parser.add_argument("--note", default="", help="free text appended to the header")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    header = machine_header(args.threads)  # load average before TF starts working
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)

    from faceverify.resnet import build_dlib_resnet, embedding_function
    from faceverify.weights import model_path

    with np.load(FIXTURE) as data:
        chip = data["chips"][:1].astype(np.float32)
        expected = data["descriptors"][0]
    model = build_dlib_resnet()
    chip_tensor = tf.constant(chip)
    fast = embedding_function(model)
    paths: list[tuple[str, Callable[[], np.ndarray]]] = [
        ("tf.function (fixed signature)", lambda: fast(chip_tensor).numpy()),
    ]
    if not args.no_xla:
        xla = embedding_function(model, jit_compile=True)
        paths.append(("tf.function + XLA jit_compile", lambda: xla(chip_tensor).numpy()))
    paths += [
        ("model(x) eager call", lambda: model(chip_tensor).numpy()),
        ("model.predict (baseline)", lambda: model.predict(chip, verbose=0)),
    ]
    rows: list[tuple[str, list[float]]] = []
    diffs: dict[str, float] = {}
    for name, fn in paths:
        rows.append((name, time_calls(fn, args.runs, args.warmup)))
        diffs[name.split(" (")[0]] = float(np.abs(fn()[0] - expected).max())
    if args.dlib_python is not None:
        out = subprocess.run(
            [
                str(args.dlib_python),
                "-c",
                _DLIB_TIMER,
                str(FIXTURE),
                str(model_path("dlib_face_recognition_resnet_model_v1.dat")),
                str(args.runs),
                str(args.warmup),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows.append(("dlib compute_face_descriptor (ref.)", [float(v) for v in out.split()]))

    lines = [*header, "command: " + shlex.join(["python", *sys.argv])]
    if args.note:
        lines.append(f"note: {args.note}")
    lines += [
        f"batch 1, one 150x150 LFW chip, {args.runs} timed calls after {args.warmup} warm-up calls",
        "max |descriptor - dlib descriptor| on this chip: "
        + ", ".join(f"{name} {value:.2g}" for name, value in diffs.items()),
        "",
        f"{'path':38s} {'median ms':>10s} {'p95 ms':>10s} {'min ms':>10s}",
    ]
    for name, samples in rows:
        median, p95, fastest = summary(samples)
        lines.append(f"{name:38s} {median:10.2f} {p95:10.2f} {fastest:10.2f}")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
