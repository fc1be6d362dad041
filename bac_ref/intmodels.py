"""Integer probability models for the range coder (SPEC.md §3).

Only integers reach the coder.  Every model hands it a *CDF table*: n + 1
integers with ::

    cdf[0] = 0 < cdf[1] < ... < cdf[n] = 2^24           (SPEC.md §3.1)

Symbol s owns the interval [cdf[s], cdf[s+1]) of the 2^24 units of
probability, i.e. it has mass m_s = cdf[s+1] - cdf[s] >= 1 and probability
p_s = m_s / 2^24.  No symbol can have mass 0, so every symbol can be coded.

    0                                                             2^24
    |--- m_0 ---|-------- m_1 --------|- m_2 -| ... |---- m_{n-1} ---|
    cdf[0]      cdf[1]                cdf[2]  cdf[3]      cdf[n-1]   cdf[n]

Coding s costs -log2(p_s) bits.  The mass of at least 1 that every symbol keeps
plays the part of the add-one smoothing in the VBQ paper's code lengths
(Yang, Bamler & Mandt 2020; their code: -log2((n_s + 1) / (n + S)) with counts n_s
of S symbols, n = sum n_s).

This module provides

* ``check_cdf`` / ``CheckedCDF``: the checking wrapper.  A ``CheckedCDF`` is
  an immutable tuple that is known to be a valid table; the coder trusts it
  without re-checking (SPEC.md §3.1).
* ``cdf_from_counts``: the deterministic integer rule that turns counts into
  a table (SPEC.md §3.2): every symbol gets mass 1, and the remaining
  2^24 - n units are apportioned to the counts by the largest-remainder
  (Hamilton) method, ties to the smaller symbol index.
* ``AdaptiveModel`` and ``AdaptiveBinaryModel``: adaptive frequency models
  with an exact integer update rule (SPEC.md §3.3).
* ``uniform_cdf``: the table of the uniform r-bit fast path (SPEC.md §2.9).

Pure Python integers throughout (no floats, no numpy in any per-symbol path),
so every platform computes exactly the same tables.
"""
from __future__ import annotations

import operator
from bisect import bisect_right

__all__ = [
    "PRECISION",
    "TOTAL",
    "CheckedCDF",
    "check_cdf",
    "cdf_from_counts",
    "uniform_cdf",
    "AdaptiveModel",
    "AdaptiveBinaryModel",
    "DEFAULT_INCREMENT",
    "DEFAULT_LIMIT",
]

PRECISION = 24
"""Bits of probability resolution: every table sums to 2^PRECISION."""

TOTAL = 1 << PRECISION
"""2^24, the value of cdf[n] in every table (SPEC.md §3.1)."""

DEFAULT_INCREMENT = 32
"""Default count increment of the adaptive models (SPEC.md §3.3)."""

DEFAULT_LIMIT = 1 << 16
"""Default count-total limit of the adaptive models (SPEC.md §3.3)."""


# --------------------------------------------------------------------------
# SPEC.md §3.1: CDF tables and their checking wrapper
# --------------------------------------------------------------------------

def _entry_as_int(value, what):
    """``value`` as a Python int, or ValueError naming ``what``.

    Accepts Python ints and integer-like objects with ``__index__`` (numpy
    integers); rejects bool, float, str and everything else.
    """
    if type(value) is int:
        return value
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise ValueError(f"{what} is {value!r} of type {type(value).__name__}, not an int")
    return operator.index(value)


def _as_int_list(values, what):
    """A list of Python ints from a sequence/iterable/numpy array of integers."""
    if isinstance(values, (str, bytes, bytearray, memoryview)):
        raise ValueError(f"{what} must be a sequence of ints, got {type(values).__name__}")
    dtype = getattr(values, "dtype", None)
    if dtype is not None:  # a numpy array: check the kind once, then convert fast
        if getattr(values, "ndim", 1) != 1:
            raise ValueError(f"{what} must be one-dimensional, got shape {values.shape}")
        if dtype.kind not in "iu":
            raise ValueError(f"{what} must have an integer dtype, got {dtype}")
        return values.tolist()
    try:
        items = list(values)
    except TypeError:
        raise ValueError(
            f"{what} must be a sequence of ints, got {type(values).__name__}") from None
    for i, v in enumerate(items):
        if type(v) is not int:
            items[i] = _entry_as_int(v, f"{what}[{i}]")
    return items


