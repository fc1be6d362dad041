r"""g_a and g_s in horizontal strips, so that a 12-megapixel photo fits in a few hundred MB.

A strip is a band of latent rows [a, b) (pixel rows [16a, 16b)).  Each
transform runs on the strip widened by a halo of HALO latent rows on each
side (clipped at the image edges) and keeps only the rows of [a, b):

        latent rows   a0 = a - HALO   a ............ b   b0 = b + HALO
                      |   halo    |    kept rows      |   halo    |
        pixel rows    16 a0       16 a               16 b        16 b0

Why a halo of 2 latent rows is enough (SPEC.md §7.1 sizes):

* g_a: latent v reads pixels 16v - 28 .. 16v + 28 (9x9/4, 5x5/2, 5x5/2).  At
  a strip's cut the zero padding of each layer stands in for real rows; that
  reaches the latents v <= 1 rows from the top cut and the last row before the
  bottom cut, so a halo of 2 keeps every kept latent exact.
* g_s: the pixels of latent row v read latents v - 1 .. v + 1 (5x5/2 twice,
  9x9/4, transposed); a halo of 2 covers that with a row to spare.

At a real image edge the strip edge *is* the image edge, so the padding rules
of SPEC.md §7.2 apply exactly as on the whole image.  Kept values therefore
equal the whole-image path up to float32 summation order (BLAS blocking may
differ with the strip size): within the §7.3 tolerance, and in tests/
test_tiling.py bit-identical or within 1e-5.

The strip height is chosen from a pixel budget (:data:`STRIP_PIXELS`): a
768 x 512 photo is one strip (no halo, no overhead); a 4000 x 3000 one is
6 strips of 32 latent rows (12.5 % extra rows computed).
"""
from __future__ import annotations

from typing import Callable, Iterator, Mapping

import numpy as np

from . import g_a, g_s

__all__ = ["HALO", "STRIP_PIXELS", "strip_rows_for", "strips", "analysis", "synthesis"]

#: Latent rows of context above and below a strip (see the module docstring).
HALO = 2
#: Pixels per strip (kept rows); below this an image is transformed whole.
STRIP_PIXELS = 1 << 21

D = g_a.DOWNSAMPLING


def strip_rows_for(h: int, w: int, strip_rows: int | None = None) -> int:
    """Latent rows per strip for an (h, w) latent grid (``strip_rows`` overrides the budget)."""
    if strip_rows is None:
        strip_rows = max(1, STRIP_PIXELS // (D * D * max(1, w)))
    if strip_rows < 1:
        raise ValueError(f"strip_rows must be >= 1, got {strip_rows}")
    return min(int(strip_rows), h)


def strips(h: int, w: int, strip_rows: int | None = None) -> list[tuple[int, int, int, int]]:
    """The strips of an (h, w) latent grid: (a0, a, b, b0), halo rows included in [a0, b0)."""
    n = strip_rows_for(h, w, strip_rows)
    out = []
    for a in range(0, h, n):
        b = min(a + n, h)
        out.append((max(0, a - HALO), a, b, min(h, b + HALO)))
    return out


def analysis(params: Mapping[str, np.ndarray], read_rows: Callable[[int, int], np.ndarray],
             height: int, width: int, strip_rows: int | None = None,
             progress: Callable[[int, int], None] | None = None):
    """g_a strip by strip: (mu, sigma), each (M, h, w) float32.

    ``read_rows(r0, r1)`` returns pixel rows r0..r1-1 (r1 <= height) of the image as a
    (3, r1 - r0, width) float32 array; g_a.analysis pads them (SPEC.md §7.2).
    ``progress(i, n)`` is called after strip i of n.
    """
    hp, wp = g_a.padded_size(height, width)
    h, w = hp // D, wp // D
    m = params["g_a.conv2.weight"].shape[0] // 2
    mu = np.empty((m, h, w), dtype=np.float32)                          # (M, h, w)
    sigma = np.empty((m, h, w), dtype=np.float32)                       # (M, h, w)
    plan = strips(h, w, strip_rows)
    for i, (a0, a, b, b0) in enumerate(plan):
        x = read_rows(D * a0, min(D * b0, height))                      # (3, rows, W)
        mu_s, sigma_s = g_a.analysis(params, x)                         # (M, b0 - a0, w)
        mu[:, a:b] = mu_s[:, a - a0:b - a0]
        sigma[:, a:b] = sigma_s[:, a - a0:b - a0]
        if progress is not None:
            progress(i + 1, len(plan))
    return mu, sigma


def synthesis(params: Mapping[str, np.ndarray], z: np.ndarray, size: tuple[int, int],
              strip_rows: int | None = None) -> Iterator[tuple[int, int, np.ndarray]]:
    """g_s strip by strip: yields (r0, r1, x_hat rows r0..r1-1 as (3, r1 - r0, W) float32).

    z: (M, h, w) float32 with ceil(H/16) == h, ceil(W/16) == w for size = (H, W).
    The strips cover rows 0..H-1 in order; x_hat is unclipped (SPEC.md §10 does that).
    """
    height, width = size
    _, h, w = z.shape
    if -(-height // D) != h or -(-width // D) != w:
        raise ValueError(f"size {height}x{width} does not match latents {h}x{w}: "
                         f"need ceil(H/16) == {h} and ceil(W/16) == {w}")
    for a0, a, b, b0 in strips(h, w, strip_rows):
        y = g_s.synthesis(params, np.ascontiguousarray(z[:, a0:b0]))   # (3, 16(b0-a0), 16w)
        r0, r1 = D * a, min(D * b, height)
        yield r0, r1, y[:, r0 - D * a0:r1 - D * a0, :width]
