r"""Baseline quantizers with real entropy coding (SPEC.md §12; not part of the .bac format).

Every baseline maps latents to integer symbols per channel, reconstructs them,
and codes them with a per-channel *static* 24-bit table built from symbol
counts on a fitting set (``bac_ref.intmodels.cdf_from_counts``, SPEC.md §3.2)
and the range coder (``bac_ref.rangecoder``, SPEC.md §2), so sizes are real
bytes; the tables themselves are side information that is not counted (as in
the paper's comparison).  Channels run along ``axis`` (default 0: latents
shaped (C, H, W) or (C, n)); symbols are coded channel-major.

    fit set --fit()--> per-channel parameters + counts --> cdf_c (24-bit)
    mu --quantize()--> symbols (int64) --encode()--> bytes --decode()--> symbols
                                  \--reconstruct()--> zhat (float64)

Quantizers (the paper's definitions where it has one, from its image experiments and code):

* :class:`UniformQuantizer`  levels n in 2..256 equal bins over [min, max] of the
  fitting set's posterior means per channel; symbol = clip(floor((mu - min)/delta), 0, n-1),
  zhat = min + delta * (symbol + 0.5) (bin centres).
* :class:`KMeansQuantizer`   1-D k-means per channel: Lloyd iterations from the
  quantiles (i + 1/2)/k, to convergence or ``max_iter``; symbol = nearest centroid
  (ties to the lower one), zhat = centroid.
* :class:`BlindVBQ`          VBQ's grid and objective (SPEC.md §5) with sigma replaced
  by a per-channel constant: the RMS of sigma over the fitting set,
  sigma_c = sqrt(mean sigma^2), i.e. the channel's average posterior variance.
  It keeps each channel's typical uncertainty (which sets how coarse that
  channel may be) but ignores the per-latent variation the paper exploits, so
  VBQ vs BlindVBQ measures "does posterior uncertainty help?".  Symbol = j - 1.
* :class:`IntegerRounding`   symbol = rint(mu / step) (round half to even) with a
  factorized integer prior per channel (counts over the fitting set's range of
  integers; values outside it are clamped), zhat = integer * step; step = 1 is
  what end-to-end codecs do.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import vbq
from ..priors import QuantilePrior, standard_normal

__all__ = [
    "BaselineResult", "ChannelEntropyModel", "UniformQuantizer", "KMeansQuantizer",
    "BlindVBQ", "IntegerRounding",
]


@dataclass(frozen=True)
class BaselineResult:
    """symbols: int64, mu's shape, 0 <= symbol < num_symbols[c];  zhat: float64, mu's shape."""

    symbols: np.ndarray
    zhat: np.ndarray


def _rows(x, axis: int) -> np.ndarray:
    """(..., C, ...) -> (C, n), channel c in row c."""
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("latents need a channel axis")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} out of range for shape {x.shape}")
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _unrows(r: np.ndarray, shape, axis: int) -> np.ndarray:
    axis %= len(shape)
    moved = (shape[axis],) + tuple(s for i, s in enumerate(shape) if i != axis)
    return np.moveaxis(r.reshape(moved), 0, axis)


def _finite(x, name):
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


class ChannelEntropyModel:
    """Static per-channel integer tables from counts (SPEC.md §3.2), coded channel-major.

    counts: (C, n) non-negative integers (n symbols per channel).  Every symbol gets
    mass >= 1 in its 24-bit table, so unseen symbols stay codable.
    """

    def __init__(self, counts):
        counts = np.asarray(counts)
        if counts.ndim != 2 or not np.issubdtype(counts.dtype, np.integer) or np.any(counts < 0):
            raise ValueError("counts must be a (C, n) array of non-negative integers")
        self.counts = counts.astype(np.int64)
        self._cdfs = None

    @classmethod
    def from_symbols(cls, symbols, num_symbols: int, axis: int = 0) -> "ChannelEntropyModel":
        r = _rows(np.asarray(symbols, dtype=np.int64), axis)
        if r.size and (r.min() < 0 or r.max() >= num_symbols):
            raise ValueError(f"symbols must lie in 0..{num_symbols - 1}")
        return cls(np.stack([np.bincount(row, minlength=num_symbols) for row in r]))

    @property
    def num_channels(self) -> int:
        return self.counts.shape[0]

    @property
    def num_symbols(self) -> int:
        return self.counts.shape[1]

    def cdfs(self) -> list:
        """One checked 24-bit CDF table (n + 1 ints) per channel."""
        if self._cdfs is None:
            from ..intmodels import cdf_from_counts
            self._cdfs = [cdf_from_counts([int(c) for c in row]) for row in self.counts]
        return self._cdfs

    def _check(self, symbols, axis):
        r = _rows(np.asarray(symbols), axis)
        if not np.issubdtype(r.dtype, np.integer):
            raise ValueError("symbols must be integers")
        if r.shape[0] != self.num_channels:
            raise ValueError(f"symbols have {r.shape[0]} channels along axis {axis}, "
                             f"the model {self.num_channels}")
        if r.size and (r.min() < 0 or r.max() >= self.num_symbols):
            raise ValueError(f"symbols must lie in 0..{self.num_symbols - 1}")
        return r

    def ideal_bits(self, symbols, axis: int = 0) -> float:
        """sum of -log2(mass / 2^24) over the symbols under the integer tables."""
        r = self._check(symbols, axis)
        total = 0.0
        for c, row in enumerate(r):
            cdf = np.asarray(self.cdfs()[c], dtype=np.int64)
            mass = (cdf[1:] - cdf[:-1])[row]
            total += float(np.sum(24.0 - np.log2(mass)))
        return total

    def encode(self, symbols, axis: int = 0) -> bytes:
        """Range-code the symbols, channel-major (row c with table c), SPEC.md §2."""
        from .. import rangecoder
        r = self._check(symbols, axis)
        cdfs = self.cdfs()
        flat, tables = [], []
        for c, row in enumerate(r):
            flat.extend(row.tolist())
            tables.extend([cdfs[c]] * row.size)
        return rangecoder.encode(flat, tables)

    def decode(self, data: bytes, shape, axis: int = 0) -> np.ndarray:
        """Inverse of :meth:`encode` for symbols of the given shape."""
        from .. import rangecoder
        shape = tuple(int(s) for s in shape)
        if not -len(shape) <= axis < len(shape) or shape[axis] != self.num_channels:
            raise ValueError(f"shape {shape} has no {self.num_channels} channels on axis {axis}")
        per = int(np.prod(shape)) // self.num_channels
        cdfs = self.cdfs()
        tables = [t for c in range(self.num_channels) for t in [cdfs[c]] * per]
        out = np.asarray(rangecoder.decode(data, tables), dtype=np.int64)
        return _unrows(out.reshape(self.num_channels, per), shape, axis)


class _Base:
    """Common fit/quantize/encode plumbing; subclasses define _fit_rows, _symbols_rows, _recon_rows."""

    axis: int = 0
    model: ChannelEntropyModel

    def quantize(self, mu, sigma=None) -> BaselineResult:
        mu = _finite(mu, "mu")
        r = _rows(mu, self.axis)
        if r.shape[0] != self.num_channels:
            raise ValueError(f"mu has {r.shape[0]} channels along axis {self.axis}, "
                             f"the quantizer {self.num_channels}")
        s = self._symbols_rows(r, None if sigma is None else _rows(np.broadcast_to(sigma, mu.shape), self.axis))
        z = self._recon_rows(s)
        return BaselineResult(_unrows(s, mu.shape, self.axis), _unrows(z, mu.shape, self.axis))

    def reconstruct(self, symbols) -> np.ndarray:
        s = np.asarray(symbols, dtype=np.int64)
        return _unrows(self._recon_rows(self.model._check(s, self.axis)), s.shape, self.axis)

    def _finish_fit(self, r_mu, r_sigma=None):
        s = self._symbols_rows(r_mu, r_sigma)
        self.model = ChannelEntropyModel(
            np.stack([np.bincount(row, minlength=self.num_symbols) for row in s]))
        return self

    @property
    def num_channels(self) -> int:
        return self.model.num_channels if hasattr(self, "model") else self._nch

    def encode(self, symbols) -> bytes:
        return self.model.encode(symbols, self.axis)

    def decode(self, data, shape) -> np.ndarray:
        return self.model.decode(data, shape, self.axis)

    def ideal_bits(self, symbols) -> float:
        return self.model.ideal_bits(symbols, self.axis)


class UniformQuantizer(_Base):
    """Per-channel uniform quantization with ``levels`` bins over [min, max] of the fit set."""

    def __init__(self, levels: int, axis: int = 0):
        if not isinstance(levels, (int, np.integer)) or not 2 <= levels <= 256:
            raise ValueError("levels must be an integer in 2..256")
        self.levels = int(levels)
        self.num_symbols = self.levels
        self.axis = axis

    def fit(self, mu) -> "UniformQuantizer":
        r = _rows(_finite(mu, "mu"), self.axis)
        self._nch = r.shape[0]
        self.lo = r.min(axis=1)
        hi = r.max(axis=1)
        self.delta = np.maximum(hi - self.lo, 1e-12) / self.levels                 # (C,)
        return self._finish_fit(r)

    def _symbols_rows(self, r, _sigma):
        s = np.floor((r - self.lo[:, None]) / self.delta[:, None])
        return np.clip(s, 0, self.levels - 1).astype(np.int64)

    def _recon_rows(self, s):
        return self.lo[:, None] + self.delta[:, None] * (s + 0.5)


class KMeansQuantizer(_Base):
    """Per-channel 1-D k-means (deterministic Lloyd iterations from quantile initialisation)."""

    def __init__(self, k: int, axis: int = 0, max_iter: int = 100):
        if not isinstance(k, (int, np.integer)) or not 2 <= k <= 256:
            raise ValueError("k must be an integer in 2..256")
        self.k = int(k)
        self.num_symbols = self.k
        self.axis = axis
        self.max_iter = max_iter

    def fit(self, mu) -> "KMeansQuantizer":
        r = _rows(_finite(mu, "mu"), self.axis)
        self._nch = r.shape[0]
        cents = np.empty((r.shape[0], self.k))
        for c, row in enumerate(r):
            x = np.sort(row)
            cen = np.quantile(x, (np.arange(self.k) + 0.5) / self.k)
            for _ in range(self.max_iter):
                cen = np.unique(cen)                                  # merged centroids collapse
                cut = np.searchsorted(x, (cen[1:] + cen[:-1]) / 2, side="right")
                edges = np.concatenate([[0], cut, [x.size]])
                sums = np.add.reduceat(np.concatenate([x, [0.0]]), edges[:-1])
                cnt = np.diff(edges)
                new = np.where(cnt > 0, sums / np.maximum(cnt, 1), cen)
                if np.array_equal(new, cen):
                    break
                cen = new
            # pad (if points were fewer than k distinct values) with spread-out extra centroids
            while cen.size < self.k:
                cen = np.sort(np.concatenate([cen, [cen[-1] + 1e-9 * (1 + abs(cen[-1])) * (self.k - cen.size)]]))
            cents[c] = np.sort(cen)
        self.centroids = cents                                                     # (C, k)
        return self._finish_fit(r)

    def _symbols_rows(self, r, _sigma):
        mids = (self.centroids[:, 1:] + self.centroids[:, :-1]) / 2               # (C, k-1)
        return np.stack([np.searchsorted(mids[c], row, side="right") for c, row in enumerate(r)])

    def _recon_rows(self, s):
        return np.take_along_axis(self.centroids, s, axis=1)


class BlindVBQ(_Base):
    """VBQ with sigma replaced by the per-channel RMS of sigma over the fitting set."""

    def __init__(self, lam: float, prior: QuantilePrior | None = None, max_depth: int = 10,
                 axis: int = 0):
        self.lam = float(lam)
        self.prior = standard_normal() if prior is None else prior
        self.max_depth = int(max_depth)
        self.num_symbols = (1 << (self.max_depth + 1)) - 1
        self.axis = axis

    def fit(self, mu, sigma) -> "BlindVBQ":
        r = _rows(_finite(mu, "mu"), self.axis)
        sg = _rows(np.broadcast_to(np.asarray(sigma, dtype=np.float64), np.shape(mu)), self.axis)
        if not (np.all(np.isfinite(sg)) and np.all(sg > 0)):
            raise ValueError("sigma must be finite and > 0")
        self._nch = r.shape[0]
        self.sigma_c = np.sqrt(np.mean(sg * sg, axis=1))                          # (C,)
        return self._finish_fit(r)

    def _symbols_rows(self, r, _sigma_ignored):
        sg = np.broadcast_to(self.sigma_c[:, None], r.shape)
        q = vbq.quantize(r, sg, self.lam, self.prior, self.max_depth,
                         axis=0)
        return q.j - 1

    def _recon_rows(self, s):
        d, k = vbq.grid_depth_index(s + 1, self.max_depth)
        return vbq.dequantize(d, k, self.prior, axis=0)


class IntegerRounding(_Base):
    """rint(mu / step) with a factorized (per-channel) integer prior from fit-set counts."""

    def __init__(self, step: float = 1.0, axis: int = 0):
        if not (np.isfinite(step) and step > 0):
            raise ValueError("step must be finite and > 0")
        self.step = float(step)
        self.axis = axis

    def fit(self, mu) -> "IntegerRounding":
        r = _rows(_finite(mu, "mu"), self.axis)
        self._nch = r.shape[0]
        q = np.rint(r / self.step)
        self.lo = q.min(axis=1).astype(np.int64)
        self.hi = q.max(axis=1).astype(np.int64)
        self.num_symbols = int((self.hi - self.lo).max()) + 1
        if self.num_symbols > 1 << 16:
            raise ValueError("more than 65536 integers per channel: increase step")
        return self._finish_fit(r)

    def _symbols_rows(self, r, _sigma):
        q = np.rint(r / self.step)
        q = np.clip(q, self.lo[:, None], self.hi[:, None]).astype(np.int64)
        return q - self.lo[:, None]

    def _recon_rows(self, s):
        return (s + self.lo[:, None]).astype(np.float64) * self.step