class CheckedCDF(tuple):
    """A valid 24-bit CDF table: an immutable tuple of n + 1 Python ints.

    Constructing one checks every rule of SPEC.md §3.1 and raises ValueError
    naming the first violation::

        >>> CheckedCDF([0, 1 << 23, 1 << 24])
        CheckedCDF([0, 8388608, 16777216])
        >>> CheckedCDF([0, 5, 5, 1 << 24])
        Traceback (most recent call last):
        ...
        ValueError: cdf must be strictly increasing: cdf[1] = 5 >= cdf[2] = 5 (symbol 1 would have mass 0)

    The coder trusts a ``CheckedCDF`` and skips the O(n) check; any other
    sequence is checked on every use.
    """

    __slots__ = ()

    def __new__(cls, cdf):
        if type(cdf) is cls:
            return cdf
        values = _as_int_list(cdf, "cdf")
        n = len(values) - 1
        if n < 1:
            raise ValueError(
                f"a cdf table needs n + 1 >= 2 entries (n >= 1 symbols), got {len(values)}")
        if values[0] != 0:
            raise ValueError(f"cdf[0] must be 0, got {values[0]}")
        if values[n] != TOTAL:
            raise ValueError(f"cdf[n] = cdf[{n}] must be 2**24 = {TOTAL}, got {values[n]}")
        if n > TOTAL:
            raise ValueError(f"a table has at most 2**24 symbols, got n = {n}")
        previous = 0
        for i in range(1, n + 1):
            value = values[i]
            if value <= previous:
                raise ValueError(
                    f"cdf must be strictly increasing: cdf[{i - 1}] = {previous} >= "
                    f"cdf[{i}] = {value} (symbol {i - 1} would have mass {value - previous})")
            previous = value
        return tuple.__new__(cls, values)

    @property
    def n(self) -> int:
        """Number of symbols (the table has n + 1 entries)."""
        return len(self) - 1

    def mass(self, symbol: int) -> int:
        """m_s = cdf[s+1] - cdf[s], the integer mass of ``symbol`` (>= 1)."""
        if not 0 <= symbol < len(self) - 1:
            raise ValueError(f"symbol {symbol} is outside 0..{len(self) - 2}")
        return self[symbol + 1] - self[symbol]

    def masses(self) -> list:
        """[m_0, ..., m_{n-1}], the masses of all symbols (they sum to 2^24)."""
        return [b - a for a, b in zip(self, self[1:])]

    def __repr__(self):
        return f"CheckedCDF({list(self)!r})"

    def __reduce__(self):
        return (CheckedCDF, (list(self),))


def _trusted(values) -> CheckedCDF:
    """Wrap ``values`` that a rule of this module guarantees to be valid."""
    return tuple.__new__(CheckedCDF, values)


def check_cdf(cdf) -> CheckedCDF:
    """Check a CDF table (SPEC.md §3.1) and return it as a ``CheckedCDF``.

    Valid: a sequence (list, tuple, 1-D integer numpy array) of n + 1 >= 2
    integers with cdf[0] = 0, cdf[n] = 2^24 and cdf[k] < cdf[k+1] for all k.
    Anything else raises ValueError saying exactly what is wrong.  A
    ``CheckedCDF`` is returned unchanged (it cannot have become invalid).
    """
    if type(cdf) is CheckedCDF:
        return cdf
    return CheckedCDF(cdf)


def uniform_cdf(bits: int) -> CheckedCDF:
    """The uniform table of 2^bits symbols: cdf[k] = k * 2^(24 - bits) (SPEC.md §2.9)."""
    bits = _entry_as_int(bits, "bits")
    if not 0 <= bits <= PRECISION:
        raise ValueError(f"bits must be in 0..24, got {bits}")
    step = 1 << (PRECISION - bits)
    return _trusted(range(0, TOTAL + 1, step))


# --------------------------------------------------------------------------
# SPEC.md §3.2: a table from counts
# --------------------------------------------------------------------------

