r"""Synthesis transform g_s: latents z -> image (SPEC.md §7; weights: §6.1).

Balle et al. (2017)'s decoder, the generative network of the Gaussian VAE (VBQ paper,
Sec. 5); it mirrors :mod:`bac_ref.g_a` with transposed convolutions and inverse GDN.

    z (M, h, w)
      --convT 5x5, stride 2, pad 2, output_padding 1-->  (N, 2h, 2w)    --IGDN-->
      --convT 5x5, stride 2, pad 2, output_padding 1-->  (N, 4h, 4w)    --IGDN-->
      --convT 9x9, stride 4, pad 4, output_padding 3-->  (3, 16h, 16w)
      |  crop to the top-left H x W                                    (SPEC.md §7.2)
      v
    x_hat (3, H, W), float32, *not* clipped: turning it into 8-bit pixels is SPEC.md §10.

Each output size follows (h-1)*s - 2p + k + output_padding, e.g. (h-1)*2 - 4 + 5 + 1 = 2h,
so g_s inverts g_a's 16x downsampling exactly.  Layers: :mod:`bac_ref.layers` (SPEC.md §7.1).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .g_a import DOWNSAMPLING
from .layers import conv_transpose2d, igdn

__all__ = ["synthesis"]


def synthesis(params: Mapping[str, np.ndarray], z: np.ndarray,
              size: tuple[int, int] | None = None) -> np.ndarray:
    """g_s on one latent tensor: z (M, h, w) float32 -> x_hat (3, H, W) float32.

    ``size = (H, W)`` crops the (3, 16h, 16w) output to the original image size; it must
    satisfy ceil(H/16) == h and ceil(W/16) == w.  ``None`` keeps (16h, 16w).
    """
    p = params
    m = p["g_s.deconv0.weight"].shape[0]
    if z.ndim != 3 or z.shape[0] != m or z.dtype != np.float32:
        raise ValueError(f"g_s expects a float32 ({m}, h, w) array, got {z.dtype} {z.shape}")
    _, h, w = z.shape
    if size is None:
        size = (DOWNSAMPLING * h, DOWNSAMPLING * w)
    height, width = size
    if -(-height // DOWNSAMPLING) != h or -(-width // DOWNSAMPLING) != w:
        raise ValueError(f"size {height}x{width} does not match latents {h}x{w}: "
                         f"need ceil(H/16) == {h} and ceil(W/16) == {w}")
    y = conv_transpose2d(z, p["g_s.deconv0.weight"], p["g_s.deconv0.bias"],
                         stride=2, padding=2, output_padding=1)        # (N, 2h, 2w)
    y = igdn(y, p["g_s.igdn0.beta"], p["g_s.igdn0.gamma"])              # (N, 2h, 2w)
    y = conv_transpose2d(y, p["g_s.deconv1.weight"], p["g_s.deconv1.bias"],
                         stride=2, padding=2, output_padding=1)        # (N, 4h, 4w)
    y = igdn(y, p["g_s.igdn1.beta"], p["g_s.igdn1.gamma"])              # (N, 4h, 4w)
    y = conv_transpose2d(y, p["g_s.deconv2.weight"], p["g_s.deconv2.bias"],
                         stride=4, padding=4, output_padding=3)        # (3, 16h, 16w)
    if (height, width) != y.shape[1:]:
        y = y[:, :height, :width].copy()                                # (3, H, W)
    return y
