"""Tests of bac_ref.intmodels (SPEC.md §3): table checks, counts -> table, adaptive models."""
from __future__ import annotations

import doctest
import pickle
import random
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bac_ref import intmodels as im
from bac_ref import rangecoder as rc
from bac_ref.intmodels import (AdaptiveBinaryModel, AdaptiveModel, CheckedCDF, cdf_from_counts,
                               check_cdf, uniform_cdf)

TOTAL = 1 << 24
HYPOTHESIS = settings(max_examples=80, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])




def test_doctests():
    result = doctest.testmod(im)
    assert result.failed == 0 and result.attempted > 0


# ---------------------------------------------------------------------------
# SPEC.md §3.1: check_cdf
# ---------------------------------------------------------------------------

def test_check_cdf_accepts_valid_tables():
    np = pytest.importorskip("numpy")
    for cdf in ([0, TOTAL], (0, 1, TOTAL), [0, 5, 6, TOTAL - 1, TOTAL],
                np.array([0, 7, TOTAL], dtype=np.int64), np.array([0, 7, TOTAL], dtype=np.uint32),
                [np.int32(0), np.int64(3), TOTAL]):
        table = check_cdf(cdf)
        assert type(table) is CheckedCDF
        assert list(table) == [int(x) for x in cdf]
        assert all(type(x) is int for x in table)
        assert check_cdf(table) is table          # idempotent, no re-check
    assert check_cdf(range(0, TOTAL + 1, 1 << 20)).n == 16


@pytest.mark.parametrize("cdf, message", [
    ([], r"n \+ 1 >= 2 entries"),
    ([0], r"n \+ 1 >= 2 entries"),
    ([1, TOTAL], r"cdf\[0\] must be 0, got 1"),
    ([0, TOTAL - 1], r"cdf\[n\] = cdf\[1\] must be 2\*\*24 = 16777216, got 16777215"),
    ([0, 1 << 25], r"must be 2\*\*24"),
    ([0, 5, 5, TOTAL], r"strictly increasing: cdf\[1\] = 5 >= cdf\[2\] = 5 \(symbol 1 would have mass 0\)"),
    ([0, 9, 4, TOTAL], r"cdf\[1\] = 9 >= cdf\[2\] = 4 \(symbol 1 would have mass -5\)"),
    ([0, 1.0, TOTAL], r"cdf\[1\] is 1.0 of type float, not an int"),
    ([0, True, TOTAL], r"cdf\[1\] is True of type bool, not an int"),
    ([0, "1", TOTAL], r"of type str, not an int"),
    ([0, None, TOTAL], r"of type NoneType, not an int"),
    ("0123", r"sequence of ints, got str"),
    (b"\x00\x01", r"sequence of ints, got bytes"),
    (5, r"sequence of ints, got int"),
    (None, r"sequence of ints, got NoneType"),
])
def test_check_cdf_rejects_with_exact_message(cdf, message):
    with pytest.raises(ValueError, match=message):
        check_cdf(cdf)


def test_check_cdf_rejects_numpy_floats_and_2d():
    np = pytest.importorskip("numpy")
    with pytest.raises(ValueError, match="integer dtype, got float64"):
        check_cdf(np.array([0.0, 16777216.0]))
    with pytest.raises(ValueError, match="one-dimensional"):
        check_cdf(np.array([[0, TOTAL]]))


def test_checked_cdf_is_immutable_and_picklable():
    table = check_cdf([0, 3, TOTAL])
    with pytest.raises(TypeError):
        table[1] = 4                               # type: ignore[index]
    with pytest.raises(AttributeError):
        table.extra = 1                            # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(table)) == table
    assert type(pickle.loads(pickle.dumps(table))) is CheckedCDF
    assert table.masses() == [3, TOTAL - 3] and table.mass(0) == 3 and table.n == 2
    assert repr(table) == "CheckedCDF([0, 3, 16777216])"
    with pytest.raises(ValueError):
        table.mass(2)


def test_uniform_cdf():
    assert list(uniform_cdf(0)) == [0, TOTAL]
    assert list(uniform_cdf(2)) == [0, 1 << 22, 2 << 22, 3 << 22, TOTAL]
    assert uniform_cdf(12).n == 4096 and uniform_cdf(12)[4095] == 4095 << 12
    for bad in (-1, 25):
        with pytest.raises(ValueError):
            uniform_cdf(bad)


# ---------------------------------------------------------------------------
# SPEC.md §3.2: cdf_from_counts
# ---------------------------------------------------------------------------

