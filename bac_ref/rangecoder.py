"""The exact range coder (SPEC.md §2), word for word compatible with constriction.

A range coder represents a whole message by one number: the sub-interval of
[0, 1) that the message selects.  Every symbol narrows the interval in
proportion to its probability.  This implementation uses exact Python
integers and reproduces, word for word, the default queue coder of
constriction 0.5.0 (``constriction.stream.queue.RangeEncoder``): 32-bit
words, a 64-bit state, 24-bit probabilities.

State and invariants (SPEC.md §2.1).  The encoder keeps the 64-bit window
``[lower, lower + range)`` of the current interval, below the words already
written::

     0                                                          2^64
     |        [lower ............................. lower + range)      |
     |         |-- s=0 --|------ s=1 ------|-- s=2 --| ... |  |        |
     |         <------ scale * cdf[n] = scale * 2^24 ------>  ^ left unused
     |                                                (range - scale * 2^24 < 2^24)

     0 <= lower < 2^64,   2^32 <= range < 2^64   (range = 2^64 - 1 only before
                                                  the first symbol)

Encoding symbol s with table cdf (SPEC.md §2.2), scale = range >> 24::

     lower <- lower + scale * cdf[s]          (a result >= 2^64 is a carry, §2.4)
     range <- scale * (cdf[s+1] - cdf[s])

Renormalisation (SPEC.md §2.3), at most once per symbol: if range < 2^32,
write the top 32-bit word of lower, then lower <- (lower mod 2^32) * 2^32 and
range <- range * 2^32.

Carry (SPEC.md §2.4): if lower + scale * cdf[s] >= 2^64, subtract 2^64 and add
1 to the words already written (...0x00000007 0xFFFFFFFF + 1 becomes
...0x00000008 0x00000000).  constriction holds such words back instead
("inverted situation") and writes them once the carry is decided; both give
the same words because both write the digits of the same exact sum.

Sealing (SPEC.md §2.5): nothing encoded -> no words.  Otherwise
point = lower + 2^32 - 1 (a carry if >= 2^64), write point's top word, and one
extra 0 word if (lower + range) mod 2^64 has the same top word as point.

Decoding (SPEC.md §2.7) mirrors the encoder and only needs
d = point - lower, where point is the next 64 bits of the data (words past
the end read as 0): q = d // scale; q >= 2^24 is invalid data (SPEC.md §2.8);
otherwise s is the symbol with cdf[s] <= q < cdf[s+1].

Cost (SPEC.md §2.10): a message of N >= 1 symbols with probabilities p_i
takes B bits, 32 | B, with  B < sum_i -log2(p_i) + N * delta + 64,
delta = -log2(1 - 2^-8) ~= 0.00565 bits.  The VBQ paper (Yang, Bamler &
Mandt 2020) stopped at the estimate sum_i -log2(p_i); this coder writes it out.

Serialisation (SPEC.md §2.6): the payload is the sequence of 32-bit words,
each written big-endian.  An empty message is b"".

API: ``encode(symbols, cdfs)`` / ``decode(data, cdfs)`` for a whole message;
``Encoder`` / ``Decoder`` to code step by step (tables, uniform r-bit values,
adaptive models from ``bac_ref.intmodels``) or in fast batches.  Tables are
24-bit CDF tables (SPEC.md §3.1); pass ``intmodels.CheckedCDF`` objects to
skip re-checking them.

    >>> from bac_ref.intmodels import check_cdf
    >>> cdf = check_cdf([0, 1 << 22, 1 << 24])      # p = 1/4, 3/4
    >>> data = encode([0, 1, 1, 0], [cdf] * 4)
    >>> data.hex()
    '1c000000'
    >>> decode(data, [cdf] * 4)
    [0, 1, 1, 0]
"""
from __future__ import annotations

import math
import operator
import struct
from itertools import repeat
from bisect import bisect_right
from typing import NamedTuple

from .errors import BitstreamError
from .intmodels import PRECISION, TOTAL, CheckedCDF, check_cdf

