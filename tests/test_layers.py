"""bac_ref.layers against straightforward float64 loops (SPEC.md §7.1); NumPy only."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bac_ref import layers as L


# -- reference loops, written from the formulas in the layers docstring -----------------
def ref_conv2d(x, w, b, s, p):
    cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    xp = np.zeros((cin, h + 2 * p, wd + 2 * p))
    xp[:, p:p + h, p:p + wd] = x
    ho, wo = (h + 2 * p - kh) // s + 1, (wd + 2 * p - kw) // s + 1
    out = np.zeros((cout, ho, wo))
    for o in range(cout):
        for u in range(ho):
            for v in range(wo):
                out[o, u, v] = b[o] + np.sum(w[o].astype(np.float64)
                                             * xp[:, s * u:s * u + kh, s * v:s * v + kw])
    return out


def ref_conv_transpose2d(x, w, b, s, p, op):
    cin, h, wd = x.shape
    _, cout, kh, kw = w.shape
    ho, wo = (h - 1) * s - 2 * p + kh + op, (wd - 1) * s - 2 * p + kw + op
    full = np.zeros((cout, (h - 1) * s + kh, (wd - 1) * s + kw))
    for c in range(cin):
        for r in range(h):
            for q in range(wd):
                full[:, s * r:s * r + kh, s * q:s * q + kw] += x[c, r, q] * w[c].astype(np.float64)
    out = np.zeros((cout, ho, wo)) + np.asarray(b, np.float64)[:, None, None]
    for u in range(ho):
        for v in range(wo):
            if u + p < full.shape[1] and v + p < full.shape[2]:
                out[:, u, v] += full[:, u + p, v + p]
    return out


def ref_gdn(x, beta, gamma, inverse):
    c, h, w = x.shape
    out = np.zeros((c, h, w))
    for i in range(c):
        norm = beta[i] + sum(gamma[i, j] * x[j].astype(np.float64) ** 2 for j in range(c))
        out[i] = x[i] * np.sqrt(norm) if inverse else x[i] / np.sqrt(norm)
    return out


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# (C_in, C_out, k, stride, padding, H, W): odd sizes, every stride of the model and more,
# even kernels, inputs barely larger than the kernel.
CASES = [
    (3, 4, 9, 4, 4, 13, 7), (3, 4, 9, 4, 4, 16, 16), (4, 5, 5, 2, 2, 7, 9), (4, 5, 5, 2, 2, 1, 2),
    (2, 3, 3, 1, 1, 5, 6), (2, 3, 4, 3, 0, 11, 8), (1, 2, 1, 1, 0, 3, 4), (2, 2, 2, 2, 1, 5, 5),
]


@pytest.mark.parametrize("cin,cout,k,s,p,h,w", CASES)
def test_conv2d_matches_loops(cin, cout, k, s, p, h, w):
    rng = np.random.default_rng(hash((cin, cout, k, s, p, h, w)) % 2**32)
    x, wt, b = rnd(rng, cin, h, w), rnd(rng, cout, cin, k, k), rnd(rng, cout)
    y = L.conv2d(x, wt, b, stride=s, padding=p)
    assert y.dtype == np.float32 and y.flags.c_contiguous
    assert y.shape == (cout, L.conv2d_output_size(h, k, s, p), L.conv2d_output_size(w, k, s, p))
    np.testing.assert_allclose(y, ref_conv2d(x, wt, b, s, p), rtol=0, atol=2e-5)


@pytest.mark.parametrize("cin,cout,k,s,p,h,w", CASES)
def test_conv_transpose2d_matches_loops(cin, cout, k, s, p, h, w):
    rng = np.random.default_rng(hash((cout, cin, k, s, p, h, w)) % 2**32)
    x, wt, b = rnd(rng, cin, h, w), rnd(rng, cin, cout, k, k), rnd(rng, cout)
    for op in range(s):
        want_shape = (cout, (h - 1) * s - 2 * p + k + op, (w - 1) * s - 2 * p + k + op)
        if min(want_shape) < 1:
            with pytest.raises(ValueError):
                L.conv_transpose2d(x, wt, b, stride=s, padding=p, output_padding=op)
            continue
        y = L.conv_transpose2d(x, wt, b, stride=s, padding=p, output_padding=op)
        assert y.dtype == np.float32 and y.flags.c_contiguous and y.shape == want_shape
        np.testing.assert_allclose(y, ref_conv_transpose2d(x, wt, b, s, p, op), rtol=0, atol=2e-5)


def test_conv_without_bias():
    rng = np.random.default_rng(1)
    x, wt = rnd(rng, 2, 6, 5), rnd(rng, 3, 2, 3, 3)
    np.testing.assert_allclose(L.conv2d(x, wt, None, 2, 1),
                               ref_conv2d(x, wt, np.zeros(3), 2, 1), atol=1e-5)
    wt2 = rnd(rng, 2, 3, 3, 3)
    np.testing.assert_allclose(L.conv_transpose2d(x, wt2, None, 2, 1, 1),
                               ref_conv_transpose2d(x, wt2, np.zeros(3), 2, 1, 1), atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 9), s=st.integers(1, 4), p=st.integers(0, 4), h=st.integers(1, 12),
       extra=st.integers(0, 3), data=st.data())
def test_transposed_conv_is_the_adjoint_of_conv(k, s, p, h, extra, data):
    """<conv(x), y> == <x, convT(y)>, with output_padding picking x's size back (SPEC.md §7.1)."""
    hin = h + k                       # conv input size, large enough for any padding
    w = hin + s * extra               # same residue mod s, so one output_padding fits both axes
    op = (hin + 2 * p - k) % s
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x, wt = rnd(rng, 2, hin, w), rnd(rng, 3, 2, k, k)
    cx = L.conv2d(x, wt, None, s, p)                                   # (3, Ho, Wo)
    y = rnd(rng, *cx.shape)
    ty = L.conv_transpose2d(y, wt, None, s, p, op)                     # (2, H, W)
    assert ty.shape == x.shape
    lhs = np.vdot(cx.astype(np.float64), y)
    rhs = np.vdot(x.astype(np.float64), ty)
    # float32 round-off scales with the terms, not with their (possibly cancelling) sum
    scale = np.vdot(np.abs(cx).astype(np.float64), np.abs(y)) + np.vdot(np.abs(x), np.abs(ty))
    assert abs(lhs - rhs) <= 1e-5 * (1 + scale)


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 10), k=st.integers(1, 9), s=st.integers(1, 4), p=st.integers(0, 4),
       op=st.integers(0, 3))
