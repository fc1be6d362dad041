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


import numpy as np

from .errors import BitstreamError
from .intmodels import cdf_from_counts
from .rangecoder import Decoder, Encoder

TOTAL = 1 << 24
K_TREE = 6                 # index levels coded with adaptive binary models (§9.3)
INCREMENT = 64             # count increment of every adaptive model (§9.2, §9.3)
LIMIT = 1 << 16            # halve all counts when their total exceeds this
DEPTH_REFRESH = 16         # the depth tables are rebuilt every 16 updates (§9.2)

_FREE2 = TOTAL - 2


def _mass0(c0: int, c1: int) -> int:
    """Mass of bit 0 for counts (c0, c1): SPEC.md §3.3 binary rule."""
    total = c0 + c1
    return 1 + (2 * c0 * _FREE2 + total) // (2 * total)


class _DepthModels:
    """The depth models D[ctx] (SPEC.md §9.2), shared by all channels.

    ctx = 8 * ctx_n + ctx_c + 1 combines the neighbours' depths (ctx_n in
    0..N+1) with the channel's mean depth so far (ctx_c in -1..6), so
    (N + 2) * 8 models in all.  Counts start at 1 for each of the N+1 depths;
    after coding depth r, counts[r] += INCREMENT, and when the total exceeds
    LIMIT every count becomes (count + 1) >> 1.  The coding table is
    cdf_from_counts(counts) (SPEC.md §3.2), computed at creation and then
    after every DEPTH_REFRESH-th update of that context (the table lags the
    counts by fewer than 16 symbols: a cheap, exactly specified schedule).
    """

    def __init__(self, max_depth: int):
        n = max_depth + 1
        contexts = 8 * (max_depth + 2)
        self.counts = [[1] * n for _ in range(contexts)]
        self.totals = [n] * contexts
        self.updates = [0] * contexts
        first = list(cdf_from_counts([1] * n))
        self.tables = [first[:] for _ in range(contexts)]

    def update(self, ctx: int, r: int) -> None:
        counts = self.counts[ctx]
        counts[r] += INCREMENT
        self.totals[ctx] += INCREMENT
        if self.totals[ctx] > LIMIT:
            for i, v in enumerate(counts):
                counts[i] = (v + 1) >> 1
            self.totals[ctx] = sum(counts)
        self.updates[ctx] += 1
        if self.updates[ctx] % DEPTH_REFRESH == 0:
            self.tables[ctx] = list(cdf_from_counts(counts))


def _depth_context(d, y, x, w, max_depth, depth_sum):
    """ctx of SPEC.md §9.2 from the depths already coded in this channel.

    ctx_n: the rounded mean of the left and upper depths (N + 1 for the
    channel's first latent); ctx_c: twice the channel's mean depth so far,
    rounded half up and capped at 6 (-1 before the first latent).
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
    ctx_c = min(6, (4 * depth_sum + n) // (2 * n))
    return 8 * ctx_n + ctx_c + 1


def _vote(d, k, y, x, w, level, prefix):
    """vote in {0, 1, 2} of SPEC.md §9.3: the neighbours' bit at this tree level.

    A neighbour (left, then upper) votes when its depth exceeds ``level`` and
    its path starts with the same ``level`` bits ``prefix``: +1 for bit 1,
    -1 for bit 0.  Returns 1 + sign(sum of votes).
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


