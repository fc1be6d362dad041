"""Tests for bac_ref.imageio: PNG / PNM / .npy reading, PNG writing.

PNG decoding is checked three ways: round trips through our own encoder,
files written by Pillow, and files crafted here by a deliberately naive
pure-Python reference encoder (byte-by-byte filters, explicit Adam7 pass
extraction, bit packing) from known pixel arrays -- so interlacing and every
filter type are verified against known pixels, not only against Pillow.
"""
import io
import os
import struct
import sys
import tracemalloc
import zlib

import numpy as np
import pytest

from bac_ref import imageio
from bac_ref.imageio import ImageData, ImageFormatError, decode_png, encode_png, read_image, to_rgb_float, write_png

SIG = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- reference PNG encoder

def ref_chunk(ctype: bytes, payload: bytes, crc=None) -> bytes:
    if crc is None:
        crc = zlib.crc32(ctype + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def ref_ihdr(w, h, depth, ctype, interlace=0) -> bytes:
    return ref_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))


def ref_pack_row(row, depth):
    """List of integer samples -> bytes, MSB first for sub-byte depths, big-endian for 16."""
    if depth == 8:
        return bytes(row)
    if depth == 16:
        return b"".join(struct.pack(">H", v) for v in row)
    out, acc, nbits = bytearray(), 0, 0
    for v in row:
        acc = (acc << depth) | v
        nbits += depth
        if nbits == 8:
            out.append(acc)
            acc, nbits = 0, 0
    if nbits:
        out.append(acc << (8 - nbits))
    return bytes(out)


def ref_paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def ref_filter(rows, bpp, ftypes):
    """Filter packed rows byte by byte, as in the PNG specification, section 9."""
    out, prev = bytearray(), bytes(len(rows[0]))
    for row, ft in zip(rows, ftypes):
        out.append(ft)
        for i, x in enumerate(row):
            a = row[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = (0, a, b, (a + b) // 2, ref_paeth(a, b, c))[ft]
            out.append((x - pred) % 256)
        prev = row
    return bytes(out)


def ref_adam7_passes(h, w):
    """(rows, cols) index lists of the 7 Adam7 passes, from the pattern picture in the PNG spec."""
    pattern = ["16462646", "77777777", "56565656", "77777777",
               "36463646", "77777777", "56565656", "77777777"]
    passes = []
    for p in "1234567":
        ys = [y for y in range(h) if any(pattern[y % 8][x % 8] == p for x in range(8))]
        xs = [x for x in range(w) if any(pattern[y % 8][x % 8] == p for y in range(8))]
        # a pass's pixels form a grid: rows y with pattern[y%8] holding p, columns x likewise
        ys = [y for y in ys if any(pattern[y % 8][x % 8] == p for x in xs)]
        passes.append((ys, xs))
    return passes


def ref_png(samples, depth, ctype, *, interlace=0, filters=None, plte=None, trns=None,
            idat_pieces=1, before_idat=()):
    """Known raw samples (H, W, S) ints -> PNG bytes.  filters: callable(row_index) -> 0..4."""
    samples = np.asarray(samples)
    h, w, s = samples.shape
    bpp = max(1, s * depth // 8)
    filters = filters or (lambda r: 0)
    if interlace:
        parts = [(ys, xs) for ys, xs in ref_adam7_passes(h, w) if ys and xs]
    else:
        parts = [(list(range(h)), list(range(w)))]
    raw, r = b"", 0
    for ys, xs in parts:
        rows = [ref_pack_row([int(v) for x in xs for v in samples[y, x]], depth) for y in ys]
        raw += ref_filter(rows, bpp, [filters(r + i) for i in range(len(rows))])
        r += len(rows)
    z = zlib.compress(raw, 9)
    cut = [len(z) * i // idat_pieces for i in range(idat_pieces + 1)]
    out = SIG + ref_ihdr(w, h, depth, ctype, interlace)
    for c in before_idat:
        out += c
    if plte is not None:
        out += ref_chunk(b"PLTE", bytes(np.asarray(plte, np.uint8).ravel()))
    if trns is not None:
        out += ref_chunk(b"tRNS", trns)
    for i in range(idat_pieces):
        out += ref_chunk(b"IDAT", z[cut[i]:cut[i + 1]])
    return out + ref_chunk(b"IEND", b"")


def pil():
    return pytest.importorskip("PIL.Image")


def pil_decode(data):
    return pil().open(io.BytesIO(data))


# ----------------------------------------------------------------------------- round trips

MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (33, 17), (2, 300)])
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_round_trip(shape, channels, dtype, tmp_path):
    rng = np.random.default_rng(hash((shape, channels)) % 2 ** 32)
    full = shape + ((channels,) if channels else ())
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, full, dtype=dtype)
    if shape[0] > 1:
        pixels[1:] = pixels[:1]                         # repeated rows: makes Up/Paeth win sometimes
    path = tmp_path / "x.png"
    write_png(path, pixels)
    img = read_image(path)
    c = channels or 1
    assert img.mode == MODES[c] and img.bit_depth == 8 * np.dtype(dtype).itemsize
    assert img.pixels.dtype == dtype and img.pixels.shape == shape + (c,)
    np.testing.assert_array_equal(img.pixels, pixels.reshape(shape + (c,)))
    assert img.format == "PNG"


def test_encoder_uses_every_filter_and_multiple_idat():
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:300, 0:400]
    pixels = np.stack([x % 256, (x + y) % 256, (x * y) % 256], -1).astype(np.uint8)
    pixels[::7] = rng.integers(0, 256, pixels[::7].shape, dtype=np.uint8)
    pixels[::11] = 0
    data = encode_png(pixels)
    z = zlib.decompress(b"".join(_chunks_of(data, b"IDAT")))
    used = set(np.frombuffer(z, np.uint8).reshape(300, -1)[:, 0].tolist())
    assert used <= {0, 1, 2, 3, 4} and len(used) >= 3
    np.testing.assert_array_equal(decode_png(data).pixels, pixels)
    big = rng.integers(0, 256, (700, 700, 3), dtype=np.uint8)   # incompressible: > 1 MiB of IDAT
    data = encode_png(big)
    assert len(_chunks_of(data, b"IDAT")) >= 2
    np.testing.assert_array_equal(decode_png(data).pixels, big)


