"""Rate-distortion metrics (bac_ref/bench/evaluate.py): bpp, PSNR, MS-SSIM, BD-rate / BD-PSNR.

MS-SSIM is checked against two independent implementations, each skipped
when absent: ``pytorch_msssim`` (the common reference; ``pip install
pytorch_msssim``, it is not in the ``test`` extra because it requires torch,
whose default Linux wheel pulls CUDA) and a direct 2-D ``torch`` conv2d
version written below.  BD numbers are checked on cases with exact answers.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from bac_ref import codec
from bac_ref.bench import evaluate as E


def _noisy(a, amp, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(a.astype(np.int64) + rng.integers(-amp, amp + 1, a.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pair(kodim23):
    """A 192 x 256 RGB crop (even at every scale) and a noisy copy."""
    a = np.array(kodim23[100:292, 200:456])
    return a, _noisy(a, 20)


# ---------------------------------------------------------------------------
# bpp, PSNR
# ---------------------------------------------------------------------------
def test_bpp():
    assert E.bpp(96, 8, 12) == 8.0
    assert E.bpp(0, 1, 1) == 0.0
    with pytest.raises(ValueError):
        E.bpp(10, 0, 5)


def test_psnr_known_values(pair):
    a = np.zeros((4, 5, 3), np.uint8)
    assert E.psnr(a, a) == math.inf
    b = a + np.uint8(1)                                        # MSE 1
    assert E.psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-12)
    b = a.copy()
    b[0, 0, 0] = 255                                           # MSE 255^2 / 60
    assert E.psnr(a, b) == pytest.approx(10 * math.log10(60), abs=1e-12)
    assert E.psnr(*pair) == codec.psnr(*pair)                  # the codec's definition
    with pytest.raises(ValueError):
        E.psnr(a, a[:3])


# ---------------------------------------------------------------------------
# MS-SSIM
# ---------------------------------------------------------------------------
def test_ms_ssim_basic_properties(pair):
    a, b = pair
    assert E.ms_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert E.ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    v = E.ms_ssim(a, b)
    assert 0.5 < v < 1.0
    assert E.ms_ssim(b, a) == pytest.approx(v, abs=1e-12)             # symmetric
    assert E.ms_ssim(a, _noisy(a, 40)) < v                           # more noise, lower
    # RGB = mean of the per-channel values; grey (H, W) works alone
    per = [E.ms_ssim(a[:, :, c], b[:, :, c]) for c in range(3)]
    assert v == pytest.approx(np.mean(per), abs=1e-12)
    # float input in the same range gives the same value
    assert E.ms_ssim(a.astype(np.float64), b.astype(np.float32)) == pytest.approx(v, abs=1e-12)


def test_ms_ssim_size_limit(kodim23):
    assert E.ms_ssim_min_side() == 161
    a = np.array(kodim23[:161, :170])
    E.ms_ssim(a, _noisy(a, 5))
    with pytest.raises(ValueError, match="161"):
        E.ms_ssim(a[:160], a[:160])


def test_pool_odd_sizes_like_avg_pool2d_padding_1():
    x = np.arange(15, dtype=np.float64).reshape(1, 3, 5)
    # rows: [pad, 0], [1, 2]; columns: [pad, 0], [1, 2], [3, 4]; divide by 4 always
    want = np.array([[[0 + 0 + 0 + 0, 0 + 0 + 1 + 2, 0 + 0 + 3 + 4],
                      [0 + 5 + 0 + 10, 6 + 7 + 11 + 12, 8 + 9 + 13 + 14]]]) / 4
    np.testing.assert_array_equal(E._pool2(x), want)
    y = np.arange(16, dtype=np.float64).reshape(1, 4, 4)
    np.testing.assert_array_equal(E._pool2(y)[0], [[2.5, 4.5], [10.5, 12.5]])


def _torch_tensor(a):
    torch = pytest.importorskip("torch")
    x = np.asarray(a, np.float64)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]))   # (1, C, H, W)


@pytest.mark.parametrize("size", [(192, 256), (177, 201)])
def test_ms_ssim_matches_pytorch_msssim(kodim23, size):
    pm = pytest.importorskip("pytorch_msssim")
    torch = pytest.importorskip("torch")
    a = np.array(kodim23[50:50 + size[0], 100:100 + size[1]])
    for amp in (3, 20, 60):
        b = _noisy(a, amp, seed=amp)
        ours = E.ms_ssim(a, b)
        # the library's defaults (its window is built in float32): the required 1e-4
        ref = pm.ms_ssim(_torch_tensor(a), _torch_tensor(b), data_range=255).item()
        assert abs(ours - ref) < 1e-4, (amp, ours, ref)
        # with a float64 window the two agree to rounding: same semantics, not just close
        g = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / (2 * 1.5 ** 2))
        win = (g / g.sum()).reshape(1, 1, 1, 11).repeat(3, 1, 1, 1)
        ref64 = pm.ms_ssim(_torch_tensor(a), _torch_tensor(b), data_range=255, win=win).item()
        assert abs(ours - ref64) < 1e-9, (amp, ours, ref64)


def _ms_ssim_conv2d(a, b):
    """A direct MS-SSIM: 2-D 11x11 Gaussian conv2d (valid), avg_pool2d, per-channel mean."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, y = _torch_tensor(a), _torch_tensor(b)
    c = x.shape[1]
    g1 = torch.exp(-(torch.arange(11, dtype=torch.float64) - 5) ** 2 / 4.5)
    g2 = torch.outer(g1, g1)
    kernel = (g2 / g2.sum()).expand(c, 1, 11, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    weights = torch.tensor(E.MS_SSIM_WEIGHTS, dtype=torch.float64)
    factors = []
    for level in range(5):
        blur = lambda t: F.conv2d(t, kernel, groups=c)            # noqa: E731
        mx, my = blur(x), blur(y)
        vx, vy, cov = blur(x * x) - mx ** 2, blur(y * y) - my ** 2, blur(x * y) - mx * my
        cs = ((2 * cov + c2) / (vx + vy + c2)).mean(dim=(2, 3))                 # (1, C)
        if level < 4:
            factors.append(cs.clamp(min=0))
            pad = [s % 2 for s in x.shape[2:]]
            x, y = F.avg_pool2d(x, 2, padding=pad), F.avg_pool2d(y, 2, padding=pad)
        else:
            lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
            factors.append((lum * (2 * cov + c2) / (vx + vy + c2)).mean(dim=(2, 3)).clamp(min=0))
    per_channel = torch.prod(torch.stack(factors) ** weights.view(-1, 1, 1), dim=0)
    return per_channel.mean().item()


@pytest.mark.parametrize("size", [(161, 170), (192, 256)])
def test_ms_ssim_matches_direct_conv2d(kodim23, size):
    a = np.array(kodim23[200:200 + size[0], 300:300 + size[1]])
    b = _noisy(a, 25, seed=7)
    assert abs(E.ms_ssim(a, b) - _ms_ssim_conv2d(a, b)) < 1e-9


# ---------------------------------------------------------------------------
# BD-rate / BD-PSNR
# ---------------------------------------------------------------------------
RATES = np.array([0.1, 0.2, 0.35, 0.5, 0.8, 1.2, 2.0])
PSNRS = np.array([25.0, 27.0, 29.0, 30.5, 32.5, 34.5, 37.0])


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_identical_curves_give_zero(method):
    assert E.bd_rate(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-12)
    assert E.bd_psnr(RATES, PSNRS, RATES, PSNRS, method) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize("factor, percent", [(0.5, -50.0), (2.0, 100.0), (0.8, -20.0)])
def test_bd_rate_constant_factor(method, factor, percent):
    assert E.bd_rate(RATES, PSNRS, factor * RATES, PSNRS, method) == pytest.approx(percent, abs=1e-9)


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_bd_psnr_constant_shift(method):
    assert E.bd_psnr(RATES, PSNRS, RATES, PSNRS + 1.25, method) == pytest.approx(1.25, abs=1e-9)
    assert E.bd_psnr(RATES, PSNRS, RATES, PSNRS - 0.5, method) == pytest.approx(-0.5, abs=1e-9)


def test_bd_rate_partial_overlap_linear_case():
    # anchor: ln R = D / 10 on D in 26..36; test: ln R = D / 10 + 0.05 (D - 30) on D in 28..40.
    # Both fits are exact for lines, overlap [28, 36]: mean extra ln R = 0.05 * (32 - 30) = 0.1.
    da, dt = np.arange(26.0, 36.5, 1.0), np.arange(28.0, 40.5, 1.5)
    ra, rt = np.exp(da / 10), np.exp(dt / 10 + 0.05 * (dt - 30))
    for method in ("pchip", "cubic"):
        assert E.bd_rate(ra, da, rt, dt, method) == pytest.approx(100 * (math.exp(0.1) - 1), abs=1e-9)


def test_bd_undefined_cases_and_pareto_front():
    assert math.isnan(E.bd_rate(RATES, PSNRS, RATES * 10, PSNRS + 20))        # no overlap
    assert math.isnan(E.bd_rate(RATES[:3], PSNRS[:3], RATES[:3], PSNRS[:3], "cubic"))  # < 4 points
    assert math.isnan(E.bd_rate(RATES[:1], PSNRS[:1], RATES, PSNRS))
    with pytest.raises(ValueError):
        E.bd_rate(RATES, PSNRS, RATES, PSNRS, "spline")
    # dominated points (more bits, no better) are dropped before fitting
    r = np.array([0.3, 0.1, 0.2, 0.25, 0.4, 0.4])
    q = np.array([30.0, 25.0, 28.0, 27.0, 29.0, 31.0])
    fr, fq = E.pareto_front(r, q)
    np.testing.assert_array_equal(fr, [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_array_equal(fq, [25.0, 28.0, 30.0, 31.0])
    assert E.bd_rate(r, q, fr, fq) == pytest.approx(0.0, abs=1e-12)
