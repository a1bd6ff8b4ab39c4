"""Shared fixtures for the training tests: a dozen-odd real LFW photos in LFW layout, one real face
pipeline, and a chip cache in a temp dir (never in the read-only shared data)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LFW_ROOT = REPO_ROOT.parent / "shared" / "data" / "lfw"
LFW_IMAGES = LFW_ROOT / "images"

# 9 people x 4 photos: enough for identity-disjoint train/val/test splits, small enough to be fast.
MINI_PEOPLE = (
    "Aaron_Peirsol",
    "Abdullah_Gul",
    "Adrien_Brody",
    "Al_Gore",
    "Alejandro_Toledo",
    "Ali_Naimi",
    "Amelie_Mauresmo",
    "Andre_Agassi",
    "Andy_Roddick",
)
PER_PERSON = 4

# LFW format: 2 folds of 2 matched + 2 mismatched pairs, all among MINI_PEOPLE.
TINY_PAIRS = """2\t2
Aaron_Peirsol\t1\t2
Abdullah_Gul\t1\t3
Aaron_Peirsol\t1\tAbdullah_Gul\t2
Adrien_Brody\t1\tAl_Gore\t1
Al_Gore\t1\t2
Andre_Agassi\t1\t4
Al_Gore\t2\tAndre_Agassi\t2
Andy_Roddick\t1\tAli_Naimi\t3
"""


def need_lfw() -> None:
    if not LFW_IMAGES.is_dir():
        pytest.fail(f"LFW not found at {LFW_IMAGES} (expected ../shared/data/lfw relative to the repo)")


@pytest.fixture(scope="session")
def mini_lfw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder in LFW layout whose files are symlinks to the shared (read-only) photos."""
    need_lfw()
    root = tmp_path_factory.mktemp("mini_lfw")
    for person in MINI_PEOPLE:
        (root / person).mkdir()
        for src in sorted((LFW_IMAGES / person).iterdir())[:PER_PERSON]:
            os.symlink(src, root / person / src.name)
    return root


@pytest.fixture(scope="session")
def tiny_pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pairs") / "pairs_tiny.txt"
    path.write_text(TINY_PAIRS)
    return path


@pytest.fixture(scope="session")
def pipeline():  # type: ignore[no-untyped-def]
    from faceverify.pipeline import FacePipeline

    return FacePipeline()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chip_cache")
