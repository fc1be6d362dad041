"""Tests of the quantile-table priors (SPEC.md §4.2-§4.5)."""
import hashlib
import io
import json
import math

import numpy as np
import pytest
from scipy import special

from bac_ref import priors as P
from bac_ref import vbq


def _ulps(a, b):
    return np.abs(a - b) / np.spacing(np.maximum(np.abs(a), np.abs(b)))


# ---------------------------------------------------------------------------
# The shipped standard-normal table
# ---------------------------------------------------------------------------
def test_std_table_shape_and_hash():
    q = P.std_normal_table()
    assert q.shape == (4097,) and q.dtype == np.float64 and not q.flags.writeable
    assert hashlib.sha256(q.tobytes()).hexdigest() == P.STD_NORMAL_SHA256
    assert q[2048] == 0.0 and not np.signbit(q[2048])
    assert np.array_equal(q[::-1], -q)                          # exactly antisymmetric
    assert np.all(np.diff(q) > 0)


def test_std_table_matches_scipy():
    """Interior entries: correctly rounded quantiles; scipy's ndtri agrees to a few ulps."""
    q = P.std_normal_table()
    i = np.arange(1, 4096)
    assert _ulps(q[1:-1], special.ndtri(i / 4096)).max() <= 4
    # mean-matched tails: Q[0] = 2 E[Z | Z < q1] - q1, E[Z | Z < q1] = -4096 phi(q1)
    q1 = special.ndtri(1 / 4096)
    q0 = 2 * (-4096 * math.exp(-q1 * q1 / 2) / math.sqrt(2 * math.pi)) - q1
    assert abs(q[0] - q0) <= 1e-12 * abs(q0)
    assert q[-1] == -q[0]


@pytest.mark.slow
def test_std_table_regenerates_bit_exactly():
    pytest.importorskip("mpmath")
    import importlib.util
    import os
    path = os.path.join(os.path.dirname(P.__file__), "tables", "make_std_normal.py")
    spec = importlib.util.spec_from_file_location("make_std_normal", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fresh = mod.compute()
    assert np.array_equal(fresh.view(np.uint64), P.std_normal_table().view(np.uint64))


# ---------------------------------------------------------------------------
# F^-1 at grid points (decoder path) and its consistency with the encoder
# ---------------------------------------------------------------------------
def test_ppf_grid_lookups_equal_table():
    prior = P.standard_normal()
    q = P.std_normal_table()
    for d in range(12):                                         # d + 1 <= K = 12: exact lookups
        k = np.arange(1 << d)
        expect = q[(2 * k + 1) << (12 - d - 1)]
        assert np.array_equal(prior.ppf_grid(np.full_like(k, d), k).view(np.uint64),
                              expect.view(np.uint64))


def test_ppf_grid_interpolation_formula():
    """d + 1 > K: Q[i] + t * (Q[i+1] - Q[i]) in Python floats (IEEE binary64, no FMA)."""
    prior = P.gaussian([0.25], [1.75])
    q = [float(x) for x in prior.table[0]]
    rng = np.random.default_rng(0)
    for d in (12, 13, 16, 20):
        k = rng.integers(0, 1 << d, 300)
        got = prior.ppf_grid(np.full_like(k, d), k)
        s = d + 1 - 12
        for kk, g in zip(k.tolist(), got.tolist()):
            jj = 2 * kk + 1
            i, r = jj >> s, jj & ((1 << s) - 1)
            t = r / (1 << s)
            a = q[i + 1] - q[i]
            b = t * a
            assert g == q[i] + b


@pytest.mark.parametrize("name", ["std_normal", "gaussian", "kde"])
def test_grid_levels_consistent_and_strictly_increasing(name, small_priors):
    prior = small_priors[name]
    flat, k, width = prior.table.reshape(-1), prior.table_bits, prior.table.shape[1]
    for c in range(prior.num_channels):
        for level in (1, 3, k, k + 1, 17, P.MAX_DEPTH + 1):
            j = np.arange(1, 1 << level)
            v = P.ppf_level(flat, k, j, level, c * width)
            assert np.all(np.diff(v) > 0), (c, level)
            if level <= 17:
                d, idx = vbq.grid_depth_index(j, level - 1)
                w = prior.ppf_grid(d, idx, c)
                assert np.array_equal(v.view(np.uint64), w.view(np.uint64))
                assert np.array_equal(prior.grid_floor(v, level, c), j)
                assert np.array_equal(prior.grid_floor(np.nextafter(v, -np.inf), level, c), j - 1)
                assert np.array_equal(prior.cdf(v, c), j / 2.0 ** level)     # F(F^-1(xi)) == xi
    z = np.concatenate([[-1e300, prior.table[0, 0] - 1], np.linspace(-5, 5, 1000), [1e300]])
    f = prior.cdf(z, 0)
    assert f[0] == 0 and f[-1] == 1 and np.all(np.diff(f) >= 0)


def test_cdf_inverts_ppf():
    prior = P.gaussian([0.0], [2.0])
    xi = np.linspace(0.001, 0.999, 997)
    assert np.max(np.abs(prior.cdf(prior.ppf(xi)) - xi)) < 1e-12


@pytest.fixture(scope="module")
def small_priors(fitted_priors):
    return {
        "std_normal": P.standard_normal(),
        "gaussian": P.gaussian([1e3, -3.0, 0.0], [1e-3, 7.0, 1.0]),
        **fitted_priors,
    }


# ---------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------
def test_gaussian_is_one_multiply_one_add():
    loc, scale = [0.1, -7.25], [0.3, 1e-2]
    prior = P.gaussian(loc, scale)
    q = P.std_normal_table().tolist()
    for c in range(2):
        expect = [(loc[c] + scale[c] * v) + 0.0 for v in q]
        assert prior.table[c].tolist() == expect
    assert not np.any(np.signbit(P.gaussian([-0.0], [1.0]).table) & (P.gaussian([-0.0], [1.0]).table == 0))


def test_gaussian_errors():
    with pytest.raises(ValueError, match="scale > 0"):
        P.gaussian([0.0], [0.0])
    with pytest.raises(ValueError, match="same length"):
        P.gaussian([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="gap"):
        P.gaussian([1e3], [1e-9])                                  # too narrow to be resolved


# ---------------------------------------------------------------------------
# check_table (SPEC.md §4.2)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("table,match", [
    (np.array([0.0, 1.0, 2.0]), None),
    (np.array([0.0, 1.0]), "2\\^K \\+ 1"),
    (np.array([0.0, 1.0, 1.0]), "strictly increasing"),
    (np.array([0.0, np.nan, 2.0]), "NaN"),
    (np.array([-1.0, -0.0, 2.0]), "-0.0"),
    (np.array([0.0, 1.0, 1.0 + 1e-15]), "gap"),
    (np.array([0.0, 1.0, 2.0 ** 1001]), "2\\^1000"),
])
def test_check_table(table, match):
    if match is None:
        assert P.check_table(table).shape == (1, 3)
    else:
        with pytest.raises(ValueError, match=match):
            P.check_table(table)


