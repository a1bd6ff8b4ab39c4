"""Photo store and encryption at rest: sealed files, per-user directories, safe paths, key ring."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from service.storage.crypto import KEY_FILE_NAME, DecryptionError, KeyConfigError, KeyRing, new_key_text
from service.storage.photos import TEMP_PREFIX, ImageStore, sha256_hex
from service.storage.tables import open_embedding, seal_embedding

PHOTO = b"\xff\xd8\xff\xe0" + b"a distinctive slice of jpeg-ish bytes" * 20


def _store(tmp_path: Path) -> ImageStore:
    keyring = KeyRing.from_settings(tmp_path, None)
    store = ImageStore(tmp_path / "images", keyring)
    store.ensure_root()
    return store


def test_photos_are_sealed_on_disk_and_read_back(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sha = sha256_hex(PHOTO)
    relative = store.write_photo("alice", 1, sha, PHOTO)
    raw = store.absolute(relative).read_bytes()
    assert PHOTO[:4] not in raw and b"distinctive slice" not in raw  # neither SOI nor content in clear
    assert store.read_photo(relative, 1, sha) == PHOTO
    assert [p.name for p in store.files()] == [sha]  # no temp file left
    assert stat.S_IMODE(store.absolute(relative).stat().st_mode) == 0o600
    assert stat.S_IMODE(store.absolute(relative).parent.stat().st_mode) == 0o700


def test_a_blob_moved_to_another_user_or_row_fails_authentication(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sha = sha256_hex(PHOTO)
    relative = store.write_photo("alice", 1, sha, PHOTO)
    with pytest.raises(DecryptionError):
        store.read_photo(relative, 2, sha)  # same file presented as user 2's
    with pytest.raises(DecryptionError):
        store.read_photo(relative, 1, "0" * 64)  # as another photo of the same user
    vector = np.arange(4, dtype=np.float32)
    blob = seal_embedding(store.keyring, vector, 1, sha)
    assert np.array_equal(open_embedding(store.keyring, blob, 4, 1, sha), vector)
    with pytest.raises(DecryptionError):
        open_embedding(store.keyring, blob, 4, 2, sha)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(DecryptionError):
        open_embedding(store.keyring, tampered, 4, 1, sha)


def test_each_seal_uses_a_fresh_nonce(tmp_path: Path) -> None:
    keyring = KeyRing.from_settings(tmp_path, None)
    assert keyring.seal(b"same", b"aad") != keyring.seal(b"same", b"aad")


def test_key_file_is_created_once_0600_and_reused(tmp_path: Path) -> None:
    first = KeyRing.from_settings(tmp_path, None)
    path = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = KeyRing.from_settings(tmp_path, None)
    assert first.current_id == second.current_id
    assert second.open(first.seal(b"x", b"a"), b"a") == b"x"
    assert len(json.loads(path.read_text())["keys"]) == 1


def test_env_key_and_old_keys(tmp_path: Path) -> None:
    old, new = new_key_text(), new_key_text()
    sealed_old = KeyRing.from_settings(tmp_path, old).seal(b"x", b"a")
    ring = KeyRing.from_settings(tmp_path, new, old)
    assert ring.open(sealed_old, b"a") == b"x"
    assert ring.current_id != KeyRing.from_settings(tmp_path, old).current_id
    with pytest.raises(DecryptionError):
        KeyRing.from_settings(tmp_path, new).open(sealed_old, b"a")  # old key no longer configured
    assert not (tmp_path / KEY_FILE_NAME).exists()  # an env key never writes a key file
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(KeyConfigError):
            KeyRing.from_settings(tmp_path, bad)


def test_legacy_plaintext_is_read_as_is(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sha = sha256_hex(PHOTO)
    relative = store.relative_path("alice", sha)
    store.absolute(relative).parent.mkdir(parents=True)
    store.absolute(relative).write_bytes(PHOTO)  # a file from before encryption
    assert store.read_photo(relative, 1, sha) == PHOTO
    assert store.reseal(relative, 1, sha) is True and store.reseal(relative, 1, sha) is False
    assert PHOTO[:4] not in store.absolute(relative).read_bytes()
    assert store.read_photo(relative, 1, sha) == PHOTO


def test_users_do_not_share_files_and_odd_user_ids_stay_inside(tmp_path: Path) -> None:
    store = _store(tmp_path)
    sha = sha256_hex(PHOTO)
    paths = [store.absolute(store.write_photo(user, 1, sha, PHOTO)) for user in ("..", ".", "alice")]
    assert len(set(paths)) == 3
    root = (tmp_path / "images").resolve()
    assert all(root in p.resolve().parents for p in paths)


def test_paths_escaping_the_store_are_refused(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with pytest.raises(ValueError):
        store.absolute("../outside")


def test_a_failed_write_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = _store(tmp_path)

    def broken_replace(*_args: object) -> None:
        raise OSError("injected: rename failed")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.write_photo("alice", 1, sha256_hex(PHOTO), PHOTO)
    assert not [p for p in store.files() if p.name.startswith(TEMP_PREFIX)]
