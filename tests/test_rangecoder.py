"""Tests of bac_ref.rangecoder (SPEC.md §2).

Four kinds of evidence:
1. round trips (hypothesis) over tables of 1 to 4096 symbols, extreme tables,
   the uniform fast path, incremental versus batch API;
2. byte identity with constriction 0.5.0 (the independent implementation),
   with carry chains and every sealing branch forced and counted by an
   independent held-word reference encoder written here (``HeldWordEncoder``);
3. the overhead bound of SPEC.md §2.10;
4. hostile input: random bytes, truncation, bit flips give symbols or
   BitstreamError, in bounded time.

Long runs are marked ``slow`` and run only with ``-m slow`` (or BAC_REF_SLOW=1).
"""
from __future__ import annotations

import doctest
import math
import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import bac_ref
from bac_ref import rangecoder as rc
from bac_ref.errors import BitstreamError
from bac_ref.intmodels import CheckedCDF, cdf_from_counts, check_cdf, uniform_cdf

TOTAL = 1 << 24
MASK64 = (1 << 64) - 1

HYPOTHESIS = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])




# ---------------------------------------------------------------------------
# Helpers (also used by test_golden_coder.py)
# ---------------------------------------------------------------------------

def random_table(rnd: random.Random, n: int, kind: str = "random") -> CheckedCDF:
    """A valid n-symbol table: random cut points, or an extreme shape."""
    if kind == "random":
        cuts = sorted(rnd.sample(range(1, TOTAL), n - 1))
    elif kind == "heavy_first":      # symbol 0 has mass 2^24 - n + 1, the rest mass 1
        cuts = list(range(TOTAL - n + 1, TOTAL))
    elif kind == "heavy_last":       # symbols 0..n-2 have mass 1
        cuts = list(range(1, n))
    elif kind == "heavy_middle":
        k = rnd.randrange(n)
        cuts = list(range(1, k + 1)) + list(range(TOTAL - (n - 1 - k), TOTAL))
    else:
        raise ValueError(kind)
    return check_cdf([0] + cuts + [TOTAL])


def information_bits(symbols, tables) -> float:
    return sum(-math.log2((t[s + 1] - t[s]) / TOTAL) for s, t in zip(symbols, tables))


class HeldWordEncoder:
    """An independent reference encoder with constriction's carry handling.

    Words whose value still depends on a carry are held back (constriction's
    "inverted situation": ``held`` words, the first one ``first``, the rest
    implicitly 0xFFFFFFFF) and written once the carry is decided.  ``stats``
    counts every branch taken, so tests can prove which ones they hit.
    """

    def __init__(self):
        self.lower, self.range, self.out = 0, MASK64, []
        self.held, self.first = 0, 0
        self.stats = dict.fromkeys(
            ["normal_to_inverted", "inverted_grow", "resolve_carry", "resolve_no_carry",
             "seal_inverted_carry", "seal_inverted_no_carry", "seal_extra_zero",
             "seal_extra_zero_normal", "max_held"], 0)

    def _flush(self, carry: bool):
        self.out.append((self.first + carry) & 0xFFFFFFFF)
        self.out.extend([0 if carry else 0xFFFFFFFF] * (self.held - 1))
        self.held = 0

    def encode_interval(self, start: int, mass: int):
        scale = self.range >> 24
        new_lower = (self.lower + scale * start) & MASK64
        self.range = scale * mass
        if self.held and new_lower + self.range <= MASK64:    # inverted -> normal
            carry = new_lower < self.lower
            self.stats["resolve_carry" if carry else "resolve_no_carry"] += 1
            self._flush(carry)
        self.lower = new_lower
        if self.range < 1 << 32:
            word = self.lower >> 32
            self.lower = (self.lower << 32) & MASK64
            self.range <<= 32
            if self.held:
                self.held += 1
                self.stats["inverted_grow"] += 1
            elif self.lower + self.range <= MASK64:
                self.out.append(word)
            else:
                self.held, self.first = 1, word
                self.stats["normal_to_inverted"] += 1
            self.stats["max_held"] = max(self.stats["max_held"], self.held)

    def encode(self, symbol: int, cdf):
        self.encode_interval(cdf[symbol], cdf[symbol + 1] - cdf[symbol])

    def words(self):
        """Seal a copy (constriction's rule) and return all words."""
        if self.range == MASK64:
            return []
        saved = (list(self.out), self.held)
        was_held = self.held > 0
        point = (self.lower + 0xFFFFFFFF) & MASK64
        if self.held:
            carry = point < self.lower
            self.stats["seal_inverted_carry" if carry else "seal_inverted_no_carry"] += 1
            self._flush(carry)
        self.out.append(point >> 32)
        if ((self.lower + self.range) & MASK64) >> 32 == point >> 32:
            self.stats["seal_extra_zero"] += 1
            self.stats["seal_extra_zero_normal"] += not was_held
            self.out.append(0)
        words = self.out
        self.out, self.held = saved
        return words