def _masses_from_counts(counts):
    """The masses m_0..m_{n-1} of SPEC.md §3.2 for a list of int counts >= 0.

    F = 2^24 - n units are free after every symbol got its mass 1.  With
    C = sum(counts) (all-zero counts are read as all ones), symbol i's exact
    share of F is c_i * F / C = q_i + r_i / C with q_i = floor(c_i F / C).
    The L = F - sum(q_i) < n units left over go, one each, to the L symbols
    with the largest remainders r_i (ties: smaller index first).
    """
    n = len(counts)
    free = TOTAL - n
    total = sum(counts)
    if total == 0:
        counts = [1] * n
        total = n
    masses = []
    remainders = []
    assigned = 0
    for c in counts:
        q, r = divmod(c * free, total)
        masses.append(q + 1)
        remainders.append(r)
        assigned += q
    left_over = free - assigned          # 0 <= left_over < n
    if left_over:
        # Stable sort, so among equal remainders the smaller index comes first.
        order = sorted(range(n), key=remainders.__getitem__, reverse=True)
        for i in order[:left_over]:
            masses[i] += 1
    return masses


def _cumulate(masses):
    cdf = [0]
    append = cdf.append
    acc = 0
    for m in masses:
        acc += m
        append(acc)
    return cdf


def cdf_from_counts(counts) -> CheckedCDF:
    """The 24-bit table of SPEC.md §3.2 for non-negative integer ``counts``.

    For n = len(counts) symbols (1 <= n <= 2^24), F = 2^24 - n and
    C = sum(counts) (C = 0: every count is read as 1):

        q_i = floor(c_i * F / C),  r_i = c_i * F mod C,  L = F - sum_i q_i
        b_i = 1 for the L indices with the largest r_i (ties: smaller i), else 0
        m_i = 1 + q_i + b_i,       cdf[0] = 0,  cdf[k+1] = cdf[k] + m_k

    Every symbol has mass >= 1; |m_i - 1 - c_i F / C| < 1; and c_i > c_j
    implies m_i >= m_j.  Counts may be arbitrarily large Python ints.

        >>> list(cdf_from_counts([3, 1]))
        [0, 12582912, 16777216]
        >>> list(cdf_from_counts([0, 0, 0]))
        [0, 5592406, 11184811, 16777216]
    """
    values = _as_int_list(counts, "counts")
    n = len(values)
    if n < 1:
        raise ValueError("counts must have at least one entry (n >= 1 symbols)")
    if n > TOTAL:
        raise ValueError(f"at most 2**24 symbols fit a 24-bit table, got n = {n}")
    for i, c in enumerate(values):
        if c < 0:
            raise ValueError(f"counts[{i}] = {c} is negative")
    return _trusted(_cumulate(_masses_from_counts(values)))


# --------------------------------------------------------------------------
# SPEC.md §3.3: adaptive frequency models
# --------------------------------------------------------------------------

def _check_adaptive_params(increment, limit):
    increment = _entry_as_int(increment, "increment")
    limit = _entry_as_int(limit, "limit")
    if increment < 1:
        raise ValueError(f"increment must be >= 1, got {increment}")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return increment, limit


