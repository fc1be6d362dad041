r"""Priors for VBQ as per-channel quantile tables (SPEC.md §4).

VBQ quantizes in the prior's CDF space xi = F(z) (Yang, Bamler & Mandt 2020):
the reconstruction of the grid point xi is zhat = F^-1(xi).  The
decoder must obtain *bit-identical* zhat on every IEEE-754 platform, so no
prior is ever evaluated with libm (exp, log, erf, ...) on the decoder's path.
Instead every prior is, per channel c, a stored float64 table

    Q_c[0..2^K]   strictly increasing, finite, no -0.0,  Q_c[i] ~ F_c^-1(i / 2^K)

and F^-1 *is defined as* the piecewise-linear interpolation of that table at
dyadic points (SPEC.md §4.2)::

    xi:   0        1/2^K      2/2^K                ...             1
          |----------|----------|---- ... ----|----------|----------|
    zhat: Q[0]      Q[1]       Q[2]          Q[2^K-2]  Q[2^K-1]   Q[2^K]
                     <-- one table interval holds 2^s grid points at level K+s -->

A grid point of depth d and index k (SPEC.md §4.1) is xi = (2k+1) / 2^(d+1).
With G = d + 1 and jj = 2k + 1 (odd, 0 < jj < 2^G):

    G <= K:  zhat = Q[jj << (K - G)]                              (exact lookup)
    G >  K:  s = G - K;  i = jj >> s;  r = jj & (2^s - 1);  t = r * 2^-s   (exact)
             zhat = Q[i] + t * (Q[i+1] - Q[i])    evaluated as  a = Q[i+1] - Q[i];
                                                   b = t * a;  zhat = Q[i] + b
                                                   (three IEEE-754 binary64 operations,
                                                   round-to-nearest-even, no FMA)

so F^-1 at grid points is a function of integers and stored float64 values
only.  The two forms agree (for r = 0 the second gives Q[i] + 0.0 = Q[i]),
which lets the encoder evaluate any grid level with one formula
(:func:`ppf_level`).  The table condition of SPEC.md §4.2 (:func:`check_table`)
guarantees that the interpolated values are strictly increasing on every grid
level up to ``MAX_DEPTH``, which is what makes the bracket search of SPEC.md
§5.2 exact.

F (encoder only, SPEC.md §4.3) is the exact inverse of this piecewise-linear
F^-1; what the quantizer really needs is the integer :func:`grid_floor`:
the number of level-G grid points whose reconstruction is <= z, computed from
a floating-point estimate followed by an exact integer correction against
:func:`ppf_level` itself.

Constructors (SPEC.md §4.4): :func:`standard_normal` (a shipped, correctly
rounded table with K = 12, see ``tables/make_std_normal.py``) and
:func:`gaussian` (one multiply and one add per entry from that table,
bit-exact).  Fitting a prior to data is training, not coding: it lives in
:mod:`bac_ref.training.prior_fit` (``fit_gaussian``, ``fit_empirical_prior``: a
kernel-density quantile table, or Balle et al. 2018's flexible univariate
density fitted by L-BFGS), which hands its tables to :class:`QuantilePrior`
like any other.  Serialisation to .npz-compatible arrays: SPEC.md §4.5.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "MAX_DEPTH", "PRIOR_FORMAT_VERSION", "STD_NORMAL_BITS",
    "QuantilePrior", "standard_normal", "gaussian",
    "from_arrays", "check_table", "enforce_gaps", "std_normal_table",
]

#: Deepest grid (bits per latent) the priors guarantee (SPEC.md §4.1).
MAX_DEPTH = 20
#: Version of the serialised prior layout (SPEC.md §4.5).
PRIOR_FORMAT_VERSION = 1
#: K of the shipped standard-normal table.
STD_NORMAL_BITS = 12
_STD_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tables",
                         f"std_normal_k{STD_NORMAL_BITS}.npy")
#: sha256 of the shipped table's 4097 little-endian float64 values.
STD_NORMAL_SHA256 = "9eef4eaf5b37dcc95582188f2121a7fdd5ea8163f2ef605c9acd2f4e7f4a8bec"
_MAX_ABS = 2.0 ** 1000          # |Q| bound: differences never overflow
_MIN_GAP_ABS = 2.0 ** -900      # products t * a stay normal numbers


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------
_std_cache: np.ndarray | None = None


def std_normal_table() -> np.ndarray:
    """The shipped standard-normal table Q[0..4096] (read-only float64), sha256-checked."""
    global _std_cache
    if _std_cache is None:
        q = np.load(_STD_PATH, allow_pickle=False)
        q = np.ascontiguousarray(q, dtype="<f8")
        digest = hashlib.sha256(q.tobytes()).hexdigest()
        if q.shape != ((1 << STD_NORMAL_BITS) + 1,) or digest != STD_NORMAL_SHA256:
            raise AssertionError(f"{_STD_PATH} is corrupted (sha256 {digest})")
        q.setflags(write=False)
        _std_cache = q
    return _std_cache


def _table_bits(n_entries: int) -> int:
    k = n_entries - 1
    if k < 2 or k & (k - 1):
        raise ValueError(f"a quantile table needs 2^K + 1 entries (K >= 1), got {n_entries}")
    return k.bit_length() - 1


def _min_gap_factor(k: int) -> float:
    """2^(s - 48) with s = MAX_DEPTH + 1 - K (at least 0): see :func:`check_table`."""
    return 2.0 ** (max(MAX_DEPTH + 1 - k, 0) - 48)


def check_table(table) -> np.ndarray:
    """Validate a (C, 2^K + 1) quantile table (SPEC.md §4.2) and return it as float64.

    Conditions, per channel and for every i:
      * finite, |Q[i]| <= 2^1000, not -0.0;
      * a_i = Q[i+1] - Q[i] (float64) satisfies
            a_i >= max(2^(s-48) * max(|Q[i]|, |Q[i+1]|), 2^-900),  s = max(MAX_DEPTH + 1 - K, 0).

    Rounding analysis (u = 2^-53): within one interval the computed values
    Q[i] + fl(t a_i) at consecutive t = r 2^-s differ by a_i 2^-s in exact
    arithmetic and each carries an error <= u (a_i + max|Q|) <= 3u max|Q|; the gap
    condition makes a_i 2^-s >= 2^-48 max|Q| > 2 * 3u max|Q|, so F^-1 is strictly
    increasing on every level <= MAX_DEPTH + 1 (tests also check it directly).
    """
    q = np.array(table, dtype=np.float64, copy=True)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise ValueError(f"a quantile table must be (C, 2^K + 1), got shape {q.shape}")
    k = _table_bits(q.shape[1])
    if q.shape[0] < 1:
        raise ValueError("a quantile table needs at least one channel")
    if not np.all(np.isfinite(q)):
        raise ValueError("quantile table contains NaN or infinite values")
    if np.any(np.abs(q) > _MAX_ABS):
        raise ValueError("quantile table values must satisfy |Q| <= 2^1000")
    if np.any(np.signbit(q) & (q == 0)):
        raise ValueError("quantile table contains -0.0 (use +0.0)")
    a = q[:, 1:] - q[:, :-1]
    need = np.maximum(_min_gap_factor(k) * np.maximum(np.abs(q[:, 1:]), np.abs(q[:, :-1])), _MIN_GAP_ABS)
    if not np.all(a >= need):
        c, i = np.argwhere(~(a >= need))[0]
        raise ValueError(f"quantile table not strictly increasing with the SPEC.md §4.2 gap at "
                         f"channel {c}, entries {i}..{i + 1}: {q[c, i]!r}, {q[c, i + 1]!r}")
    q.setflags(write=False)
    return q


def enforce_gaps(q: np.ndarray) -> np.ndarray:
    """Smallest upward adjustment making a (C, 2^K+1) table pass :func:`check_table` (>= 16x margin).

    Q'[i] = max_{m <= i}(Q[m] - m g) + i g with g = 2^(s-43) max|Q_c| per channel, so consecutive
    entries differ by at least g (a no-op for any table whose gaps already exceed g).
    """
    q = np.array(q, dtype=np.float64)
    k = _table_bits(q.shape[1])
    scale = np.maximum(np.max(np.abs(q), axis=1, keepdims=True), 2.0 ** -500)
    g = np.maximum(32.0 * _min_gap_factor(k) * scale, 2.0 ** -890)         # (C, 1)
    ramp = np.arange(q.shape[1], dtype=np.float64)[None, :] * g             # (C, 2^K+1)
    q = np.maximum.accumulate(q - ramp, axis=1) + ramp
    return q + 0.0


# ---------------------------------------------------------------------------
# F^-1 on the grid (decoder path, SPEC.md §4.2) and its level-G form (encoder)
# ---------------------------------------------------------------------------
def _interp(flat: np.ndarray, pos: np.ndarray, t: np.ndarray) -> np.ndarray:
    """flat[pos] + t * (flat[pos + 1] - flat[pos]) in exactly that operation order."""
    lo = flat[pos]
    a = flat[pos + 1] - lo
    b = t * a
    return lo + b


def ppf_level(flat: np.ndarray, k: int, j: np.ndarray, level: int, base) -> np.ndarray:
    """F^-1(j / 2^level) for integers 0 <= j < 2^level (j = 0 gives Q[0]), any level >= 0.

    ``flat`` is the (C * (2^K + 1),) row-major table, ``base`` = channel * (2^K + 1)
    (broadcastable to j).  For level <= K this is the lookup Q[j << (K - level)]
    (equal, bit for bit, to the interpolation formula with t = 0, since tables hold no
    -0.0); otherwise the SPEC.md §4.2 interpolation with s = level - K.  A grid
    point of depth d is the same number at every level > d, and both forms give it
    the value :meth:`QuantilePrior.ppf_grid` gives (tests check this exhaustively).
    """
    j = np.asarray(j, dtype=np.int64)
    if level <= k:
        return flat[base + (j << (k - level))]
    s = level - k
    t = np.ldexp((j & ((1 << s) - 1)).astype(np.float64), -s)             # r * 2^-s, exact
    return _interp(flat, base + (j >> s), t)


def grid_floor_rows(rows: np.ndarray, z: np.ndarray, level: int) -> np.ndarray:
    """Exact count of level-``level`` grid points with reconstruction <= z (SPEC.md §4.3).

    rows: (C, 2^K + 1) table;  z: (C, B) or (1, B) if C == 1.  Returns int64 (C, B)
    values j_lo in 0..2^level - 1 with  F^-1(j/2^level) <= z  exactly for 1 <= j <= j_lo
    and  > z  for j > j_lo.  A float estimate via the piecewise-linear F is corrected
    by stepping against :func:`ppf_level` until both conditions hold.
    """
    C, width = rows.shape
    k = (width - 1).bit_length() - 1
    flat = np.ascontiguousarray(rows).reshape(-1)
    z = np.asarray(z, dtype=np.float64)
    if z.shape[0] != C:
        raise AssertionError("grid_floor_rows: one row of z per table channel")
    est = np.empty(z.shape, dtype=np.int64)                                # (C, B)
    with np.errstate(over="ignore", invalid="ignore"):
        for c in range(C):
            est[c] = _estimate_floor(rows[c], z[c], level, k)
    return _correct_floor(flat, k, est, z, level, width)


def _estimate_floor(q: np.ndarray, zc: np.ndarray, level: int, k: int) -> np.ndarray:
    """floor(F(z) 2^level) from the piecewise-linear F, clipped to 0..2^level - 1 (any estimate works)."""
    n = 1 << k
    i = np.searchsorted(q, zc, side="right") - 1                          # Q[i] <= z < Q[i+1]
    i = np.clip(i, 0, n - 1)
    frac = np.clip((zc - q[i]) / (q[i + 1] - q[i]), 0.0, 1.0)
    pos = np.ldexp(i + frac, level - k)                                   # F(z) * 2^level
    return np.clip(np.floor(pos), 0, (1 << level) - 1).astype(np.int64)


def _correct_floor(flat, k, est, z, level, width):
    """Step the estimate until F^-1(j/2^level) <= z < F^-1((j+1)/2^level) holds exactly."""
    top_j = (1 << level) - 1
    C = est.shape[0]
    base = (np.arange(C, dtype=np.int64) * width)[:, None]               # (C, 1)
    base = np.broadcast_to(base, z.shape)
    j = est.reshape(-1)
    zf = z.reshape(-1)
    bf = base.reshape(-1)
    # Step up while the next grid point is still <= z.
    idx = np.nonzero(j < top_j)[0]
    for _ in range(64):
        if idx.size == 0:
            break
        up = ppf_level(flat, k, j[idx] + 1, level, bf[idx]) <= zf[idx]
        idx = idx[up]
        j[idx] += 1
        idx = idx[j[idx] < top_j]
    else:
        raise AssertionError("grid_floor: estimate did not converge")
    # Step down while the current grid point is > z.
    idx = np.nonzero(j > 0)[0]
    for _ in range(64):
        if idx.size == 0:
            break
        down = ppf_level(flat, k, j[idx], level, bf[idx]) > zf[idx]
        idx = idx[down]
        j[idx] -= 1
        idx = idx[j[idx] > 0]
    else:
        raise AssertionError("grid_floor: estimate did not converge")
    return j.reshape(z.shape)


def _channel_ids(channel, shape, num_channels: int) -> np.ndarray:
    ch = np.asarray(channel if channel is not None else 0)
    if not np.issubdtype(ch.dtype, np.integer):
        raise ValueError("channel must be an integer array")
    ch = np.broadcast_to(ch.astype(np.int64), shape)
    if num_channels == 1:
        if np.any(ch != 0):
            raise ValueError("this prior has one channel: channel must be 0")
    elif ch.size and (ch.min() < 0 or ch.max() >= num_channels):
        raise ValueError(f"channel ids must lie in 0..{num_channels - 1}")
    return ch


# ---------------------------------------------------------------------------
# The prior object
# ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class QuantilePrior:
    """A prior given by per-channel quantile tables (SPEC.md §4.2).

    table: (C, 2^K + 1) float64 (validated, read-only).  kind: "std_normal",
    "gaussian" or "table" (how it serialises, SPEC.md §4.5).  params: the
    arrays that rebuild it (loc/scale for "gaussian") and, for fitted tables,
    a JSON "info" string describing the fit.  C = 1 means one prior for every
    latent; otherwise channel c of the prior applies to channel c of the latents
    (the quantizer's ``axis``).
    """

    table: np.ndarray
    kind: str = "table"
    params: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "table", check_table(self.table))
        if self.kind not in ("std_normal", "gaussian", "table"):
            raise ValueError(f"unknown prior kind {self.kind!r}")

    # -- shape ------------------------------------------------------------
    @property
    def num_channels(self) -> int:
        return self.table.shape[0]

    @property
    def table_bits(self) -> int:
        """K: the table holds 2^K + 1 entries per channel."""
        return self.table.shape[1].bit_length() - 1 if self.table.shape[1] > 1 else 0

    @property
    def _flat(self) -> np.ndarray:
        return self.table.reshape(-1)

    # -- decoder path -------------------------------------------------------
    def ppf_grid(self, depth, index, channel=0) -> np.ndarray:
        """zhat = F^-1((2 index + 1) / 2^(depth + 1)) exactly as SPEC.md §4.2 (decoder path).

        depth in 0..MAX_DEPTH, index in 0..2^depth - 1, channel in 0..C-1 (integer
        arrays, broadcast together).  Uses only integer operations, table lookups
        and the three float64 operations of the interpolation.
        """
        d = np.asarray(depth)
        kk = np.asarray(index)
        if not (np.issubdtype(d.dtype, np.integer) and np.issubdtype(kk.dtype, np.integer)):
            raise ValueError("depth and index must be integer arrays")
        d, kk = np.broadcast_arrays(d.astype(np.int64), kk.astype(np.int64))
        if d.size and (d.min() < 0 or d.max() > MAX_DEPTH):
            raise ValueError(f"depth must lie in 0..{MAX_DEPTH}")
        if d.size and (kk.min() < 0 or np.any(kk >= (np.int64(1) << d))):
            raise ValueError("index must lie in 0..2^depth - 1")
        ch = _channel_ids(channel, d.shape, self.num_channels)
        k = self.table_bits
        width = self.table.shape[1]
        jj = 2 * kk + 1                                       # odd numerator of xi = jj / 2^G
        g = d + 1
        shl = np.maximum(k - g, 0)                            # G <= K: exact lookup
        s = np.maximum(g - k, 0)                              # G >  K: interpolate
        i = (jj << shl) >> s
        r = jj & ((np.int64(1) << s) - 1)
        t = np.ldexp(r.astype(np.float64), -s)                # r * 2^-s, exact (0 for lookups)
        return _interp(self._flat, ch * width + i, t)

    # -- encoder side -------------------------------------------------------
    def grid_floor(self, z, level: int, channel=0) -> np.ndarray:
        """j_lo: how many level-``level`` grid points (j = 1..2^level - 1) have F^-1(j/2^level) <= z."""
        z = np.asarray(z, dtype=np.float64)
        if not np.all(np.isfinite(z)):
            raise ValueError("z must be finite")
        if not 0 <= level <= MAX_DEPTH + 1:
            raise ValueError(f"level must lie in 0..{MAX_DEPTH + 1}")
        ch = _channel_ids(channel, z.shape, self.num_channels)
        zf, chf = z.reshape(-1), ch.reshape(-1)
        out = np.empty(zf.shape, dtype=np.int64)
        for c in range(self.num_channels):
            sel = np.nonzero(chf == c)[0] if self.num_channels > 1 else slice(None)
            out[sel] = grid_floor_rows(self.table[c:c + 1], zf[sel][None, :], level)[0]
        return out.reshape(z.shape)

    def ppf(self, xi, channel=0) -> np.ndarray:
        """Piecewise-linear F^-1 at arbitrary xi in [0, 1] (float; encoder-side convenience)."""
        xi = np.asarray(xi, dtype=np.float64)
        if np.any(~((xi >= 0) & (xi <= 1))):
            raise ValueError("xi must lie in [0, 1]")
        ch = _channel_ids(channel, xi.shape, self.num_channels)
        n = 1 << self.table_bits
        pos = xi * n
        i = np.minimum(np.floor(pos).astype(np.int64), n - 1)
        return _interp(self._flat, ch * self.table.shape[1] + i, pos - i)

    def cdf(self, z, channel=0) -> np.ndarray:
        """F(z): the inverse of the piecewise-linear F^-1 (SPEC.md §4.3, encoder only).

        Exact at grid points: F(F^-1(j / 2^G)) == j / 2^G for G <= MAX_DEPTH + 1, and
        j/2^G <= F(z) <= (j+1)/2^G whenever grid_floor(z, G) == j.  0 below Q[0], 1 above Q[2^K].
        """
        z = np.asarray(z, dtype=np.float64)
        if not np.all(np.isfinite(z)):
            raise ValueError("z must be finite")
        ch = _channel_ids(channel, z.shape, self.num_channels)
        q, n, width = self._flat, 1 << self.table_bits, self.table.shape[1]
        level = MAX_DEPTH + 1
        zf, chf = z.reshape(-1), ch.reshape(-1)
        out = np.empty(zf.shape)
        for c in range(self.num_channels):
            sel = np.nonzero(chf == c)[0] if self.num_channels > 1 else slice(None)
            row = self.table[c]
            zc = zf[sel]
            i = np.clip(np.searchsorted(row, zc, side="right") - 1, 0, n - 1)
            frac = np.clip((zc - row[i]) / (row[i + 1] - row[i]), 0.0, 1.0)
            approx = (i + frac) / n
            j = grid_floor_rows(self.table[c:c + 1], zc[None, :], level)[0]
            on = (j > 0) & (ppf_level(q, self.table_bits, j, level, c * width) == zc)
            lo, hi = np.ldexp(j.astype(np.float64), -level), np.ldexp(j + 1.0, -level)
            val = np.clip(approx, lo, hi)
            val = np.where(on, lo, val)
            val = np.where(zc <= row[0], 0.0, np.where(zc >= row[-1], 1.0, val))
            out[sel] = val
        return out.reshape(z.shape)

    # -- serialisation (SPEC.md §4.5) -----------------------------------------
    def to_arrays(self, prefix: str = "prior.") -> dict:
        """.npz-compatible arrays (no object arrays, loadable with allow_pickle=False)."""
        out = {prefix + "kind": np.array(self.kind), prefix + "version": np.array(PRIOR_FORMAT_VERSION, np.int64)}
        if self.kind == "gaussian":
            out[prefix + "loc"] = np.asarray(self.params["loc"], np.float64)
            out[prefix + "scale"] = np.asarray(self.params["scale"], np.float64)
            out[prefix + "base_sha256"] = np.array(STD_NORMAL_SHA256)
        elif self.kind == "table":
            out[prefix + "table"] = np.array(self.table, np.float64)
        if "info" in self.params:
            out[prefix + "info"] = np.array(str(self.params["info"]))
        return out

    @classmethod
    def from_arrays(cls, arrays, prefix: str = "prior.") -> "QuantilePrior":
        return from_arrays(arrays, prefix)

    def __eq__(self, other):
        return (isinstance(other, QuantilePrior) and self.kind == other.kind
                and self.table.shape == other.table.shape
                and np.array_equal(self.table.view(np.uint64), other.table.view(np.uint64)))

    def __hash__(self):
        return hash((self.kind, self.table.tobytes()))

    def __repr__(self):
        return f"QuantilePrior(kind={self.kind!r}, channels={self.num_channels}, K={self.table_bits})"


def from_arrays(arrays, prefix: str = "prior.") -> QuantilePrior:
    """Rebuild a prior from :meth:`QuantilePrior.to_arrays` output (SPEC.md §4.5)."""
    def get(name):
        key = prefix + name
        if key not in arrays:
            raise ValueError(f"prior arrays lack {key!r}")
        return np.asarray(arrays[key])

    kind = str(get("kind"))
    version = get("version")
    if version.shape != () or int(version) != PRIOR_FORMAT_VERSION:
        raise ValueError(f"unsupported prior version {version!r}")
    info = str(arrays[prefix + "info"]) if prefix + "info" in arrays else None
    if kind == "std_normal":
        prior = standard_normal()
    elif kind == "gaussian":
        base = str(get("base_sha256"))
        if base != STD_NORMAL_SHA256:
            raise ValueError("gaussian prior was built on a different standard-normal table")
        loc, scale = get("loc"), get("scale")
        if loc.dtype != np.float64 or scale.dtype != np.float64:
            raise ValueError("gaussian prior loc/scale must be float64")
        prior = gaussian(loc, scale)
    elif kind == "table":
        t = get("table")
        if t.dtype != np.float64 or t.ndim != 2:
            raise ValueError("prior table must be a 2-d float64 array")
        prior = QuantilePrior(t, "table", {})
    else:
        raise ValueError(f"unknown prior kind {kind!r}")
    if info is not None:
        prior.params["info"] = info
    return prior


# ---------------------------------------------------------------------------
# Constructors (SPEC.md §4.4)
# ---------------------------------------------------------------------------
def standard_normal() -> QuantilePrior:
    """N(0, 1) for every latent: the shipped K = 12 table, one channel."""
    return QuantilePrior(std_normal_table()[None, :], "std_normal", {})


def gaussian(loc, scale) -> QuantilePrior:
    """Per-channel N(loc_c, scale_c^2): Q_c[i] = loc_c + scale_c * Q_std[i] (one multiply, one add).

    loc, scale: (C,) float64 (scalars give C = 1).  Bit-exact on every IEEE-754
    platform; the result is normalised with + 0.0 (no -0.0 entries).
    """
    loc = np.atleast_1d(np.asarray(loc, dtype=np.float64))
    scale = np.atleast_1d(np.asarray(scale, dtype=np.float64))
    if loc.ndim != 1 or loc.shape != scale.shape:
        raise ValueError("loc and scale must be 1-d arrays of the same length")
    if not (np.all(np.isfinite(loc)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("gaussian prior needs finite loc and finite scale > 0")
    q = std_normal_table()
    table = (loc[:, None] + scale[:, None] * q[None, :]) + 0.0      # (C, 4097)
    return QuantilePrior(table, "gaussian", {"loc": loc.copy(), "scale": scale.copy()})