def steer(enc: rc.Encoder, goal: str, rnd: random.Random):
    """(table, symbol, done): one move that drives ``enc`` towards a carry case.

    goal "straddle": keep a word boundary T strictly inside the interval and
    shrink the range, so the pending word stays undecided (constriction's
    inverted situation; repeated, a growing chain of held words);
    "up"/"down": leave the interval entirely above/below T (the chain resolves
    with/without a carry); "seal_carry": while straddling 2^64, bring lower
    into (2^64 - 2^32, 2^64) without renormalising, so that sealing itself
    carries (the rarest sealing branch); ``done`` is True after that move.
    Falls back to a random symbol of a random table where no move exists.
    """
    lower, range_ = enc.lower, enc.range
    scale = range_ >> 24
    straddling = lower + range_ > MASK64      # 2^64 inside: a carry is pending
    target = 1 << 64 if straddling else ((lower >> 32) + 1) << 32
    offset = target - lower                   # T = lower + offset
    m = offset // scale                       # scale * m <= offset
    fallback = random_table(rnd, rnd.choice([2, 3, 7]))
    if not 0 < offset < scale * TOTAL:
        return fallback, rnd.randrange(fallback.n), False
    if goal == "seal_carry" and straddling and scale < 1 << 32:
        # lower + scale*a in (2^64 - 2^32, 2^64) and range = scale*k >= 2^32;
        # sealing then also writes the extra 0 word iff lower + range < 2^64 + 2^32.
        want_zero = rnd.random() < 0.5
        a_max = (MASK64 - lower) // scale
        k_min = -(-(1 << 32) // scale)
        for a in range(a_max, max(0, a_max - 64), -1):
            new_lower = lower + scale * a
            if new_lower <= MASK64 - 0xFFFFFFFF:
                break
            for k in [k_min + j for j in range(4)] + [k_min + (1 << j) for j in range(2, 24)]:
                if a + k >= TOTAL:
                    break
                if (new_lower + scale * k < (1 << 64) + (1 << 32)) == want_zero:
                    return check_cdf([0, a, a + k, TOTAL]), 1, True
    if goal == "seal_zero" and not straddling:
        # range in [2^32, 2^32 + scale) and lower's low word such that
        # lower + 2^32 - 1 and lower + range share their top word.
        if scale >= 1 << 33:                  # first shrink the range to ~2^40
            a = rnd.randrange(1, TOTAL // 2)
            return check_cdf([0, a, a + max(1, (1 << 40) // scale), TOTAL]), 1, False
        k = -(-(1 << 32) // scale)
        for _ in range(500):
            a = rnd.randrange(1, TOTAL - k)
            new_lower, new_range = lower + scale * a, scale * k
            low = new_lower & 0xFFFFFFFF
            if (new_lower + new_range <= MASK64 and low >= 1
                    and low + new_range - (1 << 32) < 1 << 32):
                return check_cdf([0, a, a + k, TOTAL]), 1, True
    if goal in ("up", "down"):
        a = (m if scale * m == offset else m + 1) if goal == "up" else m
        if 1 <= a < TOTAL:
            return check_cdf([0, a, TOTAL]), (1 if goal == "up" else 0), False
    # straddle: middle symbol [a, b) with scale*a < offset < scale*b
    if goal == "seal_carry" and straddling:   # shrink range to 2^45..2^56: scale < 2^32
        k = max(2, min(TOTAL - 2, (1 << rnd.randrange(45, 56)) // scale))
    else:                                     # small mass: renormalise soon
        k = rnd.choice([2, 3, 17, 256, 1 << 12])
    a = m - k // 2
    if scale * a >= offset:
        a -= 1
    b = a + k
    if a >= 1 and b < TOTAL and scale * a < offset < scale * b:
        return check_cdf([0, a, b, TOTAL]), 1, False
    return fallback, rnd.randrange(fallback.n), False


def adversarial_case(rnd: random.Random, plan):
    """Steer an encoder through ``plan`` = [(goal, steps), ...].

    A "seal_carry" phase stops early once its final move was made.
    Returns (symbols, tables).
    """
    enc = rc.Encoder(checked=True)
    symbols, tables = [], []
    for goal, steps in plan:
        for _ in range(steps):
            table, s, done = steer(enc, goal, rnd)
            enc.encode(s, table)
            symbols.append(s)
            tables.append(table)
            if done:
                break
    return symbols, tables


def reference_words(symbols, tables, stats=None):
    ref = HeldWordEncoder()
    for s, t in zip(symbols, tables):
        ref.encode(s, t)
    words = ref.words()
    if stats is not None:
        for key, value in ref.stats.items():
            stats[key] = max(stats[key], value) if key == "max_held" else stats[key] + value
    return words


ADVERSARIAL_PLANS = [
    [("straddle", 40), ("up", 1), ("straddle", 5), ("down", 1)],
    [("straddle", 60), ("down", 1)],
    [("straddle", 30), ("up", 1)],
    [("straddle", 25)],                                   # seal while inverted
    [("straddle", 12), ("seal_carry", 40)],               # seal with carry
    [("straddle", 5), ("down", 1), ("seal_zero", 40)],    # extra 0 word, no carry
    [("straddle", 3), ("up", 1), ("straddle", 3), ("up", 1), ("straddle", 50), ("up", 1)],
]


# ---------------------------------------------------------------------------
# constriction (the independent implementation)
# ---------------------------------------------------------------------------

def _runs(tables):
    """(start, stop) of each run of one repeated table object."""
    i = 0
    while i < len(tables):
        j = i
        while j < len(tables) and tables[j] is tables[i]:
            j += 1
        yield i, j
        i = j


def _categorical(table):
    """constriction's Categorical(perfect=True) for an integer table.

    Probabilities m_s / 2^24 are exact in float64, and constriction keeps
    exactly these integers (tested by test_constriction_identity_mapping).
    """
    cs = pytest.importorskip("constriction")
    np = pytest.importorskip("numpy")
    probs = np.array(check_cdf(table).masses(), dtype=np.float64) / TOTAL
    return cs.stream.model.Categorical(probs, perfect=True)


def constriction_words(symbols, tables):
    """constriction 0.5.0's words for symbols[i] coded with tables[i]."""
    cs = pytest.importorskip("constriction")
    np = pytest.importorskip("numpy")
    enc = cs.stream.queue.RangeEncoder()
    for i, j in _runs(tables):
        enc.encode(np.array(symbols[i:j], dtype=np.int32), _categorical(tables[i]))
    return [int(w) for w in enc.get_compressed()]


def constriction_decode(words, tables):
    """constriction 0.5.0 decodes one symbol per table from our words."""
    cs = pytest.importorskip("constriction")
    np = pytest.importorskip("numpy")
    dec = cs.stream.queue.RangeDecoder(np.array(words, dtype=np.uint32))
    out = []
    for i, j in _runs(tables):
        out.extend(int(s) for s in np.atleast_1d(dec.decode(_categorical(tables[i]), j - i)))
    return out


# ---------------------------------------------------------------------------
# Basics
# ---------------------------------------------------------------------------

def test_doctests():
    result = doctest.testmod(rc)
    assert result.failed == 0 and result.attempted > 0


def test_empty_input():
    assert rc.encode([], []) == b""
    assert rc.decode(b"", []) == []
    enc = rc.Encoder()
    assert enc.finish() == b"" and enc.words() == []
    enc.encode_uniform(0, 0)                  # r = 0 codes nothing
    enc.encode_many([], uniform_cdf(3))
    assert enc.finish() == b""
    dec = rc.Decoder(b"")
    assert dec.decode_uniform(0) == 0
    dec.check_end()


def test_bitstream_error_is_exported():
    assert bac_ref.BitstreamError is BitstreamError
    assert issubclass(BitstreamError, ValueError)


def test_known_bytes():
    cdf = check_cdf([0, 1 << 22, 1 << 24])
    assert rc.encode([0, 1, 1, 0], [cdf] * 4) == bytes.fromhex("1c000000")
    # A single symbol: point = scale*start + 2^32 - 1 with scale = 2^40 - 1.
    assert rc.encode([1], [cdf]) == (((((1 << 40) - 1) << 22) + (1 << 32) - 1) >> 32).to_bytes(4, "big")


def test_spec_worked_example():
    """The trace printed in SPEC.md §2.5 (lower, range after each step)."""
    enc = rc.Encoder()
    trace = []
    for s in (0, 1, 1, 0):
        enc.encode(s, [0, 1 << 22, TOTAL])
        trace.append((f"{enc.lower:016x}", f"{enc.range:016x}"))
    assert trace == [("0000000000000000", "3fffffffffc00000"),
                     ("0fffffffffc00000", "2fffffffff400000"),
                     ("1bffffffff800000", "23ffffffff400000"),
                     ("1bffffffff800000", "08ffffffffc00000")]
    assert f"{enc.lower + 0xFFFFFFFF:016x}" == "1c000000ff7fffff"
    assert enc.words() == [0x1C000000]


def test_serialisation_is_big_endian():
    assert rc.words_to_bytes([0x01020304, 0xA0B0C0D0]) == bytes.fromhex("01020304a0b0c0d0")
    assert rc.bytes_to_words(bytes.fromhex("01020304a0b0c0d0")) == (0x01020304, 0xA0B0C0D0)
    with pytest.raises(TypeError):
        rc.Decoder(8)                          # not bytes (bytes(8) would be 8 zeros)
    for bad in (b"\x00", b"\x00" * 5, b"\x00" * 7):
        with pytest.raises(BitstreamError):
            rc.bytes_to_words(bad)
        with pytest.raises(BitstreamError):
            rc.Decoder(bad)
        with pytest.raises(BitstreamError):
            rc.decode(bad, [])


def test_finish_is_non_destructive():
    rnd = random.Random(5)
    table = random_table(rnd, 9)
    symbols = [rnd.randrange(9) for _ in range(500)]
    enc = rc.Encoder()
    enc.encode_many(symbols[:200], table)
    first = enc.finish()
    assert enc.finish() == first
    assert rc.decode(first, [table] * 200) == symbols[:200]
    enc.encode_many(symbols[200:], table)
    assert enc.finish() == rc.encode(symbols, [table] * 500)


def test_input_errors():
    table = check_cdf([0, 10, TOTAL])
    enc = rc.Encoder()
    for bad in (-1, 2, 10**30):
        with pytest.raises(ValueError):
            enc.encode(bad, table)
        with pytest.raises(ValueError):
            enc.encode_many([0, bad], table)
        with pytest.raises(ValueError):
            enc.encode_sequence([0, bad], [table, table])
    with pytest.raises(TypeError):
        enc.encode(1.0, table)
    with pytest.raises(TypeError):
        enc.encode_many([0, 1.0], table)
    with pytest.raises(ValueError):
        enc.encode(0, [0, 10, 10, TOTAL])
    with pytest.raises(ValueError):
        enc.encode_sequence([0], [table, table])
    for value, bits in ((2, 1), (-1, 3), (0, 25), (0, -1), (1, 0)):
        with pytest.raises(ValueError):
            enc.encode_uniform(value, bits)
    assert enc.finish() == b""                 # failed calls encoded nothing
    with pytest.raises(ValueError):
        rc.Decoder(b"").decode([0, TOTAL + 1])


def test_numpy_inputs():
    np = pytest.importorskip("numpy")
    table = np.array([0, 100, 5000, TOTAL], dtype=np.int64)
    symbols = np.array([0, 1, 2, 2, 1, 0] * 10, dtype=np.int32)
    expected = rc.encode(symbols.tolist(), [check_cdf(table.tolist())] * 60)
    enc = rc.Encoder()
    enc.encode_many(symbols, table)
    assert enc.finish() == expected
    enc = rc.Encoder()
    for s in symbols:
        enc.encode(s, table)
    assert enc.finish() == expected


def test_invariants_are_checked_under_python_O():
    code = ("from bac_ref import rangecoder as rc\n"
            "try:\n    rc._check_encoder_state(0, 1 << 31)\nexcept AssertionError:\n    print('ok')\n")
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "ok", out.stderr


# ---------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------

@st.composite
def tables(draw, min_n=1, max_n=4096):
    n = draw(st.one_of(st.integers(min_n, min(max_n, 20)), st.integers(min_n, max_n)))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "random", "heavy_first", "heavy_last", "heavy_middle"]))
    if n == 1:
        return check_cdf([0, TOTAL])
    return random_table(random.Random(seed), n, kind)


@st.composite
def messages(draw):
    """(ops) where op = ("t", symbol, table) or ("u", value, bits)."""
    pool = draw(st.lists(tables(), min_size=1, max_size=4))
    ops = []
    for _ in range(draw(st.integers(0, 120))):
        if draw(st.integers(0, 4)) == 0:
            bits = draw(st.integers(0, 24))
            ops.append(("u", draw(st.integers(0, (1 << bits) - 1)), bits))
        else:
            t = draw(st.sampled_from(pool))
            # favour the extremes: rare symbols and the heaviest one
            s = draw(st.one_of(st.integers(0, t.n - 1), st.sampled_from([0, t.n - 1])))
            ops.append(("t", s, t))
    return ops


def _encode_ops(ops, checked=False):
    enc = rc.Encoder(checked=checked)
    for kind, a, b in ops:
        if kind == "t":
            enc.encode(a, b)
        else:
            enc.encode_uniform(a, b)
    return enc.finish()


def _decode_ops(data, ops):
    dec = rc.Decoder(data)
    out = [dec.decode(b) if kind == "t" else dec.decode_uniform(b) for kind, a, b in ops]
    dec.check_end()
    return out


@HYPOTHESIS
@given(messages())
def test_round_trip_mixed(ops):
    data = _encode_ops(ops)
    assert len(data) % 4 == 0
    assert _decode_ops(data, ops) == [a for _, a, _ in ops]
    assert _encode_ops(ops, checked=True) == data
    # the uniform fast path gives the bytes of its table (bits <= 12: build it)
    if all(k == "t" or b <= 12 for k, _, b in ops):
        as_tables = [(a, b) if k == "t" else (a, uniform_cdf(b)) for k, a, b in ops
                     if k == "t" or b > 0]
        assert rc.encode([s for s, _ in as_tables], [t for _, t in as_tables]) == data


@HYPOTHESIS
@given(tables(min_n=2), st.data())
def test_round_trip_batch_equals_incremental(table, data):
    symbols = data.draw(st.lists(st.integers(0, table.n - 1), max_size=300))
    one_call = rc.encode(symbols, [table] * len(symbols))
    enc = rc.Encoder()
    enc.encode_many(symbols, table)
    assert enc.finish() == one_call
    enc = rc.Encoder()
    for s in symbols:
        enc.encode(s, list(table))            # unchecked list: checked on each call
    assert enc.finish() == one_call
    assert rc.decode(one_call, [table] * len(symbols)) == symbols
    assert rc.Decoder(one_call).decode_many(len(symbols), table) == symbols
    dec = rc.Decoder(one_call)
    assert [dec.decode(table) for _ in symbols] == symbols
    dec.check_end()


def test_consume_of_a_wrong_interval_is_caught():
    # consume() trusts its caller; the next quantile() (or the end of a batch
    # method) checks 0 <= point - lower < range (SPEC.md §2.7).
    table = check_cdf([0, 1 << 23, TOTAL])
    data = rc.encode([1, 1, 0, 1], [table] * 4)
    dec = rc.Decoder(data)
    assert dec.quantile() >= 1 << 23                  # symbol 1 ...
    dec.consume(0, 1 << 23)                           # ... consumed as symbol 0
    with pytest.raises(AssertionError, match="does not hold the quantile"):
        dec.quantile()
    dec = rc.Decoder(data)
    dec.decode(table)
    dec.decode(table)
    assert dec.quantile() < 1 << 23                   # symbol 0 ...
    dec.consume(1 << 23, 1 << 23)                     # ... consumed as symbol 1
    with pytest.raises(AssertionError, match="does not hold the quantile"):
        dec.quantile()
    dec = rc.Decoder(data)
    dec.quantile()
    dec.consume(0, 1 << 23)
    with pytest.raises(AssertionError, match="does not hold the quantile"):
        dec.decode_many(0 + 1, table)


def test_single_symbol_table_changes_state():
    # n = 1 is a valid table; coding with it truncates range (unlike bits = 0).
    enc = rc.Encoder()
    enc.encode(0, [0, TOTAL])
    assert enc.range == (MASK64 >> 24) << 24
    data = enc.finish()
    assert data != b"" and rc.decode(data, [[0, TOTAL]]) == [0]


def test_long_runs_of_extreme_symbols():
    # a mass-1 symbol costs 24 bits and renormalises every time; the heavy
    # symbol (mass 2^24 - n + 1) barely shrinks the range for a long time.
    rnd = random.Random(11)
    for n in (2, 3, 4096):
        for kind in ("heavy_first", "heavy_last"):
            table = random_table(rnd, n, kind)
            heavy = 0 if kind == "heavy_first" else n - 1
            for symbols in ([heavy] * 20000, [1 - heavy if n == 2 else 1] * 3000,
                            [heavy] * 5000 + [n // 2] * 100 + [heavy] * 5000):
                data = rc.encode(symbols, [table] * len(symbols))
                assert rc.Decoder(data).decode_many(len(symbols), table) == symbols


def test_uniform_fast_path_equals_table():
    rnd = random.Random(3)
    for bits in range(0, 25):
        values = [rnd.randrange(1 << bits) for _ in range(300)] + [0, (1 << bits) - 1]
        enc = rc.Encoder()
        enc.encode_uniform_many(values, bits)
        fast = enc.finish()
        enc = rc.Encoder()
        for v in values:
            enc.encode_uniform(v, bits)
        assert enc.finish() == fast
        if bits == 0:
            assert fast == b""
            continue
        # an equivalent table: the same interval [v 2^(24-r), (v+1) 2^(24-r))
        step = 1 << (24 - bits)
        if bits <= 12:
            ref = rc.encode(values, [uniform_cdf(bits)] * len(values))
        else:
            ref_enc = rc.Encoder()
            for v in values:
                cuts = sorted({v * step, (v + 1) * step} - {0, TOTAL})
                table = [0] + cuts + [TOTAL]
                ref_enc.encode(table.index(v * step), table)
            ref = ref_enc.finish()
        assert fast == ref
        assert rc.Decoder(fast).decode_uniform_many(len(values), bits) == values


# ---------------------------------------------------------------------------
# constriction cross-check
# ---------------------------------------------------------------------------

def test_constriction_identity_mapping():
    """Categorical(perfect=True) with p = m/2^24 keeps exactly the integer table.

    From a fresh coder (scale = 2^40 - 1), one symbol with interval start c
    seals to the single word (c * (2^40 - 1) + 2^32 - 1) >> 32 = c * 2^8, so
    the first word reveals cdf[s]; a second symbol of the table in front
    reveals the mass through the coder state.
    """
    np = pytest.importorskip("numpy")
    cs = pytest.importorskip("constriction")
    Q, M = cs.stream.queue, cs.stream.model
    rnd = random.Random(1)
    for n, kind in [(2, "random"), (3, "heavy_first"), (17, "heavy_last"), (300, "random"),
                    (4096, "heavy_middle"), (4096, "random")]:
        table = random_table(rnd, n, kind)
        model = M.Categorical(np.array(table.masses(), np.float64) / TOTAL, perfect=True)
        for s in sorted(set([0, n - 1] + [rnd.randrange(n) for _ in range(40)])):
            enc = Q.RangeEncoder()
            enc.encode(np.array([s], np.int32), model)
            words = enc.get_compressed().tolist()
            assert words[0] == table[s] << 8
            enc.encode(np.array([s, 0], np.int32), model)
            assert enc.get_compressed().tolist() == _words_of([s, s, 0], table)


def _words_of(symbols, table):
    enc = rc.Encoder()
    enc.encode_many(symbols, table)
    return enc.words()


def test_constriction_uniform_fast_path():
    """encode_uniform(v, r) equals constriction's Uniform(2^r) for r = 1..23."""
    np = pytest.importorskip("numpy")
    cs = pytest.importorskip("constriction")
    rnd = random.Random(6)
    for bits in range(1, 24):
        values = [rnd.randrange(1 << bits) for _ in range(200)] + [0, (1 << bits) - 1]
        theirs = cs.stream.queue.RangeEncoder()
        theirs.encode(np.array(values, dtype=np.int32), cs.stream.model.Uniform(1 << bits))
        ours = rc.Encoder()
        ours.encode_uniform_many(values, bits)
        assert ours.words() == theirs.get_compressed().tolist()


@pytest.mark.parametrize("messages", [150, pytest.param(1100, marks=pytest.mark.slow)])
def test_constriction_random_sequences(messages):
    """Random messages (1,100 with -m slow, the first 150 by default): identical words, and
    each side decodes the other."""
    pytest.importorskip("constriction")
    rnd = random.Random(2020)
    checked = 0
    for i in range(messages):
        n = rnd.choice([2, 2, 3, 4, 5, 11, 17, 64, 257, 2047, 4096])
        kind = rnd.choice(["random"] * 6 + ["heavy_first", "heavy_last", "heavy_middle"])
        table = random_table(rnd, n, kind)
        length = rnd.choice([0, 1, 2, 3, rnd.randrange(300), rnd.randrange(2000)])
        if rnd.random() < 0.5:
            symbols = rnd.choices(range(n), weights=table.masses(), k=length)
        else:
            symbols = [rnd.randrange(n) for _ in range(length)]
        ours = rc.encode(symbols, [table] * length)
        theirs = rc.words_to_bytes(constriction_words(symbols, [table] * length))
        assert ours == theirs, (i, n, kind, length)
        if i % 10 == 0:
            words = list(rc.bytes_to_words(ours))
            assert constriction_decode(words, [table] * length) == symbols
        assert rc.decode(theirs, [table] * length) == symbols
        checked += 1
    assert checked == messages


def test_constriction_varying_tables():
    """Messages whose every symbol has its own table (alphabet sizes mixed)."""
    pytest.importorskip("constriction")
    rnd = random.Random(7)
    for i in range(120):
        pool = [random_table(rnd, rnd.choice([2, 3, 9, 100]),
                             rnd.choice(["random", "heavy_first", "heavy_last"]))
                for _ in range(rnd.randrange(1, 5))]
        tabs = [rnd.choice(pool) for _ in range(rnd.randrange(1, 200))]
        symbols = [rnd.randrange(t.n) for t in tabs]
        words = constriction_words(symbols, tabs)
        assert rc.encode(symbols, tabs) == rc.words_to_bytes(words)
        assert constriction_decode(words, tabs) == symbols


def test_carry_chains_and_sealing_branches():
    """Forced carries, long held-word chains and every sealing branch.

    The held-word reference counts the branches it takes; the test asserts
    each was hit and that our bytes equal the reference's and constriction's.
    """
    rnd = random.Random(1234)
    stats = dict.fromkeys(HeldWordEncoder().stats, 0)
    seal_carry_extra_zero = seal_carry_plain = 0
    for rep in range(8):
        for plan in ADVERSARIAL_PLANS:
            symbols, tabs = adversarial_case(rnd, plan)
            ours = rc.encode(symbols, tabs)
            before = dict(stats)
            ref = reference_words(symbols, tabs, stats)
            assert ours == rc.words_to_bytes(ref)
            assert rc.decode(ours, tabs) == symbols
            if stats["seal_inverted_carry"] > before["seal_inverted_carry"]:
                if stats["seal_extra_zero"] > before["seal_extra_zero"]:
                    seal_carry_extra_zero += 1
                else:
                    seal_carry_plain += 1
            if rep < 3:
                assert ours == rc.words_to_bytes(constriction_words(symbols, tabs))
    print("branch counts:", stats, "seal carry (+zero / plain):",
          seal_carry_extra_zero, seal_carry_plain)
    for key in ("normal_to_inverted", "inverted_grow", "resolve_carry", "resolve_no_carry",
                "seal_inverted_carry", "seal_inverted_no_carry", "seal_extra_zero",
                "seal_extra_zero_normal"):
        assert stats[key] > 0, key
    assert stats["max_held"] >= 20                # a carry chain over >= 20 words
    assert seal_carry_extra_zero > 0 and seal_carry_plain > 0


def test_reference_matches_on_random_messages():
    rnd = random.Random(99)
    for _ in range(200):
        t = random_table(rnd, rnd.choice([2, 5, 300]))
        symbols = [rnd.randrange(t.n) for _ in range(rnd.randrange(400))]
        assert rc.encode(symbols, [t] * len(symbols)) == rc.words_to_bytes(
            reference_words(symbols, [t] * len(symbols)))


# ---------------------------------------------------------------------------
# Overhead bound (SPEC.md §2.10)
# ---------------------------------------------------------------------------

@HYPOTHESIS
@given(messages())
def test_overhead_bound(ops):
    data = _encode_ops(ops)
    info = sum(-math.log2(t.mass(s) / TOTAL) if k == "t" else t for k, s, t in ops)
    n = sum(1 for k, _, b in ops if k == "t" or b > 0)
    assert 8 * len(data) < rc.max_payload_bits(info, n) + 1e-6
    assert (n == 0) == (data == b"")


def test_overhead_bound_worst_cases():
    # renormalising on every symbol with range pushed to just above 2^32
    rnd = random.Random(8)
    for plan in ADVERSARIAL_PLANS:
        symbols, tabs = adversarial_case(rnd, plan)
        bits = 8 * len(rc.encode(symbols, tabs))
        assert bits < rc.max_payload_bits(information_bits(symbols, tabs), len(symbols))


def test_overhead_realistic_stream():
    """300,000 symbols from an 11-symbol table: overhead <= 0.1% + 64 bits."""
    rnd = random.Random(2024)
    table = cdf_from_counts([2, 9, 40, 180, 900, 3000, 900, 180, 40, 9, 2])
    symbols = rnd.choices(range(11), weights=table.masses(), k=300_000)
    enc = rc.Encoder()
    enc.encode_many(symbols, table)
    bits = 8 * len(enc.finish())
    info = information_bits(symbols, [table] * len(symbols))
    overhead = bits - info
    print(f"300k symbols: {bits} bits, information {info:.1f} bits, overhead "
          f"{overhead:.1f} bits = {100 * overhead / info:.4f}%")
    assert overhead <= 0.001 * info + 64
    assert bits < rc.max_payload_bits(info, len(symbols))


# ---------------------------------------------------------------------------
# Hostile input (SPEC.md §2.8)
# ---------------------------------------------------------------------------

def _decode_or_error(data, tabs):
    """Decode; return symbols, or None on BitstreamError; anything else fails."""
    try:
        return rc.decode(data, tabs)
    except BitstreamError:
        return None


def test_quantile_out_of_range_is_bitstream_error():
    # point = 2^64 - 1: q = (2^64 - 1) // (2^40 - 1) = 2^24 -> invalid data
    with pytest.raises(BitstreamError, match="quantile"):
        rc.Decoder(b"\xff" * 8).decode([0, 1, TOTAL])
    with pytest.raises(BitstreamError):
        rc.Decoder(b"\xff" * 8).decode_many(3, [0, 1, TOTAL])
    with pytest.raises(BitstreamError):
        rc.Decoder(b"\xff" * 8).decode_uniform(24)


def test_strict_end_check():
    rnd = random.Random(4)
    table = random_table(rnd, 5)
    symbols = [rnd.randrange(5) for _ in range(100)]
    data = rc.encode(symbols, [table] * 100)
    assert rc.decode(data, [table] * 100) == symbols
    with pytest.raises(BitstreamError):
        rc.decode(data + b"\x00" * 4, [table] * 100)       # trailing word
    assert rc.decode(data + b"\x00" * 4, [table] * 100, strict=False) == symbols
    with pytest.raises(BitstreamError):
        rc.decode(b"\x00" * 4, [])                            # words but no symbol
    # Only the encoder's exact payload decodes to these symbols under the
    # strict check: an altered last word or a truncated payload never does.
    altered = data[:-1] + bytes([data[-1] ^ 1])
    assert _decode_or_error(altered, [table] * 100) != symbols
    for cut in (4, 8):
        assert _decode_or_error(data[:-cut], [table] * 100) != symbols


@pytest.mark.parametrize("trials", [100, pytest.param(400, marks=pytest.mark.slow)])
def test_hostile_input(trials):
    """Altered, cut, extended and random payloads: symbols or BitstreamError, nothing else."""
    rnd = random.Random(666)
    outcomes = {"symbols": 0, "error": 0}
    for i in range(trials):
        tabs = [random_table(rnd, rnd.choice([1, 2, 3, 11, 4096]) if i % 7 else 2,
                             rnd.choice(["random", "heavy_first", "heavy_last"]))
                for _ in range(3)]
        seq = [rnd.choice(tabs) for _ in range(rnd.randrange(0, 200))]
        symbols = [rnd.randrange(t.n) for t in seq]
        good = rc.encode(symbols, seq)
        candidates = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 40)))]
        if good:
            flipped = bytearray(good)
            pos = rnd.randrange(8 * len(good))
            flipped[pos // 8] ^= 1 << (pos % 8)
            candidates += [bytes(flipped), good[:rnd.randrange(len(good))], good[:-4],
                           good + bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 9)))]
        for data in candidates:
            for strict in (True, False):
                try:
                    out = rc.decode(data, seq, strict=strict)
                    assert len(out) == len(seq) and all(0 <= s < t.n for s, t in zip(out, seq))
                    outcomes["symbols"] += 1
                except BitstreamError:
                    outcomes["error"] += 1
            try:
                dec = rc.Decoder(data)
                for _ in range(50):
                    dec.decode_uniform(24)
            except BitstreamError:
                pass
    assert outcomes["symbols"] > 0 and outcomes["error"] > 0


@pytest.mark.slow
def test_slow_constriction_many():
    pytest.importorskip("constriction")
    rnd = random.Random(77)
    for i in range(20000):
        n = rnd.choice([2, 3, 5, 17, 300, 4096])
        table = random_table(rnd, n, rnd.choice(["random", "heavy_first", "heavy_last"]))
        length = rnd.randrange(600)
        symbols = rnd.choices(range(n), weights=table.masses(), k=length)
        assert rc.encode(symbols, [table] * length) == rc.words_to_bytes(
            constriction_words(symbols, [table] * length))


@pytest.mark.slow
def test_slow_adversarial():
    rnd = random.Random(4321)
    for rep in range(300):
        for plan in ADVERSARIAL_PLANS:
            symbols, tabs = adversarial_case(rnd, plan)
            ours = rc.encode(symbols, tabs)
            assert ours == rc.words_to_bytes(reference_words(symbols, tabs))
            if rep % 10 == 0:
                assert ours == rc.words_to_bytes(constriction_words(symbols, tabs))