__all__ = [
    "Encoder",
    "Decoder",
    "encode",
    "decode",
    "words_to_bytes",
    "bytes_to_words",
    "max_payload_bits",
    "OVERHEAD_PER_SYMBOL_BITS",
    "BitstreamError",
    "PRECISION",
    "WORD_BITS",
    "STATE_BITS",
]

WORD_BITS = 32
STATE_BITS = 64
WORD_MASK = (1 << WORD_BITS) - 1            # 0xFFFFFFFF
STATE_MASK = (1 << STATE_BITS) - 1          # 2^64 - 1
STATE_ONE = 1 << STATE_BITS                 # 2^64: lower >= this means a carry
RANGE_MIN = 1 << (STATE_BITS - WORD_BITS)   # 2^32: renormalise below this
INITIAL_RANGE = STATE_MASK                  # range before the first symbol

OVERHEAD_PER_SYMBOL_BITS = -math.log2(1.0 - 2.0 ** (WORD_BITS - STATE_BITS + PRECISION))
"""delta = -log2(1 - 2^-8): most bits one symbol can lose to scale truncation (§2.10)."""


def max_payload_bits(information_bits: float, num_symbols: int) -> float:
    """Upper bound of SPEC.md §2.10 on the payload size in bits.

    ``information_bits`` = sum of -log2(p_i) over the coded symbols; the
    payload of N >= 1 symbols is strictly shorter than the returned value
    (N = 0 gives an empty payload).  Uniform symbols of r bits count r bits.
    """
    if num_symbols == 0:
        return 0.0
    return information_bits + num_symbols * OVERHEAD_PER_SYMBOL_BITS + 2 * WORD_BITS


# --------------------------------------------------------------------------
# Serialisation (SPEC.md §2.6)
# --------------------------------------------------------------------------

def words_to_bytes(words) -> bytes:
    """32-bit words -> bytes, each word big-endian (SPEC.md §2.6)."""
    return struct.pack(f">{len(words)}I", *words)


def bytes_to_words(data) -> tuple:
    """Bytes -> 32-bit words; a length that is not a multiple of 4 is invalid."""
    data = bytes(memoryview(data))
    if len(data) % 4:
        raise BitstreamError(
            f"range coder payload of {len(data)} bytes is not a whole number of 32-bit words")
    return struct.unpack(f">{len(data) // 4}I", data)


# --------------------------------------------------------------------------
# Helpers shared by encoder and decoder
# --------------------------------------------------------------------------

def _broken(what):
    """An internal invariant failed: a bug in this module, never bad input."""
    raise AssertionError(f"range coder invariant violated: {what} (SPEC.md §2.1)")


def _check_encoder_state(lower, range_):
    # 0 <= lower < 2^64, 2^32 <= range < 2^64
    if not (0 <= lower <= STATE_MASK and RANGE_MIN <= range_ <= STATE_MASK):
        _broken(f"lower = {lower:#x}, range = {range_:#x}")


def _propagate_carry(words):
    """Add 1 to the number that ``words`` spell, most significant word first.

    Trailing 0xFFFFFFFF words become 0 and the word before them grows by one
    (SPEC.md §2.4).  The interval never leaves [0, 1), so a carry always
    finds a word below 0xFFFFFFFF to stop at.
    """
    i = len(words) - 1
    while i >= 0 and words[i] == WORD_MASK:
        words[i] = 0
        i -= 1
    if i < 0:
        _broken("a carry ran past the first word")
    words[i] += 1


class _Prepared(NamedTuple):
    """A checked table with the lists the hot loops index (SPEC.md §3.1).

    ``starts[s]`` = cdf[s] and ``masses[s]`` = cdf[s+1] - cdf[s];
    ``intervals[s]`` = (starts[s], masses[s]) for the encoder.  For
    decoding, a coarse index narrows the binary search: the quantile q lies
    in bucket b = q >> shift; ``only[b]`` is the symbol when the whole bucket
    lies inside one symbol (no search at all), else -1, and then the symbol
    containing q is found by bisecting ``table`` between ``lo[b]`` and
    ``hi[b]`` only.
    """
    table: CheckedCDF
    starts: list
    masses: list
    shift: int
    lo: list
    hi: list
    only: list
    intervals: list


