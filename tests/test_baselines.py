"""Tests of the baseline quantizers (SPEC.md §12) and their real entropy coding."""
import numpy as np
import pytest

from bac_ref.bench import baselines as B
from bac_ref import priors as P
from bac_ref import vbq


@pytest.fixture(scope="module")
def latents():
    rng = np.random.default_rng(0)
    mu = np.stack([rng.standard_normal((6, 7)) * 2, rng.laplace(size=(6, 7)) + 3,
                   rng.uniform(-1, 1, (6, 7))])                          # (C=3, H, W)
    sigma = np.exp(rng.uniform(-3, 0, mu.shape))
    return mu, sigma


def test_uniform_definition(latents):
    mu, _ = latents
    q = B.UniformQuantizer(4).fit(mu)
    lo, hi = mu.reshape(3, -1).min(1), mu.reshape(3, -1).max(1)
    delta = (hi - lo) / 4
    r = q.quantize(mu)
    expect = np.clip(np.floor((mu - lo[:, None, None]) / delta[:, None, None]), 0, 3)
    assert np.array_equal(r.symbols, expect.astype(np.int64))
    assert np.allclose(r.zhat, lo[:, None, None] + delta[:, None, None] * (expect + 0.5))
    assert np.all(np.abs(r.zhat - mu) <= delta[:, None, None] / 2 + 1e-12)
    assert np.array_equal(q.reconstruct(r.symbols), r.zhat)
    with pytest.raises(ValueError, match="levels"):
        B.UniformQuantizer(257)


def test_kmeans_finds_clusters():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(-5, 0.1, 300), rng.normal(0, 0.1, 300), rng.normal(4, 0.1, 300)])
    q = B.KMeansQuantizer(3).fit(x[None, :])
    assert np.allclose(q.centroids[0], [-5, 0, 4], atol=0.05)
    r = q.quantize(x[None, :])
    assert np.array_equal(r.symbols[0], np.repeat([0, 1, 2], 300))
    # deterministic
    q2 = B.KMeansQuantizer(3).fit(x[None, :])
    assert np.array_equal(q.centroids, q2.centroids)


def test_kmeans_fewer_distinct_values_than_k():
    x = np.array([[1.0, 1.0, 2.0, 2.0, 2.0]])
    q = B.KMeansQuantizer(4).fit(x)
    assert q.centroids.shape == (1, 4) and np.all(np.diff(q.centroids[0]) > 0)
    assert np.array_equal(q.quantize(x).zhat, x)


def test_blind_vbq_is_vbq_with_channel_rms_sigma(latents):
    mu, sigma = latents
    prior = P.gaussian([0.0, 3.0, 0.0], [2.0, 1.5, 0.6])
    q = B.BlindVBQ(0.5, prior, max_depth=8).fit(mu, sigma)
    rms = np.sqrt(np.mean(sigma.reshape(3, -1) ** 2, axis=1))
    assert np.allclose(q.sigma_c, rms)
    r = q.quantize(mu, sigma)
    ref = vbq.quantize(mu, np.broadcast_to(rms[:, None, None], mu.shape), 0.5, prior, 8)
    assert np.array_equal(r.symbols, ref.j - 1)
    assert np.array_equal(r.zhat, ref.zhat)
    assert np.array_equal(q.reconstruct(r.symbols), ref.zhat)


def test_integer_rounding(latents):
    mu, _ = latents
    q = B.IntegerRounding().fit(mu)
    r = q.quantize(mu)
    assert np.array_equal(r.zhat, np.rint(mu))
    far = mu.copy()
    far[0, 0, 0] = 1e6                                                 # clamped to the fitted range
    assert q.quantize(far).zhat[0, 0, 0] == np.rint(mu[0]).max()
    q2 = B.IntegerRounding(step=0.25).fit(mu)
    assert np.allclose(q2.quantize(mu).zhat, np.rint(mu / 0.25) * 0.25)


def test_channel_axis(latents):
    mu, _ = latents
    a = B.UniformQuantizer(8).fit(mu)
    b = B.UniformQuantizer(8, axis=1).fit(np.moveaxis(mu, 0, 1))
    assert np.array_equal(np.moveaxis(a.quantize(mu).symbols, 0, 1),
                          b.quantize(np.moveaxis(mu, 0, 1)).symbols)
    with pytest.raises(ValueError, match="channels"):
        a.quantize(mu[:2])


def test_entropy_model_from_counts_is_valid():
    pytest.importorskip("bac_ref.intmodels", reason="bac_ref.intmodels (issue 2) not available")
    m = B.ChannelEntropyModel(np.array([[5, 0, 3], [0, 0, 0]]))
    cdfs = m.cdfs()
    assert [len(c) for c in cdfs] == [4, 4]
    for c in cdfs:
        assert c[0] == 0 and c[-1] == 1 << 24 and all(b > a for a, b in zip(c, c[1:]))


@pytest.mark.parametrize("make", [
    lambda: B.UniformQuantizer(16),
    lambda: B.KMeansQuantizer(6),
    lambda: B.BlindVBQ(0.2, None, max_depth=6),
    lambda: B.IntegerRounding(step=0.5),
])
def test_real_bytes_round_trip(make, latents):
    pytest.importorskip("bac_ref.rangecoder", reason="bac_ref.rangecoder (issue 2) not available")
    pytest.importorskip("bac_ref.intmodels", reason="bac_ref.intmodels (issue 2) not available")
    from bac_ref.rangecoder import max_payload_bits
    mu, sigma = latents
    q = make()
    q = q.fit(mu, sigma) if isinstance(q, B.BlindVBQ) else q.fit(mu)
    r = q.quantize(mu, sigma)
    data = q.encode(r.symbols)
    assert isinstance(data, bytes) and len(data) % 4 == 0
    assert np.array_equal(q.decode(data, mu.shape), r.symbols)
    bits = q.ideal_bits(r.symbols)
    assert 8 * len(data) < max_payload_bits(bits, r.symbols.size)


def test_vbq_symbols_through_channel_model(latents):
    """The comparison script's VBQ path: j - 1 symbols, per-channel tables over 2^(N+1) - 1 points."""
    pytest.importorskip("bac_ref.rangecoder", reason="bac_ref.rangecoder (issue 2) not available")
    mu, sigma = latents
    r = vbq.quantize(mu, sigma, 0.3, None, 10)
    m = B.ChannelEntropyModel.from_symbols(r.j - 1, (1 << 11) - 1, axis=0)
    data = m.encode(r.j - 1)
    assert np.array_equal(m.decode(data, mu.shape), r.j - 1)
