"""Hostile input: the .bac parser, the decoder, the entropy decoder and model files.

Every input must end in a clean ``BitstreamError`` (``ModelFileError`` for model
files) or in a valid decode, in bounded time and memory (SPEC.md §2.8, §8, §9.4, §6).
CI runs a few hundred hypothesis examples per target (derandomized, fast);
``BAC_REF_FUZZ_LONG=1`` adds a long run (>= 10,000 inputs per target, and
10,000 inputs of ``bac_ref.conformance.runner.fuzz``; also
``python -m bac_ref.conformance --fuzz N``).

Note: a CRC-32 covers the whole file (SPEC.md §8), so random edits almost always
stop at the CRC check; to reach the entropy decoder, payloads are also fuzzed
with a recomputed CRC and ``entropy_model.decode_symbols`` is fuzzed directly.
"""
from __future__ import annotations

import os
import random
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from bac_ref import bitstream, codec, entropy_model  # noqa: E402
from bac_ref.conformance import runner as conf
from bac_ref.errors import BitstreamError, ModelFileError  # noqa: E402
from bac_ref.model import load_model  # noqa: E402

LONG = os.environ.get("BAC_REF_FUZZ_LONG") == "1"
EXAMPLES = 10_000 if LONG else 150
SLOW_S = 5.0              # bound per input (the decode of a <= 64x64 image takes milliseconds)

fuzz_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def model():
    return codec.get_model()


@pytest.fixture(scope="module")
def seeds(model):
    """Small real files: 1x1, 20x37 (N = 12), 16x16 grey at lambda 0 (N = 16)."""
    return conf.fuzz_seeds(model)


def decode_cleanly(data, model):
    """Decode ``data``: BitstreamError or a valid result, within SLOW_S; returns the result."""
    t0 = time.perf_counter()
    try:
        dec = codec.decompress_details(data, model)
    except BitstreamError:
        dec = None
    assert time.perf_counter() - t0 < SLOW_S
    if dec is not None:
        assert dec.pixels.shape[:2] == (dec.header.height, dec.header.width)
        assert dec.depth.shape == (model.M,) + dec.header.latent_shape
    return dec


def pack_raw(fields28: bytes, payload: bytes) -> bytes:
    return fields28 + struct.pack(">I", zlib.crc32(payload, zlib.crc32(fields28))) + payload


# ---------------------------------------------------------------------------
# The header parser and the whole decoder
# ---------------------------------------------------------------------------
@fuzz_settings
@given(data=st.binary(max_size=200))
def test_parse_random_bytes(data):
    try:
        header, payload = bitstream.parse(data)
    except BitstreamError:
        return
    assert len(payload) % 4 == 0 and 1 <= header.max_depth <= 16


@fuzz_settings
@given(tail=st.binary(max_size=120))
def test_decode_random_bytes_after_magic(tail, model):
    decode_cleanly(bitstream.MAGIC + tail, model)


def test_every_truncation_of_real_files(seeds, model):
    for data in seeds:
        for n in range(len(data)):
            with pytest.raises(BitstreamError):
                codec.decompress_details(data[:n], model)


def test_every_single_bit_flip_is_caught(seeds, model):
    """The CRC-32 covers every byte: each single-bit flip of a real file is refused."""
    for data in seeds[:2]:
        for i in range(8 * len(data)):
            b = bytearray(data)
            b[i // 8] ^= 1 << (i % 8)
            with pytest.raises(BitstreamError):
                codec.decompress_details(bytes(b), model)


@fuzz_settings
@given(which=st.integers(0, 2),
       edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)),
                      min_size=1, max_size=4))
def test_byte_edits(which, edits, seeds, model):
    b = bytearray(seeds[which])
    for pos, val in edits:
        b[pos % len(b)] = val
    decode_cleanly(bytes(b), model)