def _chunks_of(data, ctype):
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        if data[pos + 4:pos + 8] == ctype:
            out.append(data[pos + 8:pos + 8 + n])
        pos += 12 + n
    return out


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_pillow_reads_our_png(channels, dtype):
    Image = pil()
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, (17, 33, channels), dtype=dtype)
    img = Image.open(io.BytesIO(encode_png(pixels)))
    img.load()
    if dtype == np.uint8:
        assert img.mode == MODES[channels]
        np.testing.assert_array_equal(np.asarray(img).reshape(pixels.shape), pixels)
    elif channels == 1:
        assert img.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(img), pixels[:, :, 0])
    else:   # Pillow keeps the high byte of 16-bit colour samples (LA;16 becomes RGBA)
        got = np.asarray(img.convert("RGBA")).astype(np.uint16)
        ref = _to_rgba8(pixels)
        np.testing.assert_array_equal(got, ref)


def _to_rgba8(p):
    """(H, W, C) uint8/uint16 -> (H, W, 4) uint16 holding the 8-bit values Pillow shows."""
    p = (p >> 8) if p.dtype == np.uint16 else p
    p = p.astype(np.uint16)
    c = p.shape[2]
    rgb = np.repeat(p[:, :, :1], 3, 2) if c <= 2 else p[:, :, :3]
    a = p[:, :, -1:] if c in (2, 4) else np.full(p.shape[:2] + (1,), 255, np.uint16)
    return np.concatenate([rgb, a], axis=2)


# ----------------------------------------------------------------------------- files written by Pillow

def _pillow_png(img, **kw):
    b = io.BytesIO()
    img.save(b, "PNG", **kw)
    return b.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_pillow_written_basic_modes(mode):
    Image = pil()
    rng = np.random.default_rng(len(mode))
    y, x = np.mgrid[0:61, 0:47]
    base = np.stack([(x * 5) % 256, (y * 3) % 256, (x * y) % 256, (x + y) % 256], -1)
    arr = (base[:, :, :len(mode)] + rng.integers(0, 9, (61, 47, len(mode)))).astype(np.uint8)
    src = Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode)
    data = _pillow_png(src)
    ours = decode_png(data)
    assert ours.mode == mode and ours.bit_depth == 8
    np.testing.assert_array_equal(ours.pixels, np.asarray(pil_decode(data)).reshape(arr.shape))
    np.testing.assert_array_equal(ours.pixels, arr)


