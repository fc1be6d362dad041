r"""SPEC.md §9 (the entropy model), re-derived from the text of the spec alone.

An *independent* second implementation of the coding order, contexts and
adaptive models of SPEC.md §9, written on purpose without calling
:mod:`bac_ref.entropy_model`, so that the two can check each other.  Nothing
here is used to encode or decode files; it serves the conformance suite:

* :func:`walk_symbols` runs the coding order of §9 step by step and asks a
  ``choose`` callback for each step's symbol, given the step's 24-bit table.
  Replaying known symbols, decoding with another range decoder (the tests use
  constriction) or steering an encoder into long carry chains (vector
  generation, :mod:`bac_ref.conformance.generate`) are all a choice of
  ``choose``.
* :func:`coding_steps` lists every (table, symbol) step of the payload of
  given symbols (:func:`cost_by_kind` sums their ideal bits by what they
  code); :func:`steps_to_intervals` turns them into the intervals (start,
  mass) the range coder codes (SPEC.md §2).
* :func:`coder_stats` runs the range coder's exact integer arithmetic
  (SPEC.md §2.3-§2.5) over such intervals and counts the branches taken
  (carries, pending words, sealing), so that generated vectors can record what
  they exercise.

The tables are those of §3.3 (binary models), §9.2 (depth models, refreshed
from their counts every ``DEPTH_REFRESH`` updates) and §2.9 (uniform low bits).

Why a second implementation exists at all (it is the one deliberate duplicate of
a spec rule in bac_ref): a conformance suite checked only by the code that
wrote it proves nothing.  Every vector's payload is re-derived here from the
text of SPEC.md §9 and must equal bac_ref's bytes (generation refuses to write
otherwise), and the tests decode every vector with constriction, fed the tables
this module computes.  A change to §9's rules must therefore be made twice, in
:mod:`bac_ref.entropy_model` and here, and the two must agree.  For the same
reason :func:`coder_stats` keeps its own copy of the §2.2-§2.5 arithmetic: it
counts the branches (carries, pending words, sealing cases) that the vectors
record, which the coder does not expose, and it is checked against the coder's
payload for every vector.  Nothing here is imported by the codec.
"""
from __future__ import annotations

import collections
import math

import numpy as np

from ..intmodels import cdf_from_counts

__all__ = [
    "TOTAL", "MASK32", "MASK64", "K_TREE", "INCREMENT", "LIMIT", "DEPTH_REFRESH",
    "binary_table", "uniform_table", "walk_symbols", "coding_steps", "cost_by_kind",
    "steps_to_intervals", "coder_stats",
]

TOTAL = 1 << 24                          # every table is a 24-bit CDF (SPEC.md §2)
MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1


# ---------------------------------------------------------------------------
# SPEC.md §9, step by step
# ---------------------------------------------------------------------------
K_TREE, INCREMENT, LIMIT, DEPTH_REFRESH = 6, 64, 1 << 16, 16
_UNIFORM = {}


def binary_table(c0: int, c1: int) -> tuple:
    """[0, m0, 2^24] of the binary rule (SPEC.md §3.3, §9).

    >>> binary_table(1, 1)                 # a fresh model: p(0) = 1/2
    (0, 8388608, 16777216)
    >>> binary_table(65, 1)                # after one 0 (increment 64)
    (0, 16523015, 16777216)
    """
    m0 = 1 + (2 * c0 * (TOTAL - 2) + c0 + c1) // (2 * (c0 + c1))
    return (0, m0, TOTAL)


def uniform_table(bits: int) -> tuple:
    """cdf[k] = k 2^(24 - bits): the uniform fast path as a table (SPEC.md §2.9).

    >>> uniform_table(2)
    (0, 4194304, 8388608, 12582912, 16777216)
    """
    if bits not in _UNIFORM:
        _UNIFORM[bits] = tuple(k << (24 - bits) for k in range((1 << bits) + 1))
    return _UNIFORM[bits]


def _bump(counts, s):
    counts[s] += INCREMENT
    if sum(counts) > LIMIT:
        for i, v in enumerate(counts):
            counts[i] = (v + 1) >> 1
        return True
    return False