@fuzz_settings
@given(which=st.integers(0, 2), version=st.integers(0, 255), variant=st.integers(0, 255),
       depth=st.integers(0, 255), flags=st.integers(0, 255), good_id=st.booleans(),
       size=st.tuples(st.integers(0, 63), st.integers(0, 63)), lam_bits=st.integers(0, 2**64 - 1),
       keep=st.sets(st.sampled_from(["version", "variant", "depth", "flags", "lam", "size"])))
def test_header_fields_with_valid_crc(which, version, variant, depth, flags, good_id, size,
                                      lam_bits, keep, seeds, model):
    """Random header fields (each kept from the real file or replaced), CRC recomputed."""
    h = bytearray(seeds[which][:28])
    if "version" not in keep:
        h[4] = version
    if "variant" not in keep:
        h[5] = variant
    if "depth" not in keep:
        h[6] = depth
    if "flags" not in keep:
        h[7] = flags
    if not good_id:
        h[8:16] = bytes(reversed(h[8:16]))
    if "size" not in keep:
        struct.pack_into(">HH", h, 16, *size)
    if "lam" not in keep:
        struct.pack_into(">Q", h, 20, lam_bits)
    decode_cleanly(pack_raw(bytes(h), seeds[which][32:]), model)


@fuzz_settings
@given(which=st.integers(0, 2), words=st.lists(st.integers(0, 2**32 - 1), max_size=40))
def test_random_payload_with_valid_crc(which, words, seeds, model):
    """A real header, a random payload, a correct CRC: reaches the entropy decoder."""
    payload = struct.pack(f">{len(words)}I", *words)
    dec = decode_cleanly(pack_raw(seeds[which][:28], payload), model)
    if dec is not None:          # accepted => it is exactly the encoding of what it decoded
        assert entropy_model.encode_symbols(dec.depth, dec.index, dec.header.max_depth) == payload


