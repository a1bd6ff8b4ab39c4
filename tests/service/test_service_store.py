"""Content-addressed image store: atomic staging, per-user directories, safe paths."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from service.store import ImageStore


def test_stage_is_invisible_until_published(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    staged = store.stage("alice", b"abc")
    assert staged.relative_path.endswith(hashlib.sha256(b"abc").hexdigest())
    assert not store.exists(staged.relative_path)
    assert staged.temp_path.read_bytes() == b"abc"
    store.publish(staged)
    assert store.read(staged.relative_path) == b"abc"
    assert store.files() == [staged.final_path]


def test_discard_leaves_nothing(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    store.discard(store.stage("alice", b"abc"))
    assert store.files() == []


def test_users_do_not_share_files_and_odd_user_ids_stay_inside(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    paths = []
    for user in ("..", ".", "alice"):
        staged = store.stage(user, b"same bytes")
        store.publish(staged)
        paths.append(staged.final_path)
    assert len(set(paths)) == 3
    root = (tmp_path / "images").resolve()
    assert all(root in p.resolve().parents for p in paths)
    store.delete_user("..")
    assert not paths[0].exists() and paths[1].exists() and paths[2].exists()


def test_paths_escaping_the_store_are_refused(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ValueError):
        store.absolute("../outside")
