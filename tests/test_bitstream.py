"""The .bac container (SPEC.md §8): exact bytes, round trips, and every refusal.

Corruption checks use a real file (a 32x48 crop of kodim23 compressed with
the default model): every single-bit flip and every truncation must raise
BitstreamError (CRC-32 detects every single-bit error).  Field checks build
headers with a recomputed CRC, so each test reaches the check it names.
"""
from __future__ import annotations

import math
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bac_ref import bitstream, codec
from bac_ref.bitstream import HEADER_SIZE, MAX_PIXELS, Header, pack, parse
from bac_ref.errors import BitstreamError

MODEL_ID = bytes.fromhex("0123456789abcdef")


def _header(**kw) -> Header:
    base = dict(height=512, width=768, lam=3.0, max_depth=10, model_id=MODEL_ID)
    base.update(kw)
    return Header(**base)


def _with_field(data: bytes, offset: int, fmt: str, value) -> bytes:
    """``data`` with one header field replaced and the CRC recomputed."""
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    crc = zlib.crc32(bytes(b[HEADER_SIZE:]), zlib.crc32(bytes(b[:28])))
    struct.pack_into(">I", b, 28, crc)
    return bytes(b)


@pytest.fixture(scope="module")
def real_file(kodim23) -> bytes:
    return codec.compress(kodim23[200:232, 300:348], 3.0)


# ---------------------------------------------------------------------------
# Exact bytes and round trips
# ---------------------------------------------------------------------------
def test_exact_bytes():
    data = pack(_header(grey=True, second_pass=True), b"\x00\x01\x02\x03")
    assert data.hex() == ("89424143" "01" "01" "0a" "05" "0123456789abcdef" "01ff" "02ff"
                          "4008000000000000" "28efdb2c" "00010203")
    assert struct.unpack(">I", data[28:32])[0] == zlib.crc32(data[:28] + data[32:])
    assert parse(data) == (_header(grey=True, second_pass=True), b"\x00\x01\x02\x03")


@settings(max_examples=200, deadline=None)
@given(height=st.integers(1, 65536), width=st.integers(1, 65536),
       lam=st.floats(min_value=0.0, allow_infinity=False, allow_nan=False),
       max_depth=st.integers(1, bitstream.MAX_DEPTH_LIMIT),
       model_id=st.binary(min_size=8, max_size=8),
       grey=st.booleans(), lambda_map=st.booleans(), second_pass=st.booleans(),
       words=st.binary(max_size=64))
