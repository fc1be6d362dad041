r"""Rate-distortion metrics: bpp, PSNR, MS-SSIM and Bjontegaard deltas (NumPy/SciPy only).

Used by :mod:`bac_ref.bench.rd` (``bac-ref bench``); importable without Pillow or
matplotlib.  Not part of the .bac format: nothing here reaches the coder.

    file bytes --bpp()--------------------------> rate (bits per pixel)
    (ref, rec) uint8 RGB --psnr() / ms_ssim()---> distortion
    RD curves (rate, psnr) --bd_rate() / bd_psnr()--> % rate / dB at equal quality / rate

Conventions (the paper's, vbq-paper.md "Anchor numbers"):

* bpp = 8 * bytes / (H * W), from the size of the whole file.
* PSNR = 10 log10(255^2 / MSE), MSE over all pixels and all three RGB
  channels of the 8-bit images: :mod:`bac_ref.metrics`, the codec's formula.
* MS-SSIM (Wang, Simoncelli & Bovik 2003) on RGB: computed per channel and
  averaged over the channels ("MS-SSIM (RGB)"), with the semantics of the
  common reference implementation ``pytorch_msssim.ms_ssim`` (1.0), which
  tests/test_evaluate.py checks to 1e-4 (section "MS-SSIM" below).
* Bjontegaard deltas over the overlapping quality (or log-rate) interval of
  two curves, with PCHIP interpolation (the default, as in current practice)
  or the classic cubic-polynomial fit of VCEG-M33 (section "BD" below).
"""
from __future__ import annotations

import math

import numpy as np

from ..metrics import float_pair, bpp, mse, psnr  # noqa: F401  (bpp, mse, psnr: part of this API)

__all__ = [
    "MS_SSIM_WEIGHTS", "bpp", "psnr", "mse", "ssim", "ms_ssim", "ms_ssim_min_side",
    "pareto_front", "bd_rate", "bd_psnr",
]


# ---------------------------------------------------------------------------
# Rate and PSNR
# ---------------------------------------------------------------------------
# bpp, mse and psnr are the codec's own (one formula for both): bac_ref.metrics.


# ---------------------------------------------------------------------------
# MS-SSIM
# ---------------------------------------------------------------------------
# Wang, Simoncelli & Bovik, "Multi-scale structural similarity for image
# quality assessment", Asilomar 2003.  Per channel c and scale j = 1..5:
#
#   l = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1)          luminance (last scale only)
#   cs = (2 s_xy + C2) / (s_x^2 + s_y^2 + C2)                contrast * structure
#   MS-SSIM_c = relu(mean(l * cs) at scale 5)^w5 * prod_{j<5} relu(mean(cs) at scale j)^wj
#
# with local statistics from an 11x11 Gaussian window (sigma 1.5, separable,
# normalised, "valid": no padding), C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = 255,
# and w = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).  Between scales: 2x2
# average pooling, stride 2.  Details that fix the value exactly, as in
# pytorch_msssim 1.0 (and, apart from odd sizes, tf.image.ssim_multiscale):
#
#   * s_x^2 = G*(x^2) - (G*x)^2 etc. (biased local moments, no N/(N-1));
#   * the cs and last-scale SSIM means are clipped at 0 (relu) before the powers;
#   * a dimension of odd size s is pooled as avg_pool2d(padding=1,
#     count_include_pad=True) does: a zero row is put in front and (s + 1) / 2
#     pairs are averaged (divide by 4 always).  Kodak (768 x 512) never hits this.
#   * the image must be at least 161 pixels on its shorter side (the window must
#     fit at the 5th scale); smaller images raise ValueError.
#   * RGB result = mean over channels of the per-channel MS-SSIM.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_window(size: int, sigma: float) -> np.ndarray:
    c = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(c ** 2) / (2.0 * sigma ** 2))
    return g / g.sum()                                                     # (size,)


