"""The .bac container: a 32-byte header followed by the range-coded payload.

SPEC.md §8 is normative; this module is its executable form.  All integers
are big-endian.  ::

    offset size field
    0      4    magic          0x89 'B' 'A' 'C'
    4      1    version        FORMAT_VERSION
    5      1    entropy model  variant of SPEC.md §9 (1 = ENTROPY_MODEL_V1)
    6      1    max_depth      N, 1..16: VBQ grid depth (SPEC.md §4.1)
    7      1    flags          bit 0: grey output; bit 1: lambda was a map;
                               bit 2: second quantization pass; others 0
    8      8    model id       first 8 bytes of the model file's sha256
    16     2    height - 1     image height H in 1..65536
    18     2    width - 1      image width  W in 1..65536
    20     8    lambda         IEEE-754 binary64 (for a map: its maximum)
    28     4    crc32          zlib CRC-32 of bytes 0..27 followed by the payload
    32     4k   payload        range-coder words (SPEC.md §2.6, §9)

The decoder needs nothing but these bytes and the model file the id names.
``parse`` rejects every malformed input with :class:`BitstreamError` before
any large allocation (the pixel limit guards against memory bombs).

Sizes count the whole file, bpp = 8 * (32 + 4k) / (H * W): the VBQ paper
(Yang, Bamler & Mandt 2020) reported estimated code lengths without any
container, and the 32 bytes are the price of a self-describing file.
"""
from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass

from .errors import BitstreamError

MAGIC = b"\x89BAC"
FORMAT_VERSION = 1
ENTROPY_MODEL_V1 = 1
HEADER_SIZE = 32
MAX_DEPTH_LIMIT = 16
MAX_PIXELS = 1 << 26          # 64 Mpixel: a decoder may refuse anything larger

FLAG_GREY = 1
FLAG_LAMBDA_MAP = 2
FLAG_SECOND_PASS = 4
_KNOWN_FLAGS = FLAG_GREY | FLAG_LAMBDA_MAP | FLAG_SECOND_PASS

_LAYOUT = struct.Struct(">4sBBBB8sHHd")   # bytes 0..27
assert _LAYOUT.size == 28


@dataclass(frozen=True)
class Header:
    height: int
    width: int
    lam: float
    max_depth: int
    model_id: bytes               # 8 bytes
    grey: bool = False
    lambda_map: bool = False
    second_pass: bool = False
    entropy_model: int = ENTROPY_MODEL_V1
    version: int = FORMAT_VERSION

    @property
    def latent_shape(self):
        """(h, w) of the latent grid: the image padded up to a multiple of 16."""
        return (-(-self.height // 16), -(-self.width // 16))

    @property
    def flags(self) -> int:
        return (FLAG_GREY * self.grey | FLAG_LAMBDA_MAP * self.lambda_map
                | FLAG_SECOND_PASS * self.second_pass)


# ---------------------------------------------------------------------------
# What the .bac (§8) and .bacw (§13) containers share: magic, a fixed header that
# ends with a CRC-32 over the header and the payload, a payload of whole words,
# an informational lambda that is finite, >= 0 and not -0.0.
# ---------------------------------------------------------------------------
def check_lambda(lam: float) -> None:
    """The header lambda of SPEC.md §8 and §13: finite, >= 0, not -0.0; BitstreamError."""
    if not (lam >= 0.0 and lam != float("inf")) or math.copysign(1.0, lam) < 0:
        raise BitstreamError(f"lambda {lam!r} is not a finite number >= 0 "
                             "(NaN, infinities and -0.0 are invalid)")


def seal(fields: bytes, payload: bytes) -> bytes:
    """fields + CRC-32 (zlib, of the fields followed by the payload, big-endian) + payload."""
    return fields + struct.pack(">I", zlib.crc32(payload, zlib.crc32(fields))) + payload


def split(data: bytes, header_size: int) -> bytes:
    """The payload of a container file whose header fields passed their checks.

    Checks that the payload is a whole number of 32-bit words and that the last
    four header bytes are the CRC-32 of the rest of the header followed by the
    payload (BitstreamError).  Order of checks (both containers): magic and
    length (:func:`check_magic`), the fields, then this.
    """
    payload = data[header_size:]
    if len(payload) % 4:
        raise BitstreamError(f"payload of {len(payload)} bytes is not a whole number of "
                             "32-bit words (truncated file?)")
    (crc,) = struct.unpack_from(">I", data, header_size - 4)
    if zlib.crc32(payload, zlib.crc32(data[:header_size - 4])) != crc:
        raise BitstreamError("CRC-32 mismatch: the file is corrupted or truncated")
    return payload


def check_magic(data, magic: bytes, header_size: int, what: str) -> bytes:
    """bytes(data) if it starts like a ``what`` file and holds a whole header; BitstreamError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if data[:len(magic)] != magic[:len(data)]:
        raise BitstreamError(f"not a {what} file (bad magic)")
    if len(data) < header_size:
        raise BitstreamError(f"truncated header: {len(data)} of {header_size} bytes")
    return data


def _check(header: Header) -> None:
    """Field ranges of SPEC.md §8; raises BitstreamError."""
    if header.version != FORMAT_VERSION:
        raise BitstreamError(f"unsupported format version {header.version} "
                             f"(this decoder reads version {FORMAT_VERSION})")
    if header.entropy_model != ENTROPY_MODEL_V1:
        raise BitstreamError(f"unknown entropy model variant {header.entropy_model}")
    if not 1 <= header.max_depth <= MAX_DEPTH_LIMIT:
        raise BitstreamError(f"max_depth {header.max_depth} outside 1..{MAX_DEPTH_LIMIT}")
    if not (1 <= header.height <= 65536 and 1 <= header.width <= 65536):
        raise BitstreamError(f"image size {header.height}x{header.width} outside 1..65536")
    if header.height * header.width > MAX_PIXELS:
        raise BitstreamError(f"image of {header.height}x{header.width} pixels exceeds the "
                             f"limit of {MAX_PIXELS} pixels")
    check_lambda(header.lam)
    if len(header.model_id) != 8:
        raise BitstreamError("model id must be 8 bytes")


def pack(header: Header, payload: bytes) -> bytes:
    """Serialise header + payload (SPEC.md §8)."""
    _check(header)
    if len(payload) % 4:
        raise ValueError("payload must be a whole number of 32-bit words")
    return seal(_LAYOUT.pack(MAGIC, header.version, header.entropy_model, header.max_depth,
                             header.flags, header.model_id, header.height - 1,
                             header.width - 1, header.lam), payload)


def parse(data: bytes) -> tuple[Header, bytes]:
    """Split a .bac file into (Header, payload); BitstreamError on anything invalid."""
    data = check_magic(data, MAGIC, HEADER_SIZE, ".bac")
    magic, version, variant, depth, flags, model_id, hm1, wm1, lam = _LAYOUT.unpack_from(data)
    if flags & ~_KNOWN_FLAGS:
        raise BitstreamError(f"unknown header flags 0x{flags:02x}")
    header = Header(height=hm1 + 1, width=wm1 + 1, lam=lam, max_depth=depth,
                    model_id=model_id, grey=bool(flags & FLAG_GREY),
                    lambda_map=bool(flags & FLAG_LAMBDA_MAP),
                    second_pass=bool(flags & FLAG_SECOND_PASS),
                    entropy_model=variant, version=version)
    _check(header)
    return header, split(data, HEADER_SIZE)
