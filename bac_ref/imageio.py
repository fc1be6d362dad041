"""Image input and output with the standard library and NumPy only.

Reading, ``read_image(path) -> ImageData`` (the format is found from the file's
first bytes, never from its name):

* PNG, decoded here with ``zlib`` + ``struct`` + NumPy: every colour type
  (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA) at every bit depth the PNG
  specification allows (1, 2, 4, 8, 16), the five row filters, Adam7
  interlacing, any number of IDAT chunks; ``tRNS`` turns a palette, grey or RGB
  image into one with an alpha channel.  Grey at 1, 2 or 4 bits is scaled to
  8 bits exactly (x 255, 85, 17), as the PNG specification recommends.
* PPM/PGM: binary P5/P6 and ASCII P2/P3, ``maxval`` 1..65535, ``#`` comments.
  ``maxval`` 255 and 65535 are kept as they are; any other ``maxval`` is scaled
  to 8 bits (maxval < 255) or 16 bits with round-half-up integer arithmetic.
* NumPy ``.npy`` (``allow_pickle=False``): uint8, uint16 or floating-point arrays
  of shape (H, W) or (H, W, C), C in {1, 2, 3, 4}.  Floats must be finite and in
  [0, 1]; they are kept exactly in ``ImageData.float_pixels`` (float32) and also
  rounded to 16 bits in ``ImageData.pixels``.
* Anything else (JPEG, WebP, TIFF, BMP, GIF, ...) through Pillow when it is
  installed (imported lazily); without Pillow such a file is refused with a
  message that says to install it.

``decode_image(data, name=...)`` does the same on bytes already read (stdin).

Writing, ``encode_image(pixels, format_for_path(path))`` picks PNG, PPM/PGM or .npy
from a file name's extension (anything else is refused); ``encode_png(pixels) -> bytes``
and ``write_png(path_or_file, pixels)``:
uint8 or uint16 arrays of shape (H, W) or (H, W, C), C in {1, 2, 3, 4}, become a
non-interlaced PNG (colour type 0, 4, 2 or 6) with one filter per row chosen by
the minimum-sum-of-absolute-differences heuristic, deflated at zlib level 5
(``PNG_LEVEL``; ``compress_level=`` to change it) in 1 MiB bands on all CPUs (one zlib
stream; the bytes do not depend on the thread count, and an image of one band gets
exactly ``zlib.compress``'s stream).  Writing to
a path is atomic (temporary file in the same folder, then ``os.replace``) and
refuses to replace an existing file unless ``overwrite=True``.

Refused, with ``ImageFormatError`` (a ``ValueError``; its one-line message names
the file and the problem): a bad CRC on any chunk, a truncated or malformed
file, an unknown critical chunk, palette indices past the end of the palette,
sample values above a PNM ``maxval``, and any image with more than
``MAX_PIXELS`` (2**28) pixels -- that check runs on the header, before any pixel
buffer is allocated, and the zlib stream is inflated with ``max_length`` set to
the exact size the header implies, so a "zip bomb" cannot exhaust memory.
Ancillary PNG chunks other than ``tRNS`` (gamma, colour profiles, text, ...) are
checked for CRC and otherwise ignored: pixel values are returned as stored.

``to_rgb_float(image)`` gives the float32 (H, W, 3) array in [0, 1] the codec
works on: samples / 255 (8-bit) or / 65535 (16-bit), correctly rounded float32
division; grey is replicated to three channels and alpha is dropped (check
``image.has_alpha`` first to warn the user).
"""
from __future__ import annotations

import errno
import io
import itertools
import os
import re
import struct
import tempfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = [
    "ImageData", "ImageFormatError", "MAX_PIXELS", "read_image", "decode_png",
    "to_rgb_float", "from_rgb_float", "encode_png", "write_png", "decode_image",
    "encode_pnm", "encode_npy", "encode_image", "format_for_path", "OUTPUT_FORMATS", "atomic_write",
]

