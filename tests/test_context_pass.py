"""The context pass (SPEC.md §5.6): depths re-chosen with bits priced by §9.2's contexts.

An independent scalar reference (every grid point, the coder's own one-latent context
function, latents updated one by one) checks the vectorised pass bit for bit; the
other tests check the table, the objective it climbs and what it buys on a real image.
"""
import numpy as np
import pytest

from bac_ref import codec, entropy_model, priors as P, vbq
from helpers import _grid

LG = vbq.LOG2_FRAC_BITS


def _ctx(depths, y, x, w, n):
    """§9.2's ctx of latent (y, x) of one channel (depths: its (h, w) array), by the coder."""
    flat = depths.reshape(-1).tolist()
    k = y * w + x
    return entropy_model.depth_context(flat, y, x, w, n, sum(flat[:k]))


def _table_by_definition(depth, n):
    """L[ctx, r] * 2^32 of §5.6 from a walk over the active channels with the coder's ctx."""
    c, h, w = depth.shape
    counts = np.zeros((8 * (n + 2), n + 1), dtype=np.int64)
    for ch in range(c):
        if depth[ch].max() == 0:
            continue
        for y in range(h):
            for x in range(w):
                counts[_ctx(depth[ch], y, x, w, n), depth[ch, y, x]] += 1
    out = np.empty_like(counts)
    for i in range(counts.shape[0]):
        for r in range(n + 1):
            out[i, r] = vbq.log2_fixed(counts[i].sum() + n + 1) - vbq.log2_fixed(counts[i, r] + 1)
    return out


def _best_at_depth(z, d, k, mu, sigma, r, n):
    """(E, index) at depth r: the largest -D over the depth-r points, ties by §5.3 (2), (3)."""
    at = d == r
    zr, kr = z[at], k[at]
    with np.errstate(over="ignore", under="ignore"):
        if np.isinf(sigma):
            neg = np.zeros(zr.size)
        else:
            b = (zr - mu) / sigma
            neg = -((b * b) * 0.5)
    jlo = int(np.sum(z <= mu))                    # z is the whole grid in j order
    j = (2 * kr + 1) << (n - r)
    rho = np.where(j <= jlo, jlo - j, j - jlo - 1)
    best = np.lexsort((kr, rho, -neg))[0]
    return neg[best], int(kr[best])