def encode_symbols(depth: np.ndarray, index: np.ndarray, max_depth: int) -> bytes:
    """Range-code the (depth, index) arrays of shape (M, h, w) (SPEC.md §9.1)."""
    depth = np.asarray(depth)
    index = np.asarray(index)
    if depth.ndim != 3 or depth.shape != index.shape:
        raise ValueError("depth and index must be (M, h, w) arrays of one shape")
    if depth.size and (depth.min() < 0 or depth.max() > max_depth):
        raise ValueError(f"depths must lie in 0..{max_depth}")
    if depth.size and (index.min() < 0 or np.any(index >> depth.astype(np.int64) != 0)):
        raise ValueError("index must satisfy 0 <= index < 2^depth")
    m, h, w = depth.shape
    starts, masses = [], []
    put_s, put_m = starts.append, masses.append
    active_c = [1, 1]
    depth_models = _DepthModels(max_depth)
    node_c0 = [1] * (m * 3 << K_TREE)      # B[c, node, vote]: counts of bit 0
    node_c1 = [1] * (m * 3 << K_TREE)      # ... and of bit 1
    for c in range(m):
        d = depth[c].ravel().tolist()
        k = index[c].ravel().tolist()
        active = 1 if any(d) else 0
        m0 = _mass0(*active_c)
        put_s(0 if active == 0 else m0)
        put_m(m0 if active == 0 else TOTAL - m0)
        _update_binary(active_c, active)
        if not active:
            continue
        base_c = c * 3 << K_TREE
        depth_sum = 0
        for y in range(h):
            for x in range(w):
                pos = y * w + x
                r = d[pos]
                ctx = _depth_context(d, y, x, w, max_depth, depth_sum)
                table = depth_models.tables[ctx]
                put_s(table[r])
                put_m(table[r + 1] - table[r])
                depth_models.update(ctx, r)
                depth_sum += r
                v = k[pos]
                node = 1
                for level in range(min(r, K_TREE)):
                    bit = (v >> (r - 1 - level)) & 1
                    key = base_c + node * 3 + _vote(d, k, y, x, w, level, node - (1 << level))
                    c0, c1 = node_c0[key], node_c1[key]
                    m0 = _mass0(c0, c1)
                    if bit:
                        put_s(m0)
                        put_m(TOTAL - m0)
                        c1 += INCREMENT
                    else:
                        put_s(0)
                        put_m(m0)
                        c0 += INCREMENT
                    if c0 + c1 > LIMIT:
                        c0, c1 = (c0 + 1) >> 1, (c1 + 1) >> 1
                    node_c0[key], node_c1[key] = c0, c1
                    node = 2 * node + bit
                rest = r - K_TREE
                if rest > 0:                                  # uniform fast path (§2.9)
                    shift = 24 - rest
                    put_s((v & ((1 << rest) - 1)) << shift)
                    put_m(1 << shift)
    enc = Encoder()
    enc.encode_intervals(starts, masses)
    return enc.finish()


def _update_binary(counts, bit):
    counts[bit] += INCREMENT
    if counts[0] + counts[1] > LIMIT:
        counts[0], counts[1] = (counts[0] + 1) >> 1, (counts[1] + 1) >> 1


def decode_symbols(payload: bytes, shape, max_depth: int):
    """Inverse of encode_symbols: (depth, index) int64 arrays of ``shape`` (M, h, w).

    Raises BitstreamError when the payload is not exactly what encode_symbols
    writes for some symbols (SPEC.md §2.8, §9.4).
    """
    m, h, w = shape
    dec = Decoder(payload)
    quantile, consume = dec.quantile, dec.consume
    depth = np.zeros(shape, dtype=np.int64)
    index = np.zeros(shape, dtype=np.int64)
    active_c = [1, 1]
    depth_models = _DepthModels(max_depth)
    node_c0 = [1] * (m * 3 << K_TREE)
    node_c1 = [1] * (m * 3 << K_TREE)
    n = h * w
    for c in range(m):
        m0 = _mass0(*active_c)
        if quantile() < m0:
            consume(0, m0)
            active = 0
        else:
            consume(m0, TOTAL - m0)
            active = 1
        _update_binary(active_c, active)
        if not active:
            continue
        d = [0] * n
        k = [0] * n
        base_c = c * 3 << K_TREE
        depth_sum = 0
        for y in range(h):
            for x in range(w):
                pos = y * w + x
                ctx = _depth_context(d, y, x, w, max_depth, depth_sum)
                table = depth_models.tables[ctx]
                q = quantile()
                r = 0
                while table[r + 1] <= q:                      # at most N+1 steps
                    r += 1
                consume(table[r], table[r + 1] - table[r])
                depth_models.update(ctx, r)
                depth_sum += r
                d[pos] = r
                node = 1
                v = 0
                for level in range(min(r, K_TREE)):
                    key = base_c + node * 3 + _vote(d, k, y, x, w, level, node - (1 << level))
                    c0, c1 = node_c0[key], node_c1[key]
                    m0 = _mass0(c0, c1)
                    if quantile() < m0:
                        consume(0, m0)
                        bit = 0
                        c0 += INCREMENT
                    else:
                        consume(m0, TOTAL - m0)
                        bit = 1
                        c1 += INCREMENT
                    if c0 + c1 > LIMIT:
                        c0, c1 = (c0 + 1) >> 1, (c1 + 1) >> 1
                    node_c0[key], node_c1[key] = c0, c1
                    node = 2 * node + bit
                    v = 2 * v + bit
                    # the vote of later levels reads k[pos] only for neighbours: safe
                rest = r - K_TREE
                if rest > 0:
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
