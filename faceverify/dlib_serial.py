"""Reader for dlib's binary serialization format, so dlib's public-domain model files can be used
without dlib itself.

dlib writes integers in a compact form (one header byte: low nibble = byte count, bit 7 = sign,
then that many little-endian magnitude bytes), floats as a compact-int mantissa and a compact-int
exponent (value = mantissa * 2**exponent), strings and vectors length-prefixed, and matrices as
their (negated) row and column counts followed by the elements. DNN tensors are the exception: four
compact ints (n, k, rows, cols) and then raw little-endian float32 data.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

# dlib's float_details marks special values through reserved exponents.
_EXP_INF = 32000
_EXP_NINF = 32001
_EXP_NAN = 32002


class DlibFormatError(ValueError):
    """The bytes do not follow dlib's serialization format where it was expected."""


class DlibReader:
    """A cursor over the bytes of a dlib-serialized file."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self.pos = 0

    @classmethod
    def from_file(cls, path: str | Path) -> DlibReader:
        return cls(Path(path).read_bytes())

    @property
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def read_bytes(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self._data):
            raise DlibFormatError(f"need {count} bytes at offset {self.pos}, {self.remaining} left")
        chunk = bytes(self._data[self.pos : self.pos + count])
        self.pos += count
        return chunk

    def read_int(self) -> int:
        header = self.read_bytes(1)[0]
        size = header & 0x0F
        if size > 8:
            raise DlibFormatError(f"compact int of {size} bytes at offset {self.pos - 1}")
        value = int.from_bytes(self.read_bytes(size), "little") if size else 0
        return -value if header & 0x80 else value

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _EXP_INF:
            return math.inf
        if exponent == _EXP_NINF:
            return -math.inf
        if exponent == _EXP_NAN:
            return math.nan
        return math.ldexp(float(mantissa), exponent)

    def read_bool(self) -> bool:
        """dlib writes a bool as the character '1' or '0' (raw 0x01/0x00 bytes are accepted too)."""
        byte = self.read_bytes(1)
        if byte in (b"1", b"\x01"):
            return True
        if byte in (b"0", b"\x00"):
            return False
        raise DlibFormatError(f"bool byte {byte!r} at offset {self.pos - 1}")

    def read_string(self) -> str:
        length = self.read_int()
        return self.read_bytes(length).decode("latin-1")

    def expect_string(self, expected: str) -> None:
        got = self.read_string()
        if got != expected:
            raise DlibFormatError(f"expected {expected!r} at offset {self.pos}, found {got!r}")

    def read_float_matrix(self) -> np.ndarray:
        """A dlib::matrix<float> written with serialize(): returns a (rows, cols) float32 array."""
        rows, cols = self.read_int(), self.read_int()
        rows, cols = abs(rows), abs(cols)
        values = [self.read_float() for _ in range(rows * cols)]
        return np.asarray(values, dtype=np.float32).reshape(rows, cols)

    def read_raw_float32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.read_bytes(4 * count), dtype="<f4").astype(np.float32)

    def read_tensor(self) -> np.ndarray:
        """A dlib::resizable_tensor: (n, k, rows, cols) then raw float32, returned with that shape."""
        n, k, rows, cols = (self.read_int() for _ in range(4))
        return self.read_raw_float32(n * k * rows * cols).reshape(n, k, rows, cols)

    def read_dnn_tensor(self) -> np.ndarray:
        """A tensor as dlib's DNN layers serialize it: a version int (2), then :meth:`read_tensor`."""
        version = self.read_int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at offset {self.pos}, expected 2")
        return self.read_tensor()

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """A dlib::alias_tensor (a view's shape, no data): version 1 then (n, k, rows, cols)."""
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"alias_tensor version {version} at offset {self.pos}, expected 1")
        n, k, rows, cols = (self.read_int() for _ in range(4))
        return n, k, rows, cols

    def skip_layer_training_state(self, *, bottom: bool) -> None:
        """Skip what dlib's add_layer writes after each layer's details for training only: three
        flags, three (usually empty) gradient/cache tensors and, for the bottom layer, the sample
        expansion factor. Inference needs none of it."""
        for _ in range(3):
            self.read_bool()
        for _ in range(3):
            self.read_dnn_tensor()
        if bottom:
            self.read_int()
