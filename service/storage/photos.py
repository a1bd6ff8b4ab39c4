"""The photo store under `DATA_DIR/images`: one encrypted file per enrolled photo.

Files are named by the sha256 of the photo inside a directory per user (named by a hash of the
user id, so any valid user id, including "." or "..", maps to a safe path, and deleting a user
never touches another user's files). Each file is the photo sealed with AES-GCM (service.storage.crypto),
bound to its user row and sha256.

Writes are crash-safe: temp file (".tmp-*", 0600) -> fsync -> rename into place -> fsync the
directory. Callers write while holding the user's lock (service.storage.locks) and BEFORE committing
the rows, so a committed row always has its file; what a crash leaves behind (temp files, files
whose rows never committed) is removed by `service.storage.recovery` at start-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from pathlib import Path

from service.runtime.crashpoints import crash_point
from service.storage.crypto import KeyRing, ensure_private_dir, fsync_dir, photo_aad, sealed_key_id

TEMP_PREFIX = ".tmp-"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def user_dir_name(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:32]


class ImageStore:
    def __init__(self, root: Path, keyring: KeyRing):
        self.root = Path(root)
        self.keyring = keyring

    def ensure_root(self) -> None:
        ensure_private_dir(self.root)

    def relative_path(self, user_id: str, sha256: str) -> str:
        return f"{user_dir_name(user_id)}/{sha256}"

    def absolute(self, relative_path: str) -> Path:
        path = (self.root / relative_path).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"path escapes the image store: {relative_path!r}")
        return path

    def write_photo(self, user_id: str, user_pk: int, sha256: str, data: bytes) -> str:
        """Seal and durably write one photo under its final name; returns its relative path."""
        relative = self.relative_path(user_id, sha256)
        self._write_atomic(self.absolute(relative), self.keyring.seal(data, photo_aad(user_pk, sha256)))
        return relative

    def read_photo(self, relative_path: str, user_pk: int, sha256: str) -> bytes:
        """The photo's plaintext (raises DecryptionError if the file is not this row's)."""
        return self.keyring.open(self.absolute(relative_path).read_bytes(), photo_aad(user_pk, sha256))

    def reseal(self, relative_path: str, user_pk: int, sha256: str) -> bool:
        """Re-encrypt a file under the current key (atomic replace); False if it already was."""
        path = self.absolute(relative_path)
        blob = path.read_bytes()
        if sealed_key_id(blob) == self.keyring.current_id:
            return False
        aad = photo_aad(user_pk, sha256)
        self._write_atomic(path, self.keyring.seal(self.keyring.open(blob, aad), aad))
        return True

    def _write_atomic(self, final: Path, blob: bytes) -> None:
        ensure_private_dir(final.parent)
        temp = final.with_name(f"{TEMP_PREFIX}{final.name}-{secrets.token_hex(6)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(blob)
                handle.flush()
                os.fsync(handle.fileno())
            crash_point("after_temp_write")
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        fsync_dir(final.parent)

    def exists(self, relative_path: str) -> bool:
        return self.absolute(relative_path).is_file()

    def delete(self, relative_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.absolute(relative_path).unlink()

    def dir_names(self) -> list[str]:
        """Every per-user directory on disk."""
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def dir_entries(self, dir_name: str) -> list[str]:
        """Names of the files in one user directory (temp files included)."""
        directory = self.root / dir_name
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if p.is_file())

    def remove_dir_if_empty(self, dir_name: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            (self.root / dir_name).rmdir()

    def files(self) -> list[Path]:
        """Every file in the store (temp files included): what the orphan checks in tests compare."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.rglob("*") if p.is_file())