@pytest.mark.parametrize("ncolours,bits", [(2, 1), (4, 2), (16, 4), (256, 8)])
@pytest.mark.parametrize("transparent", [False, True])
def test_pillow_written_palette(ncolours, bits, transparent):
    Image = pil()
    rng = np.random.default_rng(ncolours)
    idx = rng.integers(0, ncolours, (23, 37), dtype=np.uint8)
    img = Image.fromarray(idx, "P")
    img.putpalette(rng.integers(0, 256, 3 * ncolours, dtype=np.uint8).tobytes())
    kw = {"transparency": bytes(rng.integers(0, 256, ncolours // 2 + 1, dtype=np.uint8))} if transparent else {}
    data = _pillow_png(img, **kw)
    assert data[24] == bits                                      # IHDR bit depth
    ours = decode_png(data)
    target = "RGBA" if transparent else "RGB"
    assert ours.mode == target
    np.testing.assert_array_equal(ours.pixels, np.asarray(pil_decode(data).convert(target)))


def test_pillow_written_16bit_grey_and_1bit():
    Image = pil()
    rng = np.random.default_rng(5)
    g16 = rng.integers(0, 65536, (19, 29), dtype=np.uint16)
    data = _pillow_png(Image.fromarray(g16))
    assert data[24:26] == bytes([16, 0])
    ours = decode_png(data)
    assert ours.mode == "L" and ours.bit_depth == 16
    np.testing.assert_array_equal(ours.pixels[:, :, 0], np.asarray(pil_decode(data)))
    np.testing.assert_array_equal(ours.pixels[:, :, 0], g16)

    bits = rng.integers(0, 2, (19, 29)).astype(bool)
    data = _pillow_png(Image.fromarray(bits))
    assert data[24:26] == bytes([1, 0])
    ours = decode_png(data)
    assert ours.mode == "L" and ours.bit_depth == 8
    np.testing.assert_array_equal(ours.pixels[:, :, 0], np.asarray(pil_decode(data).convert("L")))
    np.testing.assert_array_equal(ours.pixels[:, :, 0], bits * 255)


def test_pillow_written_transparent_grey_and_rgb():
    Image = pil()
    rng = np.random.default_rng(6)
    g = rng.integers(0, 4, (9, 11), dtype=np.uint8)
    data = _pillow_png(Image.fromarray(g, "L"), transparency=2)
    ours = decode_png(data)
    assert ours.mode == "LA"
    np.testing.assert_array_equal(ours.pixels[:, :, 1], np.where(g == 2, 0, 255))
    np.testing.assert_array_equal(_to_rgba8(ours.pixels), np.asarray(pil_decode(data).convert("RGBA")))
    rgb = rng.integers(0, 2, (9, 11, 3), dtype=np.uint8)
    data = _pillow_png(Image.fromarray(rgb, "RGB"), transparency=(1, 0, 1))
    ours = decode_png(data)
    assert ours.mode == "RGBA"
    np.testing.assert_array_equal(ours.pixels, np.asarray(pil_decode(data).convert("RGBA")))


# ----------------------------------------------------------------------------- crafted PNGs: every type, filter, Adam7

# (colour type, bit depth, samples per pixel)
COMBOS = [(0, 1, 1), (0, 2, 1), (0, 4, 1), (0, 8, 1), (0, 16, 1), (2, 8, 3), (2, 16, 3),
          (3, 1, 1), (3, 2, 1), (3, 4, 1), (3, 8, 1), (4, 8, 2), (4, 16, 2), (6, 8, 4), (6, 16, 4)]


def _expected(samples, ctype, depth, plte=None):
    """What the decoder must return for known raw samples."""
    if ctype == 3:
        return np.asarray(plte, np.uint8)[samples[:, :, 0]]
    if depth < 8:
        return (samples * (255 // (2 ** depth - 1))).astype(np.uint8)
    return samples.astype(np.uint16 if depth == 16 else np.uint8)


@pytest.mark.parametrize("interlace", [0, 1])
@pytest.mark.parametrize("ctype,depth,s", COMBOS)
def test_crafted_every_type_depth_interlace_and_filter(ctype, depth, s, interlace):
    rng = np.random.default_rng(ctype * 100 + depth * 2 + interlace)
    for h, w in [(1, 1), (3, 5), (9, 17), (17, 11)]:
        # smooth-ish content + noise, so that Avg/Paeth predictions matter
        y, x = np.mgrid[0:h, 0:w]
        top = 2 ** depth
        samples = ((x[..., None] * 7 + y[..., None] * 3 + np.arange(s) * 5) % top
                   + rng.integers(0, 2, (h, w, s))) % top
        plte = None
        if ctype == 3:
            samples = samples % min(top, 200)
            plte = rng.integers(0, 256, (min(top, 200), 3))
        ftypes = rng.integers(0, 5, 200)
        data = ref_png(samples, depth, ctype, interlace=interlace, filters=lambda r: int(ftypes[r]), plte=plte)
        img = decode_png(data)
        want = _expected(samples, ctype, depth, plte)
        np.testing.assert_array_equal(img.pixels, want, err_msg=f"{h}x{w}")
        assert img.mode == {0: "L", 2: "RGB", 3: "RGB", 4: "LA", 6: "RGBA"}[ctype]
        assert img.bit_depth == (16 if depth == 16 else 8)
        _check_against_pillow(data, img)


def _check_against_pillow(data, img):
    try:
        from PIL import Image
    except ImportError:
        return
    p = Image.open(io.BytesIO(data))
    p.load()
    if img.bit_depth == 16 and img.mode == "L":
        np.testing.assert_array_equal(np.asarray(p).astype(np.uint16), img.pixels[:, :, 0])
    else:
        np.testing.assert_array_equal(np.asarray(p.convert("RGBA")), _to_rgba8(img.pixels))


@pytest.mark.parametrize("ftype", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("ctype,depth,s", [(0, 1, 1), (0, 8, 1), (2, 8, 3), (0, 16, 1), (6, 16, 4)])
def test_each_filter_type_alone(ftype, ctype, depth, s):
    rng = np.random.default_rng(ftype)
    samples = rng.integers(0, 2 ** depth, (13, 21, s))
    samples[5:9] = samples[4:5]                  # some flat regions
    data = ref_png(samples, depth, ctype, filters=lambda r: ftype)
    np.testing.assert_array_equal(decode_png(data).pixels, _expected(samples, ctype, depth))


def test_adam7_layout_is_really_used():
    # a tiny 8x8 image whose pixel = its Adam7 pass number: decoding the interlaced file
    # must put every pass where the PNG specification says
    pattern = ["16462646", "77777777", "56565656", "77777777",
               "36463646", "77777777", "56565656", "77777777"]
    want = np.array([[int(c) for c in row] for row in pattern], np.uint8)[:, :, None]
    data = ref_png(want, 8, 0, interlace=1)
    # in the stream, pass 1 (one pixel) comes first, then pass 2 (one pixel), ...
    raw = zlib.decompress(b"".join(_chunks_of(data, b"IDAT")))
    assert raw[:4] == bytes([0, 1, 0, 2])
    np.testing.assert_array_equal(decode_png(data).pixels, want)
    big = np.tile(want, (3, 2, 1))[:21, :13]
    np.testing.assert_array_equal(decode_png(ref_png(big, 8, 0, interlace=1)).pixels, big)


def test_multiple_idat_and_ancillary_chunks_and_suggested_palette():
    rng = np.random.default_rng(3)
    samples = rng.integers(0, 256, (10, 12, 3))
    extra = (ref_chunk(b"gAMA", struct.pack(">I", 45455)), ref_chunk(b"tEXt", b"k\x00v"),
             ref_chunk(b"prVt", b"private"))
    data = ref_png(samples, 8, 2, idat_pieces=7, before_idat=extra, plte=[[1, 2, 3]],
                   filters=lambda r: r % 5)
    np.testing.assert_array_equal(decode_png(data).pixels, samples)


def test_trns_palette_shorter_than_palette_and_grey16_key():
    plte = [[10, 20, 30], [40, 50, 60], [70, 80, 90]]
    idx = np.array([[[0], [1], [2]]])
    img = decode_png(ref_png(idx, 8, 3, plte=plte, trns=b"\x00\x80"))
    np.testing.assert_array_equal(img.pixels[0], [[10, 20, 30, 0], [40, 50, 60, 128], [70, 80, 90, 255]])
    g = np.array([[[1000], [1001]]])
    img = decode_png(ref_png(g, 16, 0, trns=struct.pack(">H", 1001)))
    assert img.mode == "LA" and img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels[0], [[1000, 65535], [1001, 0]])
    g = np.array([[[1], [2]]])                      # 2-bit grey: key compares raw samples
    img = decode_png(ref_png(g, 2, 0, trns=struct.pack(">H", 2)))
    np.testing.assert_array_equal(img.pixels[0], [[85, 255], [170, 0]])


# ----------------------------------------------------------------------------- PNG errors

def _small_png():
    return ref_png(np.arange(60).reshape(4, 5, 3) % 256, 8, 2, filters=lambda r: r % 5)


def test_bad_crc_in_any_chunk():
    data = _small_png()
    for pos in (29, 33 + 10, len(data) - 1):         # IHDR CRC, inside IDAT, IEND CRC
        bad = bytearray(data)
        bad[pos] ^= 0x40
        with pytest.raises(ImageFormatError, match="bad CRC"):
            decode_png(bytes(bad), name="bad.png")


def test_every_truncation_is_refused():
    data = _small_png()
    for n in range(len(data)):
        with pytest.raises(ImageFormatError, match="^cut.png: "):
            decode_png(data[:n], name="cut.png")


def test_random_corruptions_only_raise_image_format_error():
    # mutate bytes *and* recompute CRCs, so the structure checks themselves are exercised
    rng = np.random.default_rng(11)
    base = _small_png()
    for _ in range(300):
        chunks = _split_chunks(base)
        i = int(rng.integers(0, len(chunks)))
        ctype, payload = chunks[i]
        if payload:
            payload = bytearray(payload)
            payload[int(rng.integers(0, len(payload)))] = int(rng.integers(0, 256))
            chunks[i] = (ctype, bytes(payload))
        data = SIG + b"".join(ref_chunk(t, p) for t, p in chunks)
        try:
            img = decode_png(data)
        except ImageFormatError:
            continue
        assert isinstance(img, ImageData)


def _split_chunks(data):
    out, pos = [], 8
    while pos < len(data):
        (n,) = struct.unpack_from(">I", data, pos)
        out.append((data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]))
        pos += 12 + n
    return out


@pytest.mark.parametrize("mutate,message", [
    (lambda c: [(b"tEXt", b"a\x00b")] + c, "first chunk is tEXt"),
    (lambda c: c[:1] + [(b"ABCD", b"")] + c[1:], "unknown critical chunk ABCD"),
    (lambda c: [(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 4, 2, 0, 0, 0))] + c[1:], "bit depth 4"),
    (lambda c: [(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 8, 5, 0, 0, 0))] + c[1:], "colour type 5"),
    (lambda c: [(b"IHDR", struct.pack(">IIBBBBB", 5, 4, 8, 2, 0, 0, 2))] + c[1:], "interlace"),
    (lambda c: [(b"IHDR", struct.pack(">IIBBBBB", 0, 4, 8, 2, 0, 0, 0))] + c[1:], "dimensions"),
    (lambda c: [(b"IHDR", c[0][1] + b"\x00")] + c[1:], "not 13"),
    (lambda c: [c[0], (b"IDAT", b"\x78\x9c garbage"), c[-1]], "corrupt zlib"),
    (lambda c: [c[0], (b"IDAT", zlib.compress(bytes(200)))] + c[-1:], "more data"),
    (lambda c: [c[0], (b"IDAT", zlib.compress(bytes(10)))] + c[-1:], "truncated image data"),
    (lambda c: [c[0], (b"IDAT", zlib.compress(bytes([7] + [0] * 15) * 4))] + c[-1:], "filter type 7"),
    (lambda c: [c[0], (b"IDAT", c[1][1][:5]), (b"tEXt", b"a\x00b"), (b"IDAT", c[1][1][5:])] + c[2:],
     "not consecutive"),
    (lambda c: c[:1] + c[2:], "no IDAT"),
    (lambda c: c[:-1], "missing IEND"),
])
def test_malformed_png(mutate, message):
    chunks = _split_chunks(_small_png())
    data = SIG + b"".join(ref_chunk(t, p) for t, p in mutate(chunks))
    with pytest.raises(ImageFormatError, match=message):
        decode_png(data)


def test_palette_errors():
    idx = np.array([[[0], [3]]])
    with pytest.raises(ImageFormatError, match="palette index 3"):
        decode_png(ref_png(idx, 8, 3, plte=[[0, 0, 0]] * 3))
    with pytest.raises(ImageFormatError, match="without a PLTE"):
        decode_png(ref_png(idx, 8, 3))
    with pytest.raises(ImageFormatError, match="PLTE chunk in a colour type 0"):
        decode_png(ref_png(idx, 8, 0, plte=[[0, 0, 0]]))
    with pytest.raises(ImageFormatError, match="tRNS chunk has 5 entries"):
        decode_png(ref_png(idx, 8, 3, plte=[[0, 0, 0]] * 4, trns=bytes(5)))


def test_huge_dimensions_refused_before_allocating():
    data = SIG + ref_ihdr(100_000, 100_000, 16, 6) + ref_chunk(b"IDAT", zlib.compress(b"\x00" * 100)) \
        + ref_chunk(b"IEND", b"")
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="more than the limit of 268435456"):
            decode_png(data, name="huge.png")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    ok = ref_png(np.zeros((8, 8, 1)), 8, 0)
    with pytest.raises(ImageFormatError, match="limit of 63"):
        decode_png(ok, max_pixels=63)
    assert decode_png(ok, max_pixels=64).width == 8


def test_zlib_bomb_is_inflated_no_further_than_needed():
    bomb = zlib.compress(bytes(200 << 20), 9)          # 200 MiB of zeros in ~200 kB
    data = SIG + ref_ihdr(16, 16, 8, 0) + ref_chunk(b"IDAT", bomb) + ref_chunk(b"IEND", b"")
    tracemalloc.start()
    try:
        with pytest.raises(ImageFormatError, match="more data"):
            decode_png(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


# ----------------------------------------------------------------------------- PPM / PGM

def _pnm(tmp_path, data, name="x.pnm"):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_pnm_binary_and_ascii(tmp_path):
    rng = np.random.default_rng(8)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    img = read_image(_pnm(tmp_path, b"P6\n# comment\n7 5\n255\n" + rgb.tobytes()))
    assert (img.mode, img.bit_depth, img.format) == ("RGB", 8, "PNM")
    np.testing.assert_array_equal(img.pixels, rgb)

    g16 = rng.integers(0, 65536, (5, 7), dtype=np.uint16)
    img = read_image(_pnm(tmp_path, b"P5 7#c\n5 65535\n" + g16.astype(">u2").tobytes()))
    assert (img.mode, img.bit_depth) == ("L", 16)
    np.testing.assert_array_equal(img.pixels[:, :, 0], g16)

    text = "P3\n# plain\n7 5\n255\n" + "\n".join(" ".join(map(str, r.ravel())) + " # row" for r in rgb)
    img = read_image(_pnm(tmp_path, text.encode()))
    np.testing.assert_array_equal(img.pixels, rgb)

    text = "P2 7 5 65535\n" + " ".join(map(str, g16.ravel()))
    img = read_image(_pnm(tmp_path, text.encode()))
    np.testing.assert_array_equal(img.pixels[:, :, 0], g16)


def test_pnm_odd_maxval_is_scaled():
    # maxval 15 -> 8 bits, maxval 1000 -> 16 bits, round half up
    img = imageio._decode_pnm(b"P2 4 1 15 0 1 8 15", "a.pgm", imageio.MAX_PIXELS)
    np.testing.assert_array_equal(img.pixels[0, :, 0], [0, 17, 136, 255])
    img = imageio._decode_pnm(b"P5 3 1 1000\n" + np.array([0, 1, 1000], ">u2").tobytes(), "b", 2 ** 28)
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels[0, :, 0], [0, 66, 65535])  # 65.535 -> 66


def test_pnm_matches_pillow(tmp_path):
    Image = pil()
    rng = np.random.default_rng(9)
    rgb = rng.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.ppm")
    np.testing.assert_array_equal(read_image(tmp_path / "a.ppm").pixels, rgb)
    g16 = rng.integers(0, 65536, (6, 9), dtype=np.uint16)
    Image.fromarray(g16).save(tmp_path / "b.pgm")
    img = read_image(tmp_path / "b.pgm")
    np.testing.assert_array_equal(img.pixels[:, :, 0], np.asarray(Image.open(tmp_path / "b.pgm")))
    np.testing.assert_array_equal(img.pixels[:, :, 0], g16)


@pytest.mark.parametrize("data,message", [
    (b"P5 2 2 0\n" + bytes(4), "maxval 0"),
    (b"P5 2 2 70000\n" + bytes(8), "maxval 70000"),
    (b"P5 2 2 255\n" + bytes(3), "truncated"),
    (b"P5 2 255\n" + bytes(4), "malformed PNM header"),
    (b"P5 2 2", "truncated|malformed"),
    (b"P6 2 x 255\n", "malformed PNM header"),
    (b"P5 1 1 255#\n\x00", "malformed PNM header"),
    (b"P2 2 1 7 3 9", "exceeds maxval 7"),
    (b"P2 2 1 7 3", "1 of 2 samples"),
    (b"P2 2 1 7 3 -1", "malformed sample"),
    (b"P5 100000 100000 255\n" + bytes(10), "more than the limit"),
    (b"P5 0 3 255\n", "empty image"),
])
def test_pnm_errors(tmp_path, data, message):
    with pytest.raises(ImageFormatError, match=message):
        read_image(_pnm(tmp_path, data))


# ----------------------------------------------------------------------------- .npy

@pytest.mark.parametrize("shape,mode", [((4, 6), "L"), ((4, 6, 1), "L"), ((4, 6, 2), "LA"),
                                        ((4, 6, 3), "RGB"), ((4, 6, 4), "RGBA")])
@pytest.mark.parametrize("dtype", ["u1", "u2", ">u2"])
def test_npy_integer(tmp_path, shape, mode, dtype):
    arr = np.random.default_rng(0).integers(0, 250, shape).astype(dtype)
    np.save(tmp_path / "a.npy", np.asfortranarray(arr))
    img = read_image(tmp_path / "a.npy")
    assert (img.mode, img.bit_depth, img.format) == (mode, 8 * arr.itemsize, "NPY")
    assert img.pixels.dtype == (np.uint8 if arr.itemsize == 1 else np.uint16)
    np.testing.assert_array_equal(img.pixels.reshape(shape), arr)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_npy_float_is_kept_exactly(tmp_path, dtype):
    arr = np.random.default_rng(1).random((5, 3, 3)).astype(dtype)
    arr[0, 0] = [0.0, 1.0, 0.5]
    np.save(tmp_path / "f.npy", arr)
    img = read_image(tmp_path / "f.npy")
    assert img.bit_depth == 16 and img.mode == "RGB"
    np.testing.assert_array_equal(to_rgb_float(img), arr.astype(np.float32))
    np.testing.assert_array_equal(img.pixels, np.rint(arr.astype(np.float64) * 65535).astype(np.uint16))


@pytest.mark.parametrize("arr,message", [
    (np.full((2, 2), 1.5), r"outside \[0, 1\]"),
    (np.full((2, 2), -0.1, np.float32), r"outside \[0, 1\]"),
    (np.array([[0.5, np.nan]]), "NaN"),
    (np.array([[0.5, np.inf]]), "NaN or infinite"),
    (np.zeros((2, 2), np.int32), "dtype int32"),
    (np.zeros((2, 2), bool), "dtype bool"),
    (np.zeros((2, 2, 5), np.uint8), "shape"),
    (np.zeros((2,), np.uint8), "shape"),
    (np.zeros((0, 3), np.uint8), "empty"),
])
def test_npy_errors(tmp_path, arr, message):
    np.save(tmp_path / "e.npy", arr)
    with pytest.raises(ImageFormatError, match=message):
        read_image(tmp_path / "e.npy")


def test_npy_pickle_and_huge_header_refused(tmp_path):
    np.save(tmp_path / "o.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(ImageFormatError, match="dtype object"):
        read_image(tmp_path / "o.npy")
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "|u1", "fortran_order": False, "shape": (10 ** 5, 10 ** 5)})
    (tmp_path / "h.npy").write_bytes(b.getvalue() + bytes(16))
    with pytest.raises(ImageFormatError, match="more than the limit"):
        read_image(tmp_path / "h.npy")
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(b, {"descr": "|u1", "fortran_order": False, "shape": (100, 100)})
    (tmp_path / "t.npy").write_bytes(b.getvalue() + bytes(16))
    with pytest.raises(ImageFormatError, match="truncated .npy"):
        read_image(tmp_path / "t.npy")