_INDEX_MAX_BITS = 12        # at most 2^12 buckets per table

_prepared_cache = {}


def _prepare(cdf) -> _Prepared:
    """Check ``cdf`` and derive its lookup lists; cached for ``CheckedCDF`` objects.

    A ``CheckedCDF`` is immutable, so caching by ``id`` is safe while the
    cache keeps the object alive (it does).
    """
    if type(cdf) is CheckedCDF:
        hit = _prepared_cache.get(id(cdf))
        if hit is not None and hit.table is cdf:
            return hit
    table = check_cdf(cdf)
    n = len(table) - 1
    bucket_bits = min(_INDEX_MAX_BITS, n.bit_length() + 3)     # ~8n buckets
    shift = PRECISION - bucket_bits
    # first[b] = the symbol containing the quantile b << shift; bucket b's
    # quantiles belong to symbols first[b] .. first[b + 1].
    first = [bisect_right(table, b << shift) - 1 for b in range(1 << bucket_bits)] + [n - 1]
    entry = _Prepared(table, list(table[:-1]), [b - a for a, b in zip(table, table[1:])],
                      shift, [f + 1 for f in first[:-1]], [f + 1 for f in first[1:]],
                      [f if f == g else -1 for f, g in zip(first, first[1:])],
                      [(a, b - a) for a, b in zip(table, table[1:])])
    if type(cdf) is CheckedCDF:
        if len(_prepared_cache) >= 256:
            _prepared_cache.clear()
        _prepared_cache[id(cdf)] = entry
    return entry


def _invalid_quantile(pos, q):
    raise BitstreamError(
        f"invalid range coder data before word {pos}: quantile {q} >= 2^24 (SPEC.md §2.8)")


def _as_symbol(symbol, n):
    if type(symbol) is not int:
        if isinstance(symbol, bool) or not hasattr(type(symbol), "__index__"):
            raise TypeError(f"symbol must be an int, got {type(symbol).__name__}")
        symbol = operator.index(symbol)
    if not 0 <= symbol < n:
        raise ValueError(f"symbol {symbol} is outside the table's alphabet 0..{n - 1}")
    return symbol


def _symbol_list(symbols):
    """A list of Python ints (numpy integer arrays are converted in one go)."""
    dtype = getattr(symbols, "dtype", None)
    if dtype is not None:
        if dtype.kind not in "iu":
            raise TypeError(f"symbols must have an integer dtype, got {dtype}")
        return symbols.reshape(-1).tolist()
    return symbols if type(symbols) is list else list(symbols)


def _bits(bits):
    if type(bits) is not int:
        bits = operator.index(bits)
    if not 0 <= bits <= PRECISION:
        raise ValueError(f"bits must be in 0..{PRECISION}, got {bits}")
    return bits


# --------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------

