"""Encryption at rest: AES-256-GCM for stored photos and embeddings, under a rotatable data key.

Why this shape:
* Every blob is sealed on its own with a fresh random 96-bit nonce, and carries the id of the key
  that sealed it, so a rotation can run in small, resumable steps while old and new keys coexist.
* The associated data names what the blob is and whose it is (kind, user row, photo sha256), so a
  blob copied onto another user's row or file fails authentication instead of decrypting: nobody
  with write access to the database or the store can swap faces between users unnoticed.
* The key comes from `FACEVERIFY_ENCRYPTION_KEY` (base64 of 32 bytes; older keys, still needed
  to read data until a rotation finishes, in `FACEVERIFY_ENCRYPTION_OLD_KEYS`), or from a key file
  created on first start in DATA_DIR with mode 0600. The key file is re-read when it changes, so a
  rotation run by `faceverify encryption rotate` reaches a running service without a restart.

Blob layout: MAGIC (4) | key id (8) | nonce (12) | ciphertext + GCM tag (16). Data written before
encryption existed (a JPEG file, a raw float32 embedding) has no MAGIC and is read as plaintext
until `faceverify encryption rotate` seals it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MAGIC = b"FVE1"
KEY_BYTES = 32
KEY_ID_BYTES = 8
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + NONCE_BYTES
OVERHEAD = HEADER_BYTES + TAG_BYTES
KEY_FILE_NAME = "encryption-keys.json"


class CryptoError(Exception):
    """Base of the encryption errors (any of them)."""


class DecryptionError(CryptoError):
    """A blob fails authentication (tampered, swapped between rows) or its key is unknown.

    `reason` tells the two apart for the operator: `unknown_key` (sealed with a key this process
    does not have: a configuration problem) or `authentication_failed` (the blob was changed, or
    belongs to another row). Neither the message nor the reason carries key material.
    """

    def __init__(self, message: str, reason: str = "authentication_failed"):
        super().__init__(message)
        self.reason = reason


class KeyConfigError(CryptoError):
    """The configured key material is unusable (bad base64, wrong length, unreadable key file)."""


def key_id_of(key: bytes) -> str:
    """Stable, non-secret id of a key (hex): what blobs carry to say which key sealed them."""
    return hashlib.sha256(b"faceverify-key-id\0" + key).hexdigest()[: 2 * KEY_ID_BYTES]


def parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyConfigError("encryption key is not valid base64") from exc
    if len(key) != KEY_BYTES:
        raise KeyConfigError(f"encryption key must be {KEY_BYTES} bytes (base64), got {len(key)}")
    return key


def new_key_text() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def photo_aad(user_pk: int, sha256: str) -> bytes:
    return f"faceverify/photo/v1|user={user_pk}|sha256={sha256}".encode()


def embedding_aad(user_pk: int, sha256: str) -> bytes:
    return f"faceverify/embedding/v1|user={user_pk}|sha256={sha256}".encode()


def is_sealed(blob: bytes) -> bool:
    return len(blob) >= OVERHEAD and blob[: len(MAGIC)] == MAGIC


def sealed_key_id(blob: bytes) -> str | None:
    """Key id a blob was sealed with, or None for legacy plaintext."""
    if not is_sealed(blob):
        return None
    return blob[len(MAGIC) : len(MAGIC) + KEY_ID_BYTES].hex()


@dataclass(frozen=True)
class KeyFile:
    """The on-disk key file: the current key and the retired ones still needed during a rotation."""

    current: str
    keys: dict[str, str]  # key id -> base64 key

    @staticmethod
    def read(path: Path) -> KeyFile:
        try:
            raw = json.loads(path.read_text())
            keys = {str(k): str(v) for k, v in raw["keys"].items()}
            current = str(raw["current"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeyConfigError(f"cannot read the encryption key file {path}: {exc}") from exc
        if current not in keys:
            raise KeyConfigError(f"key file {path}: current key {current} is not among its keys")
        return KeyFile(current, keys)

    def write(self, path: Path) -> None:
        """Atomic and durable: temp file (0600) -> fsync -> rename -> fsync the directory."""
        body = json.dumps({"current": self.current, "keys": self.keys}, indent=1).encode()
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KeyRing:
    """The keys this process can decrypt with, and the one it encrypts with (`current_id`)."""

    def __init__(self, keys: dict[str, bytes], current_id: str, key_file: Path | None = None):
        if current_id not in keys:
            raise KeyConfigError("the current key is not in the key ring")
        self._keys = dict(keys)
        self._current = current_id
        self._key_file = key_file
        self._stamp = _stamp(key_file) if key_file else None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, data_dir: Path, key_text: str | None, old_keys_text: str = "", create: bool = True
    ) -> KeyRing:
        """Env key (plus old keys) if set, else the key file in `data_dir`, created when missing."""
        if key_text:
            current = parse_key(key_text)
            keys = {key_id_of(current): current}
            for item in (part for part in old_keys_text.split(",") if part.strip()):
                old = parse_key(item)
                keys[key_id_of(old)] = old
            return cls(keys, key_id_of(current))
        path = Path(data_dir) / KEY_FILE_NAME
        if not path.exists():
            if not create:
                raise KeyConfigError(f"no encryption key: {path} does not exist")
            ensure_private_dir(Path(data_dir))
            key = parse_key(new_key_text())
            with contextlib.suppress(FileExistsError):
                _create_exclusive(path, KeyFile(key_id_of(key), {key_id_of(key): new_key_b64(key)}))
        return cls._from_file(path)

    @classmethod
    def _from_file(cls, path: Path) -> KeyRing:
        keys, current = _load(path)
        return cls(keys, current, key_file=path)

    @property
    def key_file(self) -> Path | None:
        return self._key_file

    def refresh(self) -> None:
        """Re-read the key file if it changed (a rotation by another process); cheap stat otherwise."""
        if self._key_file is None:
            return
        stamp = _stamp(self._key_file)
        if stamp == self._stamp:
            return
        with self._lock:
            keys, current = _load(self._key_file)
            self._keys, self._current, self._stamp = keys, current, stamp

    @property
    def current_id(self) -> str:
        self.refresh()
        return self._current

    def key_ids(self) -> set[str]:
        self.refresh()
        return set(self._keys)

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        self.refresh()
        key_id = self._current
        nonce = secrets.token_bytes(NONCE_BYTES)
        body = AESGCM(self._keys[key_id]).encrypt(nonce, plaintext, aad)
        return MAGIC + bytes.fromhex(key_id) + nonce + body

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Plaintext of a sealed blob; legacy (never sealed) data is returned as is."""
        if not is_sealed(blob):
            return blob
        key_id = sealed_key_id(blob)
        assert key_id is not None
        key = self._keys.get(key_id)
        if key is None:
            self.refresh()
            key = self._keys.get(key_id)
        if key is None:
            raise DecryptionError(f"blob sealed with unknown key {key_id}", "unknown_key")
        nonce = blob[len(MAGIC) + KEY_ID_BYTES : HEADER_BYTES]
        try:
            return AESGCM(key).decrypt(nonce, blob[HEADER_BYTES:], aad)
        except InvalidTag as exc:
            raise DecryptionError("blob failed authentication (tampered or not this row's)") from exc


def new_key_b64(key: bytes) -> str:
    return base64.b64encode(key).decode("ascii")


def ensure_private_dir(path: Path) -> None:
    """Create `path` (and parents) 0700; tighten an existing one we own."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o700)


def _create_exclusive(path: Path, key_file: KeyFile) -> None:
    """First start: write the key file only if nobody else did (two replicas starting at once)."""
    temp = path.with_name(f".{path.name}.new-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(json.dumps({"current": key_file.current, "keys": key_file.keys}).encode())
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(temp, path)  # fails with FileExistsError if another process won
    finally:
        os.unlink(temp)
    fsync_dir(path.parent)


def _load(path: Path) -> tuple[dict[str, bytes], str]:
    key_file = KeyFile.read(path)
    keys = {}
    for key_id, text in key_file.keys.items():
        key = parse_key(text)
        if key_id_of(key) != key_id:
            raise KeyConfigError(f"key file {path}: key id {key_id} does not match its key")
        keys[key_id] = key
    return keys, key_file.current


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns
