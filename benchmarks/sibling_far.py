"""False accepts between siblings in LFW at each operating point of the fused release head.

Look-alikes are the known weakness of face verification (README, known limitations): strangers'
FAR is what the operating points are calibrated on, and this measures how much worse it is for
brothers and sisters. Pairs: every photo of one sibling against every photo of the other (George W.
Bush capped at his first 30 photos), one comparison each (k = 1 enrolled photo), and the vote rule
with 5 enrolled photos where one sibling has at least 5.

Usage: python benchmarks/sibling_far.py [--head training/release/fused_head.json] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
LFW = REPO.parent / "shared" / "data" / "lfw" / "images"
SIBLINGS = (
    ("Serena_Williams", "Venus_Williams"),
    ("Michael_Schumacher", "Ralf_Schumacher"),
    ("George_W_Bush", "Jeb_Bush"),
    ("Mary-Kate_Olsen", "Ashley_Olsen"),
)
CAP = {"George_W_Bush": 30}  # others: every photo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--head", type=Path, default=REPO / "training" / "release" / "fused_head.json")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from bench_frame import machine_line

    from faceverify.decision import Thresholds, decide
    from training.build_model import record_mirror
    from training.fusion import FusionHead
    from training.tower_cache import embed_files

    record = json.loads(args.head.read_text())
    head = FusionHead.from_record(record)
    photos = {n: sorted((LFW / n).glob("*.jpg"))[: CAP.get(n, 1000)] for pair in SIBLINGS for n in pair}
    paths = [p for n in photos for p in photos[n]]
    emb = embed_files(paths, head.towers, mirror=record_mirror(record), progress=False)
    row = {p: i for i, p in enumerate(paths)}

    def sims(a: list[Path], b: list[Path]) -> np.ndarray:
        ia, ib = [row[p] for p in a], [row[p] for p in b]
        cos = np.stack([emb.embeddings[t][ia] @ emb.embeddings[t][ib].T for t in head.towers], axis=-1)
        return head.similarity(cos)

    lines = [
        "sibling_far: false accepts between LFW siblings at the fused head's operating points",
        f"date: {dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()}; {machine_line()}",
        f"head: {args.head.name} weights {head.weights} bias {head.bias:.4f}; chips {emb.versions}",
        "",
        f"{'pair':<40}{'comparisons':>12}"
        + "".join(f"{'FAR@' + format(p['far'], '.0e'):>12}" for p in record["operating_points"]),
    ]
    total = np.zeros(len(record["operating_points"]))
    count = 0
    rule_lines = []
    for a, b in SIBLINGS:
        s = sims(photos[a], photos[b]).reshape(-1)
        rates = [float(np.mean(s > p["detection_threshold"])) for p in record["operating_points"]]
        total += np.array(rates) * s.size
        count += s.size
        lines.append(f"{a + ' / ' + b:<40}{s.size:>12}" + "".join(f"{r:>12.4f}" for r in rates))
        for enrolled, probes in ((a, b), (b, a)):
            if len(photos[enrolled]) < 5:
                continue
            bank = sims(photos[probes], photos[enrolled][:5])
            accepted = [
                sum(
                    decide(r, Thresholds(p["detection_threshold"], p["verification_threshold"])).verified
                    for r in bank
                )
                for p in record["operating_points"]
            ]
            rule_lines.append(
                f"{'enrol ' + enrolled + '[:5], probe ' + probes:<58}{len(bank):>5}"
                + "".join(f"{x:>7}" for x in accepted)
            )
    lines.append(
        f"{'all sibling comparisons':<40}{count:>12}" + "".join(f"{r:>12.4f}" for r in total / count)
    )
    lines += [
        "",
        "vote rule, 5 enrolled photos: probes verified at each level "
        + " ".join(format(p["far"], ".0e") for p in record["operating_points"]),
        *rule_lines,
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.out:
        args.out.write_text(report)


if __name__ == "__main__":
    main()
