"""Recall and accuracy of the face pipeline on test sets built from LFW View 1 (never View 2), and
the genuine scores by face-quality bucket (what the enrolment gate would refuse).

Sets (built in memory from ../shared/data, never written; tests/pipeline/lfw_sets.py):

* ``lfw``: the 1,549 images of pairsDevTest as they are (250x250, faces ~90-110 px);
* ``far``: each of them shrunk x0.4 (faces ~40 px) at a seeded spot of a 640x480 frame whose
  background is a blurred copy of the photo: a person a few metres from a webcam;
* ``multi``: 2x2 canvases of four different pairsDevTest photos (every face must be found);
* ``odd``: degenerate and huge geometries through decode + pipeline (reason, time, peak memory).

Accuracy: LFW's 10-fold protocol on the 1,000 pairsDevTest pairs (threshold chosen on nine folds;
a missing face is a non-match). Recall: a face found whose centre lies in the pasted photo (far).

    PYTHONPATH=. python benchmarks/bench_face_sets.py --model /work/main/models/release \\
        --out benchmarks/results/face_sets.txt
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "pipeline"))

from lfw_sets import canvas, far_frame_placed, lfw_rgb, view1_pairs  # noqa: E402

from faceverify.pipeline import PIPELINE_VERSION, FacePipeline  # noqa: E402
from faceverify.quality import QualityThresholds, quality_failure  # noqa: E402
from faceverify.selection import select_verify_face  # noqa: E402


def machine_line() -> str:
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"cpu: {model}; nproc: {os.cpu_count()}; load average: {load}; python {platform.python_version()}"


def protocol_accuracy(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from training.evaluate import fold_accuracies

    folds = np.zeros(len(labels), int)
    for same in (True, False):
        idx = np.flatnonzero(labels == same)
        folds[idx] = np.arange(len(idx)) % 10
    accs, _ = fold_accuracies(scores, labels, folds)
    return float(np.mean(accs)), float(np.std(accs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=REPO / "models" / "release")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--canvases", type=int, default=100)
    ap.add_argument("--odd-only", action="store_true", help="only the odd-geometry rows")
    args = ap.parse_args()
    if args.odd_only:
        print("\n".join(odd_geometry(w, h) for w, h in ODD))
        return
    from faceverify.model import ServedModel

    pipe = FacePipeline()
    model = ServedModel(args.model)
    gate = QualityThresholds()
    pairs = view1_pairs("pairsDevTest.txt")
    names = list(dict.fromkeys([n for a, b, _ in pairs for n in (a, b)]))
    labels = np.array([same for _, _, same in pairs])
    lines = [
        "bench_face_sets: LFW View 1 pairsDevTest through the full pipeline (benchmarks/bench_face_sets.py)",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}",
        machine_line(),
        f"pipeline: {PIPELINE_VERSION}; model: {args.model} (version {model.version}); "
        f"vote threshold {model.operating_point.detection_threshold}",
        "",
    ]
    per_set: dict[str, dict[str, object]] = {}
    for set_name in ("lfw", "far"):
        emb: dict[str, np.ndarray | None] = {}
        quality: dict[str, object] = {}
        found_in_place = 0
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            rgb = lfw_rgb(name)
            if set_name == "far":
                rgb, (x, y, w, h) = far_frame_placed(rgb, seed=i)
            faces = pipe.faces(rgb)
            face = select_verify_face(faces).face
            if set_name == "far":
                found_in_place += any(
                    x <= f.box.center[0] <= x + w and y <= f.box.center[1] <= y + h for f in faces
                )
            emb[name] = None if face is None else model.embed_faces([face])[0]
            quality[name] = None if face is None else face.quality
        ms = (time.perf_counter() - t0) * 1000 / len(names)
        scores = np.full(len(pairs), -1.0)
        for k, (a, b, _) in enumerate(pairs):
            ea, eb = emb[a], emb[b]
            if ea is not None and eb is not None:
                scores[k] = float(model.score(ea, eb[None])[0])
        acc, std = protocol_accuracy(scores, labels)
        missing = sum(v is None for v in emb.values())
        recall = (found_in_place if set_name == "far" else len(names) - missing) / len(names)
        per_set[set_name] = {"scores": scores, "quality": quality}
        lines.append(
            f"{set_name:5s} images {len(names)}  face recall {recall * 100:.2f}%  no face {missing}  "
            f"accuracy {acc * 100:.2f}% +- {std * 100:.2f}  ({ms:.1f} ms/image incl. embed)"
        )

    # Genuine scores by quality, both sets pooled: a pair is bucketed by its worse face.
    lines += ["", "genuine pairs (same person), lfw + far pooled, by the enrolment gate on the worse face:"]
    thr = model.operating_point.detection_threshold
    rows: dict[str, list[float]] = {}
    for set_name, d in per_set.items():
        scores, quality = d["scores"], d["quality"]
        for k, (a, b, same) in enumerate(pairs):
            qa, qb = quality[a], quality[b]  # type: ignore[index]
            if not same or qa is None or qb is None:
                continue
            reasons = {quality_failure(q, gate) for q in (qa, qb)} - {None}  # type: ignore[arg-type]
            key = "passes the gate" if not reasons else "refused: " + "+".join(sorted(reasons))  # type: ignore[arg-type]
            rows.setdefault(key, []).append(float(scores[k]))  # type: ignore[index]
            rows.setdefault(f"  ({set_name} set)", [])
    lines.append(f"{'bucket':<44}{'pairs':>6}{'mean score':>12}{'below vote thr':>16}")
    for key, vals in sorted(rows.items(), key=lambda kv: -len(kv[1])):
        if not vals:
            continue
        v = np.asarray(vals)
        lines.append(f"{key:<44}{len(v):>6}{v.mean():>12.3f}{(v <= thr).mean() * 100:>15.1f}%")
    # Per-measure buckets (quartiles of the worse face) on the plain LFW set.
    lines += ["", "lfw set genuine pairs by quartile of the worse face's measure (mean score / % below thr):"]
    scores, quality = per_set["lfw"]["scores"], per_set["lfw"]["quality"]
    gen = [
        (k, quality[a], quality[b]) for k, (a, b, s) in enumerate(pairs) if s and quality[a] and quality[b]
    ]  # type: ignore[index]
    for measure, worse in (
        ("face_width", min),
        ("sharpness", min),
        ("brightness", min),
        ("score", min),
        ("abs_yaw", max),
        ("abs_pitch", max),
    ):
        attr = measure.replace("abs_", "")
        vals = np.array([worse(abs(getattr(qa, attr)), abs(getattr(qb, attr))) for _, qa, qb in gen])
        sc = np.array([scores[k] for k, _, _ in gen])  # type: ignore[index]
        edges = np.percentile(vals, [25, 50, 75])
        bucket = np.searchsorted(edges, vals)
        cells = []
        for b in range(4):
            m = bucket == b
            cells.append(f"q{b + 1} {sc[m].mean():.3f}/{(sc[m] <= thr).mean() * 100:4.1f}%")
        lines.append(f"{measure:<11} edges {np.round(edges, 1).tolist()!s:<24} " + "  ".join(cells))

    # Multi-face canvases: four different people per 2x2 canvas.
    found = total = 0
    rng = np.random.default_rng(0)
    for _ in range(args.canvases):
        pick = rng.choice(len(names), 4, replace=False)
        faces = pipe.faces(canvas([lfw_rgb(names[j]) for j in pick], columns=2))
        cells = {(int(f.box.center[0] // 250), int(f.box.center[1] // 250)) for f in faces}
        found += len(cells & {(0, 0), (1, 0), (0, 1), (1, 1)})
        total += 4
    lines += [
        "",
        f"multi  {args.canvases} 2x2 canvases of 4 people: {found}/{total} faces found "
        f"({found / total * 100:.2f}%)",
    ]

    lines += [
        "",
        "odd geometries (decode_image on PNG bytes + pipeline; child process per image for peak RSS):",
    ]
    for w, h in ODD:
        lines.append("  " + odd_geometry(w, h))
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


ODD = [(1, 1), (1, 10000), (10000, 1), (40, 2000), (4000, 4000), (6000, 6000)]


def odd_geometry(w: int, h: int) -> str:
    code = f"""
import io, resource, time, sys
sys.path.insert(0, {str(REPO)!r})
from PIL import Image
import numpy as np
from faceverify.decode import ImageDecodeError, decode_image
from faceverify.pipeline import FacePipeline
pipe = FacePipeline()
buf = io.BytesIO(); Image.new("L", ({w}, {h}), 128).save(buf, "PNG"); data = buf.getvalue()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
try:
    out = f"{{len(pipe.faces(decode_image(data)))}} faces"
except ImageDecodeError as exc:
    out = "refused: " + exc.reason
ms = (time.perf_counter() - t0) * 1000
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(f"{{len(data)}} bytes -> {{out}} in {{ms:.0f}} ms; peak RSS {{peak / 1024:.0f}} MB "
      f"(after loading the pipeline: {{before / 1024:.0f}} MB)")
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    return f"{w}x{h} grey PNG: " + (res.stdout.strip() or res.stderr.strip()[-200:])


if __name__ == "__main__":
    main()