def reference_cdf_from_counts(counts):
    """SPEC.md §3.2 written independently with exact fractions."""
    n = len(counts)
    free = TOTAL - n
    if sum(counts) == 0:
        counts = [1] * n
    total = sum(counts)
    shares = [Fraction(c * free, total) for c in counts]
    floors = [s.numerator // s.denominator for s in shares]
    left = free - sum(floors)
    order = sorted(range(n), key=lambda i: (-(shares[i] - floors[i]), i))
    masses = [1 + f for f in floors]
    for i in order[:left]:
        masses[i] += 1
    cdf = [0]
    for m in masses:
        cdf.append(cdf[-1] + m)
    return cdf


count_lists = st.one_of(
    st.lists(st.integers(0, 50), min_size=1, max_size=20),
    st.lists(st.integers(0, 2**70), min_size=1, max_size=40),
    st.lists(st.sampled_from([0, 0, 0, 1, 2, 10**6, 10**40]), min_size=1, max_size=4096),
    st.integers(1, 4096).flatmap(lambda n: st.lists(st.integers(0, 3), min_size=n, max_size=n)),
)


@HYPOTHESIS
@given(count_lists)
def test_cdf_from_counts_is_valid_and_exact(counts):
    table = cdf_from_counts(counts)
    assert type(table) is CheckedCDF
    assert CheckedCDF(list(table)) == table        # passes the full check
    assert list(table) == reference_cdf_from_counts(counts)
    n = len(counts)
    free = TOTAL - n
    eff = counts if sum(counts) else [1] * n
    total = sum(eff)
    masses = table.masses()
    for c, m in zip(eff, masses):
        assert m >= 1
        assert abs(Fraction(m - 1) - Fraction(c * free, total)) < 1   # within one unit
    # order preserving: more counts never means less mass; equal counts differ by <= 1
    ranked = sorted(range(n), key=lambda i: eff[i])
    for i, j in zip(ranked, ranked[1:]):
        if eff[j] > eff[i]:
            assert masses[j] >= masses[i]
        else:
            assert abs(masses[j] - masses[i]) <= 1


@HYPOTHESIS
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=30), st.integers(2, 10**9),
       st.data())
def test_cdf_from_counts_scale_invariant_and_nearly_monotone(counts, factor, data):
    table = cdf_from_counts(counts)
    assert cdf_from_counts([c * factor for c in counts]) == table
    # raising one count alone never lowers that symbol's mass by more than 1
    i = data.draw(st.integers(0, len(counts) - 1))
    more = list(counts)
    more[i] += data.draw(st.integers(1, 10**6))
    assert cdf_from_counts(more).mass(i) >= table.mass(i) - 1


def test_cdf_from_counts_pinned():
    assert list(cdf_from_counts([1])) == [0, TOTAL]
    assert list(cdf_from_counts([0])) == [0, TOTAL]
    assert list(cdf_from_counts([1, 1])) == [0, 1 << 23, TOTAL]
    assert list(cdf_from_counts([3, 1])) == [0, 12582912, TOTAL]
    assert list(cdf_from_counts([0, 0, 0])) == [0, 5592406, 11184811, TOTAL]
    assert list(cdf_from_counts([1, 0, 0])) == [0, 16777214, 16777215, TOTAL]
    assert list(cdf_from_counts([0, 5, 0, 2])) == [0, 1, 11983725, 11983726, TOTAL]
    assert list(cdf_from_counts([10**30, 1, 1])) == [0, 16777214, 16777215, TOTAL]
    assert list(cdf_from_counts([7, 7, 7, 7, 7, 7, 7])) == [
        0, 2396746, 4793491, 7190236, 9586981, 11983726, 14380471, TOTAL]
    assert cdf_from_counts([0] * 4096).masses() == [4096] * 4096
    assert cdf_from_counts(range(1, 11)).masses() == [
        305041, 610081, 915121, 1220161, 1525202, 1830242, 2135282, 2440322, 2745362, 3050402]


def test_cdf_from_counts_rejects_bad_counts():
    np = pytest.importorskip("numpy")
    for counts, message in (([], "at least one entry"), ([1, -1], r"counts\[1\] = -1 is negative"),
                            ([1, 0.5], r"counts\[1\] is 0.5 of type float"),
                            (np.array([1.0, 2.0]), "integer dtype"), ("ab", "sequence of ints")):
        with pytest.raises(ValueError, match=message):
            cdf_from_counts(counts)
    assert list(cdf_from_counts(np.array([3, 1], dtype=np.uint8))) == [0, 12582912, TOTAL]


