r"""Generation of the conformance vectors (``data/vectors``, SPEC.md §11).

Run only on purpose, from the command line::

    BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate

(:func:`bac_ref.conformance.runner.main` refuses without the variable, so that the
pinned bytes are never rewritten by accident.)  :func:`generate` writes one
folder per case with its files and ``manifest.json``, then ``index.json``.
Deterministic: fixed seeds and fixed zip timestamps give the same bytes for the
same model (image cases depend on float32 g_a/g_s; array, coder and reject
cases do not).

The cases, kind by kind (the layout is described in :mod:`bac_ref.conformance.runner`):

* :func:`_image_specs`: crops of kodim23 and synthetic images, covering sizes,
  grey/RGBA/16-bit input and every header flag;
* :func:`_array_specs`: (mu, sigma, lambda) arrays, including extreme values,
  mu on grid points and symbols *steered* into long carry chains;
* :func:`_coder_specs`: 24-bit tables and symbols steered through carries and
  the sealing branches of the range coder (SPEC.md §2.4, §2.5);
* :func:`_reject_specs`: invalid files derived from ``array_model_prior``.

Steering (:class:`_Steer`, :func:`_steered_symbols`, :func:`_steered_coder_case`)
keeps an exact copy of the encoder state and picks each step's symbol so that
the payload follows a plan ("straddle a word boundary until k words are
pending, then resolve with a carry", ...); the coding steps come from the
independent SPEC.md §9 implementation in :mod:`bac_ref.conformance.spec_walk`,
which also checks every generated payload against bac_ref's entropy model.
"""
from __future__ import annotations

import collections
import io
import json
import os
import random
import shutil
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .. import SPEC_VERSION, bitstream, codec, priors, vbq
from .cases import (
    CONFORMANCE_MODEL, FORMAT, STD_NORMAL_FILE, PIXEL_OFF_BY_ONE_SHARE, PIXEL_TOLERANCE,
    REGENERATE_CMD, SHIPPED_MODEL_CASES, TOLERANCE, data_dir, _header_dict, _json_bytes, _sha256,
    decode_coder_case, encode_arrays, encode_coder_case, npz_bytes, read_npz)
from ..errors import BitstreamError
from ..imageio import decode_png, encode_png, read_image
from ..rangecoder import Encoder
from .spec_walk import (
    _UNIFORM, MASK32, MASK64, TOTAL, coder_stats, coding_steps, steps_to_intervals, walk_symbols)

__all__ = ["generate", "generate_all", "conformance_model", "conformance_model_arrays"]