MAX_PIXELS = 2 ** 28
"""Largest width * height accepted by every reader (checked before allocating)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_MAX_DIM = 2 ** 31 - 1          # PNG spec: width, height and chunk lengths are < 2^31
_IDAT_CHUNK_SIZE = 2 ** 20          # the encoder splits its zlib stream into IDATs this large

_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}      # channels -> mode
_CHANNELS = {v: k for k, v in _MODES.items()}         # mode -> channels

# PNG colour type -> (samples per pixel, allowed bit depths)
_COLOUR_TYPES = {
    0: (1, (1, 2, 4, 8, 16)),   # grey
    2: (3, (8, 16)),            # RGB
    3: (1, (1, 2, 4, 8)),       # palette index
    4: (2, (8, 16)),            # grey + alpha
    6: (4, (8, 16)),            # RGBA
}
_CHANNELS_TO_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}

# Adam7 passes as (x0, y0, dx, dy): pass p holds the pixels image[y0::dy, x0::dx].
#
#     1 6 4 6 2 6 4 6
#     7 7 7 7 7 7 7 7
#     5 6 5 6 5 6 5 6
#     7 7 7 7 7 7 7 7
#     3 6 4 6 3 6 4 6
#     7 7 7 7 7 7 7 7
#     5 6 5 6 5 6 5 6
#     7 7 7 7 7 7 7 7
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
          (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


class ImageFormatError(ValueError):
    """An input image that is malformed, unsupported, or too large."""


@dataclass(frozen=True, eq=False)
class ImageData:
    """Decoded image: samples exactly as stored, plus what they mean.

    pixels        (H, W, C) uint8 (bit_depth 8) or uint16 (bit_depth 16), C = len(mode)
    bit_depth     8 or 16
    mode          "L", "LA", "RGB" or "RGBA"
    format        where the pixels came from: "PNG", "PNM", "NPY", or Pillow's name ("JPEG", ...)
    float_pixels  (H, W, C) float32 in [0, 1], only for float .npy input: the exact values
                  (``pixels`` then holds them rounded to 16 bits)
    """

    pixels: np.ndarray
    bit_depth: int
    mode: str
    format: str = "PNG"
    float_pixels: Optional[np.ndarray] = None

    def __post_init__(self):
        p = self.pixels
        if self.mode not in _CHANNELS:
            raise AssertionError(f"ImageData: unknown mode {self.mode!r}")
        if not (isinstance(p, np.ndarray) and p.ndim == 3 and p.shape[2] == _CHANNELS[self.mode]):
            raise AssertionError(f"ImageData: pixels must be (H, W, {_CHANNELS[self.mode]}) for mode {self.mode}")
        if p.shape[0] < 1 or p.shape[1] < 1:
            raise AssertionError("ImageData: empty image")
        expected = {8: np.uint8, 16: np.uint16}.get(self.bit_depth)
        if expected is None or p.dtype != expected:
            raise AssertionError(f"ImageData: bit_depth {self.bit_depth} with dtype {p.dtype}")
        f = self.float_pixels
        if f is not None and (f.dtype != np.float32 or f.shape != p.shape):
            raise AssertionError("ImageData: float_pixels must be float32 with the shape of pixels")

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def has_alpha(self) -> bool:
        """True for "LA" and "RGBA": ``to_rgb_float`` drops the alpha channel."""
        return self.mode in ("LA", "RGBA")


# ----------------------------------------------------------------------------- conversions

def to_rgb_float(image: ImageData) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: grey replicated, alpha dropped (see ``image.has_alpha``).

    8-bit samples are divided by 255, 16-bit ones by 65535 (one correctly rounded
    float32 division: the same bits on every IEEE-754 platform).  Float .npy input
    returns its exact float32 values.
    """
    if image.float_pixels is not None:
        x = image.float_pixels                                       # (H, W, C)
    else:
        scale = np.float32(255.0 if image.bit_depth == 8 else 65535.0)
        x = image.pixels.astype(np.float32) / scale                  # (H, W, C)
    if image.mode in ("L", "LA"):
        x = np.repeat(x[:, :, :1], 3, axis=2)                        # (H, W, 3)
    else:
        x = x[:, :, :3]
    return np.ascontiguousarray(x, dtype=np.float32)


