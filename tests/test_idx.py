"""IDX reading and writing: round trips, the on-disk layout, and every way a file can be broken."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from torchslim.core.errors import CorruptFileError
from torchslim.data.idx import parse_idx, read_idx, read_idx_bytes, write_idx

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]


def sample(dtype, shape=(3, 4, 5)) -> np.ndarray:
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return (rng.standard_normal(shape) * 1000).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True, dtype=dtype)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, dtype, compress):
    array = sample(dtype)
    path = tmp_path / ("a.idx.gz" if compress else "a.idx")
    write_idx(path, array, compress=compress)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert back.flags.writeable  # a copy, not a view of the file's bytes


def test_uint8_layout_follows_the_spec(tmp_path):
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    write_idx(tmp_path / "a", array)
    raw = (tmp_path / "a").read_bytes()
    assert raw == bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 0, 1, 2, 3, 4, 5])


def test_multibyte_data_is_big_endian(tmp_path):
    array = np.array([1, -2], dtype=np.int32)
    write_idx(tmp_path / "a", array)
    raw = (tmp_path / "a").read_bytes()
    assert raw[:8] == bytes([0, 0, 0x0C, 1, 0, 0, 0, 2])
    assert raw[8:] == struct.pack(">ii", 1, -2)
    write_idx(tmp_path / "f", np.array([1.5], dtype=np.float32))
    assert (tmp_path / "f").read_bytes()[2] == 0x0D
    assert (tmp_path / "f").read_bytes()[8:] == struct.pack(">f", 1.5)


def test_gzip_is_detected_by_content_not_name(tmp_path):
    array = sample(np.uint8, (4, 4))
    write_idx(tmp_path / "compressed-but-plain-name", array, compress=True)
    write_idx(tmp_path / "plain-but-named.gz", array, compress=False)
    assert (tmp_path / "compressed-but-plain-name").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(read_idx(tmp_path / "compressed-but-plain-name"), array)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain-but-named.gz"), array)


def test_read_idx_bytes_gunzips(tmp_path):
    array = sample(np.uint8, (2, 2))
    write_idx(tmp_path / "a.gz", array, compress=True)
    write_idx(tmp_path / "a", array)
    assert read_idx_bytes(tmp_path / "a.gz") == (tmp_path / "a").read_bytes()


@pytest.mark.parametrize("head", [b"\x01\x00\x08\x01", b"\x00\x01\x08\x01", b"PK\x03\x04"])
def test_bad_magic_names_the_file(tmp_path, head):
    path = tmp_path / "bad-magic.idx"
    path.write_bytes(head + b"\x00\x00\x00\x01" + b"\x07")
    with pytest.raises(CorruptFileError, match="bad IDX magic number") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert head.hex() in str(info.value)


def test_empty_file_is_reported_as_empty(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError, match=r"\(empty file\)") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_unknown_type_code_lists_the_valid_ones(tmp_path):
    path = tmp_path / "odd-type"
    path.write_bytes(bytes([0, 0, 0x0A, 1, 0, 0, 0, 1, 0]))
    with pytest.raises(CorruptFileError, match="0x0a") as info:
        read_idx(path)
    assert str(path) in str(info.value)
    assert "0x08" in str(info.value) and "0x0e" in str(info.value)


@pytest.mark.parametrize("cut", [1, 7, 59], ids=["one-byte", "some", "all-data"])
def test_truncated_data_names_file_and_expected_length(tmp_path, cut):
    path = tmp_path / "short.idx"
    write_idx(path, sample(np.uint8, (3, 4, 5)))
    expected = 4 + 3 * 4 + 60
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(CorruptFileError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert f"expected {expected} bytes" in message
    assert f"IDX length {expected - cut} bytes" in message


def test_truncated_multibyte_data_counts_item_size(tmp_path):
    path = tmp_path / "short32.idx"
    write_idx(path, sample(np.int32, (2, 3)))
    path.write_bytes(path.read_bytes()[:-2])  # half an item missing
    with pytest.raises(CorruptFileError, match=f"expected {4 + 8 + 24} bytes"):
        read_idx(path)


def test_trailing_bytes_are_an_error(tmp_path):
    path = tmp_path / "long.idx"
    write_idx(path, sample(np.uint8, (2, 2)))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(CorruptFileError, match=f"expected {4 + 8 + 4} bytes"):
        read_idx(path)


@pytest.mark.parametrize(
    "content",
    [
        bytes([0, 0, 0x08, 3, 0, 0, 0, 2, 0, 0]),  # three dims announced, 1.5 given
        bytes([0, 0, 0x08, 1]),  # no dimension at all
        bytes([0, 0, 0x08, 0]),  # zero dimensions
    ],
    ids=["partial-dims", "no-dims", "zero-dims"],
)
def test_truncated_header(tmp_path, content):
    path = tmp_path / "header.idx"
    path.write_bytes(content)
    with pytest.raises(CorruptFileError, match="truncated IDX header") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def _gz_variants() -> dict[str, bytes]:
    body = gzip.compress(bytes([0, 0, 0x08, 1, 0, 0, 0, 64]) + bytes(range(64)))
    middle = bytes(b ^ 0xFF for b in body[10:-8])
    return {
        "truncated": body[: len(body) // 2],
        "bad-crc": body[:-8] + b"\x00" * 8,
        "bad-method": b"\x1f\x8b\x07" + body[3:],
        "corrupt-deflate": body[:10] + middle + body[-8:],
        "magic-only": b"\x1f\x8b",
    }


@pytest.mark.parametrize("kind", list(_gz_variants()))
def test_invalid_gzip_names_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.gz"
    path.write_bytes(_gz_variants()[kind])
    with pytest.raises(CorruptFileError, match="not a valid gzip file") as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_parse_idx_default_source():
    with pytest.raises(CorruptFileError, match="<bytes>"):
        parse_idx(b"\xff\xff\xff\xff")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("idx-property") / "a.idx"


@settings(max_examples=60, deadline=None)
@given(
    array=arrays(np.uint8, array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6)),
    compress=st.booleans(),
)
def test_round_trip_property(scratch, array, compress):
    write_idx(scratch, array, compress=compress)
    back = parse_idx(read_idx_bytes(scratch), str(scratch))
    assert back.dtype == np.uint8 and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