# ---------------------------------------------------------------------------
# Steering symbols (generation of carry-chain cases)
# ---------------------------------------------------------------------------
class _Steer(Encoder):
    """bac_ref's range encoder (SPEC.md §2) plus a policy that picks each step's symbol.

    The state and its arithmetic are the coder's own (:class:`bac_ref.rangecoder.Encoder`,
    whose words so far this subclass reads to count the pending ones); only the
    choice of symbols is added here.  Goals (SPEC.md §2.4): "straddle" keeps a
    word boundary T strictly inside the interval (after a renormalisation T
    becomes 2^64: the words written since are pending, a carry could still
    change them); "up"/"down" leave the interval entirely above/below T (the
    pending words resolve with/without a carry); "free" draws the symbol with
    the table's own probabilities.
    """

    def __init__(self, rnd):
        super().__init__(checked=True)
        self.rnd = rnd

    def pending(self):
        words = self._words
        if self.lower + self.range <= MASK64 or not words:
            return 0
        i = len(words) - 1
        while i > 0 and words[i] == MASK32:
            i -= 1
        return len(words) - i

    def target(self):
        """2^64 while straddling it, else the word boundary nearest the middle of the interval."""
        if self.lower + self.range > MASK64:
            return 1 << 64
        mid = ((self.lower + self.range // 2) >> 32) << 32
        return mid if mid > self.lower else ((self.lower >> 32) + 1) << 32

    def pick(self, table, goal, lo_symbol=0):
        scale = self.range >> 24
        n = len(table) - 1
        tgt = self.target()
        cands = list(range(lo_symbol, n))
        s = None
        if goal == "straddle":
            inside = [i for i in cands if self.lower + scale * table[i] < tgt
                      < self.lower + scale * table[i + 1]]
            s = inside[0] if inside else None
        elif goal == "up":
            above = [i for i in cands if self.lower + scale * table[i] >= tgt]
            s = above[0] if above else None
        elif goal == "down":
            below = [i for i in cands if self.lower + scale * table[i + 1] <= tgt]
            s = below[-1] if below else None
        elif goal == "likely":
            s = max(cands, key=lambda i: table[i + 1] - table[i])
        if s is None:
            q = self.rnd.randrange(table[lo_symbol], TOTAL)
            s = max(i for i in cands if table[i] <= q)
        self.code(table[s], table[s + 1] - table[s])
        return s

    def code(self, start, mass):
        """One coding step [start, start + mass) (SPEC.md §2.2-§2.4), by the coder itself."""
        self.encode_intervals([start], [mass])


def _steered_symbols(shape, max_depth, seed, plan):
    """Symbols whose payload follows ``plan`` = [(goal, until_pending_or_steps), ...].

    A phase ("straddle", k) lasts until k words are pending; ("up"|"down", 1)
    is one step; ("free", k) k steps; the last phase runs to the end.
    """
    rnd = random.Random(seed)
    st = _Steer(rnd)
    phase = [0, 0]                                   # phase index, steps in phase
    active_nonzero = {}

    def choose(kind, table, c, y, x, t):
        goal, arg = plan[min(phase[0], len(plan) - 1)]
        lo = 0
        if kind == "active" and goal != "likely":
            lo = 1                                   # keep channels active while steering
        if kind == "depth":
            h, w = shape[1], shape[2]
            if y == h - 1 and x == w - 1 and not active_nonzero.get(c):
                lo = 1                               # an active channel needs a depth > 0
        s = st.pick(table, goal, lo)
        if kind == "depth" and s > 0:
            active_nonzero[c] = True
        phase[1] += 1
        done = (st.pending() >= arg) if goal == "straddle" else phase[1] >= arg
        if done and phase[0] < len(plan) - 1:
            phase[0], phase[1] = phase[0] + 1, 0
        return s

    return walk_symbols(shape, max_depth, choose)


def _steered_coder_case(seed, plan, accept, tries=200):
    """A coder case (3-symbol tables around the target) steered through ``plan``.

    Goals as in :class:`_Steer`, plus "shrink" (straddle while reducing the range
    to 2^45..2^56 without renormalising) and the sealing goals "seal_carry",
    "seal_carry_zero" (final lower in (2^64 - 2^32, 2^64), so sealing carries;
    with or without the extra 0 word) and "seal_zero" (extra 0 word, no carry).
    """
    for attempt in range(tries):
        rnd = random.Random(seed * 1000 + attempt)
        st = _Steer(rnd)
        tables, steps = [], []
        def stats():
            return coder_stats([(t[s], t[s + 1] - t[s]) for t, s in zip(tables, steps)])

        done = False
        for goal, count in plan:
            for _ in range(100000 if goal == "straddle_to" else count):
                table, s = _steer_move(st, goal, rnd)
                if table is None:
                    break
                tables.append(table)
                steps.append(s)
                st.code(table[s], table[s + 1] - table[s])
                if goal == "straddle_to" and st.pending() >= count:
                    break
                if goal.startswith("seal") and accept(stats()):
                    done = True                      # the final move: stop here
                    break
            if done:
                break
        if accept(stats()):
            return tables, steps, stats()
    raise RuntimeError(f"no steered coder case for plan {plan}")


def _steer_move(st: _Steer, goal, rnd):
    lower, rng = st.lower, st.range
    scale = rng >> 24
    tgt = st.target()
    off = tgt - lower
    straddling = lower + rng > MASK64

    def tri(a, b):
        return (0, a, b, TOTAL) if 1 <= a < b < TOTAL else None

    if goal in ("seal_carry", "seal_carry_zero") and straddling and scale < 1 << 32:
        a_min = -(-((1 << 64) - (1 << 32) + 1 - lower) // scale)
        a_max = (MASK64 - lower) // scale
        k_min = -(-(1 << 32) // scale)
        for a in range(a_min, min(a_max, a_min + 64) + 1):
            for k in [k_min, k_min + 1] + [k_min << j for j in range(1, 20)]:
                new_lower, new_range = lower + scale * a, scale * k
                zero = new_lower + new_range < (1 << 64) + (1 << 32)
                t = tri(a, a + k)
                if t and zero == (goal == "seal_carry_zero"):
                    return t, 1
        return None, None
    if goal == "seal_zero" and not straddling:
        if scale >= 1 << 20:                          # shrink the range to ~2^40 first
            a = rnd.randrange(1, TOTAL // 2)
            t = tri(a, a + max(1, (1 << 40) // scale))
            return (t, 1) if t else (None, None)
        k = -(-(1 << 32) // scale)
        if scale < 1 << 9:
            return None, None
        for _ in range(1000):
            a = rnd.randrange(1, TOTAL - k - 1)
            nl, nr = lower + scale * a, scale * k
            if nl + nr <= MASK64 and ((nl + MASK32) >> 32) == ((nl + nr) >> 32):
                return tri(a, a + k), 1
        return None, None
    if goal == "up" and 0 < off < scale * TOTAL:
        t = tri(-(-off // scale), TOTAL - 1) if -(-off // scale) < TOTAL - 1 else None
        return (t, 1) if t else (None, None)
    if goal == "down" and 0 < off:
        m = min(off // scale, TOTAL - 2)
        return ((0, m, TOTAL), 0) if m >= 1 else (None, None)
    if goal in ("straddle", "straddle_to", "shrink") and 0 < off < scale * TOTAL:
        if goal == "shrink":
            k = max(2, min(TOTAL - 3, (1 << rnd.randrange(45, 56)) // scale))
        else:
            k = rnd.choice([2, 3, 5, 64, 4096])
        m = off // scale
        a = m - k // 2
        if scale * a >= off:
            a -= 1
        t = tri(a, a + k)
        if t and scale * a < off < scale * (a + k):
            return t, 1
    if goal == "mass1":
        n = rnd.choice([2, 3, 9])
        if rnd.random() < 0.5:
            return tuple(range(n)) + (TOTAL,), rnd.randrange(n - 1)      # mass-1 symbols
        return (0,) + tuple(TOTAL - n + 1 + i for i in range(n - 1)) + (TOTAL,), 0
    n = rnd.choice([2, 3, 7])
    cuts = sorted(rnd.sample(range(1, TOTAL), n - 1))
    return (0, *cuts, TOTAL), rnd.randrange(n)


# ---------------------------------------------------------------------------
# The conformance model (frozen: made once, kept in data/vectors)
# ---------------------------------------------------------------------------
def model_file_bytes(arrays: dict) -> bytes:
    """A model file (SPEC.md §6) whose bytes depend only on ``arrays``.

    The layout ``numpy.savez`` writes (SPEC.md §6.0: stored entries, a zip64
    extra field with the sizes, .npy version 1.0), with fixed timestamps.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asarray(value), allow_pickle=False)
    return buf.getvalue()


def conformance_model_arrays(n: int = 16, m: int = 12, seed: int = 20261202) -> dict:
    """The arrays of the conformance model (SPEC.md §11.2): small, seeded, never trained.

    Random float32 weights scaled so that g_a's posterior means spread over a
    few units, its log-variances span exp(-8) .. exp(1.5) (some channels
    precise, some at the prior, so VBQ makes some channels inactive), and g_s's
    output lies mostly in [0, 1] with some values beyond (clipping).  The
    coding prior (kind "table", K = 8) is fitted, as for a trained model
    (SPEC.md §4.4), to g_a's means on kodim23 and three synthetic images.
    The file made from these arrays is frozen in data/vectors: its model id is
    recorded by every vector that uses it, so it is never regenerated
    (a change of numpy or BLAS could change the fitted prior).
    """
    from .. import g_a
    from ..weights import PARAM_LAYOUT
    rng = np.random.default_rng(seed)
    p = {}

    def g(shape, fan, gain):
        return gain * rng.standard_normal(shape) / np.sqrt(fan)

    p["g_a.conv0.weight"] = g((n, 3, 9, 9), 3 * 81, 3.0)
    p["g_a.conv0.bias"] = 0.1 * rng.standard_normal(n)
    p["g_a.conv1.weight"] = g((n, n, 5, 5), n * 25, 2.0)
    p["g_a.conv1.bias"] = 0.1 * rng.standard_normal(n)
    w2 = g((2 * m, n, 5, 5), n * 25, 1.0)
    w2[:m] *= np.geomspace(0.5, 6.0, m)[:, None, None, None]
    w2[m:] *= 0.5
    p["g_a.conv2.weight"] = w2
    b2 = np.zeros(2 * m)
    b2[:m] = 0.3 * rng.standard_normal(m)
    b2[m:] = np.linspace(-8.0, 1.5, m)[rng.permutation(m)]
    p["g_a.conv2.bias"] = b2
    for pre in ("g_a.gdn0", "g_a.gdn1", "g_s.igdn0", "g_s.igdn1"):
        p[pre + ".beta"] = rng.uniform(0.5, 1.5, n)
        p[pre + ".gamma"] = rng.uniform(0.0, 0.1, (n, n))
    p["g_s.deconv0.weight"] = g((m, n, 5, 5), m * 25 / 4, 1.0)
    p["g_s.deconv0.bias"] = 0.1 * rng.standard_normal(n)
    p["g_s.deconv1.weight"] = g((n, n, 5, 5), n * 25 / 4, 1.0)
    p["g_s.deconv1.bias"] = 0.1 * rng.standard_normal(n)
    p["g_s.deconv2.weight"] = g((n, 3, 9, 9), n * 81 / 16, 0.007)
    p["g_s.deconv2.bias"] = np.array([0.45, 0.5, 0.55])
    params = {k: np.asarray(v, np.float32).reshape(PARAM_LAYOUT[k](n, m))
              for k, v in p.items()}
    images = [_kodim_crop(0, 0, 512, 768).astype(np.float32) / 255]
    images += [_synthetic(128, 128, s, kind).astype(np.float32) / 255
               for s, kind in ((31, "gradient"), (32, "noise"), (33, "gradient"))]
    mus = [g_a.analysis(params, np.ascontiguousarray(x.transpose(2, 0, 1)))[0].reshape(m, -1)
           for x in images]
    prior = priors.fit_empirical_prior(np.concatenate(mus, axis=1), axis=0)
    arrays = dict(params)
    arrays["meta_json"] = np.array(json.dumps(
        {"architecture": "bmshj2017-gaussian-vae", "N": n, "M": m,
         "purpose": "bac_ref conformance model (SPEC.md §11.2): seeded random weights, "
                    "not trained; frozen", "seed": seed}, sort_keys=True))
    arrays.update(prior.to_arrays("prior."))
    return arrays


# ---------------------------------------------------------------------------
# Generation (only with BAC_REF_REGENERATE_VECTORS=1 from the command line)
# ---------------------------------------------------------------------------
def _kodim_crop(y, x, h, w):
    src = data_dir("kodim23.png")
    return read_image(src).pixels[y:y + h, x:x + w, :3].copy()


def _synthetic(h, w, seed, kind="gradient"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1),
                         0.5 + 0.4 * np.sin((xx + yy) / 5.0)], axis=2)
        img = base + 0.03 * rng.standard_normal((h, w, 3))
    elif kind == "noise":
        img = rng.random((h, w, 3))
    elif kind == "flat":
        img = np.full((h, w, 3), 0.37)
    else:
        raise ValueError(kind)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _grey(rgb):
    return np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)[:, :, None]


def _rgba(rgb):
    h, w = rgb.shape[:2]
    alpha = (np.arange(w)[None, :] * 255 // max(w - 1, 1) + np.zeros((h, 1), int)).astype(np.uint8)
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)


def _image_specs():
    """(id, description, pixels, params, tags) of every image case."""
    k = _kodim_crop
    mask = np.zeros((64, 64), bool)
    mask[8:30, 20:50] = True
    specs = [
        ("image_1x1_rgb", "a single pixel: H = W = 1, latent grid 1x1 (only the first-latent "
         "depth context)", k(200, 300, 1, 1), dict(lam=0.05), ["header.height", "header.width"]),
        ("image_16x16_rgb", "exactly one 16x16 block, no padding", k(100, 100, 16, 16),
         dict(lam=0.1), []),
        ("image_17x33_rgb", "17x33: height and width one past a multiple of 16 (edge-replicated "
         "padding to 32x48, latents 2x3)", k(300, 400, 17, 33), dict(lam=0.1), []),
        ("image_33x17_rgb", "33x17: three latent rows, two columns", k(50, 600, 33, 17),
         dict(lam=0.3), []),
        ("image_1x40_row", "one pixel row (latents 1x3: only the row-0 depth context)",
         k(256, 100, 1, 40), dict(lam=0.1), []),
        ("image_40x1_column", "one pixel column (latents 3x1: only the column-0 depth context)",
         k(100, 384, 40, 1), dict(lam=0.1), []),
        ("image_40x24_grey", "8-bit grey PNG: flag bit 0, the decoder outputs one channel "
         "(the mean of g_s's three)", _grey(k(150, 150, 40, 24)), dict(lam=0.1),
         ["header.flags.grey", "input.grey"]),
        ("image_23x50_rgba", "RGBA PNG with an alpha ramp: alpha is ignored",
         _rgba(k(20, 500, 23, 50)),
         dict(lam=0.2), ["input.rgba"]),
        ("image_20x28_rgb16", "16-bit RGB PNG input (samples / 65535)",
         (k(400, 200, 20, 28).astype(np.uint16) * 256 + 17), dict(lam=0.1), ["input.16bit"]),
        ("image_48x64_lam0", "lambda = 0: pure distortion, every latent at the deepest grid level "
         "(uniform remainder bits, SPEC.md §2.9, §9.3)", k(200, 200, 48, 64), dict(lam=0.0),
         ["header.lambda.zero"]),
        ("image_48x64_lam_huge", "lambda = 1e300: every latent at depth 0, every channel inactive "
         "(the payload is the M activity flags)", k(200, 200, 48, 64), dict(lam=1e300),
         ["header.lambda.huge"]),
        ("image_64x64_lambda_map", "a region-of-interest lambda map (lambda_map_from_mask: 0.02 "
         "inside, 20 outside): flag bit 1, header lambda = the map's maximum",
         k(250, 350, 64, 64), dict(lam=codec.lambda_map_from_mask(mask, 0.02, 20.0)),
         ["header.flags.lambda_map"]),
        ("image_64x64_second_pass", "second quantization pass with per-channel depth code "
         "lengths (SPEC.md §5.4): flag bit 2", k(250, 350, 64, 64),
         dict(lam=0.3, second_pass=True), ["header.flags.second_pass"]),
        ("image_64x64_context_pass", "the codec's default encoder: second pass, then the "
         "context pass (SPEC.md §5.6; no flag: the format is the same)", k(250, 350, 64, 64),
         dict(lam=0.3, second_pass=True, context_pass=True), ["vbq.context_pass"]),
        ("image_40x56_grey_map_second_pass", "all three flag bits at once: grey input, a lambda "
         "map and the second pass", _grey(k(0, 0, 40, 56)),
         dict(lam=np.array([[[0.05, 0.5, 5.0, 0.05], [0.5, 0.05, 5.0, 0.5],
                             [5.0, 5.0, 0.05, 0.05]]]),
              second_pass=True), ["header.flags.all"]),
        ("image_32x32_depth1", "max_depth N = 1: depth models of 2 symbols, one index bit",
         k(300, 300, 32, 32), dict(lam=0.02, max_depth=1), ["header.max_depth.1"]),
        ("image_32x32_depth16", "max_depth N = 16 and a small lambda: up to 10 uniform low "
         "index bits per latent", k(300, 300, 32, 32), dict(lam=0.002, max_depth=16),
         ["header.max_depth.16"]),
        ("image_32x48_depth5", "max_depth N = 5 (below K_TREE: no uniform bits)",
         k(10, 10, 32, 48), dict(lam=0.05, max_depth=5), []),
        ("image_24x40_gradient", "synthetic smooth gradient with a little noise",
         _synthetic(24, 40, 1), dict(lam=0.1), ["input.synthetic"]),
        ("image_32x32_noise", "uniform random noise (high-entropy latents)",
         _synthetic(32, 32, 2, "noise"), dict(lam=0.1), ["input.synthetic"]),
        ("image_16x48_flat", "a flat grey-ish RGB image", _synthetic(16, 48, 3, "flat"),
         dict(lam=0.1), ["input.synthetic"]),
        ("image_128x128_kodim", "a 128x128 crop of kodim23 at a middle rate: 8192 latents, "
         "depth models halve and refresh many times", k(200, 300, 128, 128), dict(lam=0.3), []),
    ]
    return specs


def _array_specs(model):
    """(id, description, builder(model) -> input dict, recon?, tags) of every array case."""
    m = model.M
    prior = codec.model_prior(model)

    def base(mu, sigma, lam, n=10, second=False, height=None, width=None, grey=False,
             prior_arrays=None, context=False):
        h, w = mu.shape[1:]
        d = {"mu": mu.astype(np.float64), "sigma": np.asarray(sigma, np.float64),
             "lam": np.asarray(lam, np.float64), "max_depth": np.int64(n),
             "second_pass": np.bool_(second),
             "height": np.int64(16 * h if height is None else height),
             "width": np.int64(16 * w if width is None else width),
             "grey": np.bool_(grey), "model_id": np.array(model.model_id[:16])}
        if context:                                  # absent: no context pass (cases before 1.1)
            d["context_pass"] = np.bool_(True)
        if prior_arrays is None:
            d["prior_source"] = np.array("model")
        else:
            d["prior_source"] = np.array("arrays")
            d.update(prior_arrays)
        return d

    def on_grid(depth, index, pr=prior):
        return vbq.dequantize(depth, index, pr, axis=0)

    def random_mu(rng, shape, spread=1.0):
        """mu spread over the prior's range: F^-1 at random xi, blurred by noise."""
        xi = rng.random(shape)
        ch = np.arange(shape[0])[:, None, None] * np.ones(shape, int)
        z = prior.ppf(xi, ch)
        return z + spread * 0.1 * rng.standard_normal(shape)

    def a_stdnormal(model):
        rng = np.random.default_rng(101)
        mu = rng.standard_normal((m, 2, 3)) * 1.5
        sigma = np.exp(rng.uniform(-4, 1, mu.shape))
        return base(mu, sigma, 0.5, height=20, width=37,
                    prior_arrays=priors.standard_normal().to_arrays("prior."))

    def a_model_prior(model):
        rng = np.random.default_rng(102)
        mu = random_mu(rng, (m, 2, 2))
        sigma = np.exp(rng.uniform(-5, 0.5, mu.shape))
        return base(mu, sigma, 0.1, n=12, height=32, width=25)

    def a_gaussian(model):
        rng = np.random.default_rng(103)
        loc, scale = rng.normal(0, 0.5, m), np.exp(rng.uniform(-1, 1, m))
        mu = loc[:, None, None] + scale[:, None, None] * rng.standard_normal((m, 2, 2))
        sigma = np.exp(rng.uniform(-3, 0, mu.shape)) * scale[:, None, None]
        return base(mu, sigma, 0.2, prior_arrays=priors.gaussian(loc, scale).to_arrays("prior."))

    def a_sigma_inf(model):
        rng = np.random.default_rng(104)
        mu = random_mu(rng, (m, 2, 3))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape))
        sigma[::2] = np.inf                              # even channels: posterior = anything
        sigma[1::4, 0, 1] = np.inf                       # single latents inside active channels
        return base(mu, sigma, 0.05, height=17, width=48)

    def a_grid_lam0(model):
        rng = np.random.default_rng(105)
        n = 12
        depth = rng.integers(0, n + 1, (m, 2, 2))
        index = rng.integers(0, 1 << 20, depth.shape) % (1 << depth)
        mu = on_grid(depth, index)
        return base(mu, np.exp(rng.uniform(-2, 2, mu.shape)), 0.0, n=n)

    def a_grid_lam(model):
        rng = np.random.default_rng(106)
        depth = rng.integers(0, 11, (m, 2, 2))
        index = rng.integers(0, 1 << 20, depth.shape) % (1 << depth)
        mu = on_grid(depth, index)
        return base(mu, np.exp(rng.uniform(-6, 0, mu.shape)), 0.01)

    def a_extreme(model):
        rng = np.random.default_rng(107)
        tbl = prior.table
        vals = [0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e300, -1e300, 1.7976931348623157e308,
                -1.7976931348623157e308, 1e6, -1e6]
        mu = random_mu(rng, (m, 2, 2))
        flat = mu.reshape(m, -1)
        for c in range(m):
            flat[c, 0] = vals[c % len(vals)]
            flat[c, 1] = tbl[c, 0] if c % 2 else tbl[c, -1]            # table ends exactly
            flat[c, 2] = (np.nextafter(tbl[c, 0], -np.inf) if c % 2
                          else np.nextafter(tbl[c, -1], np.inf))          # just beyond the ends
        sig_vals = [5e-324, 1e-300, 1e-12, 1.0, 1e12, 1e300, 1.7976931348623157e308, np.inf]
        sigma = np.array([sig_vals[i % len(sig_vals)] for i in range(mu.size)]).reshape(mu.shape)
        return base(mu, sigma, 1e-3, n=14, height=18, width=31)

    def a_lambda_map(model):
        rng = np.random.default_rng(108)
        mu = random_mu(rng, (m, 2, 3))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape))
        lam = rng.choice([0.0, 5e-324, 1e-3, 0.1, 1.0, 1e300], size=mu.shape)
        return base(mu, sigma, lam, height=30, width=40)

    def a_second_pass(model):
        rng = np.random.default_rng(109)
        mu = random_mu(rng, (m, 3, 3))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape))
        return base(mu, sigma, 0.3, second=True, n=8)

    def a_context_pass(model):
        rng = np.random.default_rng(120)
        mu = random_mu(rng, (m, 7, 9))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape)) * np.exp(
            np.linspace(-1, 1, 9))[None, None, :]              # smooth in x: contexts matter
        return base(mu, sigma, 0.3, second=True, n=8, context=True)

    def a_context_pass_map(model):
        rng = np.random.default_rng(121)
        mu = random_mu(rng, (m, 6, 5))
        sigma = np.exp(rng.uniform(-6, 0, mu.shape))
        lam = np.exp(rng.uniform(-4, 3, (1, 6, 5)))          # a per-position lambda map
        return base(mu, sigma, lam, second=True, context=True)

    def a_depth1(model):
        rng = np.random.default_rng(110)
        mu = random_mu(rng, (m, 2, 2))
        return base(mu, np.exp(rng.uniform(-4, 0, mu.shape)), 0.0, n=1)

    def a_carry(model):
        for seed in range(111, 200):
            depth, index = _steered_symbols(
                (m, 4, 8), 16, seed,
                [("straddle", 40), ("up", 1), ("free", 40), ("straddle", 24), ("down", 1),
                 ("likely", 1 << 30)])
            cs = coder_stats(steps_to_intervals(coding_steps(depth, index, 16)))
            if cs["longest_carry"] >= 40 and cs["longest_resolved_without_carry"] >= 24:
                break
        else:
            raise RuntimeError("no steered carry-chain symbols found")
        mu = on_grid(depth, index)
        rng = np.random.default_rng(111)
        return base(mu, np.exp(rng.uniform(-1, 1, mu.shape)), 0.0, n=16, height=50, width=120)

    def a_wide(model):
        mu = np.zeros((m, 1, 4096))
        return base(mu, np.full(mu.shape, np.inf), 1.0, height=1, width=65536, grey=True)

    def a_halving(model):
        rng = np.random.default_rng(112)
        h = w = 33
        depth = np.zeros((m, h, w), np.int64)
        index = np.zeros((m, h, w), np.int64)
        depth[0] = rng.integers(1, 9, (h, w))
        bit0 = (rng.random((h, w)) < 0.97).astype(np.int64)
        rest = rng.integers(0, 1 << 20, (h, w)) % (1 << (depth[0] - 1))
        index[0] = (bit0 << (depth[0] - 1)) | rest
        mu = on_grid(depth, index)
        return base(mu, np.ones(mu.shape), 0.0, n=8, height=520, width=528)

    def a_lambda_neg_zero(model):
        rng = np.random.default_rng(113)
        mu = random_mu(rng, (m, 2, 2))
        return base(mu, np.exp(rng.uniform(-4, 0, mu.shape)), -0.0, n=6)

    def a_tie_rank(model):
        # Channel 0: 30 latents exactly on depth-2 points with a small sigma (first pass:
        # depth 2), 6 with sigma = +inf; the second pass then prices depth 2 below depth 0
        # (SPEC.md §5.4), so the sigma = +inf latents tie in O across every depth-2 point and
        # rule (2) of §5.3 picks the one nearest in grid rank: sometimes below mu, sometimes
        # above. Other channels: sigma = +inf everywhere (inactive).
        n, h, w = 8, 6, 6
        depth = np.zeros((m, h, w), np.int64)
        index = np.zeros((m, h, w), np.int64)
        rng = np.random.default_rng(114)
        depth[0] = 2
        index[0] = rng.integers(0, 4, (h, w))
        mu = on_grid(depth, index)
        sigma = np.full(mu.shape, np.inf)
        sigma[0] = 1e-3
        for pos, j in zip(_TIE_POSITIONS, _TIE_RANKS):          # level-9 ranks of mu
            d = n - ((j & -j).bit_length() - 1)
            mu[(0,) + pos] = prior.ppf_grid(np.array([d]), np.array([j >> (n - d + 1)]), 0)[0]
            sigma[(0,) + pos] = np.inf
        return base(mu, sigma, 0.01, n=n, second=True)

    def a_pixels_over_2p25(model):
        h, w = 33, 4096                                  # H = 513, W = 65536: 2^25 + 2^16 pixels
        mu = np.zeros((m, h, w))
        return base(mu, np.full(mu.shape, np.inf), 1.0, n=1, height=513, width=65536)

    def a_depth_halving(model):
        rng = np.random.default_rng(115)
        depth = np.full((m, 40, 40), 3, np.int64)
        depth[1:] = 0
        depth[0, rng.random((40, 40)) < 0.02] = 4
        index = rng.integers(0, 1 << 20, depth.shape) % (1 << depth)
        mu = on_grid(depth, index)
        return base(mu, np.full(mu.shape, 1e-3), 0.0, n=4, height=640, width=640)

    def a_fma_trap(model):
        # every latent at a depth-16 point whose F^-1 (SPEC.md §4.2: b = t * a, then Q[i] + b,
        # two roundings) differs from the fused t * a + Q[i] (one rounding): a decoder or
        # encoder compiled with FMA contraction gets zhat wrong for each of them
        from fractions import Fraction
        rng = np.random.default_rng(116)
        n, h, w = 16, 2, 4
        table = prior.table
        k_bits = int(np.log2(table.shape[1] - 1))
        s = n + 1 - k_bits
        depth = np.full((m, h, w), n, np.int64)
        index = np.zeros((m, h, w), np.int64)
        for c in range(m):
            found = []
            while len(found) < h * w:
                k = int(rng.integers(0, 1 << n))
                jj = 2 * k + 1
                i, r = jj >> s, jj & ((1 << s) - 1)
                q0, q1 = float(table[c, i]), float(table[c, i + 1])
                a = q1 - q0
                two = q0 + (r * 2.0 ** -s) * a
                fused = float(Fraction(r, 1 << s) * Fraction(a) + Fraction(q0))
                if two != fused:
                    found.append(k)
            index[c] = np.array(found).reshape(h, w)
        mu = on_grid(depth, index)
        return base(mu, np.ones(mu.shape), 0.0, n=n)

    return [
        ("array_fma_trap", "every latent at a depth-16 point whose F^-1 changes under fused "
         "multiply-add contraction (one rounding instead of SPEC.md §4.2's two): mu on those "
         "points, lambda 0", a_fma_trap, True, ["input.mu_on_grid", "float.no_fma"]),
        ("array_lambda_negative_zero", "lambda = -0.0 given to the encoder: it is 0 (SPEC.md "
         "§5.1, §8), and the header records +0.0", a_lambda_neg_zero, True,
         ["input.lambda_negative_zero"]),
        ("array_tie_nearest_rank", "second pass where depth 2 is the cheapest depth: latents with "
         "sigma = +inf tie in O across every depth-2 point, and SPEC.md §5.3 rule (2) picks "
         "the point nearest to mu in grid rank, below mu for some, above for others "
         "(an encoder that always takes the lower or always the upper tied point fails)",
         a_tie_rank, True, ["vbq.tie_rule_2", "header.flags.second_pass"]),
        ("array_pixels_over_2p25", "H = 513, W = 65536: 2^25 + 2^16 pixels, above bac_ref's "
         "default decoder limit (2^25) but within the format's (2^26): a conforming decoder "
         "must accept it (SPEC.md §8); every channel inactive", a_pixels_over_2p25, False,
         ["header.limits", "header.width.max"]),
        ("array_depth_model_halving", "one active channel of 40x40 latents, nearly all at "
         "depth 3: one depth model's counts pass 2^16 and halve (SPEC.md §9.2)",
         a_depth_halving, False, ["em.depth_halving"]),
        ("array_stdnormal_prior", "random (mu, sigma) with the standard-normal prior (prior.* "
         "arrays in the input, SPEC.md §4.5); header 20x37", a_stdnormal, True,
         ["prior.std_normal"]),
        ("array_model_prior", "random (mu, sigma) with the model's prior, N = 12", a_model_prior,
         True, ["prior.model"]),
        ("array_gaussian_prior", "per-channel Gaussian prior (prior.kind = gaussian)", a_gaussian,
         True, ["prior.gaussian"]),
        ("array_sigma_inf", "sigma = +inf for whole channels (they become inactive) and for "
         "single latents (depth 0)", a_sigma_inf, True, ["input.sigma_inf"]),
        ("array_grid_points_lam0", "mu exactly on grid points of every depth 0..12 with "
         "lambda = 0: VBQ returns exactly those points", a_grid_lam0, True, ["input.mu_on_grid"]),
        ("array_grid_points_lam", "mu exactly on grid points, lambda = 0.01 and small sigma",
         a_grid_lam, True, ["input.mu_on_grid"]),
        ("array_extreme_values", "extreme mu (+-0, subnormals, +-1e300, +-DBL_MAX, the "
         "prior table's end points and just beyond) and sigma (subnormal .. DBL_MAX, +inf): "
         "IEEE-754 overflow and underflow in the objective, N = 14", a_extreme, True,
         ["input.extreme_mu", "input.extreme_sigma"]),
        ("array_lambda_map", "a per-latent lambda map with 0, a subnormal, 1e300: flag bit 1",
         a_lambda_map, True, ["header.flags.lambda_map"]),
        ("array_second_pass", "second quantization pass on arrays (SPEC.md §5.4), N = 8",
         a_second_pass, True, ["header.flags.second_pass"]),
        ("array_context_pass", "second pass, then the context pass (SPEC.md §5.6), N = 8, "
         "7x9 latents per channel", a_context_pass, True, ["vbq.context_pass"]),
        ("array_context_pass_map", "the context pass with a per-latent lambda map (flag "
         "bit 1)", a_context_pass_map, True, ["vbq.context_pass", "header.flags.lambda_map"]),
        ("array_depth1_lam0", "N = 1 with lambda = 0", a_depth1, True, ["header.max_depth.1"]),
        ("array_carry_chains_depth16", "symbols steered (mu on grid points, lambda = 0, "
         "N = 16) so that the payload holds a chain of >= 40 pending words resolved by a carry "
         "and a chain of >= 24 resolved without one", a_carry, True,
         ["header.max_depth.16", "coder.long_carry_chain"]),
        ("array_width_65536", "H = 1, W = 65536 (the largest width: header field 0xFFFF), grey "
         "flag, sigma = +inf: every channel inactive", a_wide, False,
         ["header.width.max", "header.flags.grey"]),
        ("array_tree_halving", "one active channel of 33x33 latents (others inactive): the "
         "binary index models' counts pass 2^16 and halve", a_halving, False,
         ["em.tree_halving"]),
    ]


def _coder_specs():
    """(id, description, builder() -> (tables, symbols per step), tags)."""
    def chain_carry():
        t, s, st = _steered_coder_case(1, [("straddle_to", 48), ("up", 1), ("free", 10)],
                                       lambda st: st["longest_carry"] >= 48)
        return t, s

    def chain_no_carry():
        t, s, st = _steered_coder_case(2, [("straddle_to", 30), ("down", 1), ("free", 10)],
                                       lambda st: st["max_pending"] >= 30 and st["carries"] == 0)
        return t, s

    def seal_carry_zero():
        t, s, st = _steered_coder_case(3, [("straddle", 6), ("shrink", 1), ("seal_carry_zero", 1)],
                                       lambda st: st["seal_carry"] and st["seal_extra_zero"])
        return t, s

    def seal_carry():
        t, s, st = _steered_coder_case(4, [("straddle", 6), ("shrink", 1), ("seal_carry", 1)],
                                       lambda st: st["seal_carry"] and not st["seal_extra_zero"])
        return t, s

    def seal_zero():
        t, s, st = _steered_coder_case(5, [("free", 7), ("seal_zero", 3)],
                                       lambda st: st["seal_extra_zero"] and not st["seal_carry"])
        return t, s

    def uniform():
        rnd = random.Random(6)
        tables, steps = [], []
        for r in list(range(25)) * 4 + [24] * 10 + [0] * 3:
            if r == 0:
                tables.append(None)
                steps.append(0)
            else:
                tables.append(("uniform", r))
                steps.append(rnd.randrange(1 << r))
        return tables, steps

    def mass1():
        rnd = random.Random(7)
        st = _Steer(rnd)
        tables, steps = [], []
        for _ in range(400):
            t, s = _steer_move(st, "mass1", rnd)
            tables.append(t)
            steps.append(s)
        return tables, steps

    return [
        ("coder_carry_chain_48", "a carry that changes >= 48 words at once (a chain of pending "
         "0xFFFFFFFF words, SPEC.md §2.4)", chain_carry,
         ["coder.carry", "coder.long_carry_chain"]),
        ("coder_chain_without_carry", ">= 30 pending words resolved without a carry",
         chain_no_carry, ["coder.long_carry_chain"]),
        ("coder_seal_carry_extra_zero", "sealing carries (point = lower + 2^32 - 1 wraps) and "
         "writes the extra 0 word (SPEC.md §2.5)", seal_carry_zero,
         ["coder.seal_carry", "coder.seal_extra_zero"]),
        ("coder_seal_carry", "sealing carries, no extra 0 word", seal_carry, ["coder.seal_carry"]),
        ("coder_seal_extra_zero", "the extra 0 word without a carry", seal_zero,
         ["coder.seal_extra_zero"]),
        ("coder_uniform_r0_to_r24", "uniform values of r = 0..24 bits (r = 0 codes nothing, "
         "SPEC.md §2.9)", uniform, ["coder.uniform"]),
        ("coder_mass_one_symbols", "symbols of mass 1 (24 bits each) and of mass 2^24 - n + 1",
         mass1, ["coder.mass1"]),
    ]


def _coder_case_json(tables, steps):
    """{"tables": [...], "steps": [["table", i, s] | ["uniform", r, v]]}; tables deduplicated."""
    uniq, idx, out = [], {}, []
    for t, s in zip(tables, steps):
        if t is None:
            out.append(["uniform", 0, 0])
        elif isinstance(t, tuple) and t and t[0] == "uniform":
            out.append(["uniform", t[1], s])
        else:
            key = tuple(t)
            if key not in idx:
                idx[key] = len(uniq)
                uniq.append(list(key))
            out.append(["table", idx[key], s])
    return {"tables": uniq, "steps": out}


def _reject_specs(base: bytes, m: int):
    """(id, description, bytes, expected bac_ref message, tags) of invalid files from ``base``."""
    head, payload = base[:28], base[32:]

    def seal(h28, pl):
        return h28 + struct.pack(">I", zlib.crc32(pl, zlib.crc32(h28))) + pl

    def field(offset, fmt, *values):
        h = bytearray(head)
        struct.pack_into(fmt, h, offset, *values)
        return seal(bytes(h), payload)

    h16, w16 = struct.unpack(">HH", head[16:20])
    shape = (m, -(-(h16 + 1) // 16), -(-(w16 + 1) // 16))
    enc = Encoder()

    def empty_active(kind, table, c, y, x, t):        # channel 0 active, every depth 0
        s = 1 if (kind == "active" and c == 0) else 0
        enc.encode_intervals([table[s]], [table[s + 1] - table[s]])
        return s

    walk_symbols(shape, base[6], empty_active, strict=False)
    flipped = bytearray(base)
    flipped[-3] ^= 0x10
    last = bytearray(payload)
    last[-1] ^= 0x01
    return [
        ("reject_truncated_header", "the first 20 bytes of a valid file", base[:20],
         "truncated header", ["header.length"]),
        ("reject_bad_magic", "magic 0x88 'BAC' (CRC-32 recomputed)", field(0, ">B", 0x88),
         "bad magic", ["header.magic"]),
        ("reject_version_2", "format version 2 (CRC-32 recomputed)", field(4, ">B", 2),
         "unsupported format version", ["header.version"]),
        ("reject_entropy_model_0", "entropy-model variant 0", field(5, ">B", 0),
         "unknown entropy model", ["header.entropy_model"]),
        ("reject_max_depth_0", "max_depth N = 0", field(6, ">B", 0), "max_depth",
         ["header.max_depth"]),
        ("reject_max_depth_17", "max_depth N = 17", field(6, ">B", 17), "max_depth",
         ["header.max_depth"]),
        ("reject_unknown_flag", "flag bit 3 set", field(7, ">B", base[7] | 8),
         "unknown header flags", ["header.flags.unknown"]),
        ("reject_wrong_model_id", "a model id that is not the model's (CRC-32 recomputed)",
         field(8, ">Q", int.from_bytes(base[8:16], "big") ^ 0x0101010101010101),
         "made with model", ["header.model_id"]),
        ("reject_too_many_pixels", "H = W = 65536 (2^32 pixels > 2^26) with a tiny payload: "
         "refused before allocating", field(16, ">HH", 0xFFFF, 0xFFFF), "exceeds the limit",
         ["header.height", "header.width", "header.limits"]),
        ("reject_lambda_nan", "lambda = NaN", field(20, ">d", float("nan")), "lambda",
         ["header.lambda"]),
        ("reject_lambda_negative", "lambda = -0.5", field(20, ">d", -0.5), "lambda",
         ["header.lambda"]),
        ("reject_lambda_inf", "lambda = +inf", field(20, ">d", float("inf")), "lambda",
         ["header.lambda"]),
        ("reject_lambda_negative_zero", "lambda = -0.0 (SPEC.md §8: a sign bit of 1 is "
         "invalid even for zero)", field(20, ">d", -0.0), "lambda", ["header.lambda"]),
        ("reject_pixels_over_2p26", "H = 1025, W = 65536 (2^26 + 2^16 pixels: over the "
         "format's limit, SPEC.md §8) with a tiny payload: refused before allocating",
         field(16, ">HH", 1024, 0xFFFF), "exceeds the limit", ["header.limits"]),
        ("reject_crc_mismatch", "one payload bit flipped, CRC-32 left as it was", bytes(flipped),
         "CRC-32 mismatch", ["header.crc32"]),
        ("reject_partial_word", "two extra payload bytes (not a whole word; CRC-32 recomputed)",
         seal(head, payload + b"\x00\x00"), "whole number of", ["payload.length"]),
        ("reject_trailing_word", "one extra 0 word after the sealing words (CRC-32 recomputed)",
         seal(head, payload + b"\x00" * 4), "payload has", ["payload.trailing"]),
        ("reject_empty_payload", "no payload at all (CRC-32 recomputed)", seal(head, b""),
         "payload has", ["payload.empty"]),
        ("reject_invalid_quantile", "payload of 0xFFFFFFFF words: the first quantile is "
         ">= 2^24 (SPEC.md §2.8)", seal(head, b"\xff" * len(payload)), "quantile",
         ["payload.quantile"]),
        ("reject_active_channel_without_depth", "channel 0 coded as active but all its "
         "depths 0 (the encoder marks a channel active only if a depth is > 0, SPEC.md §9.1, "
         "§9.4): correctly sealed, so only this rule refuses it", seal(head, enc.finish()),
         "all its depths are 0", ["payload.active_without_depth"]),
        ("reject_altered_last_word", "the last payload word changed (CRC-32 recomputed): "
         "not the sealing words of the decoded steps", seal(head, bytes(last)), "payload",
         ["payload.sealing"]),
    ]


def _write_case(folder: Path, files: dict, manifest: dict):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest["files"] = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        manifest["files"][name] = _sha256(data)
    (folder / "manifest.json").write_bytes(_json_bytes(manifest))


def _recon_png(pixels, folder: Path = None, data: bytes = None) -> bytes:
    """recon.png of ``pixels``; or the folder's present recon.png when its file.bac is
    ``data`` and its pixels are within the tolerance of ``pixels`` (SPEC.md §10): g_s in
    float32 differs across machines, and regenerating elsewhere must not churn the file."""
    fresh = encode_png(pixels, compress_level=6)          # the vectors' PNGs stay byte-stable
    if folder is not None and (folder / "recon.png").exists() and (folder / "file.bac").exists():
        if (folder / "file.bac").read_bytes() == data:
            old = (folder / "recon.png").read_bytes()
            a = decode_png(old).pixels.astype(np.int64)
            b = np.asarray(pixels).astype(np.int64)
            a = a.reshape(b.shape) if a.size == b.size else a
            if a.shape == b.shape:
                diff = np.abs(a - b)
                if diff.max() <= PIXEL_TOLERANCE and (diff > 0).sum() <= max(1, PIXEL_OFF_BY_ONE_SHARE * diff.size):
                    return old
    return fresh


def _symbols_npz(depth, index, zhat, vbq_zhat=None) -> bytes:
    arrays = {"depth": np.asarray(depth).astype(np.uint8),
              "index": np.asarray(index).astype(np.uint32),
              "zhat": np.asarray(zhat, dtype=np.float64)}
    if vbq_zhat is not None:
        arrays["vbq_zhat"] = np.asarray(vbq_zhat, dtype=np.float64)
    return npz_bytes(arrays)


def _em_tags(stats) -> list:
    tags = []
    for key in sorted(stats):
        if stats[key] and not key.startswith(("uniform_", "ctx_c_")):
            tags.append("em." + key)
    if stats["ctx_c_6"]:
        tags.append("em.ctx_c_capped")            # the channel-mean context at its cap of 6
    if any(k.startswith("uniform_") and v for k, v in stats.items()):
        tags.append("em.uniform")
    return tags


def _coder_tags(cs) -> list:
    tags = []
    if cs["carries"]:
        tags.append("coder.carry")
    if cs["longest_carry"] >= 20 or cs["max_pending"] >= 20:
        tags.append("coder.long_carry_chain")
    if cs["seal_carry"]:
        tags.append("coder.seal_carry")
    if cs["seal_extra_zero"]:
        tags.append("coder.seal_extra_zero")
    return tags


def _payload_info(depth, index, n, payload) -> tuple:
    stats = collections.Counter()
    steps = coding_steps(depth, index, n, stats)
    cs = coder_stats(steps_to_intervals(steps))
    enc = Encoder()
    for start, mass in steps_to_intervals(steps):
        enc.encode_intervals([start], [mass])
    if enc.finish() != payload:
        raise AssertionError("SPEC.md §9 replay disagrees with bac_ref.entropy_model")
    info = {"payload_bytes": len(payload), "coding_steps": len(steps),
            "active_channels": int((depth.reshape(depth.shape[0], -1) > 0).any(axis=1).sum()),
            "carries": cs["carries"], "longest_carry_words": cs["longest_carry"],
            "max_pending_words": cs["max_pending"],
            "longest_resolved_without_carry": cs["longest_resolved_without_carry"]}
    return info, _em_tags(stats) + _coder_tags(cs), steps


def generate_all(model=None, report=print) -> dict:
    """Rewrite every pinned file: data/vectors (:func:`generate`), data/golden/bacw
    (:func:`bac_ref.conformance.bacw.generate`) and data/golden/coder (its builder lives
    beside its test, tests/test_golden_coder.py, which cross-checks every payload with
    constriction and an independent coder): the one switch, one command of SPEC.md §11.5.
    Returns {folder: case ids}."""
    import importlib.util
    from . import bacw as conformance_bacw
    out = {}
    vectors = data_dir("vectors")
    out[str(vectors)] = generate(vectors, model=model, report=report)
    bacw = data_dir("golden", "bacw")
    out[str(bacw)] = conformance_bacw.generate(bacw)
    test = Path(__file__).resolve().parents[2] / "tests" / "test_golden_coder.py"
    if not test.exists():
        raise RuntimeError(f"{test} not found: regenerate from a source checkout")
    spec = importlib.util.spec_from_file_location("_bac_ref_golden_coder", test)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out[str(module.GOLDEN_DIR)] = module.regenerate()
    return out


def conformance_model(folder=None):
    """The frozen conformance model (SPEC.md §11.2), loaded from ``folder`` (default:
    data/vectors)."""
    from ..model import load_model
    return load_model(str(Path(folder or data_dir("vectors")) / CONFORMANCE_MODEL))


def generate(dest, model=None, only=None, report=print) -> list:
    """Write every case (or those in ``only``) under ``dest``; returns the case ids.

    Cases use the frozen conformance model (copied into ``dest`` if needed),
    except ``SHIPPED_MODEL_CASES``, which use ``model`` (default: the shipped
    model).  Deterministic: fixed seeds, fixed zip timestamps, the same models
    -> the same bytes on one platform (image cases depend on float32 g_a/g_s;
    array, coder and reject cases do not).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    report = report or (lambda line: None)
    shipped = codec.get_model(model)
    source = data_dir("vectors") / CONFORMANCE_MODEL
    if not (dest / CONFORMANCE_MODEL).exists():
        shutil.copyfile(source, dest / CONFORMANCE_MODEL)
    cmodel = conformance_model(dest)
    # SPEC.md §4.4's standard-normal table as raw data (4097 little-endian binary64), for
    # implementations that cannot redo its 60-digit computation
    (dest / STD_NORMAL_FILE).write_bytes(np.ascontiguousarray(
        priors.std_normal_table(), dtype="<f8").tobytes())
    wanted = (lambda cid: True) if only is None else (lambda cid: cid in set(only))
    index = []

    def model_for(cid):
        return shipped if cid in SHIPPED_MODEL_CASES else cmodel

    def common(cid, kind, desc, tags, spec):
        mdl = model_for(cid)
        return {"id": cid, "kind": kind, "description": desc, "spec": spec,
                "model": os.path.basename(str(mdl.path)) if kind != "coder" else None,
                "model_id": mdl.model_id[:16] if kind != "coder" else None,
                "tolerance": TOLERANCE[kind], "exercises": sorted(set(tags))}

    # -- image cases --
    for cid, desc, pixels, params, tags in _image_specs():
        if not wanted(cid):
            continue
        model = model_for(cid)
        png = encode_png(pixels, compress_level=6)
        lam = params["lam"]
        n = params.get("max_depth", codec.DEFAULT_MAX_DEPTH)
        second = params.get("second_pass", False)
        context = params.get("context_pass", False)
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "input.png"
            p.write_bytes(png)
            enc = codec.compress_details(str(p), lam=lam, model=model, max_depth=n,
                                         second_pass=second, context_pass=context)
        dec = codec.decompress_details(enc.data, model)
        if not (np.array_equal(dec.depth, enc.depth) and np.array_equal(dec.index, enc.index)
                and np.array_equal(dec.zhat.view(np.uint64), enc.zhat.view(np.uint64))):
            raise AssertionError(f"{cid}: decoder disagrees with encoder")
        info, em_tags, _ = _payload_info(dec.depth, dec.index, n, enc.data[32:])
        man = common(cid, "image", desc, tags + em_tags + ["header.model_id"],
                     ["§5", "§7", "§8", "§9", "§10"])
        man["params"] = {"lam": np.asarray(lam).tolist(), "max_depth": n, "second_pass": second}
        if context:                                  # absent: no context pass (cases before 1.1)
            man["params"]["context_pass"] = True
        man["header"] = _header_dict(enc.header)
        man["stats"] = info
        _write_case(dest / cid, {"input.png": png, "file.bac": enc.data,
                                 "symbols.npz": _symbols_npz(dec.depth, dec.index, dec.zhat),
                                 "recon.png": _recon_png(dec.pixels, dest / cid, enc.data)},
                    man)
        index.append(man)
        report(f"generated {cid}: {len(enc.data)} bytes")

    # -- array cases --
    for cid, desc, build, recon, tags in _array_specs(cmodel):
        if not wanted(cid):
            continue
        inp_bytes = npz_bytes(build(cmodel))
        inp = read_npz(io.BytesIO(inp_bytes))
        data, q = encode_arrays(inp, cmodel)
        if cid in _ON_GRID:                          # mu on grid points, lambda 0: exact
            if not np.array_equal(q.zhat.view(np.uint64), inp["mu"].view(np.uint64)):
                raise AssertionError(f"{cid}: mu on grid points did not give their symbols")
        if cid == "array_tie_nearest_rank":
            got = tuple(int(q.index[(0,) + pos]) for pos in _TIE_POSITIONS)
            if got != _TIE_EXPECTED or any(q.depth[(0,) + pos] != 2 for pos in _TIE_POSITIONS):
                raise AssertionError(f"{cid}: tied latents gave indices {got}, "
                                     f"rule (2) says {_TIE_EXPECTED}")
        dec = codec.decompress_details(data, cmodel, synthesize=recon,
                                       max_pixels=bitstream.MAX_PIXELS)
        if not (np.array_equal(dec.depth, q.depth) and np.array_equal(dec.index, q.index)):
            raise AssertionError(f"{cid}: decoder disagrees with encoder")
        info, em_tags, _ = _payload_info(dec.depth, dec.index, int(inp["max_depth"]), data[32:])
        man = common(cid, "array", desc, tags + em_tags + ["header.model_id", "input.arrays"],
                     ["§4", "§5", "§8", "§9", "§10"])
        lam = inp["lam"]
        man["params"] = {"max_depth": int(inp["max_depth"]),
                         "second_pass": bool(inp["second_pass"]),
                         **({"context_pass": True} if "context_pass" in inp else {}),
                         "prior_source": str(inp["prior_source"]),
                         "lam": float(lam) + 0.0 if lam.ndim == 0 else "map"}
        man["header"] = _header_dict(bitstream.parse(data)[0])
        man["stats"] = info
        files = {"input.npz": inp_bytes, "file.bac": data,
                 "symbols.npz": _symbols_npz(dec.depth, dec.index, dec.zhat, q.zhat)}
        if recon:
            files["recon.png"] = _recon_png(dec.pixels, dest / cid, data)
        _write_case(dest / cid, files, man)
        index.append(man)
        report(f"generated {cid}: {len(data)} bytes")

    # -- coder cases --
    for cid, desc, build, tags in _coder_specs():
        if not wanted(cid):
            continue
        tables, steps = build()
        case = _coder_case_json(tables, steps)
        payload = encode_coder_case(case)
        if decode_coder_case(case, payload) != [s[2] for s in case["steps"]]:
            raise AssertionError(f"{cid}: does not decode")
        intervals = []
        for kind, a, b in case["steps"]:
            if kind == "table":
                t = case["tables"][a]
                intervals.append((t[b], t[b + 1] - t[b]))
            elif a:
                intervals.append((b << (24 - a), 1 << (24 - a)))
        cs = coder_stats(intervals)
        man = common(cid, "coder", desc, tags + _coder_tags(cs), ["§2", "§3"])
        man["stats"] = {"steps": len(case["steps"]), "payload_bytes": len(payload),
                        "coded_steps": len(intervals),
                        "carries": cs["carries"], "longest_carry_words": cs["longest_carry"],
                        "max_pending_words": cs["max_pending"], "seal_carry": cs["seal_carry"],
                        "seal_extra_zero": cs["seal_extra_zero"]}
        _write_case(dest / cid, {"input.json": json.dumps(case, separators=(",", ":")).encode()
                                 + b"\n", "payload.bin": payload}, man)
        index.append(man)
        report(f"generated {cid}: {len(payload)} bytes")

    # -- a coder case made of the steps of an entropy-model payload --
    cid = "coder_entropy_model_steps"
    if wanted(cid):
        inp = read_npz(io.BytesIO(npz_bytes(_array_by_id(cmodel, "array_model_prior"))))
        data, q = encode_arrays(inp, cmodel)
        steps = coding_steps(q.depth, q.index, int(inp["max_depth"]))
        uniform = {id(t): r for r, t in _UNIFORM.items()}      # the uniform steps, by identity
        tables = [("uniform", uniform[id(t)]) if id(t) in uniform else t for t, _ in steps]
        case = _coder_case_json(tables, [s for _, s in steps])
        payload = encode_coder_case(case)
        if payload != data[32:]:
            raise AssertionError(f"{cid}: steps do not reproduce the .bac payload")
        man = common(cid, "coder", "every coding step (24-bit table, symbol) of the payload of "
                     "array_model_prior, as SPEC.md §9 defines them: the coder-level view of an "
                     "entropy-model payload", ["coder.entropy_model_steps"], ["§2", "§3", "§9"])
        man["stats"] = {"steps": len(case["steps"]), "payload_bytes": len(payload)}
        _write_case(dest / cid, {"input.json": json.dumps(case, separators=(",", ":")).encode()
                                 + b"\n", "payload.bin": payload}, man)
        index.append(man)
        report(f"generated {cid}: {len(payload)} bytes")

    # -- reject cases (from array_model_prior: platform-independent bytes) --
    if only is None or any(cid.startswith("reject_") for cid in only):
        base_bac = encode_arrays(read_npz(io.BytesIO(npz_bytes(
            _array_by_id(cmodel, "array_model_prior")))), cmodel)[0]
        for cid, desc, data, message, tags in _reject_specs(base_bac, cmodel.M):
            if not wanted(cid):
                continue
            try:
                codec.decompress_details(data, cmodel, max_pixels=bitstream.MAX_PIXELS)
            except BitstreamError as exc:
                if message not in str(exc):
                    raise AssertionError(f"{cid}: refused for another reason: {exc}") from None
            else:
                raise AssertionError(f"{cid}: bac_ref accepts it")
            man = common(cid, "reject", desc + " (derived from array_model_prior/file.bac)",
                         tags, ["§2.8", "§8", "§9.4"])
            man["expect"] = {"result": "reject", "bac_ref_message": message}
            _write_case(dest / cid, {"file.bac": data}, man)
            index.append(man)
            report(f"generated {cid}")

    if only is None:
        known = {m["id"] for m in index}
        for sub in dest.iterdir():
            if sub.is_dir() and (sub / "manifest.json").exists() and sub.name not in known:
                shutil.rmtree(sub)
    _write_index(dest, cmodel, shipped, index, merge=only is not None)
    return [m["id"] for m in index]


# array_tie_nearest_rank: where the sigma = +inf latents sit, the level-9 rank j of their
# mu (N = 8), and the depth-2 index rule (2) of SPEC.md §5.3 gives each (depth-2 points
# are j = 64, 192, 320, 448; rho = j_lo - j below mu, j - j_lo - 1 above).
_TIE_POSITIONS = ((0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5))
_TIE_RANKS = (100, 170, 127, 128, 250, 300)
_TIE_EXPECTED = (0, 1, 0, 1, 1, 2)          # below, above, below, above, below, above mu
_TIE_LOWER = (0, 0, 0, 0, 1, 1)             # the tied point just below mu (k_lo, §5.2)

_ON_GRID = {"array_fma_trap", "array_grid_points_lam0", "array_carry_chains_depth16", "array_tree_halving"}


def _array_by_id(model, cid):
    for i, _, build, _, _ in _array_specs(model):
        if i == cid:
            return build(model)
    raise KeyError(cid)


def _write_index(dest: Path, cmodel, shipped, manifests, merge=False):
    path = dest / "index.json"
    cases = {}
    if merge and path.exists():
        for c in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            cases[c["id"]] = c
    for man in manifests:
        cases[man["id"]] = {"id": man["id"], "kind": man["kind"],
                            "model": (None if man["kind"] == "coder" else
                                      "shipped" if man["id"] in SHIPPED_MODEL_CASES
                                      else "conformance"),
                            "description": man["description"],
                            "manifest_sha256": _sha256(
                                (dest / man["id"] / "manifest.json").read_bytes())}
    order = {"image": 0, "array": 1, "coder": 2, "reject": 3}
    index = {
        "format": FORMAT,
        "spec_version": SPEC_VERSION,
        "description": "bac_ref conformance vectors (SPEC.md §11): one folder per case with "
                       "manifest.json (sha256 of every file, tolerances, what it exercises)",
        "models": {
            "conformance": {"file": CONFORMANCE_MODEL, "model_id": cmodel.model_id[:16],
                            "sha256": cmodel.model_id,
                            "note": "frozen, kept in this folder; never changes"},
            "shipped": {"file": os.path.basename(str(shipped.path)),
                        "model_id": shipped.model_id[:16],
                        "note": "bac_ref's default model; its cases change with each release"},
        },
        "tables": {"std_normal_k12": {
            "file": STD_NORMAL_FILE, "sha256": priors.STD_NORMAL_SHA256,
            "note": "SPEC.md §4.4: Q_std[0..4096], 4097 little-endian binary64, no header"}},
        "regenerate": REGENERATE_CMD,
        "cases": sorted(cases.values(), key=lambda c: (order[c["kind"]], c["id"])),
    }
    path.write_bytes(_json_bytes(index))
