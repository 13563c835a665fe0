"""Reading IDX files (the MNIST family's format), raw or gzip-compressed.

The format is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the data. Anything that does not match exactly is an error
naming the file: a wrong array is worse than no array.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from torchslim.core.errors import CorruptFileError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_bytes(path: str | Path) -> bytes:
    """The decompressed content of an IDX file (``.gz`` is detected by its magic, not its name)."""
    return decompress(Path(path).read_bytes(), str(path))


def decompress(raw: bytes, source: str) -> bytes:
    """``raw`` gunzipped when it starts with gzip's magic bytes, else unchanged."""
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt deflate stream
        raise CorruptFileError(f"{source}: not a valid gzip file ({exc}).") from None


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX content into an array of the recorded shape and type.

    Raises:
        CorruptFileError: bad magic number, unknown type code, or a length that does not match
            the recorded dimensions.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise CorruptFileError(
            f"{source}: bad IDX magic number {data[:4].hex() or '(empty file)'}; "
            "expected two zero bytes, a type code and a dimension count."
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _DTYPES:
        raise CorruptFileError(
            f"{source}: unknown IDX type code 0x{type_code:02x}; "
            f"valid codes: {', '.join(f'0x{c:02x}' for c in _DTYPES)}."
        )
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise CorruptFileError(f"{source}: truncated IDX header ({len(data)} bytes, {ndim} dims).")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_DTYPES[type_code])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise CorruptFileError(
            f"{source}: IDX length {len(data)} bytes does not match its header "
            f"(shape {shape}, {dtype.itemsize}-byte items: expected {expected} bytes); "
            "the file is truncated or corrupted."
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(
        dtype.newbyteorder("="), copy=True
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw or .gz) into a numpy array."""
    return parse_idx(read_idx_bytes(path), str(path))


def write_idx(path: str | Path, array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` as IDX (uint8 or float32 etc.); used by tests and for caching."""
    codes = {np.dtype(v).newbyteorder(">").str if np.dtype(v).itemsize > 1 else np.dtype(v).str: k
             for k, v in _DTYPES.items()}
    dt = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    body = bytes([0, 0, codes[dt.str], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    body += np.ascontiguousarray(array, dtype=dt).tobytes()
    Path(path).write_bytes(gzip.compress(body) if compress else body)