# ---------------------------------------------------------------------------
# Serialisation (SPEC.md §4.5)
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["std_normal", "gaussian", "kde"])
def test_serialisation_round_trip(name, small_priors):
    prior = small_priors[name]
    arrays = prior.to_arrays(prefix="prior.")
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    buf = io.BytesIO()
    np.savez(buf, **arrays, **{"other.weight": np.zeros(3)})
    buf.seek(0)
    with np.load(buf, allow_pickle=False) as z:
        back = P.QuantilePrior.from_arrays({k: z[k] for k in z.files}, prefix="prior.")
    assert back == prior and back.kind == prior.kind
    assert np.array_equal(back.table.view(np.uint64), prior.table.view(np.uint64))
    assert back.params.get("info") == prior.params.get("info")
    assert str(arrays["prior.kind"]) == prior.kind and int(arrays["prior.version"]) == 1


def test_serialisation_errors(small_priors):
    arrays = small_priors["gaussian"].to_arrays("p.")
    with pytest.raises(ValueError, match="lack"):
        P.from_arrays(arrays, "q.")
    bad = dict(arrays, **{"p.version": np.array(2)})
    with pytest.raises(ValueError, match="version"):
        P.from_arrays(bad, "p.")
    bad = dict(arrays, **{"p.kind": np.array("laplace")})
    with pytest.raises(ValueError, match="kind"):
        P.from_arrays(bad, "p.")
    bad = dict(arrays, **{"p.base_sha256": np.array("0" * 64)})
    with pytest.raises(ValueError, match="standard-normal"):
        P.from_arrays(bad, "p.")


def test_decoder_inputs_checked():
    prior = P.standard_normal()
    with pytest.raises(ValueError, match="index"):
        prior.ppf_grid(2, 4)
    with pytest.raises(ValueError, match="depth"):
        prior.ppf_grid(21, 0)
    with pytest.raises(ValueError, match="integer"):
        prior.ppf_grid(1.0, 0)
    with pytest.raises(ValueError, match="channel"):
        P.gaussian([0, 1], [1, 1]).ppf_grid(0, 0, 2)
