"""How many bytes a SavedModel's variables need, read from `variables/variables.index` without
TensorFlow: a truncated or missing weights file is found in milliseconds at start-up.

Why: the service started with truncated weights failed only after ~19 s of TensorFlow import and
load, with "Application startup failed" and a traceback. The index is a small LevelDB-style table
(TensorFlow's tensor bundle, written uncompressed) mapping each variable's name to a
`BundleEntryProto` that gives its shard, offset and size; the shards must be at least that long.
Only the few fields needed are decoded (table footer, index block, data blocks, three varint
fields of the protocol buffer); anything unexpected returns None (no verdict: TensorFlow decides).
"""

from __future__ import annotations

import struct
from pathlib import Path

_MAGIC = 0xDB4775248B80FB57
_FOOTER = 48
_TRAILER = 5  # compression type byte + crc32


class _Malformed(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _block(table: bytes, offset: int, size: int) -> list[tuple[bytes, bytes]]:
    """The (key, value) entries of one uncompressed block."""
    if offset + size + _TRAILER > len(table) or table[offset + size] != 0:
        raise _Malformed("block")
    data = table[offset : offset + size]
    (restarts,) = struct.unpack_from("<I", data, len(data) - 4)
    end = len(data) - 4 - 4 * restarts
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(data, pos)
        unshared, pos = _varint(data, pos)
        length, pos = _varint(data, pos)
        key = key[:shared] + data[pos : pos + unshared]
        pos += unshared
        entries.append((key, data[pos : pos + length]))
        pos += length
    return entries


def _fields(message: bytes) -> dict[int, int]:
    """The varint fields (wire type 0) of a protocol buffer message; others skipped."""
    out: dict[int, int] = {}
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            out[number], pos = _varint(message, pos)
        elif wire == 2:
            length, pos = _varint(message, pos)
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise _Malformed("wire type")
    return out


def required_shard_sizes(index_path: Path) -> dict[Path, int] | None:
    """{shard file: bytes it must hold at least}, or None when the index cannot be read this way."""
    try:
        table = index_path.read_bytes()
        if len(table) < _FOOTER or struct.unpack_from("<Q", table, len(table) - 8)[0] != _MAGIC:
            return None
        footer = table[-_FOOTER:]
        _meta_offset, pos = _varint(footer, 0)
        _meta_size, pos = _varint(footer, pos)
        index_offset, pos = _varint(footer, pos)
        index_size, pos = _varint(footer, pos)
        shards = 1
        needed: dict[int, int] = {}
        for _, handle in _block(table, index_offset, index_size):
            offset, at = _varint(handle, 0)
            size, _ = _varint(handle, at)
            for key, value in _block(table, offset, size):
                fields = _fields(value)
                if key == b"":  # BundleHeaderProto: num_shards = 1
                    shards = fields.get(1, 1)
                    continue
                shard = fields.get(3, 0)  # BundleEntryProto: shard_id 3, offset 4, size 5
                needed[shard] = max(needed.get(shard, 0), fields.get(4, 0) + fields.get(5, 0))
    except (OSError, _Malformed, struct.error, IndexError):
        return None
    prefix = index_path.name.removesuffix(".index")
    folder = index_path.parent
    return {folder / f"{prefix}.data-{shard:05d}-of-{shards:05d}": size for shard, size in needed.items()}


def weights_problem(model_dir: Path) -> str | None:
    """A one-line description of missing or truncated weight files, else None."""
    index = Path(model_dir) / "variables" / "variables.index"
    if not index.is_file():
        return f"{index} is missing"
    needed = required_shard_sizes(index)
    if needed is None:
        return None
    for shard, size in sorted(needed.items()):
        if not shard.is_file():
            return f"{shard} is missing"
        actual = shard.stat().st_size
        if actual < size:
            return f"{shard} is truncated: {actual} bytes, the index needs {size}"
    return None
