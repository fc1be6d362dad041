"""Entropy model for the VBQ symbols: adaptive, context-modelled, integer only.

SPEC.md §9 is normative.  Every latent carries a grid point (depth r, index k)
of the VBQ grid (SPEC.md §4.1); the payload codes them with the range coder of
SPEC.md §2 in this order::

    for each channel c = 0 .. M-1:
        active[c]                      one binary decision (shared model A)
        if active[c]:                  (inactive: every depth and index is 0)
            for y = 0 .. h-1, x = 0 .. w-1  (raster order):
                depth r                adaptive model D[ctx]        (§9.2)
                index k, MSB first:    bit t of the path to the point
                    t < K_TREE:        adaptive binary model B[c, node, vote]  (§9.3)
                    t >= K_TREE:       the remaining r - K_TREE bits, uniform (§2.9)

Cost.  A coding step of mass m out of 2^24 costs -log2(m / 2^24) bits; the
payload is the sum over all steps plus the small overhead of SPEC.md §2.10.
The VBQ paper (Yang, Bamler & Mandt 2020) only estimated the rate, as the sum
over latents of -log2 f_c(j), f_c the per-channel frequency of the grid point
j fitted on the same latents, its tables free (:func:`paper_rate_estimate`);
this model is an actual code for the same symbols.

Why this model (measured on validation latents, SPEC.md §9.5): the depth of a
latent follows sigma, which is smooth in space, so the mean depth of the left
and upper neighbours predicts it well; the channel's mean depth so far tells
busy channels from quiet ones; and one set of tables shared by all channels
learns fast.  The index bits are the path from the root of the
dyadic tree of xi = F(mu) to the point: the top levels are skewed per channel
(the prior was fitted on other images) and correlated with the neighbours'
paths, deeper bits are almost uniform.  Every model adapts as it codes, so
any lambda works and nothing is refitted per image or per lambda.

Only integers reach the coder: depths, indices, counts, and the 24-bit tables
of SPEC.md §3.2 / §3.3 derived from them.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import BitstreamError
from .intmodels import AdaptiveBinaryModel, AdaptiveModel
from .rangecoder import Decoder, Encoder

__all__ = ["SymbolModels", "CodingStep", "coding_steps", "encode_symbols", "decode_symbols",
           "paper_rate_estimate", "depth_context", "depth_contexts", "K_TREE", "INCREMENT",
           "LIMIT", "DEPTH_REFRESH", "TOTAL"]

TOTAL = 1 << 24
K_TREE = 6                 # index levels coded with adaptive binary models (§9.3)
INCREMENT = 64             # count increment of every adaptive model (§9.2, §9.3)
LIMIT = 1 << 16            # halve all counts when their total exceeds this
DEPTH_REFRESH = 16         # the depth tables are rebuilt every 16 updates (§9.2)


class SymbolModels:
    """Every adaptive model of SPEC.md §9 for one payload, in its initial state.

    The encoder and the decoder each build one and drive it with the same
    symbols in the same order; the models are ``intmodels.AdaptiveBinaryModel``
    and ``intmodels.AdaptiveModel`` (SPEC.md §3.3), all with increment 64 and
    limit 2^16:

    * ``activity``: model A, one bit per channel (§9.1), counts (1, 1);
    * ``depth[ctx]``: the depth models D[ctx] (§9.2), shared by all channels.
      ctx = 8 * ctx_n + ctx_c + 1 combines the neighbours' depths (ctx_n in
      0..N+1) with the channel's mean depth so far (ctx_c in -1..6), so
      (N + 2) * 8 models over the N + 1 depths, counts all 1.  Their tables
      are rebuilt every 16 updates (``refresh=16``): a table lags its counts
      by fewer than 16 symbols, a cheap, exactly specified schedule;
    * ``bit(key)``: the index-bit models B[c, node, vote] (§9.3),
      key = (c * 64 + node) * 3 + vote, counts (1, 1); made on first use
      (most are never used), which changes nothing: an unused model is in
      its initial state.
    """

    __slots__ = ("activity", "depth", "bits", "_fresh_bit")

    def __init__(self, channels: int, max_depth: int):
        self._fresh_bit = AdaptiveBinaryModel((1, 1), increment=INCREMENT, limit=LIMIT)
        self.activity = self._fresh_bit.copy()
        fresh_depth = AdaptiveModel(max_depth + 1, increment=INCREMENT, limit=LIMIT,
                                    refresh=DEPTH_REFRESH)
        fresh_depth.cdf()                         # one initial table, shared by the copies
        self.depth = [fresh_depth.copy() for _ in range(8 * (max_depth + 2))]
        self.bits = [None] * (channels * 3 << K_TREE)

    def bit(self, key: int) -> AdaptiveBinaryModel:
        """B[c, node, vote] for key = (c * 64 + node) * 3 + vote."""
        model = self.bits[key]
        if model is None:
            model = self.bits[key] = self._fresh_bit.copy()
        return model


def depth_context(d, y, x, w, max_depth, depth_sum):
    """ctx of SPEC.md §9.2 from the depths ``d`` already coded in this channel.

    ``d`` holds the channel's depths in raster order (at least those before
    (y, x)); ``depth_sum`` is their sum.  ctx_n: the rounded mean of the left
    and upper depths (N + 1 for the channel's first latent); ctx_c: twice the
    channel's mean depth so far, rounded half up and capped at 6 (-1 before
    the first latent).  Returns ctx = 8 * ctx_n + ctx_c + 1.
    """
    n = y * w + x                                 # latents coded so far in this channel
    if x > 0:
        left = d[n - 1]
        top = d[n - w] if y > 0 else left
        ctx_n = (left + top + 1) >> 1
    elif y > 0:
        ctx_n = d[n - w]
    else:
        return 8 * (max_depth + 1)                # ctx_n = N + 1, ctx_c = -1
    ctx_c = (4 * depth_sum + n) // (2 * n)
    if ctx_c > 6:
        ctx_c = 6
    return 8 * ctx_n + ctx_c + 1


def depth_contexts(depth: np.ndarray, max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`depth_context` of every latent of a (C, h, w) depth array at once.

    Returns (ctx_n, cc), int64 arrays of depth's shape with ctx = 8 * ctx_n + cc
    (cc = ctx_c + 1 in 0..7).  The coder and the decoder learn the depths one latent
    at a time and call :func:`depth_context`; an encoder that already holds every
    depth (the context pass of SPEC.md §5.6) computes them all at once here.  The
    tests check that both give the same ctx at every latent.
    """
    d = np.asarray(depth, dtype=np.int64)
    if d.ndim != 3:
        raise ValueError(f"depth must be (C, h, w), got shape {d.shape}")
    c, h, w = d.shape
    left = np.empty_like(d)
    left[:, :, 1:] = d[:, :, :-1]
    left[:, :, 0] = 0
    up = np.empty_like(d)
    up[:, 1:, :] = d[:, :-1, :]
    up[:, 0, :] = left[:, 0, :]                          # first row: "up" is the left depth
    ctx_n = (left + up + 1) >> 1                         # x > 0
    ctx_n[:, 1:, 0] = d[:, :-1, 0]                       # x = 0, y > 0: the depth above
    ctx_n[:, 0, 0] = max_depth + 1                       # the channel's first latent
    flat = d.reshape(c, h * w)
    before = np.cumsum(flat, axis=1) - flat              # S: sum of the depths coded before
    n = np.arange(h * w, dtype=np.int64)
    cc = np.minimum(6, (4 * before + n) // np.maximum(2 * n, 1)) + 1
    cc[:, 0] = 0                                         # n = 0: ctx_c = -1
    return ctx_n, cc.reshape(c, h, w)


def vote(d, k, y, x, w, level, prefix):
    """vote in {0, 1, 2} of SPEC.md §9.3: the neighbours' bit at this tree level.

    A neighbour (left, then upper; ``d``/``k``: the channel's depths and
    indices in raster order) votes when its depth exceeds ``level`` and its
    path starts with the same ``level`` bits ``prefix``: +1 for bit 1, -1 for
    bit 0.  Returns 1 + sign(sum of votes).
    """
    s = 0
    if x > 0:
        p = y * w + x - 1
        rn = d[p]
        if rn > level and (k[p] >> (rn - level)) == prefix:
            s += 1 if (k[p] >> (rn - 1 - level)) & 1 else -1
    if y > 0:
        p = (y - 1) * w + x
        rn = d[p]
        if rn > level and (k[p] >> (rn - level)) == prefix:
            s += 1 if (k[p] >> (rn - 1 - level)) & 1 else -1
    return 1 + (s > 0) - (s < 0)


def _check_symbols(depth, index, max_depth):
    depth = np.asarray(depth)
    index = np.asarray(index)
    if depth.ndim != 3 or depth.shape != index.shape:
        raise ValueError("depth and index must be (M, h, w) arrays of one shape")
    if depth.size and (depth.min() < 0 or depth.max() > max_depth):
        raise ValueError(f"depths must lie in 0..{max_depth}")
    if depth.size and (index.min() < 0 or np.any(index >> depth.astype(np.int64) != 0)):
        raise ValueError("index must satisfy 0 <= index < 2^depth")
    return depth, index


def _intervals(depth, index, max_depth, labels=None):
    """The coding steps of SPEC.md §9.1 in order, as two lists: starts, masses.

    The encoder's walk.  Each step asks a model of ``SymbolModels`` for the interval of
    the symbol (``model.interval(s)``), then counts the symbol (``model.update(s)``);
    ``decode_symbols`` walks in the same order and its ``model.decode(dec)`` counts the
    same symbol, so the two sides' models stay in the same state (synchronized states)
    without anything about them in the payload.  With a list ``labels``, also appends one
    (channel, model, symbol) per step (see ``coding_steps``).
    """
    m, h, w = depth.shape
    starts, masses = [], []
    put_s, put_m = starts.append, masses.append
    models = SymbolModels(m, max_depth)
    activity, depth_models, bit_model = models.activity, models.depth, models.bit
    for c in range(m):
        d = depth[c].ravel().tolist()
        k = index[c].ravel().tolist()
        active = 1 if any(d) else 0
        start, mass = activity.interval(active)
        put_s(start)
        put_m(mass)
        activity.update(active)
        if labels is not None:
            labels.append((c, "A", active))
        if not active:
            continue
        base_c = c * 3 << K_TREE
        depth_sum = 0
        for y in range(h):
            for x in range(w):
                pos = y * w + x
                r = d[pos]
                ctx = depth_context(d, y, x, w, max_depth, depth_sum)
                model = depth_models[ctx]
                start, mass = model.interval(r)
                put_s(start)
                put_m(mass)
                model.update(r)
                if labels is not None:
                    labels.append((c, f"D[{ctx // 8},{ctx % 8 - 1}]", r))  # 8 ctx_n + ctx_c + 1
                depth_sum += r
                if not r:                                     # depth 0: no index bits
                    continue
                v = k[pos]
                node = 1
                for level in range(r if r < K_TREE else K_TREE):
                    bit = (v >> (r - 1 - level)) & 1
                    nv = vote(d, k, y, x, w, level, node - (1 << level))
                    model = bit_model(base_c + node * 3 + nv)
                    start, mass = model.interval(bit)
                    put_s(start)
                    put_m(mass)
                    model.update(bit)
                    if labels is not None:
                        labels.append((c, f"B[{c},{node},{nv}]", bit))
                    node = 2 * node + bit
                rest = r - K_TREE
                if rest > 0:                                  # uniform fast path (§2.9)
                    shift = 24 - rest
                    low = v & ((1 << rest) - 1)
                    put_s(low << shift)
                    put_m(1 << shift)
                    if labels is not None:
                        labels.append((c, f"U{rest}", low))
    return starts, masses


class CodingStep(NamedTuple):
    """One coding step of the payload: ``symbol`` coded as [start, start + mass) of 2^24."""
    channel: int
    model: str        # "A", "D[ctx_n,ctx_c]", "B[c,node,vote]" or "U<r>" (r raw bits)
    symbol: int
    start: int
    mass: int


def coding_steps(depth: np.ndarray, index: np.ndarray, max_depth: int) -> list:
    """Every coding step of the payload, in order, as ``CodingStep`` records.

    The same walk as ``encode_symbols`` (the payload is exactly these
    intervals, range-coded), with each step named after its model: "A"
    (channel activity, §9.1), "D[ctx_n,ctx_c]" (depth, §9.2),
    "B[c,node,vote]" (index bit, §9.3), "U<r>" (r raw index bits, §2.9).
    For teaching and tests (``bac_ref.tour`` replays it); slower than
    ``encode_symbols``.
    """
    depth, index = _check_symbols(depth, index, max_depth)
    labels = []
    starts, masses = _intervals(depth, index, max_depth, labels)
    return [CodingStep(c, name, sym, start, mass)
            for (c, name, sym), start, mass in zip(labels, starts, masses)]


def encode_symbols(depth: np.ndarray, index: np.ndarray, max_depth: int) -> bytes:
    """Range-code the (depth, index) arrays of shape (M, h, w) (SPEC.md §9.1)."""
    depth, index = _check_symbols(depth, index, max_depth)
    starts, masses = _intervals(depth, index, max_depth)
    enc = Encoder()
    enc.encode_intervals(starts, masses)
    return enc.finish()


def decode_symbols(payload: bytes, shape, max_depth: int):
    """Inverse of encode_symbols: (depth, index) int64 arrays of ``shape`` (M, h, w).

    The decoder's walk mirrors the encoder's: the same models, asked for a
    symbol (``model.decode(dec)``) where the encoder gave them one.
    Raises BitstreamError when the payload is not exactly what encode_symbols
    writes for some symbols (SPEC.md §2.8, §9.4).
    """
    m, h, w = shape
    dec = Decoder(payload)
    quantile, consume = dec.quantile, dec.consume
    depth = np.zeros(shape, dtype=np.int64)
    index = np.zeros(shape, dtype=np.int64)
    models = SymbolModels(m, max_depth)
    activity, depth_models, bit_model = models.activity, models.depth, models.bit
    n = h * w
    for c in range(m):
        if not activity.decode(dec):
            continue
        d = [0] * n
        k = [0] * n
        base_c = c * 3 << K_TREE
        depth_sum = 0
        for y in range(h):
            for x in range(w):
                pos = y * w + x
                r = depth_models[depth_context(d, y, x, w, max_depth, depth_sum)].decode(dec)
                depth_sum += r
                d[pos] = r
                if not r:                                     # depth 0: no index (k = 0)
                    continue
                node = 1
                levels = r if r < K_TREE else K_TREE
                for level in range(levels):
                    # the vote of later levels reads k[pos] only for neighbours: safe
                    key = base_c + node * 3 + vote(d, k, y, x, w, level, node - (1 << level))
                    node = 2 * node + bit_model(key).decode(dec)
                v = node - (1 << levels)                      # the bits decoded so far
                rest = r - K_TREE
                if rest > 0:                                  # uniform fast path (§2.9)
                    shift = 24 - rest
                    low = quantile() >> shift
                    consume(low << shift, 1 << shift)
                    v = (v << rest) | low
                k[pos] = v
        if not any(d):              # the encoder marks a channel active iff a depth is > 0
            raise BitstreamError(f"channel {c} is coded as active but all its depths are 0 "
                                 "(SPEC.md §9.1): not a payload the encoder writes")
        depth[c] = np.asarray(d, dtype=np.int64).reshape(h, w)
        index[c] = np.asarray(k, dtype=np.int64).reshape(h, w)
    dec.check_end()
    return depth, index


def paper_rate_estimate(depth: np.ndarray, index: np.ndarray, max_depth: int) -> float:
    """The paper's code-length estimate in bits (tables free), for comparison.

    Sum over latents of -log2 of the per-channel empirical frequency of the
    grid point j = (2 index + 1) 2^(N - depth), fitted on the same latents
    (Yang et al. 2020, their evaluation code; ../SPEC.md §9.5).
    """
    j = (2 * np.asarray(index, dtype=np.int64) + 1) << (max_depth - np.asarray(depth, dtype=np.int64))
    bits = 0.0
    for jc in j.reshape(j.shape[0], -1):
        _, counts = np.unique(jc, return_counts=True)
        bits -= float(np.sum(counts * np.log2(counts / counts.sum())))
    return bits