def test_round_trip_every_field(height, width, lam, max_depth, model_id, grey, lambda_map,
                                second_pass, words):
    if height * width > MAX_PIXELS:
        width = max(1, MAX_PIXELS // height)
    payload = words[: len(words) // 4 * 4]
    h = Header(height=height, width=width, lam=lam, max_depth=max_depth, model_id=model_id,
               grey=grey, lambda_map=lambda_map, second_pass=second_pass)
    data = pack(h, payload)
    assert len(data) == HEADER_SIZE + len(payload)
    h2, p2 = parse(data)
    assert h2 == h and p2 == payload
    assert struct.pack(">d", h2.lam) == struct.pack(">d", lam)          # bit-exact lambda
    assert h2.latent_shape == (math.ceil(height / 16), math.ceil(width / 16))
    assert parse(bytearray(data)) == (h2, p2) == parse(memoryview(data))


def test_real_file_parses(real_file):
    header, payload = parse(real_file)
    assert (header.height, header.width, header.lam, header.max_depth) == (32, 48, 3.0, 10)
    assert header.model_id == codec.model_id_bytes(codec.get_model())
    assert header.second_pass and not (header.grey or header.lambda_map)   # the codec's default
    assert len(payload) % 4 == 0 and len(payload) > 0


# ---------------------------------------------------------------------------
# Corruption of a real file
# ---------------------------------------------------------------------------
def test_every_single_bit_flip_is_refused(real_file):
    for i in range(len(real_file)):
        for bit in range(8):
            bad = bytearray(real_file)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                parse(bytes(bad))


def test_every_truncation_is_refused(real_file):
    for n in range(len(real_file)):
        with pytest.raises(BitstreamError):
            parse(real_file[:n])


def test_appended_bytes_are_refused(real_file):
    for extra in (b"\x00", b"\x00" * 4, b"\xff" * 8):
        with pytest.raises(BitstreamError):
            parse(real_file + extra)


# ---------------------------------------------------------------------------
# Field checks (CRC recomputed, so each check is reached)
# ---------------------------------------------------------------------------
GOOD = pack(_header(), b"\x12\x34\x56\x78")


@pytest.mark.parametrize("magic", [b"\x89BAD", b"\x89PNG", b"BAC\x89", b"\x00" * 4])
def test_bad_magic(magic):
    with pytest.raises(BitstreamError, match="magic"):
        parse(_with_field(GOOD, 0, "4s", magic))
    with pytest.raises(BitstreamError, match="magic"):
        parse(magic[1:])         # short input: the magic is still checked


@pytest.mark.parametrize("version", [0, 2, 255])
def test_bad_version(version):
    with pytest.raises(BitstreamError, match="version"):
        parse(_with_field(GOOD, 4, "B", version))
    with pytest.raises(BitstreamError, match="version"):
        pack(_header(version=version), b"")


@pytest.mark.parametrize("variant", [0, 2, 255])
def test_bad_entropy_model_variant(variant):
    with pytest.raises(BitstreamError, match="entropy model"):
        parse(_with_field(GOOD, 5, "B", variant))
    with pytest.raises(BitstreamError, match="entropy model"):
        pack(_header(entropy_model=variant), b"")


@pytest.mark.parametrize("flags", [8, 16, 0x80, 0xFF])
def test_unknown_flags(flags):
    with pytest.raises(BitstreamError, match="flags"):
        parse(_with_field(GOOD, 7, "B", flags))


@pytest.mark.parametrize("flags", range(8))
def test_known_flags(flags):
    h, _ = parse(_with_field(GOOD, 7, "B", flags))
    assert (h.grey, h.lambda_map, h.second_pass) == (bool(flags & 1), bool(flags & 2),
                                                     bool(flags & 4))
    assert h.flags == flags


@pytest.mark.parametrize("depth", [0, 17, 255])
def test_max_depth_out_of_range(depth):
    with pytest.raises(BitstreamError, match="max_depth"):
        parse(_with_field(GOOD, 6, "B", depth))
    with pytest.raises(BitstreamError, match="max_depth"):
        pack(_header(max_depth=depth), b"")


def test_sizes_out_of_range():
    # the u16 fields store size - 1, so only the pixel limit can be exceeded in a file
    big = _with_field(_with_field(GOOD, 16, ">H", 65535), 18, ">H", 65535)
    with pytest.raises(BitstreamError, match="pixels"):
        parse(big)
    side = 1 << 13                                   # 8192^2 = 2^26 = MAX_PIXELS: allowed
    ok = _with_field(_with_field(GOOD, 16, ">H", side - 1), 18, ">H", side - 1)
    assert parse(ok)[0].height == side
    over = _with_field(ok, 18, ">H", side)           # one column more
    with pytest.raises(BitstreamError, match="pixels"):
        parse(over)
    for h, w in [(0, 10), (10, 0), (65537, 1), (1, 65537), (-1, 5)]:
        with pytest.raises(BitstreamError, match="size"):
            pack(_header(height=h, width=w), b"")
    with pytest.raises(BitstreamError, match="pixels"):
        pack(_header(height=65536, width=65536), b"")


@pytest.mark.parametrize("lam", [math.nan, math.inf, -math.inf, -1.0, -1e-300])
def test_bad_lambda_refused(lam):
    with pytest.raises(BitstreamError, match="lambda"):
        parse(_with_field(GOOD, 20, ">d", lam))
    with pytest.raises(BitstreamError, match="lambda"):
        pack(_header(lam=lam), b"")


def test_lambda_extremes_accepted():
    for lam in (0.0, 5e-324, 1.7976931348623157e308):
        assert parse(_with_field(GOOD, 20, ">d", lam))[0].lam == lam


def test_payload_not_whole_words():
    for n in (1, 2, 3, 5):
        with pytest.raises(ValueError, match="32-bit words"):
            pack(_header(), b"\x00" * n)
        with pytest.raises(BitstreamError, match="32-bit words"):
            parse(GOOD + b"\x00" * n)


def test_model_id_length_and_type():
    with pytest.raises(BitstreamError, match="model id"):
        pack(_header(model_id=b"\x00" * 7), b"")
    with pytest.raises(TypeError):
        parse("not bytes")
    with pytest.raises(TypeError):
        parse(np.zeros(40, dtype=np.uint8))