# ----------------------------------------------------------------------------- other formats, detection

def test_format_found_by_magic_not_extension(tmp_path):
    pixels = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    write_png(tmp_path / "really_png.jpg", pixels)
    assert read_image(tmp_path / "really_png.jpg").format == "PNG"
    (tmp_path / "ppm.png").write_bytes(b"P6 2 2 255\n" + pixels.tobytes())
    np.testing.assert_array_equal(read_image(tmp_path / "ppm.png").pixels, pixels)


def test_pillow_formats(tmp_path):
    Image = pil()
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpeg", quality=90)
    img = read_image(tmp_path / "a.jpeg")
    assert (img.format, img.mode, img.bit_depth) == ("JPEG", "RGB", 8)
    np.testing.assert_array_equal(img.pixels, np.asarray(Image.open(tmp_path / "a.jpeg")))
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    np.testing.assert_array_equal(read_image(tmp_path / "b.bmp").pixels, rgb)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tiff")
    img = read_image(tmp_path / "c.tiff")
    assert img.mode == "RGB"
    (tmp_path / "d.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageFormatError, match="d.jpg: Pillow cannot read JPEG files"):
        read_image(tmp_path / "d.jpg")


def test_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)          # makes "from PIL import Image" fail
    (tmp_path / "a.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    with pytest.raises(ImageFormatError, match="a.jpg: install Pillow to read JPEG files"):
        read_image(tmp_path / "a.jpg")
    (tmp_path / "w.bin").write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    with pytest.raises(ImageFormatError, match="install Pillow to read WebP files"):
        read_image(tmp_path / "w.bin")
    (tmp_path / "junk").write_bytes(b"hello world")
    with pytest.raises(ImageFormatError, match="junk: unrecognised image format"):
        read_image(tmp_path / "junk")
    write_png(tmp_path / "ok.png", np.zeros((2, 2), np.uint8))      # PNG needs no Pillow
    assert read_image(tmp_path / "ok.png").mode == "L"


def test_missing_file_is_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")


# ----------------------------------------------------------------------------- to_rgb_float

def test_to_rgb_float():
    g = ImageData(np.array([[[0], [255]]], np.uint8), 8, "L")
    out = to_rgb_float(g)
    assert out.dtype == np.float32 and out.shape == (1, 2, 3) and not g.has_alpha
    np.testing.assert_array_equal(out[0], [[0, 0, 0], [1, 1, 1]])
    la = ImageData(np.array([[[65535, 7], [32768, 9]]], np.uint16), 16, "LA")
    assert la.has_alpha
    np.testing.assert_array_equal(to_rgb_float(la)[0, 1], [np.float32(32768) / np.float32(65535)] * 3)
    rgba = ImageData(np.array([[[1, 2, 3, 4]]], np.uint8), 8, "RGBA")
    assert rgba.has_alpha
    np.testing.assert_array_equal(to_rgb_float(rgba)[0, 0], np.float32([1, 2, 3]) / np.float32(255))
    x = np.random.default_rng(0).random((3, 4, 3))
    back = imageio.from_rgb_float(to_rgb_float(ImageData(imageio.from_rgb_float(x), 8, "RGB")))
    np.testing.assert_array_equal(back, imageio.from_rgb_float(x))


def test_image_data_invariants():
    with pytest.raises(AssertionError):
        ImageData(np.zeros((2, 2, 3), np.uint8), 16, "RGB")
    with pytest.raises(AssertionError):
        ImageData(np.zeros((2, 2, 3), np.uint8), 8, "RGBA")
    with pytest.raises(AssertionError):
        ImageData(np.zeros((2, 2), np.uint8), 8, "L")


# ----------------------------------------------------------------------------- write_png

def test_write_png_atomic_and_overwrite(tmp_path, monkeypatch):
    a = np.zeros((3, 4, 3), np.uint8)
    b = np.full((3, 4, 3), 9, np.uint8)
    path = tmp_path / "out.png"
    write_png(path, a)
    with pytest.raises(FileExistsError):
        write_png(path, b)
    np.testing.assert_array_equal(read_image(path).pixels, a)
    write_png(str(path), b, overwrite=True)
    np.testing.assert_array_equal(read_image(path).pixels, b)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()

    def boom(*args):
        raise OSError("disk full")
    monkeypatch.setattr(imageio.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_png(path, a, overwrite=True)
    np.testing.assert_array_equal(read_image(path).pixels, b)     # old file intact
    assert sorted(os.listdir(tmp_path)) == ["out.png"]            # no temporary left behind

    f = io.BytesIO()
    write_png(f, a)
    assert f.getvalue() == encode_png(a)


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.float32), np.zeros((2, 2), np.int16),
                                 np.zeros((2, 2, 5), np.uint8), np.zeros((2,), np.uint8),
                                 np.zeros((0, 2), np.uint8)])