class Encoder:
    """Incremental range encoder (SPEC.md §2.1-§2.6).

    ``encode(symbol, cdf)`` codes one symbol, ``encode_uniform(value, bits)``
    an r-bit integer, ``encode_many(symbols, cdf)`` a run of symbols with one
    static table, ``encode_sequence(symbols, cdfs)`` one table per symbol.
    ``finish()`` returns the payload so far and leaves the encoder usable.

    Every method ends in ``_code_intervals``, the one place this class does
    §2's arithmetic.

    With ``checked=True`` the batch methods code symbol by symbol through the
    same primitive as ``encode``, which checks the state invariants after
    every symbol (slower; for tests and debugging).  Without it they check
    them once per call.

    Tables are checked (``intmodels.check_cdf``) unless they already are
    ``CheckedCDF`` objects.  A call that raises ValueError/TypeError has
    encoded nothing.
    """

    __slots__ = ("_words", "_lower", "_range", "checked")

    def __init__(self, checked: bool = False):
        # Invariant: 0 <= lower < 2^64, 2^32 <= range < 2^64; range == 2^64 - 1
        # exactly when nothing has been encoded (SPEC.md §2.1).
        self._words = []           # words written so far; carries may still change them
        self._lower = 0
        self._range = INITIAL_RANGE
        self.checked = bool(checked)

    @property
    def lower(self) -> int:
        """Lower end of the current 64-bit window (read only; for tests and teaching)."""
        return self._lower

    @property
    def range(self) -> int:
        """Width of the current interval in the 64-bit window (read only)."""
        return self._range

    @property
    def num_words_written(self) -> int:
        """Words written by renormalisation so far (the payload adds 1 or 2 at sealing)."""
        return len(self._words)

    def encode(self, symbol: int, cdf) -> None:
        """Encode ``symbol`` (0 <= symbol < n) with the n-symbol table ``cdf``.

        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64.
        """
        if type(cdf) is not CheckedCDF:
            cdf = check_cdf(cdf)
        if type(symbol) is not int or not 0 <= symbol < len(cdf) - 1:
            symbol = _as_symbol(symbol, len(cdf) - 1)
        start = cdf[symbol]
        self._code_intervals(((start, cdf[symbol + 1] - start),))

    def encode_uniform(self, value: int, bits: int) -> None:
        """Encode 0 <= value < 2^bits uniformly, 0 <= bits <= 24 (SPEC.md §2.9).

        Gives exactly the words of ``encode(value, uniform_cdf(bits))``, i.e.
        the interval [value * 2^(24-bits), (value + 1) * 2^(24-bits)).
        bits = 0 codes nothing at all (unlike the one-symbol table [0, 2^24]).
        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64.
        """
        bits = _bits(bits)
        if type(value) is not int:
            value = operator.index(value)
        if not 0 <= value < (1 << bits):
            raise ValueError(f"value {value} does not fit in {bits} bits")
        if bits == 0:
            return
        shift = PRECISION - bits
        self._code_intervals(((value << shift, 1 << shift),))

    def encode_many(self, symbols, cdf) -> None:
        """Encode every symbol in ``symbols`` with the same table ``cdf``.

        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64.
        """
        entry = _prepare(cdf)
        symbols = _symbol_list(symbols)
        n = len(entry.table) - 1
        if symbols and (min(symbols) < 0 or max(symbols) >= n):
            bad = next(s for s in symbols if not 0 <= s < n)
            raise ValueError(f"symbol {bad} is outside the table's alphabet 0..{n - 1}")
        intervals = entry.intervals
        try:
            chosen = [intervals[s] for s in symbols]
        except TypeError:
            raise TypeError("symbols must be ints") from None
        self._code_intervals(chosen)

    def encode_sequence(self, symbols, cdfs) -> None:
        """Encode symbols[i] with table cdfs[i] for every i.

        Each distinct table object is checked and prepared once per call, so
        repeating the same object (e.g. ``[cdf] * n``) is cheap.
        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64.
        """
        symbols = _symbol_list(symbols)
        if len(symbols) != len(cdfs):
            raise ValueError(f"{len(symbols)} symbols but {len(cdfs)} tables")
        prepared = {}
        chosen = []
        add = chosen.append
        for i, (s, cdf) in enumerate(zip(symbols, cdfs)):
            intervals = prepared.get(id(cdf))
            if intervals is None:
                intervals = prepared[id(cdf)] = _prepare(cdf).intervals
            if type(s) is not int or not 0 <= s < len(intervals):
                try:
                    s = _as_symbol(s, len(intervals))
                except (TypeError, ValueError) as exc:
                    raise type(exc)(f"symbols[{i}]: {exc}") from None
            add(intervals[s])
        self._code_intervals(chosen)

    def encode_intervals(self, starts, masses) -> None:
        """Code the intervals [starts[i], starts[i] + masses[i]) of 2^24 in order.

        The low-level entry point for adaptive models that compute their own
        intervals (SPEC.md §2.2); every pair must satisfy
        0 <= start < start + mass <= 2^24 (checked here, once per call).
        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64.
        """
        if type(starts) is not list:      # lists are read as they are (the entropy model's
            starts = list(starts)         # are millions long: no copies)
        if type(masses) is not list:
            masses = list(masses)
        if len(starts) != len(masses):
            raise ValueError(f"{len(starts)} starts but {len(masses)} masses")
        if starts and (min(starts) < 0 or min(masses) < 1
                       or max(s + m for s, m in zip(starts, masses)) > TOTAL):
            raise ValueError("every interval must satisfy 0 <= start < start + mass <= 2^24")
        self._code_intervals(zip(starts, masses))

    def encode_uniform_many(self, values, bits: int) -> None:
        """Encode every value in ``values`` with ``encode_uniform(value, bits)``.

        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64.
        """
        bits = _bits(bits)
        values = _symbol_list(values)
        if values and (min(values) < 0 or max(values) >= (1 << bits)):
            bad = next(v for v in values if not 0 <= v < (1 << bits))
            raise ValueError(f"value {bad} does not fit in {bits} bits")
        if bits == 0:
            return
        shift = PRECISION - bits
        self._code_intervals(zip([v << shift for v in values], repeat(1 << shift)))

    def _code_intervals(self, intervals):
        """Code the intervals [start, start + mass) of 2^24 in order (SPEC.md §2.2-§2.4).

        ``intervals`` yields (start, mass) pairs; a single symbol passes a
        1-tuple of one pair (cheaper than ``zip`` for one pair).

        The only place this class does §2's arithmetic; every encode method
        ends here.  Requires 0 <= start < start + mass <= 2^24 (checked by
        the callers).  Per interval, with scale = range >> 24::

            lower <- lower + scale * start     (>= 2^64: carry into the words, §2.4)
            range <- scale * mass              (>= 2^8, as scale >= 2^8, mass >= 1)
            if range < 2^32: write lower's top word, shift lower and range
                             up by 32 bits (renormalise, §2.3)

        Invariant before and after: 0 <= lower < 2^64, 2^32 <= range < 2^64
        (checked at the end of the call; with ``checked`` after every interval).
        """
        if self.checked:
            intervals = list(intervals)
            if len(intervals) > 1:
                for pair in intervals:
                    self._code_intervals((pair,))
                return
        words = self._words
        lower = self._lower
        range_ = self._range
        for start, mass in intervals:
            scale = range_ >> PRECISION
            lower += scale * start
            range_ = scale * mass
            if lower > STATE_MASK:                # carry (SPEC.md §2.4)
                lower -= STATE_ONE
                _propagate_carry(words)
            if range_ < RANGE_MIN:                # renormalise (SPEC.md §2.3)
                words.append(lower >> WORD_BITS)
                lower = (lower & WORD_MASK) << WORD_BITS
                range_ <<= WORD_BITS
        self._lower = lower
        self._range = range_
        if not (0 <= lower <= STATE_MASK and RANGE_MIN <= range_ <= STATE_MASK):
            _check_encoder_state(lower, range_)   # raises

    # -- sealing (SPEC.md §2.5) ---------------------------------------------

    def words(self) -> list:
        """The sealed payload as a list of 32-bit words; the encoder is unchanged."""
        if self._range == INITIAL_RANGE:          # nothing encoded: empty payload
            return []
        words = list(self._words)
        lower = self._lower
        point = lower + WORD_MASK                 # lower + 2^32 - 1
        if point > STATE_MASK:                    # carry at sealing
            point -= STATE_ONE
            _propagate_carry(words)
        point_word = point >> WORD_BITS
        words.append(point_word)
        upper_word = ((lower + self._range) & STATE_MASK) >> WORD_BITS
        if upper_word == point_word:              # pin point's low word to 0
            words.append(0)
        return words

    def finish(self) -> bytes:
        """The payload for everything encoded so far (SPEC.md §2.5, §2.6).

        Non-destructive: sealing works on a copy, so more symbols may follow
        and a later ``finish()`` returns the payload of all of them.
        """
        return words_to_bytes(self.words())