class AdaptiveModel:
    """An adaptive frequency model over n symbols with an exact update rule.

    SPEC.md §3.3.  State: integer counts c_0..c_{n-1}, initially all 1 (or
    ``init_counts``).  The table used for the next symbol is always
    ``cdf_from_counts(counts)`` (SPEC.md §3.2).  After coding symbol s::

        c_s <- c_s + increment
        if sum(c) > limit:   c_i <- (c_i + 1) >> 1   for every i   (once)

    With ``refresh`` = R > 1 the table is rebuilt only at creation and after
    every R-th update, so it lags the counts by fewer than R symbols (the
    depth models of the entropy model, SPEC.md §9.2, use R = 16); R = 1, the
    default, is the rule above.

    Encoder and decoder must start from equal models and call ``update``
    with the same symbols in the same order.  ``interval(s)`` gives the
    coding step [start, start + mass) for s, ``decode(decoder)`` finds s
    from the decoder's quantile; both leave the update to the caller or do
    it themselves as documented.

        >>> model = AdaptiveModel(3)
        >>> list(model.cdf())
        [0, 5592406, 11184811, 16777216]
        >>> model.update(2); model.counts
        (1, 1, 33)
    """

    __slots__ = ("_counts", "_total", "_increment", "_limit", "_cdf", "_refresh", "_updates")

    def __init__(self, n: int, init_counts=None, increment: int = DEFAULT_INCREMENT,
                 limit: int = DEFAULT_LIMIT, refresh: int = 1):
        n = _entry_as_int(n, "n")
        if not 1 <= n <= TOTAL:
            raise ValueError(f"n must be in 1..2**24, got {n}")
        if init_counts is None:
            counts = [1] * n
        else:
            counts = _as_int_list(init_counts, "init_counts")
            if len(counts) != n:
                raise ValueError(f"init_counts has {len(counts)} entries, expected n = {n}")
            for i, c in enumerate(counts):
                if c < 0:
                    raise ValueError(f"init_counts[{i}] = {c} is negative")
        self._increment, self._limit = _check_adaptive_params(increment, limit)
        refresh = _entry_as_int(refresh, "refresh")
        if refresh < 1:
            raise ValueError(f"refresh must be >= 1, got {refresh}")
        self._counts = counts
        self._total = sum(counts)
        self._cdf = None          # cached table (None: build from the counts when asked)
        self._refresh = refresh
        self._updates = 0         # updates since the table was last rebuilt

    @property
    def n(self) -> int:
        return len(self._counts)

    @property
    def counts(self) -> tuple:
        """The current counts (a copy)."""
        return tuple(self._counts)

    @property
    def increment(self) -> int:
        return self._increment

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def refresh(self) -> int:
        return self._refresh

    def cdf(self) -> CheckedCDF:
        """The table for the next symbol: cdf_from_counts(counts) as of the last refresh."""
        table = self._cdf
        if table is None:
            table = self._cdf = _trusted(_cumulate(_masses_from_counts(self._counts)))
        return table

    def update(self, symbol: int) -> None:
        """Count ``symbol`` (SPEC.md §3.3): add the increment, halve above the limit."""
        counts = self._counts
        if type(symbol) is not int:
            symbol = _entry_as_int(symbol, "symbol")
        if not 0 <= symbol < len(counts):
            raise ValueError(f"symbol {symbol} is outside 0..{len(counts) - 1}")
        counts[symbol] += self._increment
        total = self._total + self._increment
        if total > self._limit:
            total = 0
            for i, c in enumerate(counts):
                c = (c + 1) >> 1
                counts[i] = c
                total += c
        self._total = total
        if self._refresh == 1:
            self._cdf = None                      # rebuilt lazily from these counts
        else:
            self._updates += 1
            if self._updates == self._refresh:    # rebuilt now, from these counts
                self._updates = 0
                self._cdf = _trusted(_cumulate(_masses_from_counts(counts)))

    def interval(self, symbol: int) -> tuple:
        """(start, mass): the coding step of ``symbol`` in the current table (no update)."""
        table = self._cdf
        if table is None:
            table = self.cdf()
        start = table[symbol]
        return start, table[symbol + 1] - start

    def encode(self, encoder, symbol: int) -> None:
        """Encode ``symbol`` with the current table, then update."""
        encoder.encode(symbol, self.cdf())
        self.update(symbol)

    def decode(self, decoder) -> int:
        """Decode one symbol with the current table, then update.

        ``decoder`` is a ``rangecoder.Decoder``: the symbol s is the one whose
        interval [cdf[s], cdf[s+1]) holds ``decoder.quantile()``.
        """
        table = self._cdf
        if table is None:
            table = self.cdf()
        symbol = bisect_right(table, decoder.quantile()) - 1
        start = table[symbol]
        decoder.consume(start, table[symbol + 1] - start)
        self.update(symbol)
        return symbol

    def copy(self) -> "AdaptiveModel":
        """An independent model in the same state."""
        clone = AdaptiveModel.__new__(AdaptiveModel)
        clone._counts = list(self._counts)
        clone._total = self._total
        clone._increment = self._increment
        clone._limit = self._limit
        clone._cdf = self._cdf
        clone._refresh = self._refresh
        clone._updates = self._updates
        return clone

    def __repr__(self):
        return (f"AdaptiveModel(n={self.n}, counts={list(self._counts)}, "
                f"increment={self._increment}, limit={self._limit}, refresh={self._refresh})")