def walk_symbols(shape, max_depth: int, choose, stats=None, strict=True):
    """Run the coding order of SPEC.md §9 and return (depth, index), (M, h, w) int64.

    ``choose(kind, table, c, y, x, t)`` returns the symbol of each coding step:
    kind is "active" (t = -1), "depth" (t = -1), "bit" (t = bit 0..5 of the
    index) or "uniform" (t = number of low bits); ``table`` is the step's
    24-bit CDF as a tuple.  Replaying known symbols (:func:`coding_steps`),
    decoding with another range decoder, or steering an encoder are all a
    choice of ``choose``.  ``stats`` (a Counter) counts the paths taken.
    ``strict``: refuse an active channel without a depth > 0 (SPEC.md §9.1, §9.4).

    Written from the text of SPEC.md §9 only (it does not call
    bac_ref.entropy_model), so it doubles as an independent check of it.
    """
    m, h, w = (int(s) for s in shape)
    n = int(max_depth)
    st = stats if stats is not None else collections.Counter()
    act = [1, 1]
    contexts = 8 * (n + 2)                 # ctx = 8 ctx_n + ctx_c + 1 (SPEC.md §9.2)
    dcounts = [[1] * (n + 1) for _ in range(contexts)]
    dupdates = [0] * contexts
    first = tuple(cdf_from_counts([1] * (n + 1)))
    dtables = [first] * contexts
    bcounts = {}
    depth = np.zeros((m, h, w), dtype=np.int64)
    index = np.zeros((m, h, w), dtype=np.int64)
    for c in range(m):
        a = choose("active", binary_table(*act), c, -1, -1, -1)
        st["active_%d" % a] += 1
        if _bump(act, a):
            st["active_halving"] += 1
        if not a:
            continue
        d = [[0] * w for _ in range(h)]
        k = [[0] * w for _ in range(h)]
        total = 0                                    # S: sum of this channel's depths so far
        for y in range(h):
            for x in range(w):
                done = y * w + x                     # n: latents of this channel coded before
                if x > 0:
                    left = d[y][x - 1]
                    top = d[y - 1][x] if y > 0 else left
                    ctx_n = (left + top + 1) >> 1
                    st["ctx_inner" if y > 0 else "ctx_row0"] += 1
                elif y > 0:
                    ctx_n = d[y - 1][0]
                    st["ctx_col0"] += 1
                else:
                    ctx_n = n + 1
                    st["ctx_first"] += 1
                ctx_c = min(6, (4 * total + done) // (2 * done)) if done else -1
                st["ctx_c_%d" % ctx_c] += 1
                ctx = 8 * ctx_n + ctx_c + 1
                r = choose("depth", dtables[ctx], c, y, x, -1)
                total += r
                st["depth_%s" % ("0" if r == 0 else "max" if r == n else "mid")] += 1
                if _bump(dcounts[ctx], r):
                    st["depth_halving"] += 1
                dupdates[ctx] += 1
                if dupdates[ctx] % DEPTH_REFRESH == 0:
                    dtables[ctx] = tuple(cdf_from_counts(dcounts[ctx]))
                    st["depth_refresh"] += 1
                v = 0
                for t in range(min(r, K_TREE)):
                    s = 0
                    for ny, nx in ((y, x - 1), (y - 1, x)):
                        if ny < 0 or nx < 0:
                            continue
                        rn, kn = d[ny][nx], k[ny][nx]
                        if rn > t and (kn >> (rn - t)) == v:
                            s += 1 if (kn >> (rn - 1 - t)) & 1 else -1
                    vote = 1 + (s > 0) - (s < 0)
                    st["vote_%d" % vote] += 1
                    counts = bcounts.setdefault((c, (1 << t) + v, vote), [1, 1])
                    b = choose("bit", binary_table(*counts), c, y, x, t)
                    if _bump(counts, b):
                        st["tree_halving"] += 1
                    v = 2 * v + b
                if r > K_TREE:
                    low = choose("uniform", uniform_table(r - K_TREE), c, y, x, r - K_TREE)
                    st["uniform_%d" % (r - K_TREE)] += 1
                    v = (v << (r - K_TREE)) | low
                d[y][x], k[y][x] = r, v
        if strict and not any(any(row) for row in d):
            raise ValueError(f"channel {c} was coded active but has no depth > 0 (SPEC.md §9.1)")
        depth[c], index[c] = d, k
    return depth, index


def _replay(depth, index, max_depth: int, stats=None) -> list:
    """[(kind, table, symbol), ...]: every coding step of these symbols, with what it codes."""
    depth = np.asarray(depth, dtype=np.int64)
    index = np.asarray(index, dtype=np.int64)
    steps = []
    dl, kl = depth.tolist(), index.tolist()

    def replay(kind, table, c, y, x, t):
        if kind == "active":
            s = int(any(any(row) for row in dl[c]))
        elif kind == "depth":
            s = dl[c][y][x]
        elif kind == "bit":
            s = (kl[c][y][x] >> (dl[c][y][x] - 1 - t)) & 1
        else:
            s = kl[c][y][x] & ((1 << t) - 1)
        steps.append((kind, table, s))
        return s

    d2, k2 = walk_symbols(depth.shape, max_depth, replay, stats)
    if not (np.array_equal(d2, depth) and np.array_equal(k2, index)):
        raise AssertionError("coding_steps: replay did not reproduce the symbols")
    return steps


def coding_steps(depth, index, max_depth: int, stats=None) -> list:
    """[(table, symbol), ...]: every coding step of the payload of these symbols (SPEC.md §9)."""
    return [(table, s) for _, table, s in _replay(depth, index, max_depth, stats)]


def cost_by_kind(depth, index, max_depth: int) -> dict:
    """Ideal bits of a payload, split by what each step codes (SPEC.md §9).

    {"active": ..., "depth": ..., "bit": ..., "uniform": ...}: the sum of
    -log2(mass / 2^24) over the steps of each kind (channel flags, depths, the
    adaptive index bits of the top K_TREE tree levels, the uniform low bits).
    Their total is the payload's size before the range coder's small overhead
    (SPEC.md §2.10).  It shows what VBQ's files spend their bits on: the paper's
    objective prices the index bits (the depth r), not the depths themselves.
    """
    costs = dict.fromkeys(("active", "depth", "bit", "uniform"), 0.0)
    for kind, table, s in _replay(depth, index, max_depth):
        costs[kind] += -math.log2((table[s + 1] - table[s]) / TOTAL)
    return costs


def steps_to_intervals(steps):
    """[(start, mass), ...]: the interval of each (table, symbol) step (SPEC.md §2.3)."""
    return [(t[s], t[s + 1] - t[s]) for t, s in steps]


# ---------------------------------------------------------------------------
# SPEC.md §2.3-§2.5: the branches the range coder takes
# ---------------------------------------------------------------------------
def coder_stats(intervals) -> dict:
    """Branches of SPEC.md §2.3-§2.5 that the intervals [(start, mass)] take (exact integers).

    longest_carry: most words one carry changed (the incremented word plus the
    0xFFFFFFFF words that became 0); max_pending: most words a carry could
    still have changed at once (constriction's held words).

    >>> s = coder_stats([(0, 1 << 22), (1 << 22, 3 << 22), (1 << 22, 3 << 22), (0, 1 << 22)])
    >>> s["steps"], s["renormalisations"], s["carries"], s["seal_extra_zero"]
    (4, 0, 0, False)
    """
    lower, rng, words = 0, MASK64, []
    out = dict(steps=0, renormalisations=0, carries=0, longest_carry=0, max_pending=0,
               longest_resolved_without_carry=0, seal_carry=False, seal_extra_zero=False)
    pending = 0

    def carry():
        i, n = len(words) - 1, 1
        while words[i] == MASK32:
            words[i] = 0
            i, n = i - 1, n + 1
        words[i] += 1
        out["carries"] += 1
        out["longest_carry"] = max(out["longest_carry"], n)

    for start, mass in intervals:
        scale = rng >> 24
        lower += scale * start
        rng = scale * mass
        out["steps"] += 1
        carried = lower > MASK64
        if carried:
            lower -= 1 << 64
            carry()
        if rng < 1 << 32:
            words.append(lower >> 32)
            lower, rng = (lower & MASK32) << 32, rng << 32
            out["renormalisations"] += 1
        if lower + rng > MASK64 and words:
            i = len(words) - 1
            while i > 0 and words[i] == MASK32:
                i -= 1
            pending = len(words) - i
            out["max_pending"] = max(out["max_pending"], pending)
        else:
            if pending and not carried:
                out["longest_resolved_without_carry"] = max(
                    out["longest_resolved_without_carry"], pending)
            pending = 0
    if out["steps"]:
        point = lower + MASK32
        if point > MASK64:
            point -= 1 << 64
            carry()
            out["seal_carry"] = True
        out["seal_extra_zero"] = ((lower + rng) & MASK64) >> 32 == point >> 32
    return out
