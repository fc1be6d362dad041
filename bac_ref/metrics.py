"""The two numbers the codec reports about a result: size (bpp) and quality (PSNR).

    bpp  = 8 * len(file) / (H * W)                       whole file, header included
    PSNR = 10 log10(255^2 / MSE)                         MSE over every sample of the 8-bit images

One formula for the codec (:mod:`bac_ref.codec`, the CLI) and the benchmarks
(:mod:`bac_ref.bench.evaluate` re-exports these).  NumPy only; nothing here reaches
the coder.  :func:`psnr_from_sse` serves images processed in strips: integer
sums of squared differences are exact, so the result is the same number as
:func:`psnr` on the whole image.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["bpp", "mse", "psnr", "psnr_from_sse", "sse_uint8", "float_pair"]


def bpp(nbytes: int, height: int, width: int) -> float:
    """Bits per pixel of a file of ``nbytes`` bytes for an H x W image."""
    if height <= 0 or width <= 0 or nbytes < 0:
        raise ValueError("need nbytes >= 0 and a non-empty image")
    return 8.0 * nbytes / (height * width)


def float_pair(a, b):
    """Two images of one shape, (H, W) or (H, W, C), as float64 arrays (ValueError otherwise)."""
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3) or a.size == 0:
        raise ValueError(f"images must be (H, W) or (H, W, C), got shape {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def mse(a, b) -> float:
    """Mean squared error over every pixel and channel (float64)."""
    x, y = float_pair(a, b)
    return float(np.mean((x - y) ** 2))


def psnr(a, b, data_range: float = 255.0) -> float:
    """10 log10(data_range^2 / MSE) in dB; +inf for identical images."""
    m = mse(a, b)
    return float("inf") if m == 0 else 10.0 * math.log10(data_range ** 2 / m)


def sse_uint8(a: np.ndarray, b: np.ndarray) -> int:
    """Sum of squared differences of two uint8 arrays of one shape, as an exact integer."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    d = (a.astype(np.int32) - b.astype(np.int32)).ravel()
    return int(np.dot(d.astype(np.int64), d.astype(np.int64)))


def psnr_from_sse(sse: int, count: int, data_range: float = 255.0) -> float:
    """PSNR from an exact sum of squared differences over ``count`` samples (== :func:`psnr`)."""
    if count <= 0:
        raise ValueError("need at least one sample")
    m = sse / count
    return float("inf") if m == 0 else 10.0 * math.log10(data_range ** 2 / m)
