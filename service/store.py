"""Content-addressed image store under `DATA_DIR/images`.

Files are named by the sha256 of their bytes inside a directory per user (named by a hash of the
user id, so any valid user id, including "." or "..", maps to a safe path). Per-user directories
mean deleting a user never touches another user's files, and the same photo enrolled twice by the
same user is the same file. Writes go to a temp file in the same directory, are fsynced, then
renamed into place, so a reader never sees a half-written image.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def user_dir_name(user_id: str) -> str:
    return hashlib.sha256(user_id.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class StagedFile:
    """A file written to a temp name, not yet visible under its final name."""

    temp_path: Path
    final_path: Path
    relative_path: str


class ImageStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def relative_path(self, user_id: str, sha256: str) -> str:
        return f"{user_dir_name(user_id)}/{sha256}"

    def absolute(self, relative_path: str) -> Path:
        path = (self.root / relative_path).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"path escapes the image store: {relative_path!r}")
        return path

    def stage(self, user_id: str, data: bytes) -> StagedFile:
        """Write `data` durably under a temp name next to its final place (same filesystem)."""
        relative = self.relative_path(user_id, sha256_hex(data))
        final = self.absolute(relative)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(prefix=".tmp-", dir=final.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        return StagedFile(Path(temp_name), final, relative)

    @staticmethod
    def publish(staged: StagedFile) -> None:
        """Atomically move a staged file to its final name (identical content if it already exists)."""
        os.replace(staged.temp_path, staged.final_path)

    @staticmethod
    def discard(staged: StagedFile) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(staged.temp_path)

    def read(self, relative_path: str) -> bytes:
        return self.absolute(relative_path).read_bytes()

    def exists(self, relative_path: str) -> bool:
        return self.absolute(relative_path).is_file()

    def delete(self, relative_path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.absolute(relative_path).unlink()

    def delete_user(self, user_id: str) -> None:
        shutil.rmtree(self.root / user_dir_name(user_id), ignore_errors=True)

    def files(self) -> list[Path]:
        """Every file in the store (temp files included): what the orphan checks in tests compare."""
        if not self.root.exists():
            return []
        return sorted(p for p in self.root.rglob("*") if p.is_file())