@pytest.mark.slow
def test_cdf_from_counts_max_alphabet():
    table = cdf_from_counts([5] * (1 << 24))
    assert table[1] == 1 and table[-2] == TOTAL - 1


# ---------------------------------------------------------------------------
# SPEC.md §3.3: adaptive models
# ---------------------------------------------------------------------------

def reference_adaptive_tables(n, symbols, init=None, increment=32, limit=1 << 16):
    """The tables SPEC.md §3.3 prescribes, one per symbol, written independently."""
    counts = list(init) if init is not None else [1] * n
    tables = []
    for s in symbols:
        tables.append(reference_cdf_from_counts(counts))
        counts[s] += increment
        if sum(counts) > limit:
            counts = [(c + 1) // 2 for c in counts]
    return tables, counts


@HYPOTHESIS
@given(st.integers(1, 17), st.integers(1, 100), st.integers(1, 3000), st.data())
def test_adaptive_model_follows_the_rule(n, increment, limit, data):
    init = data.draw(st.one_of(st.none(), st.lists(st.integers(0, 50), min_size=n, max_size=n)))
    symbols = data.draw(st.lists(st.integers(0, n - 1), max_size=150))
    model = AdaptiveModel(n, init, increment=increment, limit=limit)
    tables = []
    for s in symbols:
        tables.append(list(model.cdf()))
        model.update(s)
    expected_tables, expected_counts = reference_adaptive_tables(n, symbols, init, increment, limit)
    assert tables == expected_tables
    assert list(model.counts) == expected_counts


@HYPOTHESIS
@given(st.lists(st.integers(0, 1), max_size=400), st.integers(1, 64), st.integers(1, 5000),
       st.tuples(st.integers(0, 40), st.integers(0, 40)))
def test_binary_model_equals_general_model(bits, increment, limit, init):
    general = AdaptiveModel(2, init, increment=increment, limit=limit)
    binary = AdaptiveBinaryModel(init, increment=increment, limit=limit)
    for b in bits:
        assert binary.cdf() == general.cdf()
        binary.update(b)
        general.update(b)
    assert binary.counts == general.counts and binary.cdf() == general.cdf()


def test_binary_mass_formula_exhaustive_small_counts():
    for c0 in range(0, 60):
        for c1 in range(0, 60):
            m = AdaptiveBinaryModel((c0, c1), limit=10**9)
            assert list(m.cdf()) == reference_cdf_from_counts([c0, c1]), (c0, c1)


def test_adaptive_defaults_and_halving():
    model = AdaptiveModel(3)
    assert model.counts == (1, 1, 1) and model.increment == 32 and model.limit == 1 << 16
    for _ in range(2047):
        model.update(0)
    assert model.counts == (1 + 2047 * 32, 1, 1)          # total 65507 <= 65536
    model.update(0)                                        # total 65539 > 65536: halve
    assert model.counts == ((1 + 2048 * 32 + 1) // 2, 1, 1)
    binary = AdaptiveBinaryModel()
    assert binary.counts == (1, 1) and list(binary.cdf()) == [0, 1 << 23, TOTAL]


def test_adaptive_model_errors_and_copy():
    with pytest.raises(ValueError):
        AdaptiveModel(0)
    with pytest.raises(ValueError):
        AdaptiveModel(2, [1, 2, 3])
    with pytest.raises(ValueError):
        AdaptiveModel(2, [1, -2])
    with pytest.raises(ValueError):
        AdaptiveModel(2, increment=0)
    with pytest.raises(ValueError):
        AdaptiveBinaryModel(limit=0)
    model = AdaptiveModel(4)
    for bad in (-1, 4):
        with pytest.raises(ValueError):
            model.update(bad)
    with pytest.raises(ValueError):
        AdaptiveBinaryModel().update(2)
    with pytest.raises(ValueError):
        AdaptiveBinaryModel().update(0.0)
    model.update(3)
    clone = model.copy()
    clone.update(1)
    assert model.counts == (1, 1, 1, 33) and clone.counts == (1, 33, 1, 33)
    b = AdaptiveBinaryModel()
    b2 = b.copy()
    b2.update(1)
    assert b.counts == (1, 1) and b2.counts == (1, 33)


def test_adaptive_round_trip_through_the_coder():
    rnd = random.Random(17)
    for trial in range(20):
        n = rnd.choice([2, 3, 5, 11, 17])
        skew = [rnd.random() ** 3 for _ in range(n)]
        symbols = rnd.choices(range(n), weights=skew, k=rnd.randrange(0, 2000))
        bits = [rnd.random() < 0.1 for _ in symbols]
        enc = rc.Encoder()
        model, bmodel = AdaptiveModel(n, increment=24, limit=1 << 13), AdaptiveBinaryModel()
        for s, b in zip(symbols, bits):
            model.encode(enc, s)
            bmodel.encode(enc, int(b))
            enc.encode_uniform(s, 5)
        data = enc.finish()
        dec = rc.Decoder(data)
        model, bmodel = AdaptiveModel(n, increment=24, limit=1 << 13), AdaptiveBinaryModel()
        out = []
        for _ in symbols:
            s = model.decode(dec)
            b = bmodel.decode(dec)
            assert dec.decode_uniform(5) == s
            out.append((s, b))
        dec.check_end()
        assert out == [(s, int(b)) for s, b in zip(symbols, bits)]
        # determinism: a second encoder gives the same bytes
        enc2 = rc.Encoder()
        model, bmodel = AdaptiveModel(n, increment=24, limit=1 << 13), AdaptiveBinaryModel()
        for s, b in zip(symbols, bits):
            enc2.encode(s, model.cdf())
            model.update(s)
            enc2.encode(int(b), bmodel.cdf())
            bmodel.update(int(b))
            enc2.encode_uniform(s, 5)
        assert enc2.finish() == data


def test_adaptive_model_compresses_skewed_data():
    rnd = random.Random(3)
    bits = [int(rnd.random() < 0.02) for _ in range(20000)]
    enc = rc.Encoder()
    model = AdaptiveBinaryModel()
    for b in bits:
        model.encode(enc, b)
    size = 8 * len(enc.finish())
    assert size < 0.2 * len(bits)                 # entropy of p = 0.02 is ~0.14 bits


@HYPOTHESIS
@given(st.integers(1, 12), st.integers(1, 40), st.integers(1, 400), st.integers(1, 20),
       st.data())
def test_refresh_lags_the_counts_by_fewer_than_refresh_symbols(n, increment, limit, refresh,
                                                               data):
    """AdaptiveModel(refresh=R): the table is that of the counts after the last multiple of R
    updates (SPEC.md §9.2's schedule for R = 16); the counts follow §3.3 as for R = 1."""
    symbols = data.draw(st.lists(st.integers(0, n - 1), max_size=120))
    model = AdaptiveModel(n, increment=increment, limit=limit, refresh=refresh)
    counts = [1] * n
    snapshot = list(counts)
    for i, s in enumerate(symbols):
        assert list(model.cdf()) == reference_cdf_from_counts(snapshot), (i, refresh)
        model.update(s)
        counts[s] += increment
        if sum(counts) > limit:
            counts = [(c + 1) // 2 for c in counts]
        if (i + 1) % refresh == 0:
            snapshot = list(counts)
    assert list(model.counts) == counts
    assert list(model.copy().cdf()) == reference_cdf_from_counts(snapshot)
    with pytest.raises(ValueError, match="refresh"):
        AdaptiveModel(2, refresh=0)


def test_interval_and_decode_use_the_current_table():
    """interval(s) is [cdf[s], cdf[s+1]); decode(dec) finds s from the quantile and updates:
    coding the intervals of one model copy and decoding with another gives the symbols back."""
    rnd = random.Random(5)
    for n in (2, 3, 11):
        symbols = rnd.choices(range(n), weights=[i + 1 for i in range(n)], k=500)
        for make in (lambda: AdaptiveModel(n, increment=64, refresh=rnd.choice([1, 16])),
                     lambda: AdaptiveBinaryModel(increment=64)):
            if n != 2 and make().n == 2:
                continue
            enc_model = make()
            dec_model = enc_model.copy()
            starts, masses = [], []
            for s in symbols:
                table = enc_model.cdf()
                start, mass = enc_model.interval(s)
                assert (start, mass) == (table[s], table[s + 1] - table[s])
                starts.append(start)
                masses.append(mass)
                enc_model.update(s)
            enc = rc.Encoder()
            enc.encode_intervals(starts, masses)
            dec = rc.Decoder(enc.finish())
            assert [dec_model.decode(dec) for _ in symbols] == symbols
            dec.check_end()
            assert dec_model.counts == enc_model.counts
