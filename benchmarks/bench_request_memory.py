"""Peak server memory added by one request, per request kind (issue 18: "one request adds at most
~300 MB, whatever it carries").

One `faceverify serve` (release model, SQLite, TF threads 1; benchmarks/bench_server.py) answers
each request alone, one after the other; a sampler thread reads the server's VmRSS from /proc every
2 ms. For each request: RSS just before, the peak while it ran, the peak minus before (what the
request added) and the status. Kinds: ordinary enrol / verify / liveness burst (LFW photos, 640x360
webcam frames), phone-size photos (4032x3024 JPEG), and hostile bodies: a burst of 48 one-colour
6000x6000 PNGs (5.7 MB on the wire; it took the server from 1.1 GB to 6.6 GB before), a burst
just inside the pixel budget, a 40 Mpx verify photo, enrolments just inside and over the budget.

    PYTHONPATH=. python benchmarks/bench_request_memory.py --out benchmarks/results/request_memory.txt
    # the code before the change, for comparison (fewer hostile frames: it decodes them all):
    PYTHONPATH=<old checkout> python benchmarks/bench_request_memory.py --hostile-frames 12
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
from bench_server import start_server
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
LFW = DATA / "lfw" / "images"
FRAMES = DATA / "frames" / "short_hamilton_clip" / "frames"
MB = 1024 * 1024


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Sampler:
    """Peak VmRSS of `pid` between `start()` and `stop()`, sampled every 2 ms in a thread."""

    def __init__(self, pid: int):
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.peak = rss_bytes(self.pid)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(0.002)

    def stop(self) -> int:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        return max(self.peak, rss_bytes(self.pid))


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=quality)
    return out.getvalue()


def one_colour_png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(out, "PNG")
    return out.getvalue()


def phone_photo(person: str, number: int, seed: int) -> bytes:
    """An LFW face pasted (upscaled 6x) into a 4032x3024 noisy canvas, as a phone JPEG."""
    rng = np.random.default_rng(seed)
    canvas = rng.integers(60, 200, (3024, 4032, 3), dtype=np.uint8)
    face = Image.open(LFW / person / f"{person}_{number:04d}.jpg").convert("RGB").resize((1500, 1500))
    canvas[700:2200, 1200:2700] = np.asarray(face)
    return jpeg(canvas)


def lfw(person: str, number: int) -> bytes:
    return (LFW / person / f"{person}_{number:04d}.jpg").read_bytes()


def embed_batch_run(model_dir: Path, batch: int) -> str:
    """In this process: RSS added and time of one embed of 48 webcam faces at `batch` faces per call."""
    import faceverify.model as served
    from faceverify.decode import decode_image
    from service.faces.engine import FaceEngine

    served.EMBED_BATCH = batch
    engine = FaceEngine(model_dir, tf_threads=1)
    faces = [engine.faces(decode_image(p.read_bytes()))[0] for p in sorted(FRAMES.glob("*.jpg"))[:48]]
    engine.embed_faces(faces[:2])  # warm
    sampler = Sampler(os.getpid())
    before = rss_bytes(os.getpid())
    sampler.start()
    started = time.monotonic()
    engine.embed_faces(faces)
    elapsed = time.monotonic() - started
    peak = sampler.stop()
    return (
        f"embed 48 webcam faces, {batch:2d} per call: added {(peak - before) / MB:4.0f} MB, {elapsed:.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embed-batch", type=int, help="only: one embed-batch measurement, in-process")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("FACEVERIFY_MODEL_DIR", "")
                        or REPO.parent / "main" / "models" / "release"))  # fmt: skip
    parser.add_argument("--hostile-frames", type=int, default=48)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.embed_batch:
        print(embed_batch_run(args.model_dir, args.embed_batch), flush=True)
        return

    lines: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    import service

    say(f"# bench_request_memory  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    say(f"# CPU: {cpu_model()} x{os.cpu_count()}; code: {Path(service.__file__).parent.parent}")
    say(f"# model: {args.model_dir}; server: faceverify serve, SQLite, FACEVERIFY_TF_THREADS=1")
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as scratch:
        server = start_server(
            args.model_dir, Path(scratch), env_extra={"FACEVERIFY_ADMISSION_MAX_ACTIVE": "1"}
        )
        sampler = Sampler(server.process.pid)
        client = httpx.Client(base_url=server.url, headers=server.headers, timeout=600)
        say(f"# server RSS after start and warm-up: {rss_bytes(server.process.pid) / MB:.0f} MB")
        say(f"{'request':58s} {'status':>6s} {'before MB':>9s} {'peak MB':>8s} {'added MB':>8s} {'s':>6s}")

        def measure(name: str, send: Callable[[], httpx.Response]) -> httpx.Response:
            before = rss_bytes(server.process.pid)
            sampler.start()
            started = time.monotonic()
            response = send()
            elapsed = time.monotonic() - started
            peak = sampler.stop()
            reason = "" if response.status_code < 300 else f" {response.json().get('reason', '')}"
            say(f"{name:58s} {response.status_code:6d} {before / MB:9.0f} {peak / MB:8.0f} "
                f"{(peak - before) / MB:8.0f} {elapsed:6.1f}{reason}")  # fmt: skip
            return response

        def enrol(user: str, photos: list[bytes], kind: str = "image/jpeg") -> Callable[[], httpx.Response]:
            files = [("images", (f"{i}.img", p, kind)) for i, p in enumerate(photos)]
            return lambda: client.post("/enroll", data={"user_id": user}, files=files)

        def verify(user: str, photo: bytes, kind: str = "image/jpeg") -> Callable[[], httpx.Response]:
            return lambda: client.post("/verify", data={"user_id": user}, files={"image": ("p", photo, kind)})

        def burst(user: str, frames: list[bytes], kind: str) -> Callable[[], httpx.Response]:
            def send() -> httpx.Response:
                issued = client.post("/liveness/challenge", data={"user_id": user}).json()
                files = [("frames", (f"f{i}", f, kind)) for i, f in enumerate(frames)]
                data = {"user_id": user, "challenge_id": issued["challenge_id"]}
                return client.post("/verify", data=data, files=files)

            return send

        bush = [lfw("George_W_Bush", n) for n in range(1, 6)]
        measure("enrol 5 LFW photos (250x250 JPEG)", enrol("bush", bush))
        measure("verify 1 LFW photo", verify("bush", lfw("George_W_Bush", 7)))
        webcam = [(FRAMES / f"frame_{n:04d}.jpg").read_bytes() for n in range(1, 49)]
        measure("liveness burst, 48 webcam frames (640x360 JPEG)", burst("bush", webcam, "image/jpeg"))
        phones = [phone_photo("Colin_Powell", n, n) for n in range(1, 6)]
        measure("enrol 5 phone photos (4032x3024 JPEG)", enrol("powell", phones))
        measure("verify 1 phone photo (4032x3024 JPEG)", verify("powell", phone_photo("Colin_Powell", 7, 9)))
        say("# hostile bodies")
        huge = one_colour_png(6000, 6000)
        n = args.hostile_frames
        measure(f"liveness burst, {n} one-colour 6000x6000 PNG ({n * len(huge) / MB:.1f} MB)",
                burst("bush", [huge] * n, "image/png"))  # fmt: skip
        inside = one_colour_png(1440, 1440)  # 48 x 2.07 Mpx: just inside the 100 Mpx burst budget
        measure(
            "liveness burst, 48 one-colour 1440x1440 PNG (budget edge)",
            burst("bush", [inside] * 48, "image/png"),
        )
        bomb = one_colour_png(6324, 6324)  # 39.99 Mpx: just under the per-image pixel cap
        measure("verify 1 one-colour 6324x6324 PNG (40 Mpx)", verify("bush", bomb, "image/png"))
        measure("enrol 6 one-colour 6324x6324 PNG (240 Mpx)", enrol("bomb6", [bomb] * 6, "image/png"))
        measure("enrol 12 one-colour 6324x6324 PNG (480 Mpx)", enrol("bomb12", [bomb] * 12, "image/png"))
        say(f"# server RSS at the end: {rss_bytes(server.process.pid) / MB:.0f} MB")
        client.close()
        server.process.terminate()
        server.process.wait(30)
    say("# faces per embed call (faceverify.model.EMBED_BATCH), each in a fresh process, interleaved")
    for batch in (32, 8, 32, 8):
        argv = [sys.executable, __file__, "--embed-batch", str(batch), "--model-dir", str(args.model_dir)]
        run = subprocess.run(argv, capture_output=True, text=True, check=True)
        say(run.stdout.strip().splitlines()[-1])
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