@fuzz_settings
@given(which=st.integers(0, 2), pos=st.integers(0, 1 << 20), word=st.integers(0, 2**32 - 1))
def test_one_payload_word_replaced_with_valid_crc(which, pos, word, seeds, model):
    payload = bytearray(seeds[which][32:])
    i = 4 * (pos % (len(payload) // 4))
    payload[i:i + 4] = struct.pack(">I", word)
    dec = decode_cleanly(pack_raw(seeds[which][:28], bytes(payload)), model)
    if dec is not None:
        assert entropy_model.encode_symbols(dec.depth, dec.index,
                                            dec.header.max_depth) == bytes(payload)


@pytest.mark.parametrize("height, width", [(65536, 65536), (65536, 1025), (8193, 8192)])
def test_absurd_sizes_are_refused_before_allocating(height, width, seeds, model):
    """H x W > 2^26 with a tiny payload: refused by the header check, using almost no memory."""
    h = bytearray(seeds[0][:28])
    struct.pack_into(">HH", h, 16, height - 1, width - 1)
    data = pack_raw(bytes(h), seeds[0][32:])
    tracemalloc.start()
    try:
        with pytest.raises(BitstreamError, match="exceeds the limit"):
            codec.decompress_details(data, model)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"peak {peak} bytes"


def test_wrong_magic_version_variant(seeds, model):
    good = seeds[0]
    for offset, value, message in [(0, 0x88, "bad magic"), (1, ord("b"), "bad magic"),
                                   (4, 2, "unsupported format version"),
                                   (4, 0, "unsupported format version"),
                                   (5, 2, "unknown entropy model")]:
        h = bytearray(good[:28])
        h[offset] = value
        with pytest.raises(BitstreamError, match=message):
            codec.decompress_details(pack_raw(bytes(h), good[32:]), model)
    with pytest.raises(BitstreamError, match="bad magic"):
        codec.decompress_details(b"\x89PNG\r\n\x1a\n" + bytes(40), model)
    with pytest.raises(BitstreamError, match="bad magic"):
        codec.decompress_details(b"BAC", model)


# ---------------------------------------------------------------------------
# The entropy decoder directly
# ---------------------------------------------------------------------------
@fuzz_settings
@given(m=st.integers(1, 6), h=st.integers(1, 4), w=st.integers(1, 4), n=st.integers(1, 16),
       payload=st.binary(max_size=96))
def test_entropy_decode_random_payload(m, h, w, n, payload):
    payload = payload[: len(payload) // 4 * 4]
    try:
        d, k = entropy_model.decode_symbols(payload, (m, h, w), n)
    except BitstreamError:
        return
    assert entropy_model.encode_symbols(d, k, n) == payload


@fuzz_settings
@given(seed=st.integers(0, 2**32 - 1))
def test_entropy_decode_real_and_mutated_payloads(seed):
    """Round trips of random symbols, and mutated versions of their payloads."""
    outcome = conf._fuzz_entropy_decode(random.Random(seed))
    assert not outcome.startswith("BUG"), outcome


def test_entropy_decode_wrong_lengths():
    d = np.ones((2, 2, 3), np.int64) * 3
    k = np.arange(12, dtype=np.int64).reshape(2, 2, 3) % 8
    payload = entropy_model.encode_symbols(d, k, 5)
    for bad in (payload[:-4], payload + b"\0\0\0\0", payload[:-1], b""):
        with pytest.raises(BitstreamError):
            entropy_model.decode_symbols(bad, (2, 2, 3), 5)


# ---------------------------------------------------------------------------
# Model files
# ---------------------------------------------------------------------------
@fuzz_settings
@given(seed=st.integers(0, 2**32 - 1))
def test_mutated_model_files(seed):
    """Bit flips, byte edits, truncations and .npy edits (zip CRCs recomputed) of a model file:
    ModelFileError or a model whose prior loads too -- never another exception."""
    outcome = conf._fuzz_model_file(random.Random(seed))
    assert not outcome.startswith("BUG"), outcome


def test_model_file_member_without_npy_magic(tmp_path):
    import io
    import zipfile
    buf = io.BytesIO(conf.tiny_model_bytes())
    with zipfile.ZipFile(buf) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["g_a.conv0.bias.npy"] = b"not an array"
    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for name, value in members.items():
            zf.writestr(name, value)
    with pytest.raises(ModelFileError, match="not .npy arrays: g_a.conv0.bias"):
        load_model(str(path))


def test_model_file_with_a_broken_prior(tmp_path):
    import io
    raw = dict(np.load(io.BytesIO(conf.tiny_model_bytes()), allow_pickle=False))
    raw["prior.version"] = np.array(99, np.int64)
    path = tmp_path / "m.npz"
    np.savez(path, **raw)
    mdl = load_model(str(path))
    with pytest.raises(ModelFileError, match="invalid coding prior"):
        codec.model_prior(mdl)


def test_bac_made_with_another_model_is_refused(tmp_path, model):
    """Both ways: a .bac of a small model refused by the default one, and vice versa."""
    path = tmp_path / "small.npz"
    path.write_bytes(conf.tiny_model_bytes())
    small = load_model(str(path))
    img = (np.arange(20 * 24 * 3) % 256).astype(np.uint8).reshape(20, 24, 3)
    data_small = codec.compress(img, lam=0.1, model=small)
    assert codec.decompress(data_small, small).shape == (20, 24, 3)
    with pytest.raises(BitstreamError, match=f"made with model {small.model_id[:16]}") as err:
        codec.decompress(data_small, model)
    assert model.model_id[:16] in str(err.value)
    data_default = codec.compress(img, lam=0.1, model=model)
    with pytest.raises(BitstreamError, match=f"made with model {model.model_id[:16]}"):
        codec.decompress(data_default, small)


# ---------------------------------------------------------------------------
# The long mode
# ---------------------------------------------------------------------------
@pytest.mark.skipif(not LONG, reason="set BAC_REF_FUZZ_LONG=1 for the long fuzz run")
def test_long_fuzz(model):
    counts = conf.fuzz(10_000, seed=1, model=model, report=None)
    assert sum(counts.values()) == 10_000
    bugs = {k: v for k, v in counts.items() if k[1].startswith("BUG")}
    assert not bugs, bugs
