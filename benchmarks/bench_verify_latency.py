"""Verify latency over HTTP vs the number of enrolled images, beside the naive approach.

Why: the service stores one embedding per enrolled image at enrolment, so a verify runs the CNN once
(on the probe) and scores the whole bank in one vectorised call; its latency must stay flat as a
user enrols more photos. The naive approach (the seed notebook's) re-runs the CNN on every enrolled
image at every verify, so its latency grows linearly. This script measures both:

* ours: a real `faceverify serve` (uvicorn on a free loopback port, SQLite in a temp dir), one user
  per size enrolled with 5 / 50 / 200 LFW photos of one person over HTTP, then `POST /verify` timed
  end to end from the client (p50/p95);
* naive (implemented here, not in the service): for the same users, the aligned chips of the stored
  images are computed once beforehand (as if stored); each verify decodes and detects the probe,
  runs `embed` on the probe AND on every enrolled chip, then `score`. Timed in-process, without
  HTTP or database, so it is a lower bound of a naive service.

    .venv/bin/python benchmarks/bench_verify_latency.py --out benchmarks/results/verify_latency.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
PERSON = "George_W_Bush"  # 530 photos in LFW


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(samples_ms: list[float]) -> tuple[float, float]:
    values = np.asarray(samples_ms)
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def resolve_model(model_dir: Path | None, build_release: bool, scratch: Path) -> tuple[Path, str]:
    """The release model when present (or buildable), else the tiny test model, with a note why."""
    candidates = [model_dir] if model_dir else []
    candidates += [Path(os.environ["FACEVERIFY_MODEL_DIR"])] if "FACEVERIFY_MODEL_DIR" in os.environ else []
    candidates.append(REPO / "models" / "release")
    for candidate in candidates:
        if (candidate / "saved_model.pb").is_file():
            return candidate, f"model directory {candidate}"
    if build_release:
        from training.build_model import RELEASE_HEAD, export_release

        if RELEASE_HEAD.is_file():
            out = export_release(out=scratch / "release")
            return out, f"release model exported now by training.build_model.export_release -> {out}"
    from training.export import export_tiny_test_model

    out = export_tiny_test_model(scratch / "tiny", version="tiny-bench")
    return out, "TINY TEST MODEL (no release model found): CNN cost is far below the release model's"


def start_server(model_dir: Path, data_dir: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "FACEVERIFY_DATA_DIR": str(data_dir), "FACEVERIFY_MODEL_DIR": str(model_dir)}
    env.pop("FACEVERIFY_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli.main", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("server not ready after 300 s")


def enrol_user(client: httpx.Client, user_id: str, pool: list[Path], target: int) -> int:
    """Enrol photos from `pool` until exactly `target` are stored (some LFW photos are rejected,
    e.g. a second comparable face), so every size really has that many embeddings."""
    enrolled, next_photo = 0, 0
    while enrolled < target and next_photo < len(pool):
        batch = pool[next_photo : next_photo + min(50, target - enrolled)]
        next_photo += len(batch)
        files = [("images", (p.name, p.read_bytes(), "image/jpeg")) for p in batch]
        response = client.post("/enroll", data={"user_id": user_id}, files=files)
        if response.status_code == 201:
            enrolled += len(response.json()["enrolled"])
    return enrolled


def time_http_verify(client: httpx.Client, user_id: str, probes: list[bytes], runs: int) -> list[float]:
    for probe in probes[:2]:  # warm-up (first-call tracing, connection set-up)
        client.post("/verify", data={"user_id": user_id}, files={"image": ("p.jpg", probe, "image/jpeg")})
    samples = []
    for i in range(runs):
        probe = probes[i % len(probes)]
        started = time.perf_counter()
        response = client.post(
            "/verify", data={"user_id": user_id}, files={"image": ("p.jpg", probe, "image/jpeg")}
        )
        samples.append((time.perf_counter() - started) * 1000.0)
        response.raise_for_status()
    return samples


class NaiveVerifier:
    """The naive verify: re-embed every enrolled chip at every request (benchmark-only code)."""

    def __init__(self, model_dir: Path):
        import tensorflow as tf

        from faceverify.decode import decode_image
        from faceverify.pipeline import FacePipeline

        self._tf = tf
        self._decode = decode_image
        self._pipeline = FacePipeline()
        loaded = tf.saved_model.load(str(model_dir))
        self._loaded = loaded
        self._embed = loaded.signatures["embed"]
        self._score = loaded.signatures["score"]

    def chip(self, data: bytes) -> np.ndarray | None:
        faces = self._pipeline.faces(self._decode(data))
        return faces[0].chip if faces else None

    def verify(self, probe: bytes, enrolled_chips: np.ndarray) -> np.ndarray:
        probe_chip = self.chip(probe)
        assert probe_chip is not None
        tf = self._tf
        probe_vec = self._embed(chips=tf.constant(probe_chip[None]))["embeddings"][0]
        bank = tf.concat(
            [
                self._embed(chips=tf.constant(enrolled_chips[i : i + 32]))["embeddings"]
                for i in range(0, len(enrolled_chips), 32)
            ],
            axis=0,
        )
        return np.asarray(self._score(probe=probe_vec, bank=bank)["similarity"])


def machine_facts() -> list[str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import tensorflow as tf

    return [
        f"date: {dt.datetime.now(dt.UTC).isoformat(timespec='seconds')}",
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s): {cpu}",
        f"load average at start (1/5/15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"python {platform.python_version()}, tensorflow {tf.__version__}, numpy {np.__version__}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="5,50,200", help="enrolled images per user")
    parser.add_argument("--requests", type=int, default=30, help="timed /verify requests per size")
    parser.add_argument("--naive-requests", type=int, default=10, help="timed naive verifies per size")
    parser.add_argument("--model-dir", type=Path, default=None)
    parser.add_argument("--no-build-release", action="store_true", help="do not export the release model")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    photos = sorted((LFW / PERSON).glob("*.jpg"))
    if len(photos) < max(sizes) * 1.3 + 10:
        raise SystemExit(f"need about {int(max(sizes) * 1.3) + 10} photos of {PERSON} under {LFW}")
    facts = machine_facts()
    probes = [p.read_bytes() for p in photos[-10:]]  # never enrolled

    with tempfile.TemporaryDirectory(prefix="fv-bench-") as scratch_name:
        scratch = Path(scratch_name)
        model_dir, model_note = resolve_model(args.model_dir, not args.no_build_release, scratch)
        card = json.loads((model_dir / "model_card.json").read_text())
        port = _free_port()
        server = start_server(model_dir, scratch / "data", port, scratch / "server.log")
        ours: dict[int, tuple[int, list[float]]] = {}
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
                for size in sizes:
                    enrolled = enrol_user(client, f"bench{size}", photos[:-10], size)
                    ours[size] = (enrolled, time_http_verify(client, f"bench{size}", probes, args.requests))
                    p50, p95 = _percentiles(ours[size][1])
                    print(f"ours  n={size:4d} enrolled={enrolled:4d} p50={p50:8.1f} ms p95={p95:8.1f} ms")
        finally:
            server.terminate()
            server.wait(timeout=60)

        naive = NaiveVerifier(model_dir)
        usable_list: list[np.ndarray] = []
        for photo in photos[:-10]:
            chip = naive.chip(photo.read_bytes())
            if chip is not None:
                usable_list.append(chip)
            if len(usable_list) == max(sizes):
                break
        usable = np.stack(usable_list)
        naive.verify(probes[0], usable[:5])  # warm-up (tracing)
        naive_times: dict[int, list[float]] = {}
        for size in sizes:
            chips = usable[: ours[size][0]]
            samples = []
            for i in range(args.naive_requests):
                started = time.perf_counter()
                naive.verify(probes[i % len(probes)], chips)
                samples.append((time.perf_counter() - started) * 1000.0)
            naive_times[size] = samples
            p50, p95 = _percentiles(samples)
            print(f"naive n={size:4d} p50={p50:8.1f} ms p95={p95:8.1f} ms")

    lines = [
        "# Verify latency vs enrolled images per user (benchmarks/bench_verify_latency.py)",
        "command: " + shlex.join([Path(sys.executable).name, *(sys.argv if argv is None else argv)]),
        f"model: {model_note}",
        f"model card: name={card.get('name')} version={card.get('version')} tower={card.get('tower')}",
        *facts,
        f"ours: HTTP POST /verify to `faceverify serve` (uvicorn, SQLite), {args.requests} sequential "
        "requests per size after 2 warm-ups, client-side wall time",
        f"naive: in-process decode+detect+embed(probe and every enrolled chip)+score, "
        f"{args.naive_requests} runs per size after a warm-up (no HTTP/DB: a lower bound)",
        "NOTE: 2 shared CPU cores, other jobs running: absolute numbers are noisy.",
        "",
        f"{'enrolled':>8} | {'ours p50 ms':>11} | {'ours p95 ms':>11} | "
        f"{'naive p50 ms':>12} | {'naive p95 ms':>12}",
        "-" * 67,
    ]
    for size in sizes:
        o50, o95 = _percentiles(ours[size][1])
        n50, n95 = _percentiles(naive_times[size])
        lines.append(f"{ours[size][0]:>8} | {o50:>11.1f} | {o95:>11.1f} | {n50:>12.1f} | {n95:>12.1f}")
    first, last = sizes[0], sizes[-1]
    growth_ours = _percentiles(ours[last][1])[0] / _percentiles(ours[first][1])[0]
    growth_naive = _percentiles(naive_times[last])[0] / _percentiles(naive_times[first])[0]
    lines += [
        "",
        f"p50 growth from {first} to {last} enrolled images: "
        f"ours x{growth_ours:.2f}, naive x{growth_naive:.2f}",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