def _context_pass_by_definition(depth, mu, sigma, lam, table, n, sweeps, qtable):
    """§5.6 one latent at a time (raster order inside each colour class)."""
    depth = depth.copy()
    c, h, w = depth.shape
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), depth.shape)
    grids = {}
    for _ in range(sweeps):
        cc = np.empty_like(depth)                 # the channel-mean part, from the sweep start
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    cc[ch, y, x] = _ctx(depth[ch], y, x, w, n) % 8
        for colour in range(3):
            for ch in range(c):
                t = 0 if qtable.shape[0] == 1 else ch
                if t not in grids:
                    grids[t] = _grid(qtable[t], n)
                z, d, k = grids[t]
                for y in range(h):
                    for x in range(w):
                        if (x + 2 * y) % 3 != colour:
                            continue
                        best = None
                        for r in range(n + 1):
                            hyp = depth[ch].copy()
                            hyp[y, x] = r
                            cost = (r << LG) + table[8 * (_ctx(hyp, y, x, w, n) // 8)
                                                     + cc[ch, y, x], r]
                            if x + 1 < w:
                                ctx_n = _ctx(hyp, y, x + 1, w, n) // 8
                                cost += table[8 * ctx_n + cc[ch, y, x + 1], hyp[y, x + 1]]
                            if y + 1 < h:
                                ctx_n = _ctx(hyp, y + 1, x, w, n) // 8
                                cost += table[8 * ctx_n + cc[ch, y + 1, x], hyp[y + 1, x]]
                            e, _ = _best_at_depth(z, d, k, mu[ch, y, x], sigma[ch, y, x], r, n)
                            with np.errstate(over="ignore"):
                                o = e - lam[ch, y, x] * (float(cost) * 2.0 ** -LG)
                            if best is None or o > best[0]:
                                best = (o, r)
                        depth[ch, y, x] = best[1]
    index = np.empty_like(depth)
    for ch in range(c):
        z, d, k = grids[0 if qtable.shape[0] == 1 else ch]
        for y in range(h):
            for x in range(w):
                index[ch, y, x] = _best_at_depth(z, d, k, mu[ch, y, x], sigma[ch, y, x],
                                                 depth[ch, y, x], n)[1]
    return depth, index


def test_depth_contexts_equal_the_coders_one_latent_rule():
    rng = np.random.default_rng(1)
    for _ in range(60):
        n = int(rng.integers(0, 12))
        d = rng.integers(0, n + 1, (int(rng.integers(1, 4)), int(rng.integers(1, 7)),
                                    int(rng.integers(1, 7))))
        ctx_n, cc = entropy_model.depth_contexts(d, n)
        for ch in range(d.shape[0]):
            for y in range(d.shape[1]):
                for x in range(d.shape[2]):
                    assert 8 * ctx_n[ch, y, x] + cc[ch, y, x] == _ctx(d[ch], y, x, d.shape[2], n)


def test_context_code_lengths_count_the_active_channels():
    rng = np.random.default_rng(2)
    n = 5
    d = rng.integers(0, n + 1, (4, 5, 6))
    d[1] = 0                                     # an inactive channel is not counted
    got = vbq.context_code_lengths(d, n)
    assert got.shape == (8 * (n + 2), n + 1) and got.dtype == np.int64
    assert np.array_equal(got, _table_by_definition(d, n))
    # the same table without the inactive channel; a different one without an active one
    assert np.array_equal(got, vbq.context_code_lengths(d[[0, 2, 3]], n))
    assert not np.array_equal(got, vbq.context_code_lengths(d[[0, 2]], n))
    # no active channel: every count 0, every length lg(N + 1)
    flat = vbq.context_code_lengths(np.zeros((2, 3, 3), np.int64), n)
    assert np.all(flat == vbq.log2_fixed(n + 1))


@pytest.mark.parametrize("seed", range(6))
def test_context_pass_equals_the_definition(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 7))
    c, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 6))
    prior = (P.standard_normal() if seed % 2 else
             P.gaussian(rng.normal(0, 1, c), np.exp(rng.uniform(-1, 1, c))))
    qtable = prior.table
    mu = rng.normal(0, 1.5, (c, h, w))
    sigma = np.exp(rng.uniform(-5, 1, (c, h, w)))
    if seed == 3:
        sigma[0, 0, :] = np.inf                  # D = 0 at every depth: the cost decides
    lam = (float(np.exp(rng.uniform(-3, 2))) if seed % 3 else
           np.exp(rng.uniform(-3, 3, (c, h, w))))  # a lambda map
    first = vbq.quantize(mu, sigma, lam, prior, n)
    start = vbq.second_pass(first, mu, sigma, lam, prior, n, c) if seed % 2 == 0 else first
    table = vbq.context_code_lengths(start.depth, n)
    sweeps = 1 + seed % 3
    got = vbq.context_pass(start.depth, mu, sigma, lam, prior, n, sweeps=sweeps)
    want_d, want_k = _context_pass_by_definition(start.depth, mu, sigma, lam, table, n,
                                                 sweeps, qtable)
    assert np.array_equal(got.depth, want_d)
    assert np.array_equal(got.index, want_k)
    assert got.zhat.tobytes() == vbq.dequantize(want_d, want_k, prior, axis=0).tobytes()


