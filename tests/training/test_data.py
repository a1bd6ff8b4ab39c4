"""Data layer: LFW files parse to what LFW documents, pairs are balanced/seeded/disjoint, the chip
cache really caches (and records missing faces), augmentation is deterministic per seed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import LFW_ROOT, need_lfw
from training.data import (
    SHARED_DATA,
    ChipCache,
    augment_chip,
    generate_pairs,
    own_folder_pairs,
    read_pairs,
    read_people,
    scan_identities,
    split_identities,
    unique_images,
)


def test_lfw_view2_pairs_and_people_parse_as_documented() -> None:
    need_lfw()
    pairs = read_pairs(LFW_ROOT / "pairs.txt", LFW_ROOT / "images")
    assert len(pairs) == 6000
    assert sorted({p.fold for p in pairs}) == list(range(10))
    for fold in range(10):
        in_fold = [p for p in pairs if p.fold == fold]
        assert sum(p.same for p in in_fold) == 300 and len(in_fold) == 600
    assert all(p.left.exists() and p.right.exists() for p in pairs)
    assert len(unique_images(pairs)) == 7701  # the figure issue 5 quotes for View 2
    dev = read_pairs(LFW_ROOT / "pairsDevTrain.txt", LFW_ROOT / "images")
    assert len(dev) == 2200 and {p.fold for p in dev} == {0} and sum(p.same for p in dev) == 1100
    folds = read_people(LFW_ROOT / "people.txt")
    assert len(folds) == 10 and len(folds[0]) == 601
    assert sum(len(f) for f in folds) == 5749
    (train,) = read_people(LFW_ROOT / "peopleDevTrain.txt")
    assert len(train) == 4038


def test_pairs_file_with_wrong_count_is_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "pairs.txt"
    bad.write_text("1\t2\nA\t1\t2\nA\t1\tB\t1\n")
    with pytest.raises(ValueError, match="announces"):
        read_pairs(bad, tmp_path)


def test_generated_pairs_are_balanced_seeded_and_splits_identity_disjoint(mini_lfw: Path) -> None:
    ids = scan_identities(mini_lfw)
    train, val = split_identities(list(ids), 0.34, seed=3)
    assert not set(train) & set(val) and sorted(train + val) == sorted(ids)
    a = generate_pairs({n: ids[n] for n in train}, 40, seed=5)
    b = generate_pairs({n: ids[n] for n in train}, 40, seed=5)
    c = generate_pairs({n: ids[n] for n in train}, 40, seed=6)
    assert a == b and a != c
    assert sum(p.same for p in a) == 20 and len(a) == 40
    for p in a:
        assert (p.left.parent == p.right.parent) == p.same and p.left != p.right
        assert p.left.parent.name in train and p.right.parent.name in train
    assert len({(p.left, p.right) for p in a}) == len(a)  # no duplicate pair


def test_own_folder_pairs_use_anchor_positive_and_lfw_negatives(mini_lfw: Path, tmp_path: Path) -> None:
    anchors, positives = tmp_path / "anchor", tmp_path / "positive"
    anchors.mkdir()
    positives.mkdir()
    me = sorted((mini_lfw / "Al_Gore").iterdir())
    for f in me[:2]:
        os.symlink(f.resolve(), anchors / f.name)
    for f in me[2:]:
        os.symlink(f.resolve(), positives / f.name)
    pairs = own_folder_pairs(anchors, positives, mini_lfw, 20, seed=1)
    assert len(pairs) == 20 and sum(p.same for p in pairs) == 10
    for p in pairs:
        assert p.left.parent == anchors
        assert (p.right.parent == positives) == p.same


def test_chip_cache_hits_on_second_read_and_records_missing_faces(
    mini_lfw: Path,
    tmp_path: Path,
    pipeline,  # type: ignore[no-untyped-def]
) -> None:
    calls = {"n": 0}

    class Counting:
        """The real pipeline, counted: a cache hit must not reach it."""

        def faces(self, rgb):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            return pipeline.faces(rgb)

    cache = ChipCache(tmp_path / "cache", Counting())
    photo = sorted((mini_lfw / "Andre_Agassi").iterdir())[0]
    t0 = time.perf_counter()
    first = cache.get(photo)
    assert first is not None and first.shape == (150, 150, 3) and first.dtype == np.uint8
    assert calls["n"] == 1
    second = cache.get(photo)
    assert calls["n"] == 1 and np.array_equal(first, second)  # lossless PNG round trip
    assert time.perf_counter() - t0 < 30

    blank = tmp_path / "blank" / "Nobody_0001.jpg"
    blank.parent.mkdir()
    import cv2

    cv2.imwrite(str(blank), np.full((250, 250, 3), 128, np.uint8))
    assert cache.get(blank) is None and calls["n"] == 2
    assert cache.get(blank) is None and calls["n"] == 2  # the miss itself is cached
    assert list((tmp_path / "cache").rglob("*.noface"))
    # A changed file (new mtime) is a different key: the stale entry is not used.
    os.utime(blank, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert cache.get(blank) is None and calls["n"] == 3


def test_cache_refuses_the_read_only_shared_data() -> None:
    with pytest.raises(ValueError, match="read-only"):
        ChipCache(SHARED_DATA / "cache")


def test_augmentation_is_seeded_mild_and_keeps_the_chip_format(mini_lfw: Path, tmp_path: Path) -> None:
    import cv2
    import tensorflow as tf

    img = cv2.imread(str(sorted((mini_lfw / "Al_Gore").iterdir())[0]))[50:200, 50:200, ::-1].copy()
    chip = tf.constant(img)
    a = augment_chip(chip, tf.constant([1, 2], tf.int64)).numpy()
    b = augment_chip(chip, tf.constant([1, 2], tf.int64)).numpy()
    c = augment_chip(chip, tf.constant([1, 3], tf.int64)).numpy()
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a, img)

    # Mild: correlated with the original or its mirror (an aligned face stays an aligned face).
    def corr(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.corrcoef(x.astype(float).ravel(), y.astype(float).ravel())[0, 1])

    for out in (a, c):
        assert max(corr(out, img), corr(out, img[:, ::-1])) > 0.6  # unrelated images: ~0
