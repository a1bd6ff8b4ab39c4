"""Where a /verify spends its time outside the face pipeline and the towers: a live server, py-spy.

Why: over HTTP a verify costs more than the same frame in-process (decode -> faces -> towers); the
difference is multipart parsing, key lookup, lockout row, audit chain, decrypting the stored
embeddings, metrics and the framework. This script

1. starts `faceverify serve` on 127.0.0.1 (this checkout's code, SQLite, encryption at rest as
   configured by default), enrols one user with 3 frames;
2. times, interleaved, POST /verify of one 640x480 frame over HTTP and the same frame through the
   library in this process (decode -> faces -> verify rule -> embed -> score against 3 embeddings):
   the difference of the medians is the per-request overhead;
3. attaches py-spy (sampling, all threads, idle excluded) to the server during a further series of
   verifies and reports, per function in service/ and faceverify/ (and per library), the share of
   samples whose stack contains it (inclusive).

Usage: python benchmarks/profile_verify.py --out benchmarks/results/verify_profile.txt   (needs py-spy)
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
from bench_frame import letterboxed_frame
from bench_peers import ENROL_FRAMES, cli_of, cpu_line
from bench_server import start_server

REPO = Path(__file__).resolve().parents[1]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")
LIBRARIES = {
    "sqlalchemy": "sqlalchemy/",
    "sqlite3": "sqlite3/",
    "cryptography": "cryptography/",
    "python-multipart / starlette forms": "multipart/",
    "starlette forms": "starlette/formparsers.py",
    "pydantic": "pydantic",
    "prometheus_client": "prometheus_client/",
    "uvicorn / h11 / asyncio": "uvicorn/",
    "anyio (threadpool hand-off)": "anyio/",
    "ai_edge_litert (towers)": "ai_edge_litert/",
    "PIL (decode)": "PIL/",
    "cv2 / numpy": "numpy/",
}


def parse_raw(path: Path) -> list[tuple[list[tuple[str, str]], int]]:
    """py-spy's raw (collapsed) output -> [(frames root..leaf as (function, file), samples)]."""
    stacks = []
    for line in path.read_text().splitlines():
        body, _, count = line.rpartition(" ")
        if not body:
            continue
        frames = []
        for part in body.split(";"):
            m = FRAME.match(part.strip())
            frames.append((m["func"], m["file"]) if m else (part.strip(), ""))
        stacks.append((frames, int(count)))
    return stacks


def inclusive(stacks: list[tuple[list[tuple[str, str]], int]]) -> tuple[Counter[str], Counter[str], int]:
    """Samples per our own function and per library, each counted once per stack that contains it."""
    ours: Counter[str] = Counter()
    libs: Counter[str] = Counter()
    total = 0
    for frames, n in stacks:
        total += n
        seen = set()
        for func, file in frames:
            for top in ("service/", "faceverify/"):
                i = file.find(top)
                if i >= 0 and (REPO.name in file or "site-packages" not in file):
                    seen.add(f"{file[i:]}:{func}")
        for key in seen:
            ours[key] += n
        for name, needle in LIBRARIES.items():
            if any(needle in file for _, file in frames):
                libs[name] += n
    return ours, libs, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--runs", type=int, default=40, help="interleaved timing runs")
    parser.add_argument("--profile-runs", type=int, default=80)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")

    import numpy as np

    from faceverify.decode import decode_image
    from faceverify.model import ServedModel
    from faceverify.pipeline import FacePipeline
    from faceverify.selection import select_verify_face

    pipeline, model = FacePipeline(), ServedModel(args.model_dir)
    frame = letterboxed_frame(180)
    enrol = [letterboxed_frame(i) for i in ENROL_FRAMES]
    bank = np.concatenate(
        [model.embed_faces([select_verify_face(pipeline.faces(decode_image(b))).face]) for b in enrol]
    )

    def in_process() -> None:
        face = select_verify_face(pipeline.faces(decode_image(frame))).face
        model.score(model.embed_faces([face])[0], bank)

    with tempfile.TemporaryDirectory(prefix="profile-verify-") as tmp:
        server = start_server(
            args.model_dir,
            Path(tmp),
            command=cli_of(REPO),
            env_extra={"PYTHONPATH": str(REPO), "FACEVERIFY_TF_THREADS": "0",
                       "FACEVERIFY_LOCKOUT_MAX_FAILURES": "1000000"},
        )  # fmt: skip
        try:
            http = httpx.Client(base_url=server.url, headers=server.headers, timeout=60)
            files = [("images", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(enrol)]
            assert http.post("/enroll", data={"user_id": "lin"}, files=files, timeout=300).status_code == 201

            def verify() -> None:
                r = http.post(
                    "/verify", data={"user_id": "lin"}, files={"image": ("f.jpg", frame, "image/jpeg")}
                )
                assert r.status_code == 200 and r.json()["verified"] is True, r.text

            for _ in range(3):
                verify()
                in_process()
            t_http: list[float] = []
            t_lib: list[float] = []
            for _ in range(args.runs):
                for fn, sink in ((verify, t_http), (in_process, t_lib)):
                    started = time.perf_counter()
                    fn()
                    sink.append((time.perf_counter() - started) * 1000.0)
            raw = Path(tmp) / "raw.txt"
            spy = subprocess.Popen(
                [py_spy, "record", "--format", "raw", "--rate", "250", "-o", str(raw), "-p",
                 str(server.process.pid)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
            for _ in range(args.profile_runs):
                verify()
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
            stacks = parse_raw(raw)
        finally:
            server.process.terminate()
            server.process.wait(timeout=30)
    ours, libs, total = inclusive(stacks)
    http_p50, lib_p50 = statistics.median(t_http), statistics.median(t_lib)
    lines = [
        "profile_verify: POST /verify on a live server vs the same frame in-process, and a py-spy profile "
        "of the server (benchmarks/profile_verify.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        cpu_line(),
        f"model: {args.model_dir} (runtime {model.runtime} in-process; the server's default, "
        "FACEVERIFY_RUNTIME unset); frame: short_hamilton_clip frame_0180 640x480; user enrolled with 3 "
        "frames; SQLite",
        "",
        f"interleaved, {args.runs} runs each: /verify over HTTP p50 {http_p50:.1f} ms; in-process frame "
        f"+ score p50 {lib_p50:.1f} ms; per-request overhead {http_p50 - lib_p50:.1f} ms "
        f"({(http_p50 - lib_p50) / http_p50:.0%} of a verify)",
        "",
        f"py-spy, {args.profile_runs} verifies, {total} samples (all threads, idle excluded); "
        "inclusive share:",
        "  libraries:",
    ]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in libs.most_common()]
    lines.append("  our functions (top 40):")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in ours.most_common(40)]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
