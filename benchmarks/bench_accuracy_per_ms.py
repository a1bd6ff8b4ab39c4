"""Accuracy per millisecond: which towers, and which test-time mirroring, the release should serve.

Issue 11 asks for a two-tower frame in <= 40 ms on 2 cores and, if the fused model cannot make it,
for the choice to be made by measured accuracy per millisecond. This script measures both sides for
every candidate the same way:

* accuracy: LFW View 1 (the head of each fused candidate is fitted on peopleDevTrain, reported on
  pairsDevTest, as `faceverify fuse` does) and, with ``--view2``, LFW View 2 (`pairs.txt`, the final
  figure; not used to fit anything). Faces are found by the one face pipeline; a face not found
  counts as a non-match and is reported. Embeddings come from the per-tower cache, which keeps each
  photo's chip and mirror features, so every mirroring choice is scored from one pass.
* speed: each candidate exported as a served SavedModel (the export the service loads), then one
  640x480 webcam frame (bench_frame.py's) through decode -> YuNet -> landmarks -> chips -> served
  embed, median over rounds that interleave the candidates (so drift in machine load hits all alike).
  The ratio column is against the first candidate, measured in the same run.

Usage:
    python benchmarks/bench_accuracy_per_ms.py --view2 --out benchmarks/results/accuracy_per_ms.txt
    python benchmarks/bench_accuracy_per_ms.py --skip-accuracy      # timings only (quiet machine)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from bench_frame import letterboxed_frame, machine_line

REPO = Path(__file__).resolve().parents[1]
LFW = REPO.parent / "shared" / "data" / "lfw"


@dataclass(frozen=True)
class Candidate:
    name: str
    towers: tuple[str, ...]
    mirror: dict[str, bool]


CANDIDATES = (
    Candidate("fused, both mirrored (2026.12.0)", ("dlib", "sface"), {"dlib": True, "sface": True}),
    Candidate("fused, dlib mirrored", ("dlib", "sface"), {"dlib": True, "sface": False}),
    Candidate("fused, sface mirrored (2026.12.1)", ("dlib", "sface"), {"dlib": False, "sface": True}),
    Candidate("fused, no mirror", ("dlib", "sface"), {"dlib": False, "sface": False}),
    Candidate("dlib alone, mirrored", ("dlib",), {"dlib": True}),
    Candidate("dlib alone, no mirror", ("dlib",), {"dlib": False}),
    Candidate("sface alone, mirrored", ("sface",), {"sface": True}),
    Candidate("sface alone, no mirror", ("sface",), {"sface": False}),
)


def _scorer(c: Candidate) -> str:
    return "fused" if len(c.towers) > 1 else c.towers[0]


def accuracy(view2: bool, progress: bool) -> dict[str, Any]:
    """Per candidate: pairsDevTest and (optionally) View 2 metrics, plus its fused head."""
    from training.calibration import collect_trials, operating_points
    from training.fuse import compare_towers, fit_head, heldout_report, similarity_matrix, view1_embeddings

    view = view1_embeddings(LFW, progress=progress)
    both = view.emb.found["dlib"] & view.emb.found["sface"]
    rows = np.flatnonzero(both)
    ids = [view.identities[i] for i in rows]
    out: dict[str, Any] = {}
    for c in CANDIDATES:
        setting = {"dlib": c.mirror.get("dlib", True), "sface": c.mirror.get("sface", True)}
        mirrored = replace(view, emb=view.emb.with_mirror(setting))
        head, _ = fit_head(mirrored)
        trials = collect_trials(similarity_matrix(mirrored.emb, rows, _scorer(c), head), ids)
        row: dict[str, Any] = {
            "head": head.to_record(),
            "pairsDevTest": heldout_report(mirrored, head)[_scorer(c)],
            # The service's vote rule on every View 1 photo: FRR (worst case over 1-5 enrolled
            # photos) at the thresholds that hold each FAR, as `faceverify fuse` calibrates them.
            "view1_vote_rule": {
                f"{p['far']:.0e}": p["frr"] for p in operating_points(trials, (1e-3, 1e-4, 1e-5))
            },
        }
        if view2:
            row["view2"] = compare_towers(LFW, LFW / "pairs.txt", head, mirror=setting, progress=progress)[
                _scorer(c)
            ]
        out[c.name] = row
    return out


def export_candidate(c: Candidate, head: dict[str, Any] | None, out: Path) -> Path:
    """The candidate as the service would load it (single towers get a plain monotone head: the
    decision threshold does not change its speed)."""
    from training.build_model import FUSED_FORMAT, export_fused_from_record

    record: dict[str, Any] = {
        "format": FUSED_FORMAT,
        "towers": list(c.towers),
        "weights": [10.0] * len(c.towers),
        "bias": -5.0,
        "mirror": c.mirror,
        "thresholds": None,
    }
    if head is not None and len(c.towers) > 1:
        record.update(weights=head["weights"], bias=head["bias"])
    return export_fused_from_record(record, out, version="bench")


def speed(heads: dict[str, Any], rounds: int, per_round: int) -> dict[str, list[float]]:
    """Milliseconds per whole frame for each candidate, interleaved round by round."""
    from faceverify.decode import decode_image
    from faceverify.model import ServedModel
    from faceverify.pipeline import FacePipeline
    from faceverify.selection import select_verify_face

    pipeline = FacePipeline()
    frame = letterboxed_frame(180)
    models: dict[str, ServedModel] = {}
    with tempfile.TemporaryDirectory(prefix="faceverify-candidates-") as tmp:
        for i, c in enumerate(CANDIDATES):
            head = heads.get(c.name, {}).get("head")
            models[c.name] = ServedModel(export_candidate(c, head, Path(tmp) / f"c{i}"))

        def whole(model: ServedModel) -> None:
            face = select_verify_face(pipeline.faces(decode_image(frame))).face
            assert face is not None, "no face in the benchmark frame"
            model.embed_faces([face])

        samples: dict[str, list[float]] = {c.name: [] for c in CANDIDATES}
        for model in models.values():  # warm-up: traces, thread pools, caches
            for _ in range(5):
                whole(model)
        for _ in range(rounds):
            for name, model in models.items():
                for _ in range(per_round):
                    started = time.perf_counter()
                    whole(model)
                    samples[name].append((time.perf_counter() - started) * 1000.0)
    return samples


def _pct(m: dict[str, Any] | None, key: str) -> str:
    return f"{m[key] * 100:6.2f}" if m else "     -"


def table(results: dict[str, Any]) -> list[str]:
    acc, ms = results.get("accuracy", {}), results.get("speed", {})
    base = statistics.median(ms[CANDIDATES[0].name]) if ms else None
    lines = [
        f"{'candidate':<36}{'ms/frame':>9}{'ratio':>7}{'DevTest acc':>12}{'TAR@1e-3':>9}"
        f"{'FRR@1e-4':>9}{'FRR@1e-5':>9}{'View2 acc':>10}{'TAR@1e-3':>9}{'no face':>8}",
    ]
    for c in CANDIDATES:
        a = acc.get(c.name, {})
        dev, v2 = a.get("pairsDevTest"), a.get("view2")
        med = statistics.median(ms[c.name]) if c.name in ms else None
        lines.append(
            f"{c.name:<36}"
            + (f"{med:9.1f}{med / base:7.2f}" if med is not None and base else f"{'-':>9}{'-':>7}")
            + f"{_pct(dev, 'accuracy_mean'):>12}{_pct(dev, 'tar_at_far_1e-3'):>9}"
            + f"{_pct(a.get('view1_vote_rule'), '1e-04'):>9}{_pct(a.get('view1_vote_rule'), '1e-05'):>9}"
            + f"{_pct(v2, 'accuracy_mean'):>10}{_pct(v2, 'tar_at_far_1e-3'):>9}"
            + f"{v2['no_face_found'] if v2 else '-':>8}"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--view2", action="store_true", help="also score LFW View 2 (the final figure)")
    parser.add_argument("--skip-accuracy", action="store_true", help="reuse the accuracy in --json")
    parser.add_argument("--skip-speed", action="store_true", help="reuse the timings in --json")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument(
        "--tf-threads", default="", help="INTRA,INTER TensorFlow pools for the timings (default: TF's own)"
    )
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "accuracy_per_ms.json")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    results: dict[str, Any] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    if not args.skip_accuracy:
        results["accuracy"] = accuracy(args.view2, progress=not args.quiet)
        results["accuracy_date"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    if not args.skip_speed:
        if args.tf_threads:
            import tensorflow as tf

            intra, inter = (int(n) for n in args.tf_threads.split(","))
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        results["speed_threads"] = args.tf_threads or "TensorFlow default"
        results["speed_machine"] = machine_line() + " (at start)"
        results["speed"] = speed(results.get("accuracy", {}), args.rounds, args.per_round)
        results["speed_machine_end"] = machine_line() + " (at end)"
        results["speed_date"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    report = [
        "bench_accuracy_per_ms: candidates for the served model (benchmarks/bench_accuracy_per_ms.py)",
        f"accuracy: {results.get('accuracy_date', '-')}; LFW View 1 pairsDevTest (heads fitted on "
        "peopleDevTrain) and View 2 pairs.txt, 10 folds, full pipeline from the JPEG files; FRR: the "
        "vote rule on every View 1 photo, worst case over 1-5 enrolled photos, at the threshold "
        "holding that FAR",
        f"speed: {results.get('speed_date', '-')}; one 640x480 frame with one face, decode -> YuNet -> "
        "landmarks -> chips -> served embed, median ms; ratio to the first row, same run",
        f"  TF threads (intra,inter): {results.get('speed_threads', '-')}",
        f"  {results.get('speed_machine', '-')}",
        f"  {results.get('speed_machine_end', '-')}",
        "",
        *table(results),
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
