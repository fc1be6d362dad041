r"""The .bacw container: a VBQ-compressed embedding matrix (SPEC.md §13).

The VBQ paper's second experiment (Yang, Bamler & Mandt 2020, §5.2) compresses
the posterior means mu (V words x D dimensions) of Bayesian word embeddings.
This module makes that a real file.  Encoder::

    s      = the prior scale: RMS of all entries of mu (the paper's choice) unless given
    prior  = N(0, s^2) for every entry: the quantile table Q[i] = 0 + s * Q_std[i] (SPEC.md §4.4)
    (depth, index) = VBQ(mu, sigma, lambda, prior, N)            (SPEC.md §5)
    payload = §9 entropy model on the (D, V, 1) arrays depth.T, index.T:
              one "channel" per dimension, its V entries in row (word) order

and the decoder reconstructs zhat[v, d] = F^-1((2 index + 1) / 2^(depth + 1))
from the table alone (SPEC.md §4.2), bit-identical on every IEEE-754 platform.
Rows are best ordered by word frequency (as :mod:`bac_ref.embeddings.corpus` numbers
them): a word's posterior uncertainty, and hence its VBQ depths, follow its
frequency, so the depth of the previous row predicts the next (§9.2 contexts).

Layout (all integers big-endian; 36-byte header)::

    offset size field
    0      4    magic          0x89 'B' 'A' 'W'
    4      1    version        1
    5      1    entropy model  1 (SPEC.md §9 on the (D, V, 1) layout)
    6      1    max_depth      N, 1..16
    7      1    flags          0 (no flag is defined)
    8      4    rows V         1..2^24
    12     4    dims D         1..65536
    16     8    scale s        binary64, finite, > 0
    24     8    lambda         binary64, finite, >= 0 (informational)
    32     4    crc32          zlib CRC-32 of bytes 0..31 followed by the payload
    36     4k   payload        range-coder words (SPEC.md §2.6)

The vocabulary (which word each row is) is not part of the file: the paper
counts the matrix only, and so does bits per dimension = 8 * file size / (V D).
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from .. import bitstream, entropy_model, vbq
from ..errors import BitstreamError
from ..priors import gaussian

__all__ = ["MAGIC", "HEADER_SIZE", "MAX_ENTRIES", "EmbeddingHeader", "compress_embeddings",
           "decompress_embeddings", "quantize_embeddings", "rms_scale"]

MAGIC = b"\x89BAW"
VERSION = 1
ENTROPY_MODEL_V1 = 1
HEADER_SIZE = 36
MAX_ENTRIES = 1 << 27          # a decoder may refuse larger matrices (memory bombs)
_LAYOUT = struct.Struct(">4sBBBBIIdd")
assert _LAYOUT.size == 32


@dataclass(frozen=True)
class EmbeddingHeader:
    rows: int
    dims: int
    scale: float
    lam: float
    max_depth: int


def rms_scale(mu) -> float:
    """sqrt(mean(mu^2)): the prior scale the paper uses for word embeddings (SPEC.md §13).

    Exactly specified, so that every encoder writes the same bytes: each square
    mu^2 rounded to binary64, their sum correctly rounded (``math.fsum``: no
    dependence on summation order, unlike ``np.mean``), then the division by
    V * D and the square root, each rounded as IEEE-754 does.
    """
    mu = np.asarray(mu, dtype=np.float64)
    s = math.sqrt(math.fsum((mu * mu).ravel().tolist()) / mu.size) if mu.size else 0.0
    if not (math.isfinite(s) and s > 0):
        raise ValueError("mu must be finite and not all zero")
    return s


def _check_header(h: EmbeddingHeader) -> None:
    """Field ranges of SPEC.md §13, all before anything of size V * D is allocated."""
    if not 1 <= h.max_depth <= 16:
        raise BitstreamError(f"max_depth {h.max_depth} outside 1..16")
    if not (1 <= h.rows <= 1 << 24 and 1 <= h.dims <= 1 << 16):
        raise BitstreamError(f"matrix {h.rows}x{h.dims} outside 1..2^24 rows, 1..65536 dims")
    if h.rows * h.dims > MAX_ENTRIES:
        raise BitstreamError(f"matrix of {h.rows}x{h.dims} entries exceeds the limit of {MAX_ENTRIES}")
    if not (math.isfinite(h.scale) and h.scale > 0):
        raise BitstreamError(f"prior scale {h.scale!r} is not finite and > 0")
    try:                                    # the table Q = s * Q_std must pass SPEC.md §4.2
        with np.errstate(over="ignore", under="ignore"):   # (4097 values, not V * D)
            gaussian(0.0, h.scale)
    except ValueError as exc:
        raise BitstreamError(f"prior scale {h.scale!r} gives an invalid quantile table "
                             f"(SPEC.md §4.2): {exc}") from None
    bitstream.check_lambda(h.lam)


def _check_inputs(mu, sigma):
    mu = np.asarray(mu, dtype=np.float64)
    if mu.ndim != 2 or 0 in mu.shape:
        raise ValueError(f"mu must be a non-empty (V, D) matrix, got shape {mu.shape}")
    sigma = np.asarray(sigma, dtype=np.float64)
    if sigma.shape != mu.shape:
        raise ValueError(f"sigma has shape {sigma.shape}, mu {mu.shape}")
    if not np.all(np.isfinite(mu)):
        raise ValueError("mu contains NaN or infinite values")
    return mu, sigma


def quantize_embeddings(mu, sigma, lam, scale: float | None = None, max_depth: int = 10):
    """VBQ of a (V, D) matrix under N(0, s^2): (Quantized, s).  lam: scalar or (V, D) map."""
    mu, sigma = _check_inputs(mu, sigma)
    s = rms_scale(mu) if scale is None else float(scale)
    if not (math.isfinite(s) and s > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    q = vbq.quantize(mu, sigma, lam, gaussian(0.0, s), max_depth=max_depth)
    return q, s


def compress_embeddings(mu, sigma, lam, scale: float | None = None,
                        max_depth: int = 10, return_zhat: bool = False):
    """The .bacw bytes of VBQ(mu, sigma, lam) (and, optionally, the decoder's zhat).

    ``lam``: a number or a (V, D) map (one lambda per entry); the header records
    the map's maximum (SPEC.md §13, as in a .bac header, §8), informational only.
    """
    lam_arr = np.asarray(lam, dtype=np.float64)
    if lam_arr.size == 0 or not np.all(np.isfinite(lam_arr)) or lam_arr.min() < 0:
        raise ValueError(f"lambda must be finite numbers >= 0, got {lam!r}")
    q, s = quantize_embeddings(mu, sigma, lam_arr, scale, max_depth)
    v, d = q.depth.shape
    lam_header = float(lam_arr.max()) + 0.0          # + 0.0 turns -0.0 into 0.0
    header = EmbeddingHeader(v, d, s, lam_header, max_depth)
    try:
        _check_header(header)
    except BitstreamError as exc:
        raise ValueError(str(exc)) from None
    payload = entropy_model.encode_symbols(q.depth.T[:, :, None], q.index.T[:, :, None], max_depth)
    data = bitstream.seal(_LAYOUT.pack(MAGIC, VERSION, ENTROPY_MODEL_V1, max_depth, 0, v, d, s,
                                       lam_header), payload)
    return (data, q.zhat) if return_zhat else data


def parse_header(data: bytes) -> tuple[EmbeddingHeader, bytes]:
    """Split a .bacw file into (header, payload); BitstreamError on anything invalid."""
    data = bitstream.check_magic(data, MAGIC, HEADER_SIZE, ".bacw")
    _, version, variant, depth, flags, v, d, s, lam = _LAYOUT.unpack_from(data)
    if version != VERSION:
        raise BitstreamError(f"unsupported .bacw version {version}")
    if variant != ENTROPY_MODEL_V1:
        raise BitstreamError(f"unknown entropy model variant {variant}")
    if flags:
        raise BitstreamError(f"unknown header flags 0x{flags:02x}")
    header = EmbeddingHeader(v, d, s, lam, depth)
    _check_header(header)
    return header, bitstream.split(data, HEADER_SIZE)


def decompress_embeddings(data: bytes, return_symbols: bool = False):
    """zhat (V, D) float64 from .bacw bytes (and the (depth, index) arrays if asked)."""
    h, payload = parse_header(data)
    depth, index = entropy_model.decode_symbols(payload, (h.dims, h.rows, 1), h.max_depth)
    depth, index = depth[:, :, 0].T.copy(), index[:, :, 0].T.copy()
    zhat = gaussian(0.0, h.scale).ppf_grid(depth, index)
    return (zhat, depth, index) if return_symbols else zhat