def test_encode_png_rejects(bad, tmp_path):
    with pytest.raises(ValueError):
        encode_png(bad)
    with pytest.raises(ValueError):
        write_png(tmp_path / "bad.png", bad)
    assert os.listdir(tmp_path) == []


def test_encode_png_is_deterministic():
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    data = encode_png(pixels)
    assert data == encode_png(pixels)
    assert data[:8] == SIG and data[12:16] == b"IHDR"
    assert struct.unpack(">IIBBBBB", data[16:29]) == (4, 4, 8, 2, 0, 0, 0)


def test_encode_png_bands_are_one_stream_whatever_the_threads(monkeypatch):
    """Bands deflated apart (and on threads) make one zlib stream; bytes independent of threads."""
    import bac_ref.imageio as imageio
    monkeypatch.setattr(imageio, "PNG_BAND_BYTES", 3000)          # ~10 rows a band: many bands
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, (97, 100, 3), dtype=np.uint8)
    pixels[40:60] = pixels[10:30]                                 # repeats across band cuts
    one = encode_png(pixels, threads=1)
    assert encode_png(pixels, threads=3) == one
    z = b"".join(_chunks_of(one, b"IDAT"))
    np.testing.assert_array_equal(decode_png(one).pixels, pixels)
    raw = zlib.decompress(z)                                      # adler32 checked by zlib itself
    assert len(raw) == 97 * 301
    # each band is primed with the 32 KiB before it: the repeated rows cost almost nothing,
    # as in a single stream (without the priming they would cost about 6,000 bytes again)
    whole = zlib.compress(raw, imageio.PNG_LEVEL)
    assert len(z) < len(whole) + 1000
    # an image of one band is exactly zlib.compress's stream (vectors' recon.png stay put)
    monkeypatch.setattr(imageio, "PNG_BAND_BYTES", 1 << 20)
    z1 = b"".join(_chunks_of(encode_png(pixels), b"IDAT"))
    assert z1 == zlib.compress(zlib.decompress(z1), imageio.PNG_LEVEL)