# --------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------

class Decoder:
    """Incremental range decoder (SPEC.md §2.7, §2.8).

    ``Decoder(data)`` takes the payload bytes.  Every decoding step is the
    same two halves:

    * ``quantile()``: q = (point - lower) // scale, the 24-bit position of the
      point inside the current interval (``BitstreamError`` if q >= 2^24);
    * ``consume(start, mass)``: the model has found the interval
      [start, start + mass) that holds q; narrow the state to it,
      renormalise, and compute the next step's q.

    ``consume()`` is the only place this class does §2.7's arithmetic
    (``quantile()`` returns the q it left, after the §2.8 check).  An
    adaptive model (``intmodels.AdaptiveModel.decode``, the §9 entropy model)
    calls the two directly.  ``decode(cdf)``, ``decode_uniform(bits)``,
    ``decode_many(n, cdf)`` and ``decode_sequence(cdfs)`` mirror the encoder
    through them; their loops call ``consume`` once per symbol and use the q
    it returns.  ``check_end()`` verifies that the payload is exactly what
    the encoder writes for the symbols decoded so far (no trailing or
    altered words).

    Invalid data raises ``BitstreamError``; after that the decoder's state is
    unspecified.  Garbage data may also decode to garbage symbols: a range
    coder cannot detect every corruption.  Each symbol reads at most one
    word, so decoding always terminates.
    """

    __slots__ = ("_words", "_pos", "_diff", "_range", "_scale", "_q")

    def __init__(self, data):
        # point = the first two words (missing words read as 0); lower = 0.
        # Invariant after each decoded symbol: 0 <= d = point - lower < range,
        # 2^32 <= range < 2^64.  Before the first one only 0 <= d < 2^64.
        # scale = range >> 24 and q = d // scale always belong to the current state.
        words = bytes_to_words(data)
        self._words = words
        first = words[0] if len(words) > 0 else 0
        second = words[1] if len(words) > 1 else 0
        self._diff = (first << WORD_BITS) | second
        self._pos = 2                      # index of the next word to read
        self._range = INITIAL_RANGE
        self._scale = INITIAL_RANGE >> PRECISION           # as consume() computes them
        self._q = self._diff // self._scale

    # -- the two halves of every step (SPEC.md §2.7) --------------------------

    def quantile(self) -> int:
        """The 24-bit quantile q of the next step, without consuming it.

        q = (point - lower) // scale with scale = range >> 24 (computed by the
        previous ``consume``).  The model finds the interval
        [start, start + mass) that holds q and then calls
        ``consume(start, mass)``.  BitstreamError if q >= 2^24 (SPEC.md §2.8).
        """
        q = self._q
        if not 0 <= q < TOTAL:        # invalid data, or a wrong interval given to consume()
            self._check_state()                   # AssertionError for the latter
            _invalid_quantile(self._pos, q)
        return q

    def consume(self, start: int, mass: int) -> int:
        """Remove the interval [start, start + mass) found for ``quantile()``.

        The caller guarantees start <= quantile() < start + mass <= 2^24.
        Invariant after: 0 <= point - lower < range, 2^32 <= range < 2^64
        (range >= 2^32 holds by construction: scale >= 2^8, mass >= 1, and a
        range below 2^32 is shifted up by one word; the rest is checked by
        the next ``quantile()`` and at the end of every batch method).

        Returns the next step's quantile q, NOT yet checked against §2.8 (it
        may be >= 2^24 when no symbol follows): callers either ignore it and
        call ``quantile()``, or check ``q >= 2^24`` themselves before using it.
        """
        scale = self._scale                       # = range >> 24
        diff = self._diff - scale * start
        range_ = scale * mass
        if range_ < RANGE_MIN:                    # renormalise: read one word
            pos = self._pos
            try:
                word = self._words[pos]
            except IndexError:                    # words past the end read as 0
                word = 0
            diff = (diff << WORD_BITS) | word
            range_ <<= WORD_BITS
            self._pos = pos + 1
        self._diff = diff
        self._range = range_
        self._scale = scale = range_ >> PRECISION        # the next step's scale
        self._q = q = diff // scale               # ... and quantile
        return q

    def _check_state(self):
        """Raise AssertionError unless the state invariant holds (SPEC.md §2.7).

        After a decoded symbol: 0 <= point - lower < range, 2^32 <= range < 2^64
        (a consume() that was given an interval not holding the quantile
        breaks it: then q < 0 or q >= 2^24).  Before the first symbol
        (range = 2^64 - 1, which no step leaves): 0 <= point - lower < 2^64.
        """
        diff, range_ = self._diff, self._range
        if range_ == INITIAL_RANGE:
            if not 0 <= diff <= STATE_MASK:
                _broken(f"point - lower = {diff:#x} before the first symbol")
        elif not (0 <= diff < range_ and RANGE_MIN <= range_ <= STATE_MASK):
            _broken(f"point - lower = {diff:#x}, range = {range_:#x} (a consume() "
                    "was given an interval that does not hold the quantile)")

    # -- symbols from tables, through quantile() and consume() ----------------

    def decode(self, cdf) -> int:
        """Decode one symbol coded with the table ``cdf``.

        Invariant after: 0 <= point - lower < range, 2^32 <= range < 2^64.
        """
        if type(cdf) is not CheckedCDF:
            cdf = check_cdf(cdf)
        symbol = bisect_right(cdf, self.quantile()) - 1     # cdf[symbol] <= q < cdf[symbol + 1]
        start = cdf[symbol]
        self.consume(start, cdf[symbol + 1] - start)
        return symbol

    def decode_uniform(self, bits: int) -> int:
        """Decode a value coded with ``encode_uniform(value, bits)`` (SPEC.md §2.9).

        Invariant after: 0 <= point - lower < range, 2^32 <= range < 2^64.
        """
        bits = _bits(bits)
        if bits == 0:
            return 0
        shift = PRECISION - bits
        value = self.quantile() >> shift
        self.consume(value << shift, 1 << shift)
        return value

    def decode_many(self, n: int, cdf) -> list:
        """Decode ``n`` symbols that were all coded with the table ``cdf``.

        Invariant after: 0 <= point - lower < range, 2^32 <= range < 2^64.
        """
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        table, starts, masses, shift, lo, hi, only, _ = _prepare(cdf)
        consume = self.consume
        find = bisect_right
        q = self._q
        out = []
        for _ in repeat(None, n):
            try:                                      # only has 2^(24 - shift) buckets:
                s = only[q >> shift]                  # q's bucket holds one symbol, or -1
            except IndexError:                        # q >= 2^24, invalid data (SPEC.md §2.8)
                self._check_state()                   # (or a wrong consume() before)
                _invalid_quantile(self._pos, q)
            if s < 0:
                b = q >> shift
                s = find(table, q, lo[b], hi[b]) - 1  # table[s] <= q < table[s + 1]
            q = consume(starts[s], masses[s])
            out.append(s)
        if out:
            self._check_state()
        return out

    def decode_sequence(self, cdfs) -> list:
        """Decode one symbol per table in ``cdfs`` (mirror of ``encode_sequence``).

        Invariant after: 0 <= point - lower < range, 2^32 <= range < 2^64.
        """
        if not isinstance(cdfs, (list, tuple)):   # the ids below must stay alive
            cdfs = list(cdfs)
        prepared = {}
        entries = []
        add = entries.append
        for cdf in cdfs:
            entry = prepared.get(id(cdf))
            if entry is None:                        # a plain tuple unpacks faster
                entry = prepared[id(cdf)] = tuple(_prepare(cdf))
            add(entry)
        consume = self.consume
        find = bisect_right
        q = self._q
        out = []
        for table, starts, masses, shift, lo, hi, only, _ in entries:     # as in decode_many
            try:                                      # only has 2^(24 - shift) buckets:
                s = only[q >> shift]                  # q's bucket holds one symbol, or -1
            except IndexError:                        # q >= 2^24, invalid data (SPEC.md §2.8)
                self._check_state()                   # (or a wrong consume() before)
                _invalid_quantile(self._pos, q)
            if s < 0:
                b = q >> shift
                s = find(table, q, lo[b], hi[b]) - 1  # table[s] <= q < table[s + 1]
            q = consume(starts[s], masses[s])
            out.append(s)
        if out:
            self._check_state()
        return out

    def decode_uniform_many(self, n: int, bits: int) -> list:
        """Decode ``n`` values coded with ``encode_uniform(value, bits)``.

        Invariant after: 0 <= point - lower < range, 2^32 <= range < 2^64.
        """
        bits = _bits(bits)
        n = operator.index(n)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if bits == 0:
            return [0] * n
        shift = PRECISION - bits
        mass = 1 << shift
        consume = self.consume
        q, total = self._q, TOTAL
        out = []
        for _ in repeat(None, n):
            if q >= total:                            # invalid data (SPEC.md §2.8)
                self._check_state()                   # (or a wrong consume() before)
                _invalid_quantile(self._pos, q)
            value = q >> shift
            q = consume(value << shift, mass)
            out.append(value)
        if out:
            self._check_state()
        return out

    def check_end(self) -> None:
        """Raise BitstreamError unless the payload is exactly the encoder's output.

        After the last symbol the encoder wrote its renormalisation words,
        then point = lower + 2^32 - 1's top word, then a 0 word if
        (lower + range)'s top word equals point's (SPEC.md §2.5).  Here
        lower = point - d is recovered from the last two words read.  A
        stream that passes is the unique payload of the symbols decoded
        (SPEC.md §2.8).
        """
        words = self._words
        if self._range == INITIAL_RANGE:             # nothing decoded
            if words:
                raise BitstreamError(
                    f"range coder payload has {len(words)} words but encodes no symbol")
            return
        pos = self._pos
        high = words[pos - 2] if pos - 2 < len(words) else 0
        low = words[pos - 1] if pos - 1 < len(words) else 0
        lower = (((high << WORD_BITS) | low) - self._diff) & STATE_MASK
        point_word = ((lower + WORD_MASK) & STATE_MASK) >> WORD_BITS
        upper_word = ((lower + self._range) & STATE_MASK) >> WORD_BITS
        extra = 1 if upper_word == point_word else 0
        expected = pos - 1 + extra
        if len(words) != expected:
            raise BitstreamError(
                f"range coder payload has {len(words)} words, the encoder writes "
                f"{expected} for the symbols decoded")
        if high != point_word or (extra and low != 0):
            raise BitstreamError("range coder payload does not end with the sealing words "
                                 "of the symbols decoded (SPEC.md §2.5)")


# --------------------------------------------------------------------------
# One-call API
# --------------------------------------------------------------------------

def encode(symbols, cdfs) -> bytes:
    """Payload bytes for symbols[i] coded with table cdfs[i] (SPEC.md §2).

    Repeating one table object is cheap: each distinct object is checked
    and prepared once.  ``encode([], [])`` is b"".
    """
    encoder = Encoder()
    encoder.encode_sequence(symbols, cdfs)
    return encoder.finish()


def decode(data, cdfs, *, strict: bool = True) -> list:
    """Decode one symbol per table in ``cdfs`` from the payload ``data``.

    Raises BitstreamError for invalid data; with ``strict`` (the default)
    also when ``data`` is not exactly the payload ``encode`` writes for the
    decoded symbols (``Decoder.check_end``).  ``strict=False`` accepts what
    constriction's decoder accepts.
    """
    decoder = Decoder(data)
    symbols = decoder.decode_sequence(cdfs)
    if strict:
        decoder.check_end()
    return symbols
