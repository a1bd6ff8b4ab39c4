"""Start-up cost of each runtime: time to load the served model and the process's memory afterwards.

Why: LiteRT serving never imports TensorFlow, which matters for a replica's start (warm start,
rolling updates) and for its memory limit. Each sample is a fresh Python process that imports
faceverify, loads the release directory with one runtime and embeds one chip pair; runtimes
alternate so load drift hits both alike.

Usage: python benchmarks/bench_runtime_load.py --out benchmarks/results/runtime_load.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

from bench_peers import cpu_line

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, sys, time
started = time.perf_counter()
import numpy as np
from faceverify.config import RuntimeConfig
from faceverify.model import ServedModel
model = ServedModel(sys.argv[1], runtime=RuntimeConfig(sys.argv[2]))
loaded = time.perf_counter() - started
chips = {"dlib150": np.zeros((1, 150, 150, 3), np.uint8), "arcface112": np.zeros((1, 112, 112, 3), np.uint8)}
model.embed(chips)
first = time.perf_counter() - started
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS"))
print(json.dumps({"load_s": loaded, "first_embed_s": first, "rss_mib": rss / 1024,
                  "tensorflow": "tensorflow" in sys.modules}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    header = cpu_line()
    samples: dict[str, list[dict[str, float]]] = {"litert": [], "tensorflow": []}
    for _ in range(args.rounds):
        for runtime, sink in samples.items():
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(args.model_dir), runtime],
                capture_output=True, text=True, check=True, cwd=REPO,
            )  # fmt: skip
            sink.append(json.loads(out.stdout.strip().splitlines()[-1]))
    lines = [
        "bench_runtime_load: load the release directory and embed once, fresh process per sample "
        "(benchmarks/bench_runtime_load.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        header,
        f"model: {args.model_dir}; {args.rounds} alternating samples per runtime; medians",
        "",
        f"{'runtime':<12}{'load s':>8}{'+1st embed s':>14}{'RSS MiB':>9}  tensorflow imported",
    ]
    for runtime, rows in samples.items():
        lines.append(
            f"{runtime:<12}{statistics.median(r['load_s'] for r in rows):>8.2f}"
            f"{statistics.median(r['first_embed_s'] for r in rows):>14.2f}"
            f"{statistics.median(r['rss_mib'] for r in rows):>9.0f}  {bool(rows[0]['tensorflow'])}"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
