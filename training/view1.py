"""The View 1 image sets the fusion head and the operating points are made from (never View 2).

peopleDevTrain identities train the head; with the pairsDevTest photos they give the impostor and
genuine comparisons the operating points are calibrated on; pairsDevTest (identity-disjoint from
peopleDevTrain) is the held-out report. To keep the one-off embedding pass affordable on a shared
2-core machine (~0.5 s per photo for both towers under load), the default sample is the first 6
photos of each of the 218 peopleDevTrain identities with at least 6 (1,308 photos): each gives 5
enrolled photos + probes for the k-vote rule; `few_cap` / `singletons` add identities with fewer
photos (impostors and k=1 genuine pairs) when there is CPU for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from training.data import lfw_image_path, read_pairs, read_people, unique_images


@dataclass(frozen=True)
class ImageSet:
    paths: list[Path]
    identities: list[str]  # one per path


def dev_train_images(
    lfw_root: Path,
    max_per_person: int = 6,
    few_cap: int = 0,
    singletons: int = 0,
    seed: int = 0,
) -> ImageSet:
    """peopleDevTrain photos: the first `max_per_person` (LFW order) of every identity with at least
    that many, the first `few_cap` of identities with 2..max_per_person-1, plus `singletons`
    one-photo identities drawn with `seed`."""
    images = Path(lfw_root) / "images"
    people = read_people(Path(lfw_root) / "peopleDevTrain.txt")[0]
    multi = [(name, n) for name, n in people if n >= 2]
    single = sorted(name for name, n in people if n == 1)
    random.Random(seed).shuffle(single)
    paths: list[Path] = []
    ids: list[str] = []
    for name, n in multi:
        take = max_per_person if n >= max_per_person else min(n, few_cap)
        for i in range(1, take + 1):
            paths.append(lfw_image_path(images, name, i))
            ids.append(name)
    for name in sorted(single[:singletons]):
        paths.append(lfw_image_path(images, name, 1))
        ids.append(name)
    return ImageSet(paths, ids)


def dev_test_images(lfw_root: Path) -> ImageSet:
    """The images of pairsDevTest.txt (peopleDevTest identities)."""
    pairs = read_pairs(Path(lfw_root) / "pairsDevTest.txt", Path(lfw_root) / "images")
    paths = unique_images(pairs)
    return ImageSet(paths, [p.parent.name for p in paths])