def _filter_valid(x: np.ndarray, win: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation over the last two axes: (..., H, W) -> (..., H-s+1, W-s+1)."""
    from scipy.ndimage import correlate1d
    r = win.size // 2
    y = correlate1d(x, win, axis=-2, mode="constant")[..., r:x.shape[-2] - r, :]
    return correlate1d(y, win, axis=-1, mode="constant")[..., r:x.shape[-1] - r]


def _ssim_cs(x, y, win, c1, c2):
    """Per-channel mean SSIM and mean cs of (C, H, W) float64 images: two (C,) arrays."""
    stats = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), win)     # (5, C, h, w)
    mu1, mu2, xx, yy, xy = stats
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1, s2, s12 = xx - mu1_sq, yy - mu2_sq, xy - mu12
    cs_map = (2.0 * s12 + c2) / (s1 + s2 + c2)                            # (C, h, w)
    ssim_map = ((2.0 * mu12 + c1) / (mu1_sq + mu2_sq + c1)) * cs_map
    return ssim_map.mean(axis=(1, 2)), cs_map.mean(axis=(1, 2))


def _pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling of (C, H, W), odd sizes as pytorch's avg_pool2d(padding=1)."""
    if x.shape[1] % 2:
        x = np.concatenate([np.zeros_like(x[:, :1]), x, np.zeros_like(x[:, :1])], axis=1)
    if x.shape[2] % 2:
        x = np.concatenate([np.zeros_like(x[:, :, :1]), x, np.zeros_like(x[:, :, :1])], axis=2)
    h, w = x.shape[1] // 2, x.shape[2] // 2
    x = x[:, : 2 * h, : 2 * w]
    return 0.25 * (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2])


def _as_chw(a, b):
    x, y = float_pair(a, b)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    return (np.ascontiguousarray(x.transpose(2, 0, 1)),                   # (C, H, W)
            np.ascontiguousarray(y.transpose(2, 0, 1)))


def ms_ssim_min_side(win_size: int = 11, scales: int = 5) -> int:
    """The smallest image side MS-SSIM accepts: (win_size - 1) * 2^(scales - 1) + 1 (161)."""
    return (win_size - 1) * 2 ** (scales - 1) + 1


def ssim(a, b, data_range: float = 255.0, win_size: int = 11, win_sigma: float = 1.5,
         k1: float = 0.01, k2: float = 0.03) -> float:
    """Single-scale SSIM (same window and constants), mean over channels."""
    x, y = _as_chw(a, b)
    if min(x.shape[1:]) < win_size:
        raise ValueError(f"SSIM needs images of at least {win_size} pixels per side")
    s, _ = _ssim_cs(x, y, _gaussian_window(win_size, win_sigma),
                    (k1 * data_range) ** 2, (k2 * data_range) ** 2)
    return float(s.mean())


def ms_ssim(a, b, data_range: float = 255.0, weights=MS_SSIM_WEIGHTS, win_size: int = 11,
            win_sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03) -> float:
    """MS-SSIM of two (H, W) or (H, W, C) images (uint8 or float), mean over channels.

    ``a`` is the reference, ``b`` the reconstruction (the measure is symmetric).
    Raises ValueError when the shorter side is below :func:`ms_ssim_min_side`.
    """
    x, y = _as_chw(a, b)
    weights = np.asarray(weights, dtype=np.float64)                       # (S,)
    need = ms_ssim_min_side(win_size, weights.size)
    if min(x.shape[1:]) < need:
        raise ValueError(f"MS-SSIM with {weights.size} scales needs images of at least "
                         f"{need} pixels on the shorter side (got {x.shape[1]} x {x.shape[2]})")
    win = _gaussian_window(win_size, win_sigma)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    values = []                                                           # S x (C,)
    for j in range(weights.size):
        s, cs = _ssim_cs(x, y, win, c1, c2)
        if j < weights.size - 1:
            values.append(np.maximum(cs, 0.0))
            x, y = _pool2(x), _pool2(y)
        else:
            values.append(np.maximum(s, 0.0))
    per_channel = np.prod(np.stack(values) ** weights[:, None], axis=0)    # (C,)
    return float(per_channel.mean())


