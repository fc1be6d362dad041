"""Large images in pieces: g_a / g_s in strips with a halo (bac_ref/tiling.py), VBQ in
channel groups and the decoder's per-channel dequantization (bac_ref/codec.py).

The pieces must give the whole-image result: the transforms within SPEC.md §7.3's
tolerance (float32 summation order may differ), everything after them exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from bac_ref import codec, tiling, vbq


@pytest.fixture(scope="module")
def photo(kodim23):
    return np.array(kodim23[100:181, 200:269])          # (81, 69, 3): 6 x 5 latents


@pytest.fixture(scope="module")
def model():
    return codec.get_model()


def test_strips_cover_the_rows_once():
    for h in (1, 2, 7, 16, 33):
        for n in (1, 2, 5, 100):
            plan = tiling.strips(h, 10, n)
            kept = [r for _, a, b, _ in plan for r in range(a, b)]
            assert kept == list(range(h))
            for a0, a, b, b0 in plan:
                assert a0 == max(0, a - tiling.HALO) and b0 == min(h, b + tiling.HALO)
    assert len(tiling.strips(32, 48)) == 1                # a 768 x 512 photo: one strip
    assert len(tiling.strips(188, 250)) == 6              # 4000 x 3000: 6 strips of 32 rows


@pytest.mark.parametrize("rows", [1, 2, 3])
def test_strips_match_the_whole_image(photo, model, rows):
    x = photo.astype(np.float32) / np.float32(255)
    mu0, s0 = model.analysis(x, strip_rows=10 ** 6)
    mu1, s1 = model.analysis(x, strip_rows=rows)
    assert np.abs(mu1 - mu0).max() <= 1e-4 and np.abs(s1 - s0).max() <= 1e-4   # SPEC §7.3
    y0 = model.synthesis(mu0, size=x.shape[:2], strip_rows=10 ** 6)
    y1 = model.synthesis(mu0, size=x.shape[:2], strip_rows=rows)
    assert np.abs(y1 - y0).max() <= 1e-4


def test_a_halo_too_small_is_caught(photo, model, monkeypatch):
    """The check above can fail: without a halo the strip edges are wrong."""
    monkeypatch.setattr(tiling, "HALO", 0)
    x = photo.astype(np.float32) / np.float32(255)
    mu0, _ = model.analysis(x, strip_rows=10 ** 6)
    mu1, _ = model.analysis(x, strip_rows=2)
    y0 = model.synthesis(mu0, size=x.shape[:2], strip_rows=10 ** 6)
    y1 = model.synthesis(mu0, size=x.shape[:2], strip_rows=2)
    assert np.abs(mu1 - mu0).max() > 1e-2 and np.abs(y1 - y0).max() > 1e-2


def test_codec_in_strips_and_groups(photo, model, monkeypatch):
    photo = np.array(photo[:64, :80])                                # 4 x 5 latents
    whole = codec.compress_details(photo, 2.0)
    ref = codec.decompress(whole.data)
    monkeypatch.setattr(tiling, "STRIP_PIXELS", 16 * 16 * 5 * 2)      # strips of 2 latent rows
    monkeypatch.setattr(codec, "GROUP_LATENTS", 4 * 5 * 5)            # VBQ on 5 channels at a time
    monkeypatch.setattr(codec, "CANDIDATE_GROUP_LATENTS", 4 * 5 * 3)  # Candidates on 3
    enc = codec.Encoder(photo)
    assert len(enc._groups) > 1
    # VBQ by groups == VBQ on all channels (same mu, sigma): exact
    q = enc.symbols(2.0)
    first = vbq.quantize(enc.mu.astype(np.float64), enc.sigma.astype(np.float64), 2.0,
                         enc.prior, enc.max_depth, axis=0)
    full = vbq.second_pass(first, enc.mu.astype(np.float64), enc.sigma.astype(np.float64), 2.0,
                           enc.prior, enc.max_depth, model.M, axis=0)
    full = vbq.context_pass(full.depth, enc.mu, enc.sigma, 2.0, enc.prior, enc.max_depth)
    assert np.array_equal(q.depth, full.depth) and np.array_equal(q.index, full.index)
    assert q.zhat.tobytes() == full.zhat.tobytes()
    # and a lambda map takes the same group path
    lam_map = np.full(enc.mu.shape, 2.0)
    qm = enc.symbols(lam_map)
    assert np.array_equal(qm.depth, full.depth) and qm.zhat.tobytes() == full.zhat.tobytes()
    # decoding in strips: the same pixels as the whole-image path, within SPEC §10's +-1
    dec = codec.decompress(whole.data)
    assert np.abs(dec.astype(int) - ref.astype(int)).max() <= 1
    # the strip-wise PSNR is the whole-image formula
    assert enc.quality(whole.zhat) == pytest.approx(codec.psnr(photo, ref), abs=0.01)


def test_decoder_dequantizes_inactive_channels_exactly(photo):
    data = codec.compress(photo, 30.0)
    header, depth, index, zhat = codec.decode_symbols(data)
    active = depth.reshape(depth.shape[0], -1).any(axis=1)
    assert 0 < active.sum() < depth.shape[0]                        # both kinds present
    ref = vbq.dequantize(depth, index, codec.model_prior(codec.get_model()), axis=0)
    assert zhat.tobytes() == ref.tobytes()