def test_transposed_output_size_is_pytorchs_formula(h, k, s, p, op):
    op = op % s
    want = (h - 1) * s - 2 * p + (k - 1) + op + 1          # torch.nn.ConvTranspose2d, dilation 1
    assert L.conv_transpose2d_output_size(h, k, s, p, op) == want
    x = np.ones((1, h, h + 1), np.float32)
    wt = np.ones((1, 1, k, k), np.float32)
    if want < 1:
        with pytest.raises(ValueError):
            L.conv_transpose2d(x, wt, None, s, p, op)
    else:
        assert L.conv_transpose2d(x, wt, None, s, p, op).shape == (1, want, want + s)


def test_blocked_equals_unblocked(monkeypatch):
    """Splitting the im2col/col2im matrices into row blocks does not change the result."""
    rng = np.random.default_rng(2)
    x = rnd(rng, 3, 23, 17)
    w1, w2, b = rnd(rng, 4, 3, 5, 5), rnd(rng, 3, 4, 5, 5), rnd(rng, 4)
    beta, gamma = np.ones(3, np.float32), np.full((3, 3), 0.2, np.float32)
    a1, a2 = L.conv2d(x, w1, b, 2, 2), L.conv_transpose2d(x, w2, b, 2, 2, 1)
    a3 = L.gdn(x, beta, gamma)
    monkeypatch.setattr(L, "COLS_BUDGET", 200)      # a few rows per block
    monkeypatch.setattr(L, "GDN_CHUNK", 10)         # 10 pixels per block, the last one partial
    np.testing.assert_allclose(L.conv2d(x, w1, b, 2, 2), a1, atol=1e-5)
    np.testing.assert_allclose(L.conv_transpose2d(x, w2, b, 2, 2, 1), a2, atol=1e-5)
    np.testing.assert_allclose(L.gdn(x, beta, gamma), a3, atol=1e-6)


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_loops(inverse):
    rng = np.random.default_rng(3)
    c = 5
    x = rnd(rng, c, 3, 7)
    beta = rng.uniform(0.1, 2, c).astype(np.float32)
    gamma = rng.uniform(0, 0.5, (c, c)).astype(np.float32)      # not symmetric, on purpose
    y = (L.igdn if inverse else L.gdn)(x, beta, gamma)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, ref_gdn(x, beta, gamma, inverse), rtol=1e-5, atol=1e-6)


def test_bad_arguments():
    x = np.zeros((2, 5, 5), np.float32)
    with pytest.raises(TypeError):
        L.conv2d(x.astype(np.float64), np.zeros((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match="channels"):
        L.conv2d(x, np.zeros((1, 3, 3, 3), np.float32))
    with pytest.raises(ValueError, match="output_padding"):
        L.conv_transpose2d(x, np.zeros((2, 1, 3, 3), np.float32), None, 2, 1, 2)
    with pytest.raises(ValueError, match="smaller than kernel"):
        L.conv2d(x, np.zeros((1, 2, 9, 9), np.float32))
    with pytest.raises(ValueError):
        L.gdn(x, np.ones(3, np.float32), np.ones((3, 3), np.float32))