# ---------------------------------------------------------------------------
# BD: Bjontegaard deltas
# ---------------------------------------------------------------------------
# G. Bjontegaard, "Calculation of average PSNR differences between RD-curves",
# VCEG-M33 (2001).  BD-rate: fit log(rate) as a function of PSNR for both
# curves, integrate over the PSNR interval they share, [lo, hi] =
# [max(min D_a, min D_t), min(max D_a, max D_t)]:
#
#   avg = (1 / (hi - lo)) * integral_lo^hi (log R_t(D) - log R_a(D)) dD
#   BD-rate = (exp(avg) - 1) * 100 %          (negative: the test codec needs fewer bits)
#
# BD-PSNR: the same with the roles swapped (PSNR as a function of log rate,
# over the shared log-rate interval), in dB (positive: the test codec is better).
#
#   method="pchip": piecewise-cubic Hermite interpolation through the points
#                   (monotone, no overshoot; the common modern choice);
#   method="cubic": the classic least-squares cubic polynomial (needs >= 4 points).
#
# Before fitting, each curve is reduced to its Pareto front (sorted by rate, a
# point is kept only if its PSNR exceeds that of every cheaper point): both
# coordinates then increase strictly, which interpolation of one as a function of
# the other needs.  No overlap (or fewer than 2 front points) gives NaN.
def pareto_front(rate, quality):
    """(rate, quality) arrays of the points not dominated by a cheaper, better point."""
    r = np.asarray(rate, dtype=np.float64).ravel()
    q = np.asarray(quality, dtype=np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError("rate and quality need the same length")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    r, q = r[ok], q[ok]
    order = np.lexsort((-q, r))                       # by rate, the best quality first on ties
    keep_r, keep_q, best = [], [], -np.inf
    for i in order:
        if q[i] > best and (not keep_r or r[i] > keep_r[-1]):
            keep_r.append(r[i])
            keep_q.append(q[i])
            best = q[i]
    return np.array(keep_r), np.array(keep_q)


def _fit_integral(x, y, lo, hi, method):
    """Integral over [lo, hi] of the curve y(x) fitted through the points (x increasing)."""
    if method == "pchip":
        from scipy.interpolate import PchipInterpolator
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    if method == "cubic":
        if x.size < 4:
            return float("nan")
        p = np.polyint(np.polyfit(x, y, 3))
        return float(np.polyval(p, hi) - np.polyval(p, lo))
    raise ValueError(f"unknown BD method {method!r} (use 'pchip' or 'cubic')")


def _bd_average(xa, ya, xt, yt, method):
    if xa.size < 2 or xt.size < 2:
        return float("nan")
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if not hi > lo:
        return float("nan")
    return (_fit_integral(xt, yt, lo, hi, method) - _fit_integral(xa, ya, lo, hi, method)) / (hi - lo)


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "pchip") -> float:
    """Bjontegaard delta rate of the test curve against the anchor, in percent (NaN if undefined)."""
    ra, qa = pareto_front(rate_anchor, psnr_anchor)
    rt, qt = pareto_front(rate_test, psnr_test)
    avg = _bd_average(qa, np.log(ra), qt, np.log(rt), method)
    return float("nan") if math.isnan(avg) else (math.exp(avg) - 1.0) * 100.0


def bd_psnr(rate_anchor, psnr_anchor, rate_test, psnr_test, method: str = "pchip") -> float:
    """Bjontegaard delta PSNR of the test curve against the anchor, in dB (NaN if undefined)."""
    ra, qa = pareto_front(rate_anchor, psnr_anchor)
    rt, qt = pareto_front(rate_test, psnr_test)
    return _bd_average(np.log(ra), qa, np.log(rt), qt, method)
