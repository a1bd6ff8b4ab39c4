"""First verify after /ready vs the ones after it, with and without the start-up warm-up inference.

Why: /ready must mean "a verify will be fast". Without a warm-up the first request after start pays
TensorFlow's lazy graph optimisation and the pipeline's first-use costs. Each measurement is a fresh
process (so nothing is warm from a previous run): it starts the real app (lifespan: model load,
warm-up unless disabled), polls GET /ready until 200, then times N verifies of real LFW photos
against a user enrolled beforehand by another process in the same SQLite database::

    .venv/bin/python benchmarks/bench_warm_start.py --model-dir models/release --runs 5 \\
        --out benchmarks/results/warm_start.txt

`--json` prints one JSON object per mode instead (used by tests/service/test_service_warm_start.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
PERSON = "Colin_Powell"
ENROLLED = (1, 2, 3)
PROBES = tuple(range(4, 30))


def photo(number: int) -> Path:
    return LFW / PERSON / f"{PERSON}_{number:04d}.jpg"


def _settings(data_dir: Path, model_dir: Path, warm_up: bool):  # type: ignore[no-untyped-def]
    from service.runtime.config import Settings

    return Settings(data_dir=data_dir, model_dir=model_dir, warm_up=warm_up)


def child_seed(data_dir: Path, model_dir: Path) -> None:
    """Enrol the user (in its own process, so the measured process starts cold)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in map(photo, ENROLLED)]
    settings = _settings(data_dir, model_dir, warm_up=False)
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()  # made at first start
        response = client.post("/enroll", data={"user_id": "warm"}, files=files)
        assert response.status_code == 201, response.text


def child_measure(data_dir: Path, model_dir: Path, warm_up: bool, runs: int) -> dict[str, object]:
    started = time.perf_counter()
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = _settings(data_dir, model_dir, warm_up)
    app = create_app(settings)
    with TestClient(app) as client:
        client.headers["X-API-Key"] = settings.admin_key_file.read_text().strip()  # the seed's key
        while client.get("/ready").status_code != 200:
            time.sleep(0.05)
        ready_s = time.perf_counter() - started
        verify_ms = []
        for number in PROBES[:runs]:
            data = photo(number).read_bytes()
            t = time.perf_counter()
            response = client.post(
                "/verify", data={"user_id": "warm"}, files={"image": ("p.jpg", data, "image/jpeg")}
            )
            verify_ms.append((time.perf_counter() - t) * 1000.0)
            assert response.status_code == 200, response.text
    return {"warm_up": warm_up, "start_to_ready_s": ready_s, "verify_ms": verify_ms}


def run_child(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, __file__, *args], env=env, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {args[:1]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def measure(model_dir: Path, runs: int, modes: list[bool]) -> list[dict[str, object]]:
    results = []
    with tempfile.TemporaryDirectory(prefix="faceverify-warm-") as tmp:
        data_dir = Path(tmp)
        run_child("--child-seed", str(data_dir), str(model_dir))
        for warm in modes:
            out = run_child("--child-measure", str(data_dir), str(model_dir), str(int(warm)), str(runs))
            results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def report(results: list[dict[str, object]], model_dir: Path, runs: int) -> str:
    lines = [
        f"# bench_warm_start.py  {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}",
        f"# {os.cpu_count()} CPUs (shared), {platform.python_version()}, model {model_dir}, runs {runs}",
        f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}",
        "mode         start->ready s   first verify ms   next verifies ms (median, max)   first/median",
    ]
    for r in results:
        ms = [float(v) for v in r["verify_ms"]]  # type: ignore[attr-defined]
        median = statistics.median(ms[1:])
        mode = "warm-up" if r["warm_up"] else "no warm-up"
        lines.append(
            f"{mode:<12} {float(r['start_to_ready_s']):>14.1f}   {ms[0]:>15.0f}   "  # type: ignore[arg-type]
            f"{median:>14.0f} {max(ms[1:]):>8.0f}               {ms[0] / median:>6.2f}"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    if sys.argv[1:2] == ["--child-seed"]:
        child_seed(Path(sys.argv[2]), Path(sys.argv[3]))
        return 0
    if sys.argv[1:2] == ["--child-measure"]:
        result = child_measure(Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4] == "1", int(sys.argv[5]))
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument("--runs", type=int, default=5, help="verifies per process (the first is timed apart)")
    parser.add_argument("--mode", choices=["both", "warm", "cold"], default="both")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if not LFW.is_dir():
        print(f"LFW not found at {LFW}", file=sys.stderr)
        return 2
    modes = {"both": [False, True], "warm": [True], "cold": [False]}[args.mode]
    results = measure(args.model_dir.resolve(), max(2, args.runs), modes)
    if args.json:
        for r in results:
            print(json.dumps(r))
        return 0
    text = report(results, args.model_dir, args.runs)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
