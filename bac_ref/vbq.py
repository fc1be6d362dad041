r"""The VBQ quantizer (SPEC.md §4.1, §5): Yang, Bamler & Mandt, "Variational Bayesian Quantization", ICML 2020.

A model gives, per latent dimension, a Gaussian posterior N(mu, sigma^2) and a
prior with CDF F (per channel, :mod:`bac_ref.priors`).  VBQ chooses a point of
the dyadic grid in the prior's CDF space and reconstructs zhat = F^-1(xi).

The grid (SPEC.md §4.1).  A grid point is an integer pair (depth d, index k),
0 <= d <= N = max_depth, 0 <= k < 2^d, standing for

    xi = (2k + 1) / 2^(d+1)              ("d explicit bits, then an implied 1")

Equivalently it is j = (2k + 1) * 2^(N - d) on the uniform grid j / 2^(N+1),
1 <= j <= 2^(N+1) - 1, and d = N - (trailing zero bits of j)::

    d=0                         k0
    d=1             k0                      k1
    d=2       k0          k1          k2          k3
    d=3    k0    k1    k2    k3    k4    k5    k6    k7
    j:      1  2  3  4  5  6  7  8  9 10 11 12 13 14 15     (N = 3: xi = j / 16)

The objective (SPEC.md §5.1; the paper's rate-penalised posterior log-density for a
Gaussian posterior, exactly as the authors' code evaluates it in
img-compression/quantizer.py, constant terms dropped): maximise over grid points

    O(d, k) = -((zhat - mu) / sigma)^2 / 2  -  lam * L

with L = d (raw bits, the paper's first pass) or L = code_length[c, d], a
per-channel table indexed by depth (the second pass adds -log2 of a per-channel
depth frequency, SPEC.md §5.4; see :func:`depth_code_lengths`, and
:func:`second_pass`, which repeats it SECOND_PASS_ROUNDS times).  L must depend
on the depth only, never on the index: that is what makes the search exact.
The float64 evaluation order is fixed: a = zhat - mu; b = a / sigma;
D = (b * b) * 0.5; O = (-D) - (lam * L); D is 0 where sigma = +inf.

Search (SPEC.md §5.2).  F^-1 is strictly increasing on the grid (SPEC.md §4.2),
and O's distortion term is monotone in |zhat - mu| even after rounding, so at
each depth only the two depth-d points bracketing mu can win.  With
j_lo = #{j : F^-1(j / 2^(N+1)) <= mu} (exact, :func:`bac_ref.priors.grid_floor_rows`)
the lower bracket at depth d is k_lo = ((j_lo >> (N - d)) - 1) >> 1 and the
upper one k_lo + 1: 2N + 1 valid candidates in all, integers throughout.

Ties (SPEC.md §5.3).  Among the grid points with the largest O choose
(1) the smallest depth; (2) the smallest grid-rank distance to mu,
rho(j) = j_lo - j for j <= j_lo and j - j_lo - 1 otherwise; (3) the smallest
index.  This rule picks a bracket point whenever the brute force over all
2^(N+1) - 1 points does (a farther point on the same side never has a larger
O, and has a larger rho), so the search EQUALS :func:`quantize_exhaustive`;
the tests check it on >10^5 cases.  With L non-decreasing in depth (L = d)
rules (2) and (3) never act: two tied points of the winning depth would enclose
a shallower point with at least the same O.  All of it uses IEEE-754 basic
operations only, so the encoder's choice is also reproducible across platforms.

The context pass (SPEC.md §5.6, bac_ref 1.1; :func:`context_pass`).  The second pass
prices a depth by its channel's frequency; the entropy model (SPEC.md §9.2) codes it
with the adaptive model of its *context*, the neighbours' depths, so a depth that fits
its neighbours is cheaper than that.  The context pass re-chooses every depth with
O(r) = E(r) - lam * (r + L[ctx, r] + the change in its right and lower neighbours'
code lengths), E(r) the better depth-r bracket point's distortion term, L counted from
the depths it starts with; iterated conditional modes in three colour classes, two
sweeps.  It only picks other symbols: the format and the decoder do not change.

Many lambdas for the same latents (a rate search, :mod:`bac_ref.ratecontrol`):
:class:`Candidates` computes the half of the search that does not depend on lambda
(the bracket points, their validity, tie order and distortion terms) once, and each
lambda then costs one subtraction and one argmax over depths.  It is an optimisation
of :func:`quantize` / :func:`second_pass`, not a second rule: same arrays, bit for bit
(the tests compare them).  Read :func:`quantize` first.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .entropy_model import depth_contexts
from .priors import MAX_DEPTH, QuantilePrior, grid_floor_rows, ppf_level, standard_normal

__all__ = [
    "MAX_DEPTH", "Quantized", "quantize", "quantize_exhaustive", "dequantize",
    "grid_j", "grid_depth_index", "depth_code_lengths", "log2_fixed", "second_pass",
    "SECOND_PASS_ROUNDS", "Candidates", "CONTEXT_SWEEPS", "context_code_lengths",
    "context_pass",
]

_CHUNK = 1 << 12                 # latents per block: (N+1, 4096) arrays stay in cache


@dataclass(frozen=True)
class Quantized:
    """Result of :func:`quantize`; every array has mu's shape.

    depth: int64 in 0..max_depth;  index: int64 in 0..2^depth - 1;
    zhat: float64, F^-1((2 index + 1) / 2^(depth + 1)) as the decoder computes it.
    """

    depth: np.ndarray
    index: np.ndarray
    zhat: np.ndarray
    max_depth: int

    @property
    def j(self) -> np.ndarray:
        """The same points as integers j on the level-(max_depth + 1) grid."""
        return grid_j(self.depth, self.index, self.max_depth)


# ---------------------------------------------------------------------------
# Grid helpers (SPEC.md §4.1)
# ---------------------------------------------------------------------------
def grid_j(depth, index, max_depth: int) -> np.ndarray:
    """j = (2 index + 1) * 2^(max_depth - depth): the point xi = j / 2^(max_depth + 1)."""
    d = np.asarray(depth, dtype=np.int64)
    k = np.asarray(index, dtype=np.int64)
    n = _check_max_depth(max_depth)
    if d.size and (d.min() < 0 or d.max() > n):
        raise ValueError(f"depth must lie in 0..{n}")
    if np.any((k < 0) | (k >= (np.int64(1) << d))):
        raise ValueError("index must lie in 0..2^depth - 1")
    return (2 * k + 1) << (n - d)


def grid_depth_index(j, max_depth: int):
    """Inverse of :func:`grid_j`: depth = N - trailing_zeros(j), index = j >> (N - depth + 1)."""
    j = np.asarray(j, dtype=np.int64)
    n = _check_max_depth(max_depth)
    if j.size and (j.min() < 1 or j.max() >= (np.int64(1) << (n + 1))):
        raise ValueError(f"j must lie in 1..2^{n + 1} - 1")
    low = j & -j                                                   # lowest set bit, a power of 2
    tz = np.frexp(low.astype(np.float64))[1].astype(np.int64) - 1   # exact for powers of two
    depth = n - tz
    return depth, j >> (tz + 1)


def _check_max_depth(max_depth) -> int:
    if isinstance(max_depth, (bool, np.bool_)) or not isinstance(max_depth, (int, np.integer)):
        raise ValueError(f"max_depth must be an integer, got {max_depth!r}")
    if not 0 <= max_depth <= MAX_DEPTH:
        raise ValueError(f"max_depth must lie in 0..{MAX_DEPTH}, got {max_depth}")
    return int(max_depth)


# ---------------------------------------------------------------------------
# Input checking (SPEC.md §5.5)
# ---------------------------------------------------------------------------
def _prepare(mu, sigma, lam, prior, max_depth, code_length, axis):
    n = _check_max_depth(max_depth)
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    lam = np.asarray(lam, dtype=np.float64)
    try:
        shape = np.broadcast_shapes(mu.shape, sigma.shape, lam.shape)
    except ValueError:
        raise ValueError(f"shapes do not broadcast: mu {mu.shape}, sigma {sigma.shape}, "
                         f"lam {lam.shape}") from None
    if shape != mu.shape:
        raise ValueError(f"sigma {sigma.shape} and lam {lam.shape} must broadcast to mu's "
                         f"shape {mu.shape}")
    if not np.all(np.isfinite(mu)):
        raise ValueError("mu contains NaN or infinite values")
    if not np.all(sigma > 0):
        raise ValueError("sigma must be > 0 (found a value <= 0 or NaN)")
    if not np.all(lam >= 0):
        raise ValueError("lam must be >= 0 (found a negative value or NaN)")
    if not np.all(np.isfinite(lam)):
        raise ValueError("lam must be finite")
    if prior is None:
        prior = standard_normal()
    if not isinstance(prior, QuantilePrior):
        raise ValueError("prior must be a bac_ref.priors.QuantilePrior (or None for N(0,1))")
    cl = None
    if code_length is not None:
        cl = np.asarray(code_length, dtype=np.float64)
        if cl.ndim == 1:
            cl = cl[None, :]
        if cl.ndim != 2 or cl.shape[1] != n + 1:
            raise ValueError(f"code_length must be (C, max_depth + 1) = (C, {n + 1}) "
                             f"(indexed by depth), got {np.shape(code_length)}")
        if not (np.all(np.isfinite(cl)) and np.all(cl >= 0)):
            raise ValueError("code_length must be finite and >= 0")
    nch = prior.num_channels
    if cl is not None and cl.shape[0] != 1:
        if nch != 1 and cl.shape[0] != nch:
            raise ValueError(f"code_length has {cl.shape[0]} channels, the prior {nch}")
        nch = cl.shape[0]
    if nch > 1:
        if mu.ndim == 0:
            raise ValueError(f"a {nch}-channel prior/code_length needs mu with a channel axis")
        if not isinstance(axis, (int, np.integer)) or not -mu.ndim <= axis < mu.ndim:
            raise ValueError(f"axis {axis} out of range for mu of shape {mu.shape}")
        axis %= mu.ndim
        if mu.shape[axis] != nch:
            raise ValueError(f"mu has {mu.shape[axis]} entries along axis {axis}, "
                             f"the prior/code_length {nch} channels")
    return n, mu, np.broadcast_to(sigma, shape), np.broadcast_to(lam, shape), prior, cl, nch, axis


def _to_rows(x: np.ndarray, nch: int, axis: int) -> np.ndarray:
    """(..., C, ...) -> (C, B) with channel c in row c (or (1, B) when nch == 1)."""
    if nch == 1:
        return np.ascontiguousarray(x).reshape(1, -1)
    return np.ascontiguousarray(np.moveaxis(x, axis, 0)).reshape(nch, -1)


def _from_rows(r: np.ndarray, shape, nch: int, axis: int) -> np.ndarray:
    if nch == 1:
        return r.reshape(shape)
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return np.moveaxis(r.reshape(moved), 0, axis)


def _distortion(v, mu, sigma, sigma_inf):
    """D = ((v - mu) / sigma)^2 / 2 in SPEC.md §5.1's fixed operation order, 0 where
    sigma = +inf (``sigma_inf``: that mask over sigma's shape, or None if there is none).
    mu, sigma broadcast against v's trailing axes."""
    a = v - mu
    b = a / sigma
    dist = (b * b) * 0.5
    if sigma_inf is not None:
        dist[..., sigma_inf] = 0.0
    return dist


def _objective(v, mu, sigma, lam_l, sigma_inf):
    """SPEC.md §5.1 in its fixed operation order.  v, lam_l: (R, b); mu, sigma: (b,)."""
    return (-_distortion(v, mu, sigma, sigma_inf)) - lam_l


def _grid_floor(prior, mu_r, g):
    """j_lo of every latent of the rows mu_r (C, B) (SPEC.md §5.2): one prior row per
    channel, or the one row for all."""
    if prior.num_channels > 1:
        return grid_floor_rows(prior.table, mu_r, g)                       # (C, B)
    return grid_floor_rows(prior.table, mu_r.reshape(1, -1), g).reshape(mu_r.shape)


def _setup(n, mu, sigma, lam, prior, cl, nch, axis):
    """Rows, j_lo and per-element table/code-length offsets (all flattened)."""
    g = n + 1
    mu_r = _to_rows(mu, nch, axis)                                          # (C, B)
    jlo = _grid_floor(prior, mu_r, g)                                       # (C, B)
    width = prior.table.shape[1]
    rows, b = mu_r.shape
    if prior.num_channels > 1:
        base = np.repeat(np.arange(rows, dtype=np.int64) * width, b)        # (C*B,)
    else:
        base = np.zeros(1, dtype=np.int64)
    if cl is not None and cl.shape[0] > 1:
        clbase = np.repeat(np.arange(rows, dtype=np.int64) * (n + 1), b)
    else:
        clbase = np.zeros(1, dtype=np.int64)
    flat = dict(mu=mu_r.reshape(-1), sigma=_to_rows(sigma, nch, axis).reshape(-1),
                lam=_to_rows(lam, nch, axis).reshape(-1), jlo=jlo.reshape(-1))
    return flat, base, clbase, mu_r.shape


def _lam_l(lam, d, cl, clb):
    """lam * L for rows of depths d ((R, 1) int) and elements (b,): (R, b)."""
    if cl is None:
        return lam[None, :] * d.astype(np.float64)
    return lam[None, :] * cl.reshape(-1)[clb[None, :] + d]


# ---------------------------------------------------------------------------
# The quantizer
# ---------------------------------------------------------------------------
def quantize(mu, sigma, lam, prior: QuantilePrior | None = None, max_depth: int = 10,
             code_length=None, axis: int = 0) -> Quantized:
    """VBQ (SPEC.md §5): the grid point maximising -((zhat-mu)/sigma)^2/2 - lam*L per latent.

    mu, sigma: float arrays of one shape (sigma may broadcast), sigma > 0 (+inf allowed:
    D = 0, so with L = depth the result is depth 0, the prior median).  lam: >= 0,
    finite, a scalar or an array broadcastable to mu (a per-latent lambda map).
    prior: a :class:`~bac_ref.priors.QuantilePrior`; None means N(0, 1) everywhere.  A
    prior (or code_length table) with C > 1 channels applies channel c to
    ``mu.take(c, axis)`` (so latents shaped (C, H, W) use axis=0, (B, C, H, W) axis=1).
    max_depth: N in 0..MAX_DEPTH.  code_length: None (L = depth) or a (C, N+1) or
    (N+1,) table of code lengths in bits indexed by depth.  Raises ValueError on bad input.
    """
    n, mu, sigma, lam, prior, cl, nch, axis = _prepare(mu, sigma, lam, prior, max_depth,
                                                       code_length, axis)
    with np.errstate(over="ignore", under="ignore"):      # +-inf objectives are part of the rule
        return _quantize(n, mu, sigma, lam, prior, cl, nch, axis)


def _quantize(n, mu, sigma, lam, prior, cl, nch, axis) -> Quantized:
    shape = mu.shape
    flat, base, clbase, rshape = _setup(n, mu, sigma, lam, prior, cl, nch, axis)
    total = flat["mu"].size
    depth = np.empty(total, dtype=np.int64)
    index = np.empty(total, dtype=np.int64)
    zhat = np.empty(total, dtype=np.float64)
    q = prior.table.reshape(-1)
    k = prior.table_bits
    g = n + 1
    d = np.arange(n + 1, dtype=np.int64)[:, None]                          # (N+1, 1)
    sh = n - d                                                              # (N+1, 1)
    cap = np.int64(1) << d                                                  # 2^d, (N+1, 1)
    top = (np.int64(1) << g) - 1
    for s in range(0, total, _CHUNK):
        e = min(s + _CHUNK, total)
        mu_c, sg_c, lam_c, jlo = (flat[x][s:e] for x in ("mu", "sigma", "lam", "jlo"))
        bb = base if base.size == 1 else base[s:e]
        clb = clbase if clbase.size == 1 else clbase[s:e]
        m = jlo[None, :] >> sh                                              # (N+1, b)
        k_lo = (m - 1) >> 1                                                 # -1: no lower point
        k_hi = k_lo + 1                                                     # 2^d: no upper point
        ok_lo = k_lo >= 0
        ok_hi = k_hi < cap
        j_lo = (2 * k_lo + 1) << sh                                         # level-(N+1) j, (N+1, b)
        j_hi = j_lo + (np.int64(2) << sh)
        # An invalid candidate is evaluated at a clamped j and never selected (take_hi below).
        v_lo = ppf_level(q, k, np.maximum(j_lo, 1), g, bb)
        v_hi = ppf_level(q, k, np.minimum(j_hi, top), g, bb)
        inf = np.isinf(sg_c)
        inf = inf if inf.any() else None
        lam_l = _lam_l(lam_c, d, cl, clb)                                   # (N+1, b)
        o_lo = _objective(v_lo, mu_c, sg_c, lam_l, inf)
        o_hi = _objective(v_hi, mu_c, sg_c, lam_l, inf)
        rho_lo = jlo - j_lo
        rho_hi = j_hi - jlo - 1
        take_hi = ~ok_lo | (ok_hi & ((o_hi > o_lo) | ((o_hi == o_lo) & (rho_hi < rho_lo))))
        o = np.where(take_hi, o_hi, o_lo)                                   # (N+1, b)
        best = np.argmax(o, axis=0)                                         # first max: smallest depth
        cols = np.arange(e - s)
        hi = take_hi[best, cols]
        depth[s:e] = best
        index[s:e] = np.where(hi, k_hi[best, cols], k_lo[best, cols])
        zhat[s:e] = np.where(hi, v_hi[best, cols], v_lo[best, cols])
    out = [_from_rows(a.reshape(rshape), shape, nch, axis) for a in (depth, index, zhat)]
    return Quantized(out[0], out[1], out[2], n)


def quantize_exhaustive(mu, sigma, lam, prior: QuantilePrior | None = None, max_depth: int = 10,
                        code_length=None, axis: int = 0) -> Quantized:
    """The definition (SPEC.md §5.1, §5.3) by brute force over all 2^(N+1) - 1 grid points.

    Same arguments and result as :func:`quantize`; O(2^N) work per latent: for tests and
    for reading, not for use.  j_lo is recounted here from the grid values themselves.
    """
    n, mu, sigma, lam, prior, cl, nch, axis = _prepare(mu, sigma, lam, prior, max_depth,
                                                       code_length, axis)
    with np.errstate(over="ignore", under="ignore"):
        return _quantize_exhaustive(n, mu, sigma, lam, prior, cl, nch, axis)


def _quantize_exhaustive(n, mu, sigma, lam, prior, cl, nch, axis) -> Quantized:
    shape = mu.shape
    flat, base, clbase, rshape = _setup(n, mu, sigma, lam, prior, cl, nch, axis)
    g = n + 1
    j_all = np.arange(1, 1 << g, dtype=np.int64)[:, None]                  # (P, 1), P = 2^(N+1) - 1
    d_all, k_all = grid_depth_index(j_all, n)
    q = prior.table.reshape(-1)
    total = flat["mu"].size
    out_d = np.empty(total, dtype=np.int64)
    out_k = np.empty(total, dtype=np.int64)
    out_z = np.empty(total)
    step = max(1, (1 << 21) // j_all.shape[0])
    for s in range(0, total, step):
        e = min(s + step, total)
        mu_c, sg_c, lam_c = (flat[x][s:e] for x in ("mu", "sigma", "lam"))
        bb = base if base.size == 1 else base[s:e][None, :]
        clb = clbase if clbase.size == 1 else clbase[s:e]
        v = ppf_level(q, prior.table_bits, j_all, g, bb)                   # (P, b) or (P, 1)
        v = np.broadcast_to(v, (j_all.shape[0], e - s))
        jlo = np.sum(v <= mu_c[None, :], axis=0)                           # (b,)
        inf = np.isinf(sg_c)
        o = _objective(v, mu_c, sg_c, _lam_l(lam_c, d_all, cl, clb), inf if inf.any() else None)
        cand = o == o.max(axis=0)                                           # (P, b)
        dd = np.where(cand, d_all, n + 1)
        cand &= dd == dd.min(axis=0)
        rho = np.where(j_all <= jlo, jlo - j_all, j_all - jlo - 1)
        rr = np.where(cand, rho, np.iinfo(np.int64).max)
        cand &= rr == rr.min(axis=0)
        pick = np.argmax(cand, axis=0)                                      # smallest j = smallest index
        cols = np.arange(e - s)
        out_d[s:e] = d_all[pick, 0]
        out_k[s:e] = k_all[pick, 0]
        out_z[s:e] = v[pick, cols]
    out = [_from_rows(a.reshape(rshape), shape, nch, axis) for a in (out_d, out_k, out_z)]
    return Quantized(out[0], out[1], out[2], n)


def dequantize(depth, index, prior: QuantilePrior | None = None, axis: int = 0) -> np.ndarray:
    """Decoder side: zhat = F^-1((2 index + 1) / 2^(depth + 1)), SPEC.md §4.2 (bit-exact).

    depth, index: integer arrays of one shape; the prior's channels run along ``axis``.
    """
    prior = standard_normal() if prior is None else prior
    d = np.asarray(depth)
    k = np.asarray(index)
    if d.shape != k.shape:
        raise ValueError(f"depth {d.shape} and index {k.shape} must have one shape")
    if prior.num_channels == 1:
        return prior.ppf_grid(d, k, 0)
    if d.ndim == 0 or d.shape[axis] != prior.num_channels:
        raise ValueError(f"depth/index need {prior.num_channels} entries along axis {axis}")
    ch_shape = [1] * d.ndim
    ch_shape[axis] = prior.num_channels
    ch = np.arange(prior.num_channels, dtype=np.int64).reshape(ch_shape)
    return prior.ppf_grid(d, k, ch)


LOG2_FRAC_BITS = 32        # fractional bits of log2_fixed (SPEC.md §5.4)


def log2_fixed(x: int) -> int:
    """log2(x) * 2^32 for an integer x >= 1, by the exact integer algorithm of SPEC.md §5.4.

    e = bit length of x - 1 (the integer part); m = the top 32 bits of x, a fixed-point
    mantissa in [2^31, 2^32) for x / 2^e in [1, 2); then 32 times: m = (m * m) >> 31, and when
    m >= 2^32 the next fraction bit is 1 and m >>= 1.  (Each squaring doubles log2 of the
    mantissa; truncation makes the last few bits approximate, but every implementation
    gets the same integer: products fit in 64 bits.)  Result: (e << 32) | fraction bits.
    """
    x = int(x)
    if x < 1:
        raise ValueError("log2_fixed needs an integer >= 1")
    e = x.bit_length() - 1
    m = (x << (31 - e)) if e <= 31 else (x >> (e - 31))
    frac = 0
    for i in range(LOG2_FRAC_BITS):
        m = (m * m) >> 31
        if m >= 1 << 32:
            m >>= 1
            frac |= 1 << (LOG2_FRAC_BITS - 1 - i)
    return (e << LOG2_FRAC_BITS) | frac


SECOND_PASS_ROUNDS = 3      # SPEC.md §5.4: the paper's second pass, run three times
CONTEXT_SWEEPS = 2          # SPEC.md §5.6: sweeps of the context pass the image codec runs


def second_pass(first: Quantized, mu, sigma, lam, prior, max_depth: int, num_channels: int,
                axis: int = 0, rounds: int = SECOND_PASS_ROUNDS) -> Quantized:
    """SPEC.md §5.4: ``rounds`` times, quantize again with :func:`depth_code_lengths` of the
    previous result's depths (round 1 uses ``first``, the L = d pass).

    The paper's code runs one round.  Each round moves the depths towards a fixed point of
    "price each depth by how often it is used" (an entropy-constrained design).  One round
    saves about 15 % at equal PSNR on Kodak; on validation images three rounds save about
    4.5 % more than one, further rounds under 0.5 %.  A round whose depths equal the previous ones would repeat them
    exactly, so the loop stops there (the result is the same as running every round).
    """
    q = first
    for _ in range(rounds):
        lengths = depth_code_lengths(q.depth, max_depth, num_channels, axis=axis)
        nxt = quantize(mu, sigma, lam, prior, max_depth, code_length=lengths, axis=axis)
        if np.array_equal(nxt.depth, q.depth):
            return nxt
        q = nxt
    return q


def depth_code_lengths(depth, max_depth: int, num_channels: int = 1, axis: int = 0) -> np.ndarray:
    """Second-pass code lengths (SPEC.md §5.4), as the authors' code builds them, made exact.

    L[c, d] = d - log2((n_c(d) + 1) / (n_c + N + 1)), n_c(d) the number of latents of channel
    c (along ``axis``; all latents when num_channels == 1) at depth d in a first pass, n_c
    their total (add-one smoothing).  The logarithm is :func:`log2_fixed` of the two integers,
    so the table is the same binary64 numbers on every platform (a library log2 may differ
    in the last bit, and the encoder's bytes with it):

        L[c, d] = (d * 2^32 + log2_fixed(n_c + N + 1) - log2_fixed(n_c(d) + 1)) * 2^-32

    (an integer below 2^53, converted exactly, times a power of two).  Returns (C, N + 1)
    float64.
    """
    n = _check_max_depth(max_depth)
    d = np.asarray(depth)
    if not np.issubdtype(d.dtype, np.integer) or (d.size and (d.min() < 0 or d.max() > n)):
        raise ValueError(f"depth must be integers in 0..{n}")
    rows = _to_rows(d, num_channels, axis) if num_channels > 1 else d.reshape(1, -1)
    if num_channels > 1 and d.shape[axis] != num_channels:
        raise ValueError(f"depth has {d.shape[axis]} entries along axis {axis}, not {num_channels}")
    scale = 2.0 ** -LOG2_FRAC_BITS
    c, size = rows.shape
    counts = np.bincount((np.arange(c, dtype=np.int64)[:, None] * (n + 1) + rows).reshape(-1),
                         minlength=c * (n + 1)).reshape(c, n + 1)          # n_c(d)
    lg_total = log2_fixed(size + n + 1)
    k = np.arange(n + 1, dtype=np.int64) << LOG2_FRAC_BITS
    fixed = k[None, :] + lg_total - _log2_fixed_array(counts + 1)          # exact integers
    return fixed.astype(np.float64) * scale


def _log2_fixed_array(x: np.ndarray) -> np.ndarray:
    """:func:`log2_fixed` of every entry of an int64 array of values in 1..2^52, vectorised.

    The same integer algorithm in uint64 (mantissas below 2^32, so the squares fit), so the
    same integers: the tests compare it with :func:`log2_fixed` entry by entry.
    """
    x = np.asarray(x, dtype=np.int64)
    if x.size and (x.min() < 1 or x.max() >= 1 << 52):
        raise ValueError("_log2_fixed_array takes integers in 1..2^52 - 1")
    e = np.frexp(x.astype(np.float64))[1].astype(np.int64) - 1         # exact below 2^53
    xu = x.astype(np.uint64)
    up = np.maximum(31 - e, 0).astype(np.uint64)
    down = np.maximum(e - 31, 0).astype(np.uint64)
    m = (xu << up) >> down                                              # in [2^31, 2^32)
    frac = np.zeros(x.shape, dtype=np.uint64)
    top = np.uint64(1 << 32)
    for i in range(LOG2_FRAC_BITS):
        m = (m * m) >> np.uint64(31)
        over = m >= top
        m = np.where(over, m >> np.uint64(1), m)
        frac |= over.astype(np.uint64) << np.uint64(LOG2_FRAC_BITS - 1 - i)
    return (e << LOG2_FRAC_BITS) | frac.astype(np.int64)


class Candidates:
    """The half of VBQ that does not depend on lambda, for quantizing fixed latents at many lambdas.

    For latents mu, sigma of shape (C, ...) (channels along axis 0) and a prior with 1 or
    C channels, it keeps, per latent and depth, the distortion term -((zhat - mu) / sigma)^2
    / 2 (SPEC.md §5.1, in its fixed operation order) of the better of the two bracketing
    grid points and which one that is (SPEC.md §5.2), about 110 bytes per latent with j_lo
    and mu, sigma.  Then :meth:`quantize` at any scalar lambda only subtracts lam * L and
    picks the best depth; rounding can tie the two points only there, which is checked
    per latent (tie rule 2 of §5.3, as the plain search does).  The result equals
    :func:`quantize` (same arrays, bit for bit), and :meth:`symbols` equals :func:`quantize`
    followed by :func:`second_pass` (the tests compare both).  A rate search
    (:mod:`bac_ref.ratecontrol`) builds this once per image; the three rounds of the second
    pass reuse it too.
    """

    def __init__(self, mu, sigma, prior: QuantilePrior | None, max_depth: int):
        n, mu, sigma, _, prior, _, nch, _ = _prepare(mu, sigma, 0.0, prior, max_depth, None, 0)
        if mu.ndim < 1:
            raise ValueError("Candidates needs latents with a channel axis (axis 0)")
        self.shape = mu.shape
        self.max_depth = n
        self.prior = prior
        c = mu.shape[0]
        p = int(np.prod(mu.shape[1:], dtype=np.int64))
        self.channels, self.per_channel = c, p
        self.mu = mu_r = mu.reshape(c, p)                                   # float64 (C, P)
        self.sigma = np.broadcast_to(sigma, mu.shape).reshape(c, p)
        g = n + 1
        self.jlo = jlo = _grid_floor(prior, mu_r, g)                        # (C, P)
        self.chunks = []
        with np.errstate(over="ignore", under="ignore"):
            for c0, c1, p0, p1 in _chunks(c, p):
                d = np.arange(g, dtype=np.int64)[:, None, None]             # (N+1, 1, 1)
                j_lo, j_hi, ok_lo, ok_hi, rho_lt = self._points(d, jlo[c0:c1, p0:p1][None])
                top = (np.int64(1) << g) - 1
                neg_lo = self._neg_dist(np.maximum(j_lo, 1), c0, c1, p0, p1)   # (N+1, g, p)
                neg_hi = self._neg_dist(np.minimum(j_hi, top), c0, c1, p0, p1)
                # eff: the better valid side by distortion (rule 2 on equal distortions)
                eff_hi = ~ok_lo | (ok_hi & ((neg_hi > neg_lo) | ((neg_hi == neg_lo) & rho_lt)))
                self.chunks.append((c0, c1, p0, p1, np.where(eff_hi, neg_hi, neg_lo), eff_hi))

    def _points(self, d, jl):
        """The bracket at depth d (SPEC.md §5.2): level-(N+1) j of both points, validity, and
        rule 2 (rho_hi < rho_lo); d and jl broadcast."""
        sh = self.max_depth - d
        k_lo = ((jl >> sh) - 1) >> 1                                        # -1: no lower point
        j_lo = (2 * k_lo + 1) << sh
        j_hi = j_lo + (np.int64(2) << sh)
        ok_hi = (k_lo + 1) < (np.int64(1) << d)                              # 2^d: no upper point
        return j_lo, j_hi, k_lo >= 0, ok_hi, (j_hi - jl - 1) < (jl - j_lo)

    def _neg_dist(self, j, c0, c1, p0, p1, mask=None):
        """-((F^-1(j / 2^(N+1)) - mu) / sigma)^2 / 2 in SPEC.md §5.1's order (0 where
        sigma = inf) for the latents of a block (j: (..., g, p), or its entries at ``mask``)."""
        prior = self.prior
        width = prior.table.shape[1]
        mu = self.mu[c0:c1, p0:p1]
        sg = self.sigma[c0:c1, p0:p1]
        if prior.num_channels > 1:
            base = np.broadcast_to((np.arange(c0, c1, dtype=np.int64) * width)[:, None],
                                   mu.shape)
        else:
            base = np.zeros(1, dtype=np.int64)
        if mask is not None:
            mu, sg = mu[mask], sg[mask]
            base = base[mask] if prior.num_channels > 1 else base   # (a 1x1 block too)
        v = ppf_level(prior.table.reshape(-1), prior.table_bits, j, self.max_depth + 1, base)
        inf = np.isinf(sg)
        return -_distortion(v, mu, sg, inf if inf.any() else None)

    def _best(self, lam: float, lengths) -> tuple:
        """(depth, take_hi) of the best point per latent, (C, P) each, at ``lam``, L = lengths."""
        n = self.max_depth
        lam = float(lam)
        if not (np.isfinite(lam) and lam >= 0):
            raise ValueError("lam must be finite and >= 0")
        with np.errstate(over="ignore"):                   # lam * L = +inf is part of the rule
            if lengths is None:
                lam_l = (lam * np.arange(n + 1, dtype=np.float64))[:, None]     # (N+1, 1)
            else:
                lam_l = (lam * lengths).T                                     # (N+1, C or 1)
        depth = np.empty((self.channels, self.per_channel), dtype=np.int64)
        hi = np.empty((self.channels, self.per_channel), dtype=bool)
        # The objective of the better side at each depth is fl(eff - lam L): rounding is
        # monotone, so fl(max(a, b) - c) = max(fl(a - c), fl(b - c)), the value the plain
        # search keeps.  Only at the winning depth can rounding tie the two sides (then
        # rule 2, rho, decides, as in the plain search): checked there, per latent.
        with np.errstate(over="ignore", under="ignore"):
            for c0, c1, p0, p1, eff, eff_hi in self.chunks:
                ll = (lam_l[:, c0:c1] if lam_l.shape[1] > 1 else lam_l)[:, :, None]
                o = eff - ll                                                  # (N+1, g, p)
                best = np.argmax(o, axis=0)                                   # (g, p)
                size = best.size
                at = (best * size + np.arange(size).reshape(best.shape)).reshape(-1)
                o_b = o.reshape(-1)[at].reshape(best.shape)
                if ll.shape[1] > 1:                                          # per channel
                    ll_b = ll[:, :, 0][best, np.arange(best.shape[0])[:, None]]
                else:
                    ll_b = ll.reshape(-1)[best]
                side = eff_hi.reshape(-1)[at].reshape(best.shape)
                j_lo, j_hi, ok_lo, ok_hi, rho_lt = self._points(best, self.jlo[c0:c1, p0:p1])
                both = ok_lo & ok_hi
                j_alt = np.where(side, j_lo, j_hi)[both]
                o_alt = self._neg_dist(j_alt, c0, c1, p0, p1, both) - ll_b[both]
                tie = o_alt == o_b[both]
                if tie.any():
                    pick = side[both]
                    pick[tie] = rho_lt[both][tie]
                    side[both] = pick
                depth[c0:c1, p0:p1] = best
                hi[c0:c1, p0:p1] = side
        return depth, hi

    def _result(self, depth, hi) -> Quantized:
        n = self.max_depth
        sh = n - depth
        index = (((self.jlo >> sh) - 1) >> 1) + hi
        j = (2 * index + 1) << sh
        prior = self.prior
        if prior.num_channels > 1:
            base = (np.arange(self.channels, dtype=np.int64)
                    * prior.table.shape[1])[:, None]
        else:
            base = 0
        zhat = ppf_level(prior.table.reshape(-1), prior.table_bits, j, n + 1, base)
        return Quantized(depth.reshape(self.shape), index.reshape(self.shape),
                         zhat.reshape(self.shape), n)

    def _lengths(self, lengths):
        if lengths is None:
            return None
        cl = np.asarray(lengths, dtype=np.float64)
        if cl.ndim == 1:
            cl = cl[None, :]
        if cl.shape not in ((1, self.max_depth + 1), (self.channels, self.max_depth + 1)):
            raise ValueError(f"code_length must be (1 or {self.channels}, {self.max_depth + 1})")
        if not (np.all(np.isfinite(cl)) and np.all(cl >= 0)):
            raise ValueError("code_length must be finite and >= 0")
        return cl

    def quantize(self, lam: float, code_length=None) -> Quantized:
        """:func:`quantize` of these latents at scalar ``lam`` (axis 0), bit for bit."""
        return self._result(*self._best(lam, self._lengths(code_length)))

    def symbols(self, lam: float, second_pass: bool = True,
                rounds: int = SECOND_PASS_ROUNDS, context_sweeps: int = 0) -> Quantized:
        """:func:`quantize`, then (by default) :func:`second_pass` with one channel per row,
        then ``context_sweeps`` sweeps of the context pass (:meth:`context_pass`) with the
        table of the depths it starts from (latents (C, h, w) only)."""
        depth, hi = self._best(lam, None)
        if second_pass:
            for _ in range(rounds):
                lengths = depth_code_lengths(depth, self.max_depth, self.channels)
                nd, nh = self._best(lam, lengths)
                same = np.array_equal(nd, depth)
                depth, hi = nd, nh
                if same:
                    break
        if context_sweeps:
            d3 = depth.reshape(self.shape)
            depth, hi = self._context(d3, lam, context_code_lengths(d3, self.max_depth),
                                      context_sweeps)
        return self._result(depth, hi)

    def context_pass(self, depth, lam, lengths, sweeps: int = CONTEXT_SWEEPS) -> Quantized:
        """SPEC.md §5.6 on these latents (shape (C, h, w)): ``sweeps`` sweeps starting from
        ``depth`` with the context code-length table ``lengths``
        (:func:`context_code_lengths`, possibly of more channels than these).  ``lam``: a
        scalar or an array broadcastable to (C, h, w)."""
        return self._result(*self._context(depth, lam, lengths, sweeps))

    def _context(self, depth, lam, lengths, sweeps):
        """(depth, take_hi), (C, P) each, after the sweeps of SPEC.md §5.6."""
        if len(self.shape) != 3:
            raise ValueError("the context pass needs latents shaped (C, h, w)")
        c, h, w = self.shape
        n = self.max_depth
        g = n + 1
        depth = np.array(np.asarray(depth), dtype=np.int64).reshape(c, h * w)
        if depth.size and (depth.min() < 0 or depth.max() > n):
            raise ValueError(f"depth must lie in 0..{n}")
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (8 * (n + 2), g):
            raise ValueError(f"context code lengths must be (8 (N+2), N+1) = {(8 * (n + 2), g)}")
        lam = np.asarray(lam, dtype=np.float64)
        if not (np.all(np.isfinite(lam)) and np.all(lam >= 0)):
            raise ValueError("lam must be finite and >= 0")
        lam = np.broadcast_to(lam, self.shape).reshape(c, h * w) if lam.ndim else lam
        sweeps = int(sweeps)
        if sweeps < 0:
            raise ValueError("sweeps must be >= 0")
        # E(r) of every latent, gathered per colour class as (C, n_class, N+1)
        y, x = np.divmod(np.arange(h * w, dtype=np.int64), w)
        colour = (x + 2 * y) % 3
        classes = [np.flatnonzero(colour == k) for k in range(3)]
        slot = np.empty(h * w, dtype=np.int64)
        for p in classes:
            slot[p] = np.arange(p.size)
        eff = [np.empty((c, p.size, g)) for p in classes]
        for c0, c1, p0, p1, e, _ in self.chunks:
            col = colour[p0:p1]
            for k in range(3):
                sel = np.flatnonzero(col == k)
                if sel.size:
                    eff[k][c0:c1, slot[p0 + sel], :] = np.moveaxis(e[:, :, sel], 0, 2)
        _context_sweeps(eff, classes, depth, lam, lengths, h, w, n, sweeps)
        hi = np.empty((c, h * w), dtype=bool)
        for c0, c1, p0, p1, _, e_hi in self.chunks:
            hi[c0:c1, p0:p1] = np.take_along_axis(e_hi, depth[None, c0:c1, p0:p1], axis=0)[0]
        return depth, hi


_CANDIDATE_CHUNK = 1 << 15        # latents per block of Candidates' tables


# ---------------------------------------------------------------------------
# The context pass (SPEC.md §5.6)
# ---------------------------------------------------------------------------
def context_code_lengths(depth, max_depth: int) -> np.ndarray:
    """The context pass's table (SPEC.md §5.6): (8 (N + 2), N + 1) int64, 2^32 x bits.

    The entropy model codes a depth r with the adaptive model D[ctx] of its context
    (SPEC.md §9.2, shared by all channels).  Counting, over the active channels of
    ``depth`` (C, h, w) (those with a depth > 0, §9.1), how often each (ctx, r) occurs,
    T[ctx, r], the table holds the add-one code length

        L[ctx, r] = lg(T_ctx + N + 1) - lg(T[ctx, r] + 1),     T_ctx = sum over r of T[ctx, r]

    in units of 2^-32 bits, lg = :func:`log2_fixed` (exact integers, as in §5.4).
    """
    n = _check_max_depth(max_depth)
    d = np.asarray(depth)
    if d.ndim != 3 or not np.issubdtype(d.dtype, np.integer):
        raise ValueError("depth must be an integer array (C, h, w)")
    if d.size and (d.min() < 0 or d.max() > n):
        raise ValueError(f"depth must lie in 0..{n}")
    d = d.astype(np.int64)
    active = d.reshape(d.shape[0], -1).max(axis=1, initial=0) > 0
    g = n + 1
    counts = np.zeros(8 * (n + 2) * g, dtype=np.int64)
    if active.any():
        ctx_n, cc = depth_contexts(d[active], n)
        counts = np.bincount(((8 * ctx_n + cc) * g + d[active]).reshape(-1),
                             minlength=counts.size)
    counts = counts.reshape(8 * (n + 2), g)
    total = counts.sum(axis=1, keepdims=True)
    return _log2_fixed_array(total + g) - _log2_fixed_array(counts + 1)


def context_pass(depth, mu, sigma, lam, prior: QuantilePrior | None, max_depth: int,
                 sweeps: int = CONTEXT_SWEEPS, lengths=None) -> Quantized:
    """SPEC.md §5.6: re-choose each latent's depth with its bits priced by the entropy model.

    The second pass (§5.4) prices a depth by how often its channel uses it.  The entropy
    model (§9.2) does better than that: it codes a depth with the adaptive model of its
    context, the rounded mean of the left and upper depths and the channel's mean depth so
    far.  A depth that fits its neighbours is cheap, one that does not is dear, and a
    latent's depth also sets the context of its right and lower neighbours.  So with a
    table L[ctx, r] of code lengths counted on the depths the pass starts from
    (:func:`context_code_lengths`, by default of ``depth`` itself), each latent takes
    the depth r maximising

        O(r) = E(r) - lam * (r + L[ctx, r] + L[ctx_right(r), r_right] + L[ctx_down(r), r_down])

    E(r) the distortion term -((zhat - mu) / sigma)^2 / 2 of the better of the two depth-r
    bracket points (§5.2), r the index bits, ctx the latent's context and ctx_right(r),
    ctx_down(r) those of its right and lower neighbours if it had depth r.  Latents are
    updated in three colour classes (x + 2 y) mod 3, whose members never share a term, so
    each class updates at once and the result does not depend on the order inside it;
    ``sweeps`` times over the three classes.  An iterated-conditional-modes search: every
    update lowers the estimated cost of the image, and the code (§9) is unchanged.

    depth (C, h, w): where to start (the second pass's depths); mu, sigma (C, h, w); lam a
    scalar or an array broadcastable to them.  Returns the new :class:`Quantized`.
    """
    d = np.asarray(depth)
    table = context_code_lengths(d, max_depth) if lengths is None else lengths
    cand = Candidates(mu, sigma, prior, max_depth)
    return cand.context_pass(d, lam, table, sweeps)


def _context_sweeps(eff, classes, depth, lam, lengths, h: int, w: int, n: int,
                    sweeps: int) -> None:
    """The sweeps of SPEC.md §5.6, in place on ``depth`` (C, P = h w).

    eff[k] (C, n_k, N+1): E(r) of the latents of colour class k, at positions classes[k];
    lam: a scalar or (C, P); lengths: the (8 (N+2), N+1) table.  Code lengths are summed as
    binary64 multiples of 2^-32 below 2^7: every partial sum is exact, so the sum is §5.6's
    integer X(r) times 2^-32.  The costs are looked up as whole rows over r: a latent's own
    term is row ctx of r + L; a neighbour's term depends on r only through its ctx_n, so it
    is a row of a table indexed by (the neighbour's other neighbour's depth, its cc, its
    depth), "other" = N + 1 where the neighbour has none (then its ctx_n is r).
    """
    c = depth.shape[0]
    g = n + 1
    lx = lengths.astype(np.float64) * 2.0 ** -LOG2_FRAC_BITS            # (8 (N+2), N+1), exact
    own_rows = lx + np.arange(g, dtype=np.float64)                       # r + L[ctx, r]
    u = np.arange(n + 2, dtype=np.int64)[:, None]                        # the other depth
    r = np.arange(g, dtype=np.int64)[None, :]
    ctx_n = np.where(u <= n, (u + r + 1) >> 1, r)                        # (N+2, N+1)
    cc8 = np.arange(8, dtype=np.int64)
    nb = lx[8 * ctx_n[:, None, None, :] + cc8[None, :, None, None],      # (N+2, 8, N+1, N+1)
            np.arange(g)[None, None, :, None]]
    nb_rows = np.concatenate([nb.reshape(-1, g), np.zeros((1, g))])     # last row: no neighbour
    none = nb_rows.shape[0] - 1
    y, x = np.divmod(np.arange(h * w, dtype=np.int64), w)
    last = h * w - 1
    for _ in range(sweeps):
        _, cc = depth_contexts(depth.reshape(c, h, w), n)               # fixed for the sweep
        cc = cc.reshape(c, h * w)
        for p, e in zip(classes, eff):
            if p.size == 0:
                continue
            py, px = y[p], x[p]
            # the latent's own context: its left and upper neighbours have other colours
            left = depth[:, np.maximum(p - 1, 0)]
            up = np.where(py > 0, depth[:, np.maximum(p - w, 0)], left)
            own = np.where(px > 0, (left + up + 1) >> 1, np.where(py > 0, up, n + 1))
            cost = own_rows[8 * own + cc[:, p]]                          # (C, n, N+1)
            # the right neighbour: its ctx_n is (r + its upper depth + 1) >> 1, or r in row 0
            q = np.minimum(p + 1, last)
            other = np.where(py > 0, depth[:, np.maximum(q - w, 0)], n + 1)
            key = (other * 8 + cc[:, q]) * g + depth[:, q]
            cost += nb_rows[np.where(px + 1 < w, key, none)]
            # the lower neighbour: (its left depth + r + 1) >> 1, or r in column 0
            q = np.minimum(p + w, last)
            other = np.where(px > 0, depth[:, np.maximum(q - 1, 0)], n + 1)
            key = (other * 8 + cc[:, q]) * g + depth[:, q]
            cost += nb_rows[np.where(py + 1 < h, key, none)]
            lam_p = lam[:, p, None] if np.ndim(lam) else lam
            with np.errstate(over="ignore"):
                o = e - lam_p * cost
            depth[:, p] = np.argmax(o, axis=2)                          # ties: smallest depth


def _chunks(c: int, p: int):
    """(c0, c1, p0, p1) blocks of about _CANDIDATE_CHUNK latents: whole channels, or pieces."""
    size = _CANDIDATE_CHUNK
    if p <= size:
        step = max(1, size // max(p, 1))
        for c0 in range(0, c, step):
            yield c0, min(c0 + step, c), 0, p
    else:
        for c0 in range(c):
            for p0 in range(0, p, size):
                yield c0, c0 + 1, p0, min(p0 + size, p)