class AdaptiveBinaryModel:
    """``AdaptiveModel(2, ...)`` with an O(1) update and table (SPEC.md §3.3).

    For n = 2 the rule of SPEC.md §3.2 reduces to one rounding: with
    F = 2^24 - 2 and C = c_0 + c_1 (C = 0 read as c_0 = c_1 = 1),

        m_0 = 1 + floor((2 c_0 F + C) / (2 C)),   table = [0, m_0, 2^24]

    (c_0 F / C rounded half up: the single left-over unit goes to the larger
    remainder, and to symbol 0 on a tie).  The tables and counts are those of
    ``AdaptiveModel(2, ...)`` with the same arguments, bit for bit.
    """

    __slots__ = ("_c0", "_c1", "_m0", "_increment", "_limit")

    _FREE = TOTAL - 2

    def __init__(self, init_counts=(1, 1), increment: int = DEFAULT_INCREMENT,
                 limit: int = DEFAULT_LIMIT):
        counts = _as_int_list(init_counts, "init_counts")
        if len(counts) != 2:
            raise ValueError(f"init_counts has {len(counts)} entries, expected 2")
        for i, c in enumerate(counts):
            if c < 0:
                raise ValueError(f"init_counts[{i}] = {c} is negative")
        self._increment, self._limit = _check_adaptive_params(increment, limit)
        c0, c1 = counts
        self._c0, self._c1 = c0, c1
        total = c0 + c1
        if total == 0:
            c0, total = 1, 2
        self._m0 = 1 + (2 * c0 * self._FREE + total) // (2 * total)

    n = 2

    @property
    def counts(self) -> tuple:
        return (self._c0, self._c1)

    @property
    def increment(self) -> int:
        return self._increment

    @property
    def limit(self) -> int:
        return self._limit

    def mass0(self) -> int:
        """m_0, the mass of symbol 0 (symbol 1 has 2^24 - m_0); kept up to date by ``update``."""
        return self._m0

    def cdf(self) -> CheckedCDF:
        """The table [0, m_0, 2^24] for the next bit."""
        return _trusted((0, self._m0, TOTAL))

    def update(self, bit: int) -> None:
        """Count ``bit`` (0 or 1) by the rule of SPEC.md §3.3, then compute the next m_0."""
        if type(bit) is not int:
            bit = _entry_as_int(bit, "bit")
        c0, c1 = self._c0, self._c1
        if bit == 0:
            c0 += self._increment
        elif bit == 1:
            c1 += self._increment
        else:
            raise ValueError(f"bit must be 0 or 1, got {bit}")
        total = c0 + c1
        if total > self._limit:
            c0, c1 = (c0 + 1) >> 1, (c1 + 1) >> 1
            total = c0 + c1
        self._c0, self._c1 = c0, c1
        self._m0 = 1 + (2 * c0 * self._FREE + total) // (2 * total)     # total >= 1 here

    def interval(self, bit: int) -> tuple:
        """(start, mass): the coding step of ``bit`` in the current table (no update).

        Bit 0 owns [0, m_0), bit 1 owns [m_0, 2^24).
        """
        m0 = self._m0
        return (m0, TOTAL - m0) if bit else (0, m0)

    def encode(self, encoder, bit: int) -> None:
        """Encode ``bit`` with the current table, then update."""
        encoder.encode(bit, self.cdf())
        self.update(bit)

    def decode(self, decoder) -> int:
        """Decode one bit with the current table, then update.

        ``decoder`` is a ``rangecoder.Decoder``: the bit is 0 when its
        quantile lies below m_0, else 1.
        """
        m0 = self._m0
        if decoder.quantile() < m0:
            decoder.consume(0, m0)
            self.update(0)
            return 0
        decoder.consume(m0, TOTAL - m0)
        self.update(1)
        return 1

    def copy(self) -> "AdaptiveBinaryModel":
        clone = AdaptiveBinaryModel.__new__(AdaptiveBinaryModel)
        clone._c0, clone._c1, clone._m0 = self._c0, self._c1, self._m0
        clone._increment, clone._limit = self._increment, self._limit
        return clone

    def __repr__(self):
        return (f"AdaptiveBinaryModel(counts=({self._c0}, {self._c1}), "
                f"increment={self._increment}, limit={self._limit})")
