r"""Analysis transform g_a: image -> posterior (mu, sigma) (SPEC.md §7; weights: §6.1).

Balle et al. (2017)'s encoder, trained as the inference network of a Gaussian VAE
(VBQ paper, Sec. 5): the posterior of the latents is q(z | x) = N(mu, diag(sigma^2)).

    x (3, H, W) in [0, 1]
      |  pad bottom/right to a multiple of 16 by edge replication   (SPEC.md §7.2)
      v
    (3, 16h, 16w)    --conv 9x9, stride 4, pad 4-->  (N, 4h, 4w)  --GDN-->
    (N, 4h, 4w)      --conv 5x5, stride 2, pad 2-->  (N, 2h, 2w)  --GDN-->
    (N, 2h, 2w)      --conv 5x5, stride 2, pad 2-->  (2M, h, w)
      |  split channels: the first M are mu, the last M are log sigma^2
      v
    mu (M, h, w),  sigma = exp(logvar / 2) (M, h, w),   h = ceil(H/16), w = ceil(W/16)

Layers (conv, GDN) are :mod:`bac_ref.layers` (SPEC.md §7.1); all arithmetic is float32.
Weight names are ``g_a.conv0.weight`` ... ``g_a.conv2.bias`` (:data:`bac_ref.weights.PARAM_LAYOUT`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .layers import conv2d, gdn

__all__ = ["DOWNSAMPLING", "padded_size", "pad_image", "analysis"]

#: g_a maps 16 x 16 pixels to one latent position (strides 4 * 2 * 2).
DOWNSAMPLING = 16


def padded_size(height: int, width: int) -> tuple[int, int]:
    """(H, W) rounded up to multiples of 16: the size g_a actually sees (SPEC.md §7.2)."""
    d = DOWNSAMPLING
    return -(-height // d) * d, -(-width // d) * d


def pad_image(x: np.ndarray) -> np.ndarray:
    """Pad (C, H, W) at the bottom and right to multiples of 16 by repeating the last row/column.

    Edge replication (``numpy.pad(mode="edge")``) rather than zeros: the padded border then
    looks like the image, so it costs few bits and does not disturb the pixels near the edge.
    """
    c, h, w = x.shape
    hp, wp = padded_size(h, w)
    if (hp, wp) == (h, w):
        return x
    return np.pad(x, ((0, 0), (0, hp - h), (0, wp - w)), mode="edge")   # (C, Hp, Wp)


def analysis(params: Mapping[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """g_a on one image: x (3, H, W) float32, any H, W >= 1 -> (mu, sigma), each (M, h, w) float32.

    ``params`` maps the names of SPEC.md §6.1 to float32 arrays (as checked by
    :func:`bac_ref.model.load_model`).  The image is padded here (:func:`pad_image`).
    """
    if x.ndim != 3 or x.shape[0] != 3 or x.dtype != np.float32:
        raise ValueError(f"g_a expects a float32 (3, H, W) array, got {x.dtype} {x.shape}")
    p = params
    m = p["g_a.conv2.weight"].shape[0] // 2
    y = pad_image(x)                                                    # (3, 16h, 16w)
    y = conv2d(y, p["g_a.conv0.weight"], p["g_a.conv0.bias"], stride=4, padding=4)  # (N, 4h, 4w)
    y = gdn(y, p["g_a.gdn0.beta"], p["g_a.gdn0.gamma"])                 # (N, 4h, 4w)
    y = conv2d(y, p["g_a.conv1.weight"], p["g_a.conv1.bias"], stride=2, padding=2)  # (N, 2h, 2w)
    y = gdn(y, p["g_a.gdn1.beta"], p["g_a.gdn1.gamma"])                 # (N, 2h, 2w)
    y = conv2d(y, p["g_a.conv2.weight"], p["g_a.conv2.bias"], stride=2, padding=2)  # (2M, h, w)
    mu = y[:m].copy()                                                   # (M, h, w)
    sigma = np.exp(y[m:] * np.float32(0.5))                             # (M, h, w)
    return mu, sigma