def from_rgb_float(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float image in [0, 1] -> uint8/uint16 samples: clip, scale, round half to even.

    The inverse of ``to_rgb_float`` up to rounding; NaN is refused.
    """
    x = np.asarray(x)
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, not {bit_depth}")
    if not np.all(np.isfinite(x)):
        raise ValueError("from_rgb_float: the image holds NaN or infinite values")
    top = 255.0 if bit_depth == 8 else 65535.0
    y = np.rint(np.clip(x.astype(np.float64), 0.0, 1.0) * top)
    return y.astype(np.uint8 if bit_depth == 8 else np.uint16)


# ----------------------------------------------------------------------------- reading

# Magic bytes of formats left to Pillow, for the message when Pillow is missing.
_OTHER_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"),
    (b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"), (b"qoif", "QOI"), (b"\x00\x00\x01\x00", "ICO"),
    (b"P1", "PBM"), (b"P4", "PBM"), (b"P7", "PAM"),
)


def _sniff_other(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    for magic, name in _OTHER_MAGIC:
        if data.startswith(magic):
            return name
    return "unrecognised"


def read_image(path, *, max_pixels: int = MAX_PIXELS) -> ImageData:
    """Read a PNG, PPM/PGM, .npy or (with Pillow) any other image file.

    Raises ``ImageFormatError`` for malformed, unsupported or too large images,
    ``OSError`` (e.g. ``FileNotFoundError``) when the file cannot be read.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    return decode_image(data, name=name, max_pixels=max_pixels)


def decode_image(data: bytes, *, name: str = "<image data>", max_pixels: int = MAX_PIXELS) -> ImageData:
    """:func:`read_image` on bytes already read (e.g. from stdin); ``name`` is for messages."""
    if data.startswith(PNG_SIGNATURE):
        return decode_png(data, name=name, max_pixels=max_pixels)
    if data[:2] in (b"P2", b"P3", b"P5", b"P6"):
        return _decode_pnm(data, name, max_pixels)
    if data.startswith(b"\x93NUMPY"):
        return _decode_npy(data, name, max_pixels)
    return _read_with_pillow(name, _sniff_other(data), max_pixels, data)


def _fail(name: str, problem: str) -> ImageFormatError:
    return ImageFormatError(f"{name}: {problem}")


def _check_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise _fail(name, f"empty image ({width} x {height})")
    if width * height > max_pixels:
        raise _fail(name, f"image is {width} x {height} = {width * height} pixels, "
                          f"more than the limit of {max_pixels}")


# ---- PNG ------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Header:
    width: int
    height: int
    bit_depth: int
    colour_type: int
    interlace: int

    @property
    def samples(self) -> int:               # samples per pixel
        return _COLOUR_TYPES[self.colour_type][0]

    @property
    def bpp(self) -> int:                   # filter distance in bytes ("bpp" in the PNG spec), >= 1
        return max(1, self.samples * self.bit_depth // 8)

    def row_bytes(self, width: int) -> int:
        return (width * self.samples * self.bit_depth + 7) // 8

    def passes(self):
        """(x0, y0, dx, dy, pass_width, pass_height) of every non-empty pass."""
        if self.interlace == 0:
            return [(0, 0, 1, 1, self.width, self.height)]
        out = []
        for x0, y0, dx, dy in _ADAM7:
            pw = (self.width - x0 + dx - 1) // dx
            ph = (self.height - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                out.append((x0, y0, dx, dy, pw, ph))
        return out


def _iter_chunks(data: bytes, name: str):
    """Yield (type, payload, offset) for every chunk up to and including IEND, CRCs checked."""
    pos = len(PNG_SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise _fail(name, "truncated PNG (missing IEND chunk)")
        length, ctype = struct.unpack_from(">I4s", data, pos)
        if length > _PNG_MAX_DIM:
            raise _fail(name, f"chunk at offset {pos} claims {length} bytes (limit 2^31-1)")
        if not all(65 <= c <= 90 or 97 <= c <= 122 for c in ctype):
            raise _fail(name, f"malformed chunk type {ctype!r} at offset {pos}")
        end = pos + 8 + length
        if end + 4 > len(data):
            raise _fail(name, f"truncated PNG ({ctype.decode()} chunk at offset {pos} is cut short)")
        payload = data[pos + 8:end]
        (crc,) = struct.unpack_from(">I", data, end)
        if zlib.crc32(payload, zlib.crc32(ctype)) != crc:
            raise _fail(name, f"bad CRC in {ctype.decode()} chunk at offset {pos}")
        yield ctype, payload, pos
        if ctype == b"IEND":
            return
        pos = end + 4


def _parse_ihdr(payload: bytes, name: str, max_pixels: int) -> _Header:
    if len(payload) != 13:
        raise _fail(name, f"IHDR chunk has {len(payload)} bytes, not 13")
    w, h, depth, ctype, comp, filt, inter = struct.unpack(">IIBBBBB", payload)
    if not (1 <= w <= _PNG_MAX_DIM and 1 <= h <= _PNG_MAX_DIM):
        raise _fail(name, f"invalid dimensions {w} x {h} in IHDR")
    if ctype not in _COLOUR_TYPES:
        raise _fail(name, f"invalid colour type {ctype} in IHDR")
    if depth not in _COLOUR_TYPES[ctype][1]:
        raise _fail(name, f"bit depth {depth} is not allowed for colour type {ctype}")
    if comp != 0 or filt != 0 or inter not in (0, 1):
        raise _fail(name, f"unknown compression/filter/interlace method {comp}/{filt}/{inter} in IHDR")
    _check_size(name, w, h, max_pixels)
    return _Header(w, h, depth, ctype, inter)


def decode_png(data: bytes, *, name: str = "<PNG data>", max_pixels: int = MAX_PIXELS) -> ImageData:
    """Decode a whole PNG file held in memory (see the module docstring for what is accepted)."""
    data = bytes(data)
    if not data.startswith(PNG_SIGNATURE):
        raise _fail(name, "not a PNG file (wrong signature)")
    hdr = None
    palette = None                  # (N, 3) uint8
    trns = None                     # raw tRNS payload
    idat = []
    idat_done = False               # IDAT chunks must be consecutive
    for ctype, payload, offset in _iter_chunks(data, name):
        if hdr is None and ctype != b"IHDR":
            raise _fail(name, f"first chunk is {ctype.decode()}, not IHDR")
        if ctype == b"IHDR":
            if hdr is not None:
                raise _fail(name, "second IHDR chunk")
            hdr = _parse_ihdr(payload, name, max_pixels)
        elif ctype == b"IDAT":
            if idat_done:
                raise _fail(name, f"IDAT chunks are not consecutive (offset {offset})")
            idat.append(payload)
        elif ctype == b"PLTE":
            if idat or palette is not None:
                raise _fail(name, "PLTE chunk after IDAT or repeated")
            if hdr.colour_type in (0, 4):
                raise _fail(name, f"PLTE chunk in a colour type {hdr.colour_type} (grey) image")
            n = len(payload) // 3
            if len(payload) % 3 or not 1 <= n <= 256 or (hdr.colour_type == 3 and n > 2 ** hdr.bit_depth):
                raise _fail(name, f"PLTE chunk of invalid length {len(payload)}")
            palette = np.frombuffer(payload, np.uint8).reshape(n, 3)
        elif ctype == b"IEND":
            pass
        elif ctype[0] & 0x20 == 0:                  # uppercase first letter: critical
            raise _fail(name, f"unknown critical chunk {ctype.decode()} at offset {offset}")
        elif ctype == b"tRNS" and not idat:
            trns = payload
        if idat and ctype != b"IDAT":
            idat_done = True
    if not idat:
        raise _fail(name, "no IDAT chunk")
    if hdr.colour_type == 3 and palette is None:
        raise _fail(name, "palette image without a PLTE chunk")

    # Inflate exactly the number of bytes the header implies; one more is an error.
    passes = hdr.passes()
    expected = sum(ph * (1 + hdr.row_bytes(pw)) for *_, pw, ph in passes)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(b"".join(idat), expected + 1)
    except zlib.error as exc:
        raise _fail(name, f"corrupt zlib stream in IDAT ({exc})") from None
    if len(raw) > expected:
        raise _fail(name, "IDAT holds more data than the IHDR dimensions imply")
    if len(raw) < expected or not inflater.eof:
        raise _fail(name, f"truncated image data ({len(raw)} of {expected} bytes, "
                          f"zlib stream {'complete' if inflater.eof else 'incomplete'})")

    raw = np.frombuffer(raw, np.uint8)
    dtype = np.uint16 if hdr.bit_depth == 16 else np.uint8
    samples = np.empty((hdr.height, hdr.width, hdr.samples), dtype)    # (H, W, S) as stored
    pos = 0
    for x0, y0, dx, dy, pw, ph in passes:
        n = ph * (1 + hdr.row_bytes(pw))
        rows = _unfilter(raw[pos:pos + n].reshape(ph, -1), hdr.bpp, name)
        samples[y0::dy, x0::dx] = _unpack(rows, pw, hdr.samples, hdr.bit_depth)
        pos += n
    return _png_to_image(samples, hdr, palette, trns, name)


def _unfilter(filtered: np.ndarray, bpp: int, name: str) -> np.ndarray:
    """Undo the PNG row filters: (h, 1 + row_bytes) uint8 -> (h, row_bytes) uint8.

    Byte x of a row is reconstructed from the filtered byte f and its neighbours
    a (bpp bytes to the left), b (above) and c (above-left), zero off the image:

        c b          0 None   x = f
        a x          1 Sub    x = f + a          2 Up    x = f + b
                     3 Avg    x = f + (a + b) // 2
                     4 Paeth  x = f + whichever of a, b, c is closest to a + b - c
                                   (ties prefer a, then b)          all mod 256

    Rows that use only None/Sub/Up are decoded row by row, each in one NumPy
    step (Sub is a cumulative sum along the row).  Avg and Paeth chain along the
    row, so if any row uses them the image is swept by anti-diagonals instead:
    pixel (r, j) depends only on (r, j-1), (r-1, j), (r-1, j-1), all on earlier
    diagonals, so every pixel of one diagonal is decoded in one NumPy step
    (H + W - 1 steps in all, in pixel units of bpp bytes).
    """
    h = filtered.shape[0]
    types = filtered[:, 0]
    data = filtered[:, 1:]
    nbytes = data.shape[1]
    if types.size and types.max() > 4:
        r = int(np.argmax(types > 4))
        raise _fail(name, f"unknown filter type {int(types[r])} on row {r}")
    if not np.any(types >= 3):
        out = np.empty_like(data)
        prev = np.zeros(nbytes, np.uint8)
        for r in range(h):
            t = types[r]
            if t == 0:
                out[r] = data[r]
            elif t == 1:
                # bpp interleaved running sums (for sub-byte depths bpp = 1 and nbytes may be odd)
                out[r] = np.cumsum(data[r].reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
            else:
                out[r] = data[r] + prev
            prev = out[r]
        return out

    wp = nbytes // bpp                              # pixel units per row (exact: bpp > 1 only at depth >= 8)
    stride = wp + 1                                 # one zero column on the left ...
    x = np.zeros(((h + 1) * stride, bpp), np.int16)  # ... and one zero row on top, flattened
    f = np.zeros_like(x)
    f.reshape(h + 1, stride, bpp)[1:, 1:] = data.reshape(h, wp, bpp)
    t = np.zeros((h + 1) * stride, np.intp)
    t.reshape(h + 1, stride)[1:, 1:] = types[:, None]
    zero = np.zeros(1, np.int16)
    for k in range(h + wp - 1):                     # diagonal r + j = k
        r0 = max(0, k - wp + 1)
        n = min(h - 1, k) - r0 + 1
        s = (r0 + 1) * stride + (k - r0 + 1)        # flat index of (r0, k - r0); the next is + wp
        sl = slice(s, s + (n - 1) * wp + 1, wp)
        a = x[s - 1:s + (n - 1) * wp:wp]            # (n, bpp) left
        b = x[s - stride:s - stride + (n - 1) * wp + 1:wp]            # up
        c = x[s - stride - 1:s - stride - 1 + (n - 1) * wp + 1:wp]    # up-left
        bc = b - c                                  # pa = |p - a| = |b - c|
        ac = a - c                                  # pb = |p - b| = |a - c|
        pa = np.abs(bc)
        pb = np.abs(ac)
        pc = np.abs(bc + ac)                        # pc = |p - c| = |a + b - 2c|
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.choose(t[sl][:, None], (zero, a, b, (a + b) >> 1, paeth))
        x[sl] = (f[sl] + pred) & 0xFF
    return x.reshape(h + 1, stride, bpp)[1:, 1:].reshape(h, nbytes).astype(np.uint8)


def _unpack(rows: np.ndarray, width: int, samples: int, depth: int) -> np.ndarray:
    """Unfiltered rows (h, row_bytes) uint8 -> (h, width, samples) uint8/uint16 raw sample values."""
    h = rows.shape[0]
    if depth == 8:
        return rows.reshape(h, width, samples)
    if depth == 16:
        return np.ascontiguousarray(rows).view(">u2").astype(np.uint16).reshape(h, width, samples)
    shifts = np.arange(8 - depth, -1, -depth, dtype=np.uint8)            # MSB first
    vals = (rows[:, :, None] >> shifts) & np.uint8((1 << depth) - 1)      # (h, row_bytes, per_byte)
    return vals.reshape(h, -1)[:, :width, None]


def _png_to_image(s: np.ndarray, hdr: _Header, palette, trns, name: str) -> ImageData:
    """Raw samples (H, W, S) -> ImageData: palette lookup, tRNS, sub-byte grey scaling."""
    ct, depth = hdr.colour_type, hdr.bit_depth
    if ct == 3:
        idx = s[:, :, 0]
        if int(idx.max()) >= len(palette):
            raise _fail(name, f"palette index {int(idx.max())} past the end of the "
                              f"{len(palette)}-entry palette")
        if trns is None:
            return ImageData(palette[idx], 8, "RGB")
        if len(trns) > len(palette):
            raise _fail(name, f"tRNS chunk has {len(trns)} entries for a {len(palette)}-entry palette")
        alpha = np.full(len(palette), 255, np.uint8)
        alpha[:len(trns)] = np.frombuffer(trns, np.uint8)
        rgba = np.concatenate([palette, alpha[:, None]], axis=1)           # (N, 4)
        return ImageData(rgba[idx], 8, "RGBA")
    alpha = None
    if trns is not None and ct in (0, 2):
        # one colour marked fully transparent; keys compare against raw samples
        if len(trns) != 2 * s.shape[2]:
            raise _fail(name, f"tRNS chunk of invalid length {len(trns)} for colour type {ct}")
        key = np.array(struct.unpack(f">{s.shape[2]}H", trns), np.int64)
        top = 65535 if depth == 16 else 255
        alpha = np.where(np.all(s == key, axis=2), 0, top).astype(s.dtype)[:, :, None]
    if depth < 8:
        s = s * np.uint8(255 // ((1 << depth) - 1))     # exact: x 255, 85, 17
    if alpha is not None:
        s = np.concatenate([s, alpha], axis=2)
    return ImageData(np.ascontiguousarray(s), 16 if depth == 16 else 8, _MODES[s.shape[2]])


# ---- PPM / PGM ------------------------------------------------------------------------

_PNM_SPACE = b" \t\n\r\x0b\x0c"


def _decode_pnm(data: bytes, name: str, max_pixels: int) -> ImageData:
    """P2/P5 (grey) and P3/P6 (RGB): header "P6 <w> <h> <maxval>", whitespace and # comments."""
    kind = data[1:2]
    channels = 3 if kind in (b"3", b"6") else 1
    pos = 2
    fields = []
    while len(fields) < 3:
        while pos < len(data) and (data[pos] in _PNM_SPACE or data[pos] == 0x23):
            if data[pos] == 0x23:                               # comment to end of line
                while pos < len(data) and data[pos] not in b"\r\n":
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < len(data) and 0x30 <= data[pos] <= 0x39 and pos - start < 12:
            pos += 1
        if pos == start or (pos < len(data) and data[pos] not in _PNM_SPACE and data[pos] != 0x23):
            raise _fail(name, "malformed PNM header (expected width, height and maxval)")
        fields.append(int(data[start:pos]))
    if pos >= len(data):
        raise _fail(name, "truncated PNM file (no data after the header)")
    width, height, maxval = fields
    if not 1 <= maxval <= 65535:
        raise _fail(name, f"PNM maxval {maxval} is outside 1..65535")
    _check_size(name, width, height, max_pixels)
    count = width * height * channels
    if kind in (b"5", b"6"):
        if data[pos] not in _PNM_SPACE:
            raise _fail(name, "malformed PNM header (no whitespace byte after maxval)")
        pos += 1                                                # exactly one whitespace byte
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype(np.uint8)
        if len(data) - pos < count * dtype.itemsize:
            raise _fail(name, f"truncated PNM file ({len(data) - pos} of "
                              f"{count * dtype.itemsize} data bytes)")
        v = np.frombuffer(data, dtype, count, pos).astype(np.int64)
    else:
        body = re.sub(rb"#[^\r\n]*", b"", data[pos:])
        tokens = body.split(None, count)[:count]
        if len(tokens) < count:
            raise _fail(name, f"truncated PNM file ({len(tokens)} of {count} samples)")
        t = np.array(tokens)
        if not np.all(np.char.isdigit(t)) or max(len(x) for x in tokens) > 12:
            raise _fail(name, "malformed sample in ASCII PNM data")
        v = t.astype(np.int64)
    if int(v.max()) > maxval:
        raise _fail(name, f"PNM sample value {int(v.max())} exceeds maxval {maxval}")
    if maxval in (255, 65535):
        top = maxval
    else:
        top = 255 if maxval < 255 else 65535
        v = (v * top + maxval // 2) // maxval               # round half up, exact integers
    pixels = v.astype(np.uint8 if top == 255 else np.uint16).reshape(height, width, channels)
    return ImageData(pixels, 8 if top == 255 else 16, _MODES[channels], "PNM")


# ---- .npy -----------------------------------------------------------------------------

def _decode_npy(data: bytes, name: str, max_pixels: int) -> ImageData:
    """uint8 / uint16 / float in [0, 1] arrays of shape (H, W) or (H, W, 1|2|3|4)."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
        else:
            raise _fail(name, f"unsupported .npy format version {version}")
    except ValueError as exc:
        if isinstance(exc, ImageFormatError):
            raise
        raise _fail(name, f"malformed .npy header ({exc})") from None
    if dtype.hasobject or dtype.kind not in "uf" or (dtype.kind == "u" and dtype.itemsize > 2):
        raise _fail(name, f".npy dtype {dtype} is not uint8, uint16 or float")
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in _MODES):
        raise _fail(name, f".npy shape {shape} is not (H, W) or (H, W, 1|2|3|4)")
    _check_size(name, shape[1], shape[0], max_pixels)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if len(data) - fp.tell() < nbytes:
        raise _fail(name, f"truncated .npy file ({len(data) - fp.tell()} of {nbytes} data bytes)")
    fp.seek(0)
    try:
        arr = np.lib.format.read_array(fp, allow_pickle=False)
    except ValueError as exc:
        raise _fail(name, f"unreadable .npy data ({exc})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]                                   # (H, W, C)
    mode = _MODES[arr.shape[2]]
    if dtype.kind == "u":
        depth = 8 * dtype.itemsize
        return ImageData(np.ascontiguousarray(arr, np.uint8 if depth == 8 else np.uint16),
                         depth, mode, "NPY")
    if not np.all(np.isfinite(arr)):
        raise _fail(name, "float .npy image holds NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise _fail(name, f"float .npy image has values in [{lo:g}, {hi:g}], outside [0, 1]")
    exact = np.ascontiguousarray(arr, np.float32)
    return ImageData(from_rgb_float(arr, 16), 16, mode, "NPY", float_pixels=exact)


# ---- Pillow fallback ------------------------------------------------------------------

def _read_with_pillow(name: str, kind: str, max_pixels: int, data: bytes) -> ImageData:
    what = f"{kind} files" if kind != "unrecognised" else "this file"
    try:
        from PIL import Image
    except ImportError:
        if kind == "unrecognised":
            raise _fail(name, "unrecognised image format (PNG, PPM/PGM and .npy are read "
                              "without Pillow; install Pillow for other formats)") from None
        raise _fail(name, f"install Pillow to read {what} (only PNG, PPM/PGM and .npy "
                          f"are read without it)") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            _check_size(name, img.width, img.height, max_pixels)
            fmt = img.format or kind
            return _from_pillow(img, name, fmt)
    except ImageFormatError:
        raise
    except Exception as exc:  # Pillow raises many kinds (DecompressionBombError, SyntaxError, ...)
        raise _fail(name, f"Pillow cannot read {what}: {type(exc).__name__}: {exc}") from None


def _from_pillow(img, name: str, fmt: str) -> ImageData:
    mode = img.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA"):
        if mode == "1":
            img = img.convert("L")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
    elif mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img)
        if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 65535):
            raise _fail(name, "32-bit integer image with values outside 0..65535")
        return ImageData(arr.astype(np.uint16)[:, :, None], 16, "L", fmt)
    elif mode == "F":
        raise _fail(name, "32-bit float images are not supported (save as .npy instead)")
    elif mode == "La":                              # premultiplied grey + alpha
        img = img.convert("LA")
    else:                                           # CMYK, YCbCr, LAB, HSV, RGBX, RGBa, ...
        img = img.convert("RGBA" if ("A" in mode or "a" in mode) else "RGB")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return ImageData(np.ascontiguousarray(arr, np.uint8), 8, img.mode, fmt)


# ----------------------------------------------------------------------------- writing

def _check_pixels(pixels) -> np.ndarray:
    p = np.asarray(pixels)
    if p.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"PNG pixels must be uint8 or uint16, not {p.dtype}")
    if p.ndim == 2:
        p = p[:, :, None]
    if p.ndim != 3 or p.shape[2] not in _MODES:
        raise ValueError(f"PNG pixels must have shape (H, W) or (H, W, 1|2|3|4), not {np.shape(pixels)}")
    if not (1 <= p.shape[0] <= _PNG_MAX_DIM and 1 <= p.shape[1] <= _PNG_MAX_DIM):
        raise ValueError(f"PNG dimensions {p.shape[1]} x {p.shape[0]} are out of range")
    return p


def _chunk(ctype: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(ctype))
    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", crc)


def _filter_rows(x: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    """Rows x (h, n) uint8 with the row above the first one, prev (n,) -> (h, 1 + n) filtered.

    Each row gets the filter (0..4, see ``_unfilter``) whose output has the least
    sum of |byte as signed int8| -- the heuristic the PNG specification suggests.
    uint8 arithmetic wraps, which is exactly the "mod 256" of the filters.
    """
    b = np.concatenate([prev[None], x[:-1]], axis=0)                 # (h, n) up
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]                                        # left
    c = np.zeros_like(x)
    c[:, bpp:] = b[:, :-bpp]                                        # up-left
    ai, bi, ci = a.astype(np.int16), b.astype(np.int16), c.astype(np.int16)
    pa, pb, pc = np.abs(bi - ci), np.abs(ai - ci), np.abs(ai + bi - 2 * ci)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    avg = ((ai + bi) >> 1).astype(np.uint8)
    cand = np.stack([x, x - a, x - b, x - avg, x - paeth])          # (5, h, n) uint8
    cost = np.abs(cand.view(np.int8)).view(np.uint8).sum(axis=2, dtype=np.int64)   # (5, h); |-128| = 128
    best = np.argmin(cost, axis=0)                                  # (h,) ties: lowest filter type
    rows = np.take_along_axis(cand, best[None, :, None], axis=0)[0]
    return np.concatenate([best[:, None].astype(np.uint8), rows], axis=1)


#: zlib level of the PNGs written (libpng's default is 6).  Measured on decoded photos
#: (2026-12-02): level 5 writes them in about half the time of level 6 for 3-7 % more
#: bytes (kodim23 at lambda 1: 0.06 vs 0.11 s, 410 vs 399 kB; a 12 MP decode: 0.63 vs
#: 1.19 s on 2 threads, 8.59 vs 8.05 MB), and writing the PNG is a third of what a
#: 12 MP decompress spends outside the entropy decoder and g_s.
PNG_LEVEL = 5
#: Raw (filtered) bytes per independently deflated band of an encoded PNG.  Fixed, so the
#: bytes of a PNG never depend on how many threads made them.
PNG_BAND_BYTES = 1 << 20
_DEFLATE_WINDOW = 1 << 15            # 32 KiB: how far back a deflate match may reach


def _deflate_band(rows: np.ndarray, r0: int, r1: int, bpp: int, level: int, last: bool):
    """Filter rows [r0, r1) and deflate them as one piece of a longer raw-deflate stream.

    Returns (deflated piece, the band's filtered bytes, for the adler32).  The band
    is primed with the 32 KiB of filtered bytes before it (``zdict``), so matches may
    reach back across the cut exactly as in a single stream (pigz's method); all
    bands but the last end with a sync flush (byte-aligned, not final), the last
    with the final block.  Their concatenation is one valid deflate stream.
    """
    n = rows.shape[1] + 1                                            # filtered bytes per row
    back = min(r0, -(-_DEFLATE_WINDOW // n))                         # rows that cover the window
    a = r0 - back
    prev = rows[a - 1] if a > 0 else np.zeros(rows.shape[1], np.uint8)
    filtered = _filter_rows(rows[a:r1], prev, bpp).tobytes()
    head, body = filtered[:back * n], filtered[back * n:]
    primed = {"zdict": head[-_DEFLATE_WINDOW:]} if head else {}
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, **primed)      # raw deflate
    z = comp.compress(body) + comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
    return z, body


def _zlib_header(level: int) -> bytes:
    """RFC 1950 header: deflate, 32 KiB window, FLEVEL from the level, FCHECK."""
    if level < 0:
        level = 6                                # zlib's Z_DEFAULT_COMPRESSION (-1) is level 6
    cmf = 0x78
    flg = (0 if level < 2 else 1 if level < 6 else 2 if level == 6 else 3) << 6
    flg += 31 - (cmf * 256 + flg) % 31
    return bytes((cmf, flg))


def encode_png(pixels: np.ndarray, *, compress_level: int = PNG_LEVEL,
               threads: Optional[int] = None) -> bytes:
    """uint8/uint16 (H, W) or (H, W, 1|2|3|4) -> PNG bytes (colour type 0, 4, 2 or 6).

    Rows are filtered and deflated in bands of about ``PNG_BAND_BYTES`` on
    ``threads`` threads (default: one per CPU; zlib and NumPy release the GIL);
    each band is primed with the 32 KiB before it, so the stream is one zlib
    stream compressed almost as well as in one piece.  The bytes do not depend
    on ``threads``.
    """
    p = _check_pixels(pixels)
    h, w, ch = p.shape
    depth = 16 if p.dtype == np.uint16 else 8
    rows = p.astype(">u2" if depth == 16 else np.uint8).reshape(h, -1).view(np.uint8)  # (h, n)
    bpp = ch * depth // 8
    band = max(1, PNG_BAND_BYTES // (rows.shape[1] + 1))
    cuts = [(r, min(r + band, h)) for r in range(0, h, band)]
    jobs = [(rows, r0, r1, bpp, compress_level, r1 == h) for r0, r1 in cuts]
    if threads is None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, min(int(threads or 1), len(jobs)))
    if threads == 1:
        z = _join_bands(itertools.starmap(_deflate_band, jobs), compress_level)
    else:
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(threads) as pool:
            z = _join_bands(pool.map(_deflate_band, *zip(*jobs)), compress_level)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, _CHANNELS_TO_COLOUR_TYPE[ch], 0, 0, 0)
    out = [PNG_SIGNATURE, _chunk(b"IHDR", ihdr)]
    out += [_chunk(b"IDAT", z[i:i + _IDAT_CHUNK_SIZE]) for i in range(0, max(len(z), 1), _IDAT_CHUNK_SIZE)]
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def _join_bands(pieces, level: int) -> bytes:
    """zlib header + the bands' deflate pieces in order + adler32 of all filtered bytes."""
    parts = [_zlib_header(level)]
    check = 1
    for z, body in pieces:
        parts.append(z)
        check = zlib.adler32(body, check)
    parts.append(struct.pack(">I", check))
    return b"".join(parts)


def write_png(path_or_file, pixels: np.ndarray, *, overwrite: bool = False) -> None:
    """Write ``encode_png(pixels)`` to a binary file object or, atomically, to a path.

    A path is written through a temporary file in the same folder and renamed
    into place, so a crash never leaves a partial PNG.  An existing file is
    replaced only with ``overwrite=True`` (else ``FileExistsError``).
    """
    data = encode_png(pixels)
    if hasattr(path_or_file, "write"):
        path_or_file.write(data)
        return
    try:
        atomic_write(path_or_file, data, overwrite=overwrite)
    except FileExistsError:
        raise FileExistsError(f"{os.fspath(path_or_file)}: file exists "
                              "(pass overwrite=True to replace it)") from None


def encode_pnm(pixels: np.ndarray) -> bytes:
    """Binary PGM (P5, (H, W) or (H, W, 1)) or PPM (P6, (H, W, 3)); uint8 or uint16 (big-endian)."""
    p = _check_pixels(pixels)
    if p.shape[2] not in (1, 3):
        raise ValueError(f"PPM/PGM hold grey or RGB samples, not {p.shape[2]} channels")
    maxval = 255 if p.dtype == np.uint8 else 65535
    head = f"P{5 if p.shape[2] == 1 else 6}\n{p.shape[1]} {p.shape[0]}\n{maxval}\n".encode()
    return head + np.ascontiguousarray(p, dtype=">u2" if maxval > 255 else np.uint8).tobytes()


def encode_npy(pixels: np.ndarray) -> bytes:
    """The array as a .npy file (``numpy.save``, no pickle)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(pixels), allow_pickle=False)
    return buf.getvalue()


#: Output formats by file extension (:func:`format_for_path`).
OUTPUT_FORMATS = {".png": "PNG", ".ppm": "PPM", ".pgm": "PGM", ".pnm": "PNM", ".npy": "NPY"}


def format_for_path(path) -> str:
    """"PNG", "PPM", "PGM", "PNM" or "NPY" from the extension; ValueError for any other."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ValueError(f"{os.fspath(path)}: cannot write {ext or 'a file without an extension'}"
                         f": choose .png, .ppm / .pgm / .pnm or .npy")
    return OUTPUT_FORMATS[ext]


def encode_image(pixels: np.ndarray, fmt: str) -> bytes:
    """uint8/uint16 (H, W) or (H, W, 3) pixels in format ``fmt`` (see :data:`OUTPUT_FORMATS`).

    PPM gets grey replicated to RGB; PGM refuses RGB (ValueError); PNM is PGM for grey
    and PPM for RGB.
    """
    p = np.asarray(pixels)
    grey = p.ndim == 2 or p.shape[2] == 1
    if fmt == "PNG":
        return encode_png(p)
    if fmt == "NPY":
        return encode_npy(p)
    if fmt == "PGM" and not grey:
        raise ValueError("a .pgm file holds grey images; this one is RGB (use .ppm, .pnm or .png)")
    if fmt == "PPM" and grey:
        p = np.repeat(p.reshape(p.shape[0], p.shape[1], 1), 3, axis=2)
    if fmt in ("PPM", "PGM", "PNM"):
        return encode_pnm(p)
    raise ValueError(f"unknown output format {fmt!r}")


def atomic_write(path, data: bytes, *, overwrite: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder.

    The file appears complete or not at all.  Without ``overwrite`` an existing
    file is never replaced (os.link is an atomic no-clobber rename where hard
    links exist): FileExistsError.
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(errno.EEXIST, "file exists", path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    except OSError as exc:          # name the user's path, not the temporary file's
        raise type(exc)(exc.errno, f"{exc.strerror} (cannot create a file in "
                        f"{os.path.dirname(path) or '.'})", path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)               # mkstemp makes 0600; give the usual mode
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)                  # atomic no-clobber where links exist
            except FileExistsError:
                raise FileExistsError(errno.EEXIST, "file exists", path) from None
            except OSError:
                if os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, "file exists", path) from None
                os.replace(tmp, path)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