def _estimated_objective(depth, mu, sigma, lam, prior, n, table, cc):
    """sum over latents of E(d) - lam (d + L[ctx, d]) with the channel-mean part cc fixed."""
    q = vbq.Candidates(mu, sigma, prior, n)
    eff = np.empty((n + 1,) + q.mu.shape)
    for c0, c1, p0, p1, e, _ in q.chunks:
        eff[:, c0:c1, p0:p1] = e
    ctx_n, _ = entropy_model.depth_contexts(depth, n)
    d = depth.reshape(depth.shape[0], -1)
    e = np.take_along_axis(eff, d[None], 0)[0]
    bits = d + table[(8 * ctx_n + cc).reshape(d.shape), d] * 2.0 ** -LG
    return float(np.sum(e - lam * bits))


def test_one_sweep_never_lowers_the_objective_it_climbs():
    """Iterated conditional modes: with a scalar lambda, every update raises (or keeps) the
    image's objective sum E - lam (d + L[ctx, d]), neighbours' contexts included.  A pass
    that forgot the right or lower neighbour's term would climb something else."""
    rng = np.random.default_rng(7)
    prior = P.standard_normal()
    n = 8
    for trial in range(5):
        mu = rng.normal(0, 1, (3, 9, 11))
        sigma = np.exp(rng.uniform(-4, 0, mu.shape) + np.linspace(-1, 1, 11))
        lam = float(np.exp(rng.uniform(-2, 2)))
        start = vbq.second_pass(vbq.quantize(mu, sigma, lam, prior, n), mu, sigma, lam,
                                prior, n, 3)
        table = vbq.context_code_lengths(start.depth, n)
        _, cc = entropy_model.depth_contexts(start.depth, n)
        after = vbq.context_pass(start.depth, mu, sigma, lam, prior, n, sweeps=1)
        before_o = _estimated_objective(start.depth, mu, sigma, lam, prior, n, table, cc)
        after_o = _estimated_objective(after.depth, mu, sigma, lam, prior, n, table, cc)
        assert after_o >= before_o - 1e-9 * abs(before_o)
        if trial == 0:
            assert not np.array_equal(after.depth, start.depth)     # it does move depths


def test_context_pass_makes_smaller_files_at_about_the_same_psnr(kodim23):
    """What it is for (SPEC.md §5.6): measured 4-5 % fewer bytes at equal PSNR on the
    validation images; here a 256x256 crop of the demo photo at two rates."""
    crop = np.ascontiguousarray(kodim23[128:384, 256:512])
    enc = codec.Encoder(crop)
    for lam in (1.0, 8.0):
        plain = enc.encode(lam, context_pass=False)
        ctx = enc.encode(lam)
        assert len(ctx.data) < 0.985 * len(plain.data)
        assert enc.quality(ctx.zhat) > enc.quality(plain.zhat) - 0.15
        dec = codec.decompress_details(ctx.data)                     # the same decoder
        assert np.array_equal(dec.depth, ctx.depth) and np.array_equal(dec.index, ctx.index)


def test_context_pass_input_errors():
    prior = P.standard_normal()
    mu = np.zeros((2, 3, 4))
    sigma = np.ones_like(mu)
    depth = np.zeros((2, 3, 4), np.int64)
    cand = vbq.Candidates(mu, sigma, prior, 4)
    table = vbq.context_code_lengths(depth, 4)
    with pytest.raises(ValueError, match="depth must lie"):
        cand.context_pass(depth + 5, 1.0, table)
    with pytest.raises(ValueError, match="context code lengths"):
        cand.context_pass(depth, 1.0, table[:, :3])
    with pytest.raises(ValueError, match="lam"):
        cand.context_pass(depth, -1.0, table)
    with pytest.raises(ValueError, match="sweeps"):
        cand.context_pass(depth, 1.0, table, sweeps=-1)
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        vbq.Candidates(mu.reshape(2, 12), sigma.reshape(2, 12), prior, 4).context_pass(
            depth.reshape(2, 12), 1.0, table)
    with pytest.raises(ValueError, match="integer array"):
        vbq.context_code_lengths(depth.astype(float), 4)
    # zero sweeps: the starting depths, each at its better bracket point
    q = cand.context_pass(depth, 1.0, table, sweeps=0)
    assert np.array_equal(q.depth, depth)
