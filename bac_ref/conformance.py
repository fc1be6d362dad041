r"""Conformance vectors and their runner (SPEC.md §11); hostile-input fuzzing.

A conformance vector is one folder ``data/vectors/<id>/`` with its input, the
exact bytes, the decoded symbols and the reconstruction, and a
``manifest.json`` that names every file with its sha256, says what the case
exercises and which tolerance applies.  ``data/vectors/index.json`` lists the
cases and the model they were made with.  Four kinds::

    kind    input                       pinned (exact)                      tolerance
    ------  --------------------------  ----------------------------------  ------------------
    image   input.png + lam/N/pass      file.bac, symbols.npz (depth,       recon.png: 1 per
                                        index, zhat)                        8-bit sample
    array   input.npz: mu, sigma, lam,  file.bac (re-encoding is exact on   recon.png (if any):
            N, pass, H, W, prior        every platform), symbols.npz        1 per sample
    coder   input.json: 24-bit tables   payload.bin                         none
            and the symbol of each step
    reject  file.bac (invalid)          a decoder must refuse it            none

Why two encoder-side kinds: g_a runs in float32 BLAS and is not bit-exact
across platforms (SPEC.md §7.3), so re-encoding an *image* elsewhere may pick
other symbols (the runner reports that as WARN, never FAIL); everything after
(mu, sigma) is exact (VBQ uses IEEE-754 basic operations, SPEC.md §5; the
entropy model and the coder are integers, SPEC.md §2-§3, §9), so an *array*
case pins the encoder's bytes on every platform::

    image:  x --g_a (float32, ~1e-6)--> mu, sigma --VBQ--> (depth, index) --§9--> .bac
    array:                             mu, sigma --VBQ--> (depth, index) --§9--> .bac   (exact)
    every .bac:  .bac --§8, §9--> (depth, index) --§4.2--> zhat (exact) --g_s--> pixels (+-1)

Running (exit status 0 only when every case passes)::

    python -m bac_ref.conformance --vectors data/vectors                   # bac_ref itself
    python -m bac_ref.conformance --decoder 'mydec {in} {out}'             # another decoder
    python -m bac_ref.conformance --encoder 'myenc {in} {out}'             # another encoder
    BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate data/vectors
    python -m bac_ref.conformance --fuzz 10000                             # hostile input

``{in}``/``{out}``: a decoder gets the .bac path and writes an .npz with
``depth``, ``index``, ``zhat`` (float64) and optionally ``image`` (uint8,
(H, W, 3) or (H, W) for grey); it must exit non-zero on an invalid file.  An
encoder gets an array case's input.npz and writes the .bac.  Commands are
split with :func:`shlex.split` (no shell) and run with a timeout per case.

The helpers :func:`walk_symbols` / :func:`coding_steps` re-derive, from the
text of SPEC.md §9 alone, every coding step (the 24-bit table and the symbol)
of a payload: the tests use them to decode every vector with constriction as
an independent range decoder, and generation uses them to steer symbols into
long carry chains.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import random
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import SPEC_VERSION, bitstream, codec, entropy_model, priors, vbq
from .errors import BitstreamError, ModelFileError
from .imageio import decode_png, encode_png, read_image
from .intmodels import cdf_from_counts
from .rangecoder import Decoder, Encoder

__all__ = [
    "DEFAULT_VECTORS", "REGENERATE_ENV", "FORMAT", "walk_symbols", "coding_steps",
    "coder_stats", "encode_arrays", "read_npz", "check", "generate", "fuzz", "main",
]

REGENERATE_ENV = "BAC_REF_REGENERATE_VECTORS"
DEFAULT_VECTORS = Path(__file__).resolve().parent.parent / "data" / "vectors"
FORMAT = 1                       # version of the vector layout described above
TOTAL = 1 << 24
MASK32, MASK64 = (1 << 32) - 1, (1 << 64) - 1
DEFAULT_TIMEOUT = 120.0
PIXEL_TOLERANCE = 1
REGENERATE_CMD = f"{REGENERATE_ENV}=1 python -m bac_ref.conformance --generate {{dir}}"

TOLERANCE = {
    "image": {"bac": "exact bytes", "depth": "exact", "index": "exact", "zhat": "bit-exact float64",
              "pixels": {"max_abs_diff": PIXEL_TOLERANCE},
              "reencode": "platform-dependent (g_a is float32 BLAS): a byte difference is a WARN"},
    "array": {"bac": "exact bytes, on every platform", "depth": "exact", "index": "exact",
              "zhat": "bit-exact float64", "vbq_zhat": "bit-exact float64",
              "pixels": {"max_abs_diff": PIXEL_TOLERANCE}},
    "coder": {"payload": "exact bytes", "symbols": "exact"},
    "reject": {"decoder": "must refuse the file "
                          "(bac_ref: BitstreamError; a command: non-zero exit)"},
}


# ---------------------------------------------------------------------------
# Deterministic files
# ---------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(arrays: dict) -> bytes:
    """An .npz (deflated, fixed timestamps) whose bytes depend only on ``arrays``.

    ``numpy.savez`` stamps the current time into the zip, so regenerating
    would change every sha256; this writer does not.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in arrays.items():
            a = np.asarray(value)
            if a.dtype.kind == "O":
                raise ValueError(f"{name}: object arrays are not allowed")
            npy = io.BytesIO()
            if not a.flags.c_contiguous:
                a = a.copy(order="C")                 # (ascontiguousarray would make 0-d 1-d)
            np.lib.format.write_array(npy, a, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, npy.getvalue(), compresslevel=9)
    return buf.getvalue()


def read_npz(path) -> dict:
    """All arrays of an .npz, loaded with allow_pickle=False."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


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


def coding_steps(depth, index, max_depth: int, stats=None) -> list:
    """[(table, symbol), ...]: every coding step of the payload of these symbols (SPEC.md §9)."""
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
        steps.append((table, s))
        return s

    d2, k2 = walk_symbols(depth.shape, max_depth, replay, stats)
    if not (np.array_equal(d2, depth) and np.array_equal(k2, index)):
        raise AssertionError("coding_steps: replay did not reproduce the symbols")
    return steps


def steps_to_intervals(steps):
    return [(t[s], t[s + 1] - t[s]) for t, s in steps]


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


# ---------------------------------------------------------------------------
# The encoder of an array case
# ---------------------------------------------------------------------------
def _scalar(a, kind, name):
    a = np.asarray(a)
    if a.shape != () or a.dtype.kind not in kind:
        raise ValueError(f"input {name} must be a scalar of kind {kind!r}, got {a.dtype} {a.shape}")
    return a.item()


def case_prior(inp: dict, model):
    """The prior an array case quantizes with: the model's, or the ``prior.*`` arrays."""
    source = str(inp.get("prior_source", "model"))
    if source == "model":
        return codec.model_prior(model)
    if source == "arrays":
        return priors.from_arrays(inp, prefix="prior.")
    raise ValueError(f"unknown prior_source {source!r}")


def encode_arrays(inp: dict, model=None):
    """Encode an array case (its input.npz as a dict): (bac bytes, vbq.Quantized).

    The codec's encoder after g_a (bac_ref.codec, SPEC.md §5, §8, §9): VBQ with
    lam (scalar or map) and max_depth, optionally the second pass (SPEC.md §5.4),
    then the entropy model; header fields from ``height``, ``width``, ``grey``.
    """
    model = codec.get_model(model)
    mu = np.asarray(inp["mu"], dtype=np.float64)
    sigma = np.asarray(inp["sigma"], dtype=np.float64)
    lam = np.asarray(inp["lam"], dtype=np.float64)
    n = int(_scalar(inp["max_depth"], "iu", "max_depth"))
    second = bool(_scalar(inp["second_pass"], "biu", "second_pass"))
    height = int(_scalar(inp["height"], "iu", "height"))
    width = int(_scalar(inp["width"], "iu", "width"))
    grey = bool(_scalar(inp["grey"], "biu", "grey"))
    if mu.ndim != 3 or mu.shape[0] != model.M:
        raise ValueError(f"mu must be (M, h, w) with M = {model.M}, got {mu.shape}")
    if mu.shape[1:] != (-(-height // 16), -(-width // 16)):
        raise ValueError(f"mu {mu.shape} does not match an image of {height}x{width}")
    prior = case_prior(inp, model)
    q = vbq.quantize(mu, sigma, lam, prior, n, axis=0)
    if second:
        lengths = vbq.depth_code_lengths(q.depth, n, model.M, axis=0)
        q = vbq.quantize(mu, sigma, lam, prior, n, code_length=lengths, axis=0)
    payload = entropy_model.encode_symbols(q.depth, q.index, n)
    header = bitstream.Header(height=height, width=width,
                              lam=float(lam.max()) if lam.size else 0.0, max_depth=n,
                              model_id=codec.model_id_bytes(model), grey=grey,
                              lambda_map=lam.ndim > 0, second_pass=second)
    return bitstream.pack(header, payload), q


def _header_dict(h: bitstream.Header) -> dict:
    return {"height": h.height, "width": h.width, "max_depth": h.max_depth, "grey": h.grey,
            "lambda_map": h.lambda_map, "second_pass": h.second_pass, "lambda": h.lam,
            "flags": h.flags, "model_id": h.model_id.hex()}


# ---------------------------------------------------------------------------
# Steering symbols (generation of carry-chain cases)
# ---------------------------------------------------------------------------
class _Steer:
    """An exact encoder state plus a policy that picks each step's symbol.

    Goals (SPEC.md §2.4): "straddle" keeps a word boundary T strictly inside the
    interval (after a renormalisation T becomes 2^64: the words written since are
    pending, a carry could still change them); "up"/"down" leave the interval
    entirely above/below T (the pending words resolve with/without a carry);
    "free" draws the symbol with the table's own probabilities.
    """

    def __init__(self, rnd):
        self.rnd = rnd
        self.lower, self.range, self.words = 0, MASK64, []

    def pending(self):
        if self.lower + self.range <= MASK64 or not self.words:
            return 0
        i = len(self.words) - 1
        while i > 0 and self.words[i] == MASK32:
            i -= 1
        return len(self.words) - i

    def target(self):
        """2^64 while straddling it, else the word boundary nearest the middle of the interval."""
        if self.lower + self.range > MASK64:
            return 1 << 64
        mid = ((self.lower + self.range // 2) >> 32) << 32
        return mid if mid > self.lower else ((self.lower >> 32) + 1) << 32

    def pick(self, table, goal, lo_symbol=0):
        scale = self.range >> 24
        n = len(table) - 1
        tgt = self.target()
        cands = list(range(lo_symbol, n))
        s = None
        if goal == "straddle":
            inside = [i for i in cands if self.lower + scale * table[i] < tgt
                      < self.lower + scale * table[i + 1]]
            s = inside[0] if inside else None
        elif goal == "up":
            above = [i for i in cands if self.lower + scale * table[i] >= tgt]
            s = above[0] if above else None
        elif goal == "down":
            below = [i for i in cands if self.lower + scale * table[i + 1] <= tgt]
            s = below[-1] if below else None
        elif goal == "likely":
            s = max(cands, key=lambda i: table[i + 1] - table[i])
        if s is None:
            q = self.rnd.randrange(table[lo_symbol], TOTAL)
            s = max(i for i in cands if table[i] <= q)
        self.code(table[s], table[s + 1] - table[s])
        return s

    def code(self, start, mass):
        scale = self.range >> 24
        self.lower += scale * start
        self.range = scale * mass
        if self.lower > MASK64:
            self.lower -= 1 << 64
            i = len(self.words) - 1
            while self.words[i] == MASK32:
                self.words[i] = 0
                i -= 1
            self.words[i] += 1
        if self.range < 1 << 32:
            self.words.append(self.lower >> 32)
            self.lower = (self.lower & MASK32) << 32
            self.range <<= 32


def _steered_symbols(shape, max_depth, seed, plan):
    """Symbols whose payload follows ``plan`` = [(goal, until_pending_or_steps), ...].

    A phase ("straddle", k) lasts until k words are pending; ("up"|"down", 1)
    is one step; ("free", k) k steps; the last phase runs to the end.
    """
    rnd = random.Random(seed)
    st = _Steer(rnd)
    phase = [0, 0]                                   # phase index, steps in phase
    active_nonzero = {}

    def choose(kind, table, c, y, x, t):
        goal, arg = plan[min(phase[0], len(plan) - 1)]
        lo = 0
        if kind == "active" and goal != "likely":
            lo = 1                                   # keep channels active while steering
        if kind == "depth":
            h, w = shape[1], shape[2]
            if y == h - 1 and x == w - 1 and not active_nonzero.get(c):
                lo = 1                               # an active channel needs a depth > 0
        s = st.pick(table, goal, lo)
        if kind == "depth" and s > 0:
            active_nonzero[c] = True
        phase[1] += 1
        done = (st.pending() >= arg) if goal == "straddle" else phase[1] >= arg
        if done and phase[0] < len(plan) - 1:
            phase[0], phase[1] = phase[0] + 1, 0
        return s

    return walk_symbols(shape, max_depth, choose)


def _steered_coder_case(seed, plan, accept, tries=200):
    """A coder case (3-symbol tables around the target) steered through ``plan``.

    Goals as in :class:`_Steer`, plus "shrink" (straddle while reducing the range
    to 2^45..2^56 without renormalising) and the sealing goals "seal_carry",
    "seal_carry_zero" (final lower in (2^64 - 2^32, 2^64), so sealing carries;
    with or without the extra 0 word) and "seal_zero" (extra 0 word, no carry).
    """
    for attempt in range(tries):
        rnd = random.Random(seed * 1000 + attempt)
        st = _Steer(rnd)
        tables, steps = [], []
        def stats():
            return coder_stats([(t[s], t[s + 1] - t[s]) for t, s in zip(tables, steps)])

        done = False
        for goal, count in plan:
            for _ in range(100000 if goal == "straddle_to" else count):
                table, s = _steer_move(st, goal, rnd)
                if table is None:
                    break
                tables.append(table)
                steps.append(s)
                st.code(table[s], table[s + 1] - table[s])
                if goal == "straddle_to" and st.pending() >= count:
                    break
                if goal.startswith("seal") and accept(stats()):
                    done = True                      # the final move: stop here
                    break
            if done:
                break
        if accept(stats()):
            return tables, steps, stats()
    raise RuntimeError(f"no steered coder case for plan {plan}")


def _steer_move(st: _Steer, goal, rnd):
    lower, rng = st.lower, st.range
    scale = rng >> 24
    tgt = st.target()
    off = tgt - lower
    straddling = lower + rng > MASK64

    def tri(a, b):
        return (0, a, b, TOTAL) if 1 <= a < b < TOTAL else None

    if goal in ("seal_carry", "seal_carry_zero") and straddling and scale < 1 << 32:
        a_min = -(-((1 << 64) - (1 << 32) + 1 - lower) // scale)
        a_max = (MASK64 - lower) // scale
        k_min = -(-(1 << 32) // scale)
        for a in range(a_min, min(a_max, a_min + 64) + 1):
            for k in [k_min, k_min + 1] + [k_min << j for j in range(1, 20)]:
                new_lower, new_range = lower + scale * a, scale * k
                zero = new_lower + new_range < (1 << 64) + (1 << 32)
                t = tri(a, a + k)
                if t and zero == (goal == "seal_carry_zero"):
                    return t, 1
        return None, None
    if goal == "seal_zero" and not straddling:
        if scale >= 1 << 20:                          # shrink the range to ~2^40 first
            a = rnd.randrange(1, TOTAL // 2)
            t = tri(a, a + max(1, (1 << 40) // scale))
            return (t, 1) if t else (None, None)
        k = -(-(1 << 32) // scale)
        if scale < 1 << 9:
            return None, None
        for _ in range(1000):
            a = rnd.randrange(1, TOTAL - k - 1)
            nl, nr = lower + scale * a, scale * k
            if nl + nr <= MASK64 and ((nl + MASK32) >> 32) == ((nl + nr) >> 32):
                return tri(a, a + k), 1
        return None, None
    if goal == "up" and 0 < off < scale * TOTAL:
        t = tri(-(-off // scale), TOTAL - 1) if -(-off // scale) < TOTAL - 1 else None
        return (t, 1) if t else (None, None)
    if goal == "down" and 0 < off:
        m = min(off // scale, TOTAL - 2)
        return ((0, m, TOTAL), 0) if m >= 1 else (None, None)
    if goal in ("straddle", "straddle_to", "shrink") and 0 < off < scale * TOTAL:
        if goal == "shrink":
            k = max(2, min(TOTAL - 3, (1 << rnd.randrange(45, 56)) // scale))
        else:
            k = rnd.choice([2, 3, 5, 64, 4096])
        m = off // scale
        a = m - k // 2
        if scale * a >= off:
            a -= 1
        t = tri(a, a + k)
        if t and scale * a < off < scale * (a + k):
            return t, 1
    if goal == "mass1":
        n = rnd.choice([2, 3, 9])
        if rnd.random() < 0.5:
            return tuple(range(n)) + (TOTAL,), rnd.randrange(n - 1)      # mass-1 symbols
        return (0,) + tuple(TOTAL - n + 1 + i for i in range(n - 1)) + (TOTAL,), 0
    n = rnd.choice([2, 3, 7])
    cuts = sorted(rnd.sample(range(1, TOTAL), n - 1))
    return (0, *cuts, TOTAL), rnd.randrange(n)


# ---------------------------------------------------------------------------
# Generation (only with BAC_REF_REGENERATE_VECTORS=1 from the command line)
# ---------------------------------------------------------------------------
def _kodim_crop(y, x, h, w):
    src = Path(__file__).resolve().parent.parent / "data" / "kodim23.png"
    return read_image(src).pixels[y:y + h, x:x + w, :3].copy()


def _synthetic(h, w, seed, kind="gradient"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1),
                         0.5 + 0.4 * np.sin((xx + yy) / 5.0)], axis=2)
        img = base + 0.03 * rng.standard_normal((h, w, 3))
    elif kind == "noise":
        img = rng.random((h, w, 3))
    elif kind == "flat":
        img = np.full((h, w, 3), 0.37)
    else:
        raise ValueError(kind)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _grey(rgb):
    return np.rint(rgb.astype(np.float64) @ [0.299, 0.587, 0.114]).astype(np.uint8)[:, :, None]


def _rgba(rgb):
    h, w = rgb.shape[:2]
    alpha = (np.arange(w)[None, :] * 255 // max(w - 1, 1) + np.zeros((h, 1), int)).astype(np.uint8)
    return np.concatenate([rgb, alpha[:, :, None]], axis=2)


def _image_specs():
    """(id, description, pixels, params, tags) of every image case."""
    k = _kodim_crop
    mask = np.zeros((64, 64), bool)
    mask[8:30, 20:50] = True
    specs = [
        ("image_1x1_rgb", "a single pixel: H = W = 1, latent grid 1x1 (only the first-latent "
         "depth context)", k(200, 300, 1, 1), dict(lam=0.05), ["header.height", "header.width"]),
        ("image_16x16_rgb", "exactly one 16x16 block, no padding", k(100, 100, 16, 16),
         dict(lam=0.1), []),
        ("image_17x33_rgb", "17x33: height and width one past a multiple of 16 (edge-replicated "
         "padding to 32x48, latents 2x3)", k(300, 400, 17, 33), dict(lam=0.1), []),
        ("image_33x17_rgb", "33x17: three latent rows, two columns", k(50, 600, 33, 17),
         dict(lam=0.3), []),
        ("image_1x40_row", "one pixel row (latents 1x3: only the row-0 depth context)",
         k(256, 100, 1, 40), dict(lam=0.1), []),
        ("image_40x1_column", "one pixel column (latents 3x1: only the column-0 depth context)",
         k(100, 384, 40, 1), dict(lam=0.1), []),
        ("image_40x24_grey", "8-bit grey PNG: flag bit 0, the decoder outputs one channel "
         "(the mean of g_s's three)", _grey(k(150, 150, 40, 24)), dict(lam=0.1),
         ["header.flags.grey", "input.grey"]),
        ("image_23x50_rgba", "RGBA PNG with an alpha ramp: alpha is ignored",
         _rgba(k(20, 500, 23, 50)),
         dict(lam=0.2), ["input.rgba"]),
        ("image_20x28_rgb16", "16-bit RGB PNG input (samples / 65535)",
         (k(400, 200, 20, 28).astype(np.uint16) * 256 + 17), dict(lam=0.1), ["input.16bit"]),
        ("image_48x64_lam0", "lambda = 0: pure distortion, every latent at the deepest grid level "
         "(uniform remainder bits, SPEC.md §2.9, §9.3)", k(200, 200, 48, 64), dict(lam=0.0),
         ["header.lambda.zero"]),
        ("image_48x64_lam_huge", "lambda = 1e300: every latent at depth 0, every channel inactive "
         "(the payload is the 128 activity flags)", k(200, 200, 48, 64), dict(lam=1e300),
         ["header.lambda.huge"]),
        ("image_64x64_lambda_map", "a region-of-interest lambda map (lambda_map_from_mask: 0.02 "
         "inside, 20 outside): flag bit 1, header lambda = the map's maximum",
         k(250, 350, 64, 64), dict(lam=codec.lambda_map_from_mask(mask, 0.02, 20.0)),
         ["header.flags.lambda_map"]),
        ("image_64x64_second_pass", "second quantization pass with per-channel depth code "
         "lengths (SPEC.md §5.4): flag bit 2", k(250, 350, 64, 64),
         dict(lam=0.3, second_pass=True), ["header.flags.second_pass"]),
        ("image_40x56_grey_map_second_pass", "all three flag bits at once: grey input, a lambda "
         "map and the second pass", _grey(k(0, 0, 40, 56)),
         dict(lam=np.array([[[0.05, 0.5, 5.0, 0.05], [0.5, 0.05, 5.0, 0.5],
                             [5.0, 5.0, 0.05, 0.05]]]),
              second_pass=True), ["header.flags.all"]),
        ("image_32x32_depth1", "max_depth N = 1: depth models of 2 symbols, one index bit",
         k(300, 300, 32, 32), dict(lam=0.02, max_depth=1), ["header.max_depth.1"]),
        ("image_32x32_depth16", "max_depth N = 16 and a small lambda: up to 10 uniform low "
         "index bits per latent", k(300, 300, 32, 32), dict(lam=0.002, max_depth=16),
         ["header.max_depth.16"]),
        ("image_32x48_depth5", "max_depth N = 5 (below K_TREE: no uniform bits)",
         k(10, 10, 32, 48), dict(lam=0.05, max_depth=5), []),
        ("image_24x40_gradient", "synthetic smooth gradient with a little noise",
         _synthetic(24, 40, 1), dict(lam=0.1), ["input.synthetic"]),
        ("image_32x32_noise", "uniform random noise (high-entropy latents)",
         _synthetic(32, 32, 2, "noise"), dict(lam=0.1), ["input.synthetic"]),
        ("image_16x48_flat", "a flat grey-ish RGB image", _synthetic(16, 48, 3, "flat"),
         dict(lam=0.1), ["input.synthetic"]),
        ("image_128x128_kodim", "a 128x128 crop of kodim23 at a middle rate: 8192 latents, "
         "depth models halve and refresh many times", k(200, 300, 128, 128), dict(lam=0.3), []),
    ]
    return specs


def _array_specs(model):
    """(id, description, builder(model) -> input dict, recon?, tags) of every array case."""
    m = model.M
    prior = codec.model_prior(model)

    def base(mu, sigma, lam, n=10, second=False, height=None, width=None, grey=False,
             prior_arrays=None):
        h, w = mu.shape[1:]
        d = {"mu": mu.astype(np.float64), "sigma": np.asarray(sigma, np.float64),
             "lam": np.asarray(lam, np.float64), "max_depth": np.int64(n),
             "second_pass": np.bool_(second),
             "height": np.int64(16 * h if height is None else height),
             "width": np.int64(16 * w if width is None else width),
             "grey": np.bool_(grey), "model_id": np.array(model.model_id[:16])}
        if prior_arrays is None:
            d["prior_source"] = np.array("model")
        else:
            d["prior_source"] = np.array("arrays")
            d.update(prior_arrays)
        return d

    def on_grid(depth, index, pr=prior):
        return vbq.dequantize(depth, index, pr, axis=0)

    def random_mu(rng, shape, spread=1.0):
        """mu spread over the prior's range: F^-1 at random xi, blurred by noise."""
        xi = rng.random(shape)
        ch = np.arange(shape[0])[:, None, None] * np.ones(shape, int)
        z = prior.ppf(xi, ch)
        return z + spread * 0.1 * rng.standard_normal(shape)

    def a_stdnormal(model):
        rng = np.random.default_rng(101)
        mu = rng.standard_normal((m, 2, 3)) * 1.5
        sigma = np.exp(rng.uniform(-4, 1, mu.shape))
        return base(mu, sigma, 0.5, height=20, width=37,
                    prior_arrays=priors.standard_normal().to_arrays("prior."))

    def a_model_prior(model):
        rng = np.random.default_rng(102)
        mu = random_mu(rng, (m, 2, 2))
        sigma = np.exp(rng.uniform(-5, 0.5, mu.shape))
        return base(mu, sigma, 0.1, n=12, height=32, width=25)

    def a_gaussian(model):
        rng = np.random.default_rng(103)
        loc, scale = rng.normal(0, 0.5, m), np.exp(rng.uniform(-1, 1, m))
        mu = loc[:, None, None] + scale[:, None, None] * rng.standard_normal((m, 2, 2))
        sigma = np.exp(rng.uniform(-3, 0, mu.shape)) * scale[:, None, None]
        return base(mu, sigma, 0.2, prior_arrays=priors.gaussian(loc, scale).to_arrays("prior."))

    def a_sigma_inf(model):
        rng = np.random.default_rng(104)
        mu = random_mu(rng, (m, 2, 3))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape))
        sigma[::2] = np.inf                              # even channels: posterior = anything
        sigma[1::4, 0, 1] = np.inf                       # single latents inside active channels
        return base(mu, sigma, 0.05, height=17, width=48)

    def a_grid_lam0(model):
        rng = np.random.default_rng(105)
        n = 12
        depth = rng.integers(0, n + 1, (m, 2, 2))
        index = rng.integers(0, 1 << 20, depth.shape) % (1 << depth)
        mu = on_grid(depth, index)
        return base(mu, np.exp(rng.uniform(-2, 2, mu.shape)), 0.0, n=n)

    def a_grid_lam(model):
        rng = np.random.default_rng(106)
        depth = rng.integers(0, 11, (m, 2, 2))
        index = rng.integers(0, 1 << 20, depth.shape) % (1 << depth)
        mu = on_grid(depth, index)
        return base(mu, np.exp(rng.uniform(-6, 0, mu.shape)), 0.01)

    def a_extreme(model):
        rng = np.random.default_rng(107)
        tbl = prior.table
        vals = [0.0, -0.0, 5e-324, -5e-324, 1e-300, 1e300, -1e300, 1.7976931348623157e308,
                -1.7976931348623157e308, 1e6, -1e6]
        mu = random_mu(rng, (m, 2, 2))
        flat = mu.reshape(m, -1)
        for c in range(m):
            flat[c, 0] = vals[c % len(vals)]
            flat[c, 1] = tbl[c, 0] if c % 2 else tbl[c, -1]            # table ends exactly
            flat[c, 2] = (np.nextafter(tbl[c, 0], -np.inf) if c % 2
                          else np.nextafter(tbl[c, -1], np.inf))          # just beyond the ends
        sig_vals = [5e-324, 1e-300, 1e-12, 1.0, 1e12, 1e300, 1.7976931348623157e308, np.inf]
        sigma = np.array([sig_vals[i % len(sig_vals)] for i in range(mu.size)]).reshape(mu.shape)
        return base(mu, sigma, 1e-3, n=14, height=18, width=31)

    def a_lambda_map(model):
        rng = np.random.default_rng(108)
        mu = random_mu(rng, (m, 2, 3))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape))
        lam = rng.choice([0.0, 5e-324, 1e-3, 0.1, 1.0, 1e300], size=mu.shape)
        return base(mu, sigma, lam, height=30, width=40)

    def a_second_pass(model):
        rng = np.random.default_rng(109)
        mu = random_mu(rng, (m, 3, 3))
        sigma = np.exp(rng.uniform(-5, 0, mu.shape))
        return base(mu, sigma, 0.3, second=True, n=8)

    def a_depth1(model):
        rng = np.random.default_rng(110)
        mu = random_mu(rng, (m, 2, 2))
        return base(mu, np.exp(rng.uniform(-4, 0, mu.shape)), 0.0, n=1)

    def a_carry(model):
        for seed in range(111, 200):
            depth, index = _steered_symbols(
                (m, 4, 8), 16, seed,
                [("straddle", 40), ("up", 1), ("free", 40), ("straddle", 24), ("down", 1),
                 ("likely", 1 << 30)])
            cs = coder_stats(steps_to_intervals(coding_steps(depth, index, 16)))
            if cs["longest_carry"] >= 40 and cs["longest_resolved_without_carry"] >= 24:
                break
        else:
            raise RuntimeError("no steered carry-chain symbols found")
        mu = on_grid(depth, index)
        rng = np.random.default_rng(111)
        return base(mu, np.exp(rng.uniform(-1, 1, mu.shape)), 0.0, n=16, height=50, width=120)

    def a_wide(model):
        mu = np.zeros((m, 1, 4096))
        return base(mu, np.full(mu.shape, np.inf), 1.0, height=1, width=65536, grey=True)

    def a_halving(model):
        rng = np.random.default_rng(112)
        h = w = 33
        depth = np.zeros((m, h, w), np.int64)
        index = np.zeros((m, h, w), np.int64)
        depth[0] = rng.integers(1, 9, (h, w))
        bit0 = (rng.random((h, w)) < 0.97).astype(np.int64)
        rest = rng.integers(0, 1 << 20, (h, w)) % (1 << (depth[0] - 1))
        index[0] = (bit0 << (depth[0] - 1)) | rest
        mu = on_grid(depth, index)
        return base(mu, np.ones(mu.shape), 0.0, n=8, height=520, width=528)

    return [
        ("array_stdnormal_prior", "random (mu, sigma) with the standard-normal prior (prior.* "
         "arrays in the input, SPEC.md §4.5); header 20x37", a_stdnormal, True,
         ["prior.std_normal"]),
        ("array_model_prior", "random (mu, sigma) with the model's prior, N = 12", a_model_prior,
         True, ["prior.model"]),
        ("array_gaussian_prior", "per-channel Gaussian prior (prior.kind = gaussian)", a_gaussian,
         True, ["prior.gaussian"]),
        ("array_sigma_inf", "sigma = +inf for whole channels (they become inactive) and for "
         "single latents (depth 0)", a_sigma_inf, True, ["input.sigma_inf"]),
        ("array_grid_points_lam0", "mu exactly on grid points of every depth 0..12 with "
         "lambda = 0: VBQ returns exactly those points", a_grid_lam0, True, ["input.mu_on_grid"]),
        ("array_grid_points_lam", "mu exactly on grid points, lambda = 0.01 and small sigma",
         a_grid_lam, True, ["input.mu_on_grid"]),
        ("array_extreme_values", "extreme mu (+-0, subnormals, +-1e300, +-DBL_MAX, the "
         "prior table's end points and just beyond) and sigma (subnormal .. DBL_MAX, +inf): "
         "IEEE-754 overflow and underflow in the objective, N = 14", a_extreme, True,
         ["input.extreme_mu", "input.extreme_sigma"]),
        ("array_lambda_map", "a per-latent lambda map with 0, a subnormal, 1e300: flag bit 1",
         a_lambda_map, True, ["header.flags.lambda_map"]),
        ("array_second_pass", "second quantization pass on arrays (SPEC.md §5.4), N = 8",
         a_second_pass, True, ["header.flags.second_pass"]),
        ("array_depth1_lam0", "N = 1 with lambda = 0", a_depth1, True, ["header.max_depth.1"]),
        ("array_carry_chains_depth16", "symbols steered (mu on grid points, lambda = 0, "
         "N = 16) so that the payload holds a chain of >= 40 pending words resolved by a carry "
         "and a chain of >= 24 resolved without one", a_carry, True,
         ["header.max_depth.16", "coder.long_carry_chain"]),
        ("array_width_65536", "H = 1, W = 65536 (the largest width: header field 0xFFFF), grey "
         "flag, sigma = +inf: every channel inactive", a_wide, False,
         ["header.width.max", "header.flags.grey"]),
        ("array_tree_halving", "one active channel of 33x33 latents (others inactive): the "
         "binary index models' counts pass 2^16 and halve", a_halving, False,
         ["em.tree_halving"]),
    ]


def _coder_specs():
    """(id, description, builder() -> (tables, symbols per step), tags)."""
    def chain_carry():
        t, s, st = _steered_coder_case(1, [("straddle_to", 48), ("up", 1), ("free", 10)],
                                       lambda st: st["longest_carry"] >= 48)
        return t, s

    def chain_no_carry():
        t, s, st = _steered_coder_case(2, [("straddle_to", 30), ("down", 1), ("free", 10)],
                                       lambda st: st["max_pending"] >= 30 and st["carries"] == 0)
        return t, s

    def seal_carry_zero():
        t, s, st = _steered_coder_case(3, [("straddle", 6), ("shrink", 1), ("seal_carry_zero", 1)],
                                       lambda st: st["seal_carry"] and st["seal_extra_zero"])
        return t, s

    def seal_carry():
        t, s, st = _steered_coder_case(4, [("straddle", 6), ("shrink", 1), ("seal_carry", 1)],
                                       lambda st: st["seal_carry"] and not st["seal_extra_zero"])
        return t, s

    def seal_zero():
        t, s, st = _steered_coder_case(5, [("free", 7), ("seal_zero", 3)],
                                       lambda st: st["seal_extra_zero"] and not st["seal_carry"])
        return t, s

    def uniform():
        rnd = random.Random(6)
        tables, steps = [], []
        for r in list(range(25)) * 4 + [24] * 10 + [0] * 3:
            if r == 0:
                tables.append(None)
                steps.append(0)
            else:
                tables.append(("uniform", r))
                steps.append(rnd.randrange(1 << r))
        return tables, steps

    def mass1():
        rnd = random.Random(7)
        st = _Steer(rnd)
        tables, steps = [], []
        for _ in range(400):
            t, s = _steer_move(st, "mass1", rnd)
            tables.append(t)
            steps.append(s)
        return tables, steps

    return [
        ("coder_carry_chain_48", "a carry that changes >= 48 words at once (a chain of pending "
         "0xFFFFFFFF words, SPEC.md §2.4)", chain_carry,
         ["coder.carry", "coder.long_carry_chain"]),
        ("coder_chain_without_carry", ">= 30 pending words resolved without a carry",
         chain_no_carry, ["coder.long_carry_chain"]),
        ("coder_seal_carry_extra_zero", "sealing carries (point = lower + 2^32 - 1 wraps) and "
         "writes the extra 0 word (SPEC.md §2.5)", seal_carry_zero,
         ["coder.seal_carry", "coder.seal_extra_zero"]),
        ("coder_seal_carry", "sealing carries, no extra 0 word", seal_carry, ["coder.seal_carry"]),
        ("coder_seal_extra_zero", "the extra 0 word without a carry", seal_zero,
         ["coder.seal_extra_zero"]),
        ("coder_uniform_r0_to_r24", "uniform values of r = 0..24 bits (r = 0 codes nothing, "
         "SPEC.md §2.9)", uniform, ["coder.uniform"]),
        ("coder_mass_one_symbols", "symbols of mass 1 (24 bits each) and of mass 2^24 - n + 1",
         mass1, ["coder.mass1"]),
    ]


def _coder_case_json(tables, steps):
    """{"tables": [...], "steps": [["table", i, s] | ["uniform", r, v]]}; tables deduplicated."""
    uniq, idx, out = [], {}, []
    for t, s in zip(tables, steps):
        if t is None:
            out.append(["uniform", 0, 0])
        elif isinstance(t, tuple) and t and t[0] == "uniform":
            out.append(["uniform", t[1], s])
        else:
            key = tuple(t)
            if key not in idx:
                idx[key] = len(uniq)
                uniq.append(list(key))
            out.append(["table", idx[key], s])
    return {"tables": uniq, "steps": out}


def encode_coder_case(case: dict) -> bytes:
    """Payload of a coder case (SPEC.md §2): each step codes its symbol with its table."""
    enc = Encoder(checked=True)
    tables = case["tables"]
    for kind, a, b in case["steps"]:
        if kind == "table":
            enc.encode(b, tables[a])
        else:
            enc.encode_uniform(b, a)
    return enc.finish()


def decode_coder_case(case: dict, payload: bytes) -> list:
    dec = Decoder(payload)
    out = []
    for kind, a, _ in case["steps"]:
        out.append(dec.decode(case["tables"][a]) if kind == "table" else dec.decode_uniform(a))
    dec.check_end()
    return out


def _reject_specs(base: bytes, m: int):
    """(id, description, bytes, expected bac_ref message, tags) of invalid files from ``base``."""
    head, payload = base[:28], base[32:]

    def seal(h28, pl):
        return h28 + struct.pack(">I", zlib.crc32(pl, zlib.crc32(h28))) + pl

    def field(offset, fmt, *values):
        h = bytearray(head)
        struct.pack_into(fmt, h, offset, *values)
        return seal(bytes(h), payload)

    h16, w16 = struct.unpack(">HH", head[16:20])
    shape = (m, -(-(h16 + 1) // 16), -(-(w16 + 1) // 16))
    enc = Encoder()

    def empty_active(kind, table, c, y, x, t):        # channel 0 active, every depth 0
        s = 1 if (kind == "active" and c == 0) else 0
        enc.encode_intervals([table[s]], [table[s + 1] - table[s]])
        return s

    walk_symbols(shape, base[6], empty_active, strict=False)
    flipped = bytearray(base)
    flipped[-3] ^= 0x10
    last = bytearray(payload)
    last[-1] ^= 0x01
    return [
        ("reject_truncated_header", "the first 20 bytes of a valid file", base[:20],
         "truncated header", ["header.length"]),
        ("reject_bad_magic", "magic 0x88 'BAC' (CRC-32 recomputed)", field(0, ">B", 0x88),
         "bad magic", ["header.magic"]),
        ("reject_version_2", "format version 2 (CRC-32 recomputed)", field(4, ">B", 2),
         "unsupported format version", ["header.version"]),
        ("reject_entropy_model_0", "entropy-model variant 0", field(5, ">B", 0),
         "unknown entropy model", ["header.entropy_model"]),
        ("reject_max_depth_0", "max_depth N = 0", field(6, ">B", 0), "max_depth",
         ["header.max_depth"]),
        ("reject_max_depth_17", "max_depth N = 17", field(6, ">B", 17), "max_depth",
         ["header.max_depth"]),
        ("reject_unknown_flag", "flag bit 3 set", field(7, ">B", base[7] | 8),
         "unknown header flags", ["header.flags.unknown"]),
        ("reject_wrong_model_id", "a model id that is not the model's (CRC-32 recomputed)",
         field(8, ">Q", int.from_bytes(base[8:16], "big") ^ 0x0101010101010101),
         "made with model", ["header.model_id"]),
        ("reject_too_many_pixels", "H = W = 65536 (2^32 pixels > 2^26) with a tiny payload: "
         "refused before allocating", field(16, ">HH", 0xFFFF, 0xFFFF), "exceeds the limit",
         ["header.height", "header.width", "header.limits"]),
        ("reject_lambda_nan", "lambda = NaN", field(20, ">d", float("nan")), "lambda",
         ["header.lambda"]),
        ("reject_lambda_negative", "lambda = -0.5", field(20, ">d", -0.5), "lambda",
         ["header.lambda"]),
        ("reject_lambda_inf", "lambda = +inf", field(20, ">d", float("inf")), "lambda",
         ["header.lambda"]),
        ("reject_crc_mismatch", "one payload bit flipped, CRC-32 left as it was", bytes(flipped),
         "CRC-32 mismatch", ["header.crc32"]),
        ("reject_partial_word", "two extra payload bytes (not a whole word; CRC-32 recomputed)",
         seal(head, payload + b"\x00\x00"), "whole number of", ["payload.length"]),
        ("reject_trailing_word", "one extra 0 word after the sealing words (CRC-32 recomputed)",
         seal(head, payload + b"\x00" * 4), "payload has", ["payload.trailing"]),
        ("reject_empty_payload", "no payload at all (CRC-32 recomputed)", seal(head, b""),
         "payload has", ["payload.empty"]),
        ("reject_invalid_quantile", "payload of 0xFFFFFFFF words: the first quantile is "
         ">= 2^24 (SPEC.md §2.8)", seal(head, b"\xff" * len(payload)), "quantile",
         ["payload.quantile"]),
        ("reject_active_channel_without_depth", "channel 0 coded as active but all its "
         "depths 0 (the encoder marks a channel active only if a depth is > 0, SPEC.md §9.1, "
         "§9.4): correctly sealed, so only this rule refuses it", seal(head, enc.finish()),
         "all its depths are 0", ["payload.active_without_depth"]),
        ("reject_altered_last_word", "the last payload word changed (CRC-32 recomputed): "
         "not the sealing words of the decoded steps", seal(head, bytes(last)), "payload",
         ["payload.sealing"]),
    ]


def _write_case(folder: Path, files: dict, manifest: dict):
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest["files"] = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        manifest["files"][name] = _sha256(data)
    (folder / "manifest.json").write_bytes(_json_bytes(manifest))


def _recon_png(pixels) -> bytes:
    return encode_png(pixels)


def _symbols_npz(depth, index, zhat, vbq_zhat=None) -> bytes:
    arrays = {"depth": np.asarray(depth).astype(np.uint8),
              "index": np.asarray(index).astype(np.uint32),
              "zhat": np.asarray(zhat, dtype=np.float64)}
    if vbq_zhat is not None:
        arrays["vbq_zhat"] = np.asarray(vbq_zhat, dtype=np.float64)
    return npz_bytes(arrays)


def _em_tags(stats) -> list:
    tags = []
    for key in sorted(stats):
        if stats[key] and not key.startswith(("uniform_", "ctx_c_")):
            tags.append("em." + key)
    if stats["ctx_c_6"]:
        tags.append("em.ctx_c_capped")            # the channel-mean context at its cap of 6
    if any(k.startswith("uniform_") and v for k, v in stats.items()):
        tags.append("em.uniform")
    return tags


def _coder_tags(cs) -> list:
    tags = []
    if cs["carries"]:
        tags.append("coder.carry")
    if cs["longest_carry"] >= 20 or cs["max_pending"] >= 20:
        tags.append("coder.long_carry_chain")
    if cs["seal_carry"]:
        tags.append("coder.seal_carry")
    if cs["seal_extra_zero"]:
        tags.append("coder.seal_extra_zero")
    return tags


def _payload_info(depth, index, n, payload) -> tuple:
    stats = collections.Counter()
    steps = coding_steps(depth, index, n, stats)
    cs = coder_stats(steps_to_intervals(steps))
    enc = Encoder()
    for start, mass in steps_to_intervals(steps):
        enc.encode_intervals([start], [mass])
    if enc.finish() != payload:
        raise AssertionError("SPEC.md §9 replay disagrees with bac_ref.entropy_model")
    info = {"payload_bytes": len(payload), "coding_steps": len(steps),
            "active_channels": int((depth.reshape(depth.shape[0], -1) > 0).any(axis=1).sum()),
            "carries": cs["carries"], "longest_carry_words": cs["longest_carry"],
            "max_pending_words": cs["max_pending"],
            "longest_resolved_without_carry": cs["longest_resolved_without_carry"]}
    return info, _em_tags(stats) + _coder_tags(cs), steps


def generate(dest, model=None, only=None, report=print) -> list:
    """Write every case (or those in ``only``) under ``dest``; returns the case ids.

    Deterministic: fixed seeds, fixed zip timestamps, the same model -> the same
    bytes on one platform (image cases depend on float32 g_a/g_s; array, coder
    and reject cases do not).
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    report = report or (lambda line: None)
    model = codec.get_model(model)
    mid = model.model_id[:16]
    wanted = (lambda cid: True) if only is None else (lambda cid: cid in set(only))
    index = []

    def common(cid, kind, desc, tags, spec):
        return {"id": cid, "kind": kind, "description": desc, "spec": spec,
                "model": os.path.basename(str(model.path)) if kind != "coder" else None,
                "model_id": mid if kind != "coder" else None,
                "tolerance": TOLERANCE[kind], "exercises": sorted(set(tags))}

    # -- image cases --
    for cid, desc, pixels, params, tags in _image_specs():
        if not wanted(cid):
            continue
        png = encode_png(pixels)
        lam = params["lam"]
        n = params.get("max_depth", codec.DEFAULT_MAX_DEPTH)
        second = params.get("second_pass", False)
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "input.png"
            p.write_bytes(png)
            enc = codec.compress_details(str(p), lam=lam, model=model, max_depth=n,
                                         second_pass=second)
        dec = codec.decompress_details(enc.data, model)
        if not (np.array_equal(dec.depth, enc.depth) and np.array_equal(dec.index, enc.index)
                and np.array_equal(dec.zhat.view(np.uint64), enc.zhat.view(np.uint64))):
            raise AssertionError(f"{cid}: decoder disagrees with encoder")
        info, em_tags, _ = _payload_info(dec.depth, dec.index, n, enc.data[32:])
        man = common(cid, "image", desc, tags + em_tags + ["header.model_id"],
                     ["§5", "§7", "§8", "§9", "§10"])
        man["params"] = {"lam": np.asarray(lam).tolist(), "max_depth": n, "second_pass": second}
        man["header"] = _header_dict(enc.header)
        man["stats"] = info
        _write_case(dest / cid, {"input.png": png, "file.bac": enc.data,
                                 "symbols.npz": _symbols_npz(dec.depth, dec.index, dec.zhat),
                                 "recon.png": _recon_png(dec.pixels)}, man)
        index.append(man)
        report(f"generated {cid}: {len(enc.data)} bytes")

    # -- array cases --
    for cid, desc, build, recon, tags in _array_specs(model):
        if not wanted(cid):
            continue
        inp_bytes = npz_bytes(build(model))
        inp = read_npz(io.BytesIO(inp_bytes))
        data, q = encode_arrays(inp, model)
        if cid in _ON_GRID:                          # mu on grid points, lambda 0: exact
            if not np.array_equal(q.zhat.view(np.uint64), inp["mu"].view(np.uint64)):
                raise AssertionError(f"{cid}: mu on grid points did not give their symbols")
        dec = codec.decompress_details(data, model, synthesize=recon)
        if not (np.array_equal(dec.depth, q.depth) and np.array_equal(dec.index, q.index)):
            raise AssertionError(f"{cid}: decoder disagrees with encoder")
        info, em_tags, _ = _payload_info(dec.depth, dec.index, int(inp["max_depth"]), data[32:])
        man = common(cid, "array", desc, tags + em_tags + ["header.model_id", "input.arrays"],
                     ["§4", "§5", "§8", "§9", "§10"])
        man["params"] = {"max_depth": int(inp["max_depth"]),
                         "second_pass": bool(inp["second_pass"]),
                         "prior_source": str(inp["prior_source"]),
                         "lam": float(inp["lam"]) if inp["lam"].ndim == 0 else "map"}
        man["header"] = _header_dict(bitstream.parse(data)[0])
        man["stats"] = info
        files = {"input.npz": inp_bytes, "file.bac": data,
                 "symbols.npz": _symbols_npz(dec.depth, dec.index, dec.zhat, q.zhat)}
        if recon:
            files["recon.png"] = _recon_png(dec.pixels)
        _write_case(dest / cid, files, man)
        index.append(man)
        report(f"generated {cid}: {len(data)} bytes")

    # -- coder cases --
    for cid, desc, build, tags in _coder_specs():
        if not wanted(cid):
            continue
        tables, steps = build()
        case = _coder_case_json(tables, steps)
        payload = encode_coder_case(case)
        if decode_coder_case(case, payload) != [s[2] for s in case["steps"]]:
            raise AssertionError(f"{cid}: does not decode")
        intervals = []
        for kind, a, b in case["steps"]:
            if kind == "table":
                t = case["tables"][a]
                intervals.append((t[b], t[b + 1] - t[b]))
            elif a:
                intervals.append((b << (24 - a), 1 << (24 - a)))
        cs = coder_stats(intervals)
        man = common(cid, "coder", desc, tags + _coder_tags(cs), ["§2", "§3"])
        man["stats"] = {"steps": len(case["steps"]), "payload_bytes": len(payload),
                        "carries": cs["carries"], "longest_carry_words": cs["longest_carry"],
                        "max_pending_words": cs["max_pending"], "seal_carry": cs["seal_carry"],
                        "seal_extra_zero": cs["seal_extra_zero"]}
        _write_case(dest / cid, {"input.json": json.dumps(case, separators=(",", ":")).encode()
                                 + b"\n", "payload.bin": payload}, man)
        index.append(man)
        report(f"generated {cid}: {len(payload)} bytes")

    # -- a coder case made of the steps of an entropy-model payload --
    cid = "coder_entropy_model_steps"
    if wanted(cid):
        inp = read_npz(io.BytesIO(npz_bytes(_array_by_id(model, "array_model_prior"))))
        data, q = encode_arrays(inp, model)
        steps = coding_steps(q.depth, q.index, int(inp["max_depth"]))
        uniform = {id(t): r for r, t in _UNIFORM.items()}      # the uniform steps, by identity
        tables = [("uniform", uniform[id(t)]) if id(t) in uniform else t for t, _ in steps]
        case = _coder_case_json(tables, [s for _, s in steps])
        payload = encode_coder_case(case)
        if payload != data[32:]:
            raise AssertionError(f"{cid}: steps do not reproduce the .bac payload")
        man = common(cid, "coder", "every coding step (24-bit table, symbol) of the payload of "
                     "array_model_prior, as SPEC.md §9 defines them: the coder-level view of an "
                     "entropy-model payload", ["coder.entropy_model_steps"], ["§2", "§3", "§9"])
        man["stats"] = {"steps": len(case["steps"]), "payload_bytes": len(payload)}
        _write_case(dest / cid, {"input.json": json.dumps(case, separators=(",", ":")).encode()
                                 + b"\n", "payload.bin": payload}, man)
        index.append(man)
        report(f"generated {cid}: {len(payload)} bytes")

    # -- reject cases (from array_model_prior: platform-independent bytes) --
    if only is None or any(cid.startswith("reject_") for cid in only):
        base_bac = encode_arrays(read_npz(io.BytesIO(npz_bytes(
            _array_by_id(model, "array_model_prior")))), model)[0]
        for cid, desc, data, message, tags in _reject_specs(base_bac, model.M):
            if not wanted(cid):
                continue
            try:
                codec.decompress_details(data, model)
            except BitstreamError as exc:
                if message not in str(exc):
                    raise AssertionError(f"{cid}: refused for another reason: {exc}") from None
            else:
                raise AssertionError(f"{cid}: bac_ref accepts it")
            man = common(cid, "reject", desc + " (derived from array_model_prior/file.bac)",
                         tags, ["§2.8", "§8", "§9.4"])
            man["expect"] = {"result": "reject", "bac_ref_message": message}
            _write_case(dest / cid, {"file.bac": data}, man)
            index.append(man)
            report(f"generated {cid}")

    if only is None:
        known = {m["id"] for m in index}
        for sub in dest.iterdir():
            if sub.is_dir() and (sub / "manifest.json").exists() and sub.name not in known:
                shutil.rmtree(sub)
        _write_index(dest, model, index)
    else:
        _write_index(dest, model, index, merge=True)
    return [m["id"] for m in index]


_ON_GRID = {"array_grid_points_lam0", "array_carry_chains_depth16", "array_tree_halving"}


def _array_by_id(model, cid):
    for i, _, build, _, _ in _array_specs(model):
        if i == cid:
            return build(model)
    raise KeyError(cid)


def _write_index(dest: Path, model, manifests, merge=False):
    path = dest / "index.json"
    cases = {}
    if merge and path.exists():
        for c in json.loads(path.read_text(encoding="utf-8"))["cases"]:
            cases[c["id"]] = c
    for man in manifests:
        cases[man["id"]] = {"id": man["id"], "kind": man["kind"],
                            "description": man["description"],
                            "manifest_sha256": _sha256(
                                (dest / man["id"] / "manifest.json").read_bytes())}
    order = {"image": 0, "array": 1, "coder": 2, "reject": 3}
    index = {
        "format": FORMAT,
        "spec_version": SPEC_VERSION,
        "description": "bac_ref conformance vectors (SPEC.md §11): one folder per case with "
                       "manifest.json (sha256 of every file, tolerances, what it exercises)",
        "model": os.path.basename(str(model.path)),
        "model_id": model.model_id[:16],
        "regenerate": REGENERATE_CMD.format(dir="data/vectors"),
        "cases": sorted(cases.values(), key=lambda c: (order[c["kind"]], c["id"])),
    }
    path.write_bytes(_json_bytes(index))


# ---------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------
class CaseFailure(Exception):
    """The first difference found in a case."""


class CaseWarning(Exception):
    pass


def _diff_arrays(name, expected, got, bitwise=False):
    expected = np.asarray(expected)
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise CaseFailure(f"{name} has shape {got.shape}, expected {expected.shape}")
    if bitwise:
        if got.dtype != np.float64:
            raise CaseFailure(f"{name} has dtype {got.dtype}, expected float64")
        neq = expected.astype(np.float64).view(np.uint64) != got.view(np.uint64)
    else:
        if got.dtype.kind not in "iub":
            raise CaseFailure(f"{name} has dtype {got.dtype}, expected integers")
        neq = expected.astype(np.int64) != got.astype(np.int64)
    if neq.any():
        pos = tuple(int(i) for i in np.argwhere(neq)[0])
        e, g = expected[pos], got[pos]
        if bitwise:
            e, g = f"{float(e)!r} ({float(e).hex()})", f"{float(g)!r} ({float(g).hex()})"
        raise CaseFailure(f"{name}{list(pos)} = {g}, expected {e} "
                          f"({int(neq.sum())} of {neq.size} differ)")


def _diff_pixels(expected, got, tol=PIXEL_TOLERANCE):
    expected = np.asarray(expected)
    got = np.asarray(got)
    if expected.ndim == 3 and expected.shape[2] == 1:
        expected = expected[:, :, 0]
    if got.ndim == 3 and got.shape[2] == 1:
        got = got[:, :, 0]
    if got.shape != expected.shape:
        raise CaseFailure(f"image has shape {got.shape}, expected {expected.shape}")
    if got.dtype != np.uint8:
        raise CaseFailure(f"image has dtype {got.dtype}, expected uint8")
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    if diff.max() > tol:
        pos = tuple(int(i) for i in np.argwhere(diff > tol)[0])
        raise CaseFailure(f"pixel {list(pos)} = {got[pos]}, expected {expected[pos]} +- {tol} "
                          f"({int((diff > tol).sum())} samples off by more than {tol})")
    return int(diff.max())


def _first_byte_diff(a: bytes, b: bytes) -> str:
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    where = ("header" if n < 32 else "payload")
    return f"bytes differ from offset {n} ({where}; {len(b)} bytes, expected {len(a)})"


def _load_case(folder: Path, entry_sha=None):
    mpath = folder / "manifest.json"
    if not mpath.exists():
        raise CaseFailure("manifest.json missing")
    raw = mpath.read_bytes()
    if entry_sha is not None and _sha256(raw) != entry_sha:
        raise CaseFailure("manifest.json: sha256 differs from index.json")
    man = json.loads(raw)
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.json"}
    listed = set(man.get("files", {}))
    if present != listed:
        extra, missing = sorted(present - listed), sorted(listed - present)
        raise CaseFailure(f"files not as listed (unlisted: {extra}, missing: {missing})")
    files = {}
    for name, digest in man["files"].items():
        data = (folder / name).read_bytes()
        if _sha256(data) != digest:
            raise CaseFailure(f"{name}: sha256 mismatch (vector corrupted or edited)")
        files[name] = data
    return man, files


def _png_pixels(data: bytes):
    return decode_png(data).pixels


def _check_symbols(exp, depth, index, zhat):
    _diff_arrays("depth", exp["depth"], depth)
    _diff_arrays("index", exp["index"], index)
    _diff_arrays("zhat", exp["zhat"], zhat, bitwise=True)


def _check_self(man, files, model, folder):
    """bac_ref in-process; returns a WARN message or None; raises CaseFailure."""
    kind = man["kind"]
    if kind == "coder":
        case = json.loads(files["input.json"])
        got = encode_coder_case(case)
        if got != files["payload.bin"]:
            raise CaseFailure("encoder: " + _first_byte_diff(files["payload.bin"], got))
        syms = decode_coder_case(case, files["payload.bin"])
        want = [s[2] for s in case["steps"]]
        if syms != want:
            i = next(i for i, (a, b) in enumerate(zip(syms, want)) if a != b)
            raise CaseFailure(f"decoder: step {i} gave {syms[i]}, expected {want[i]}")
        return None
    if kind == "reject":
        try:
            codec.decompress_details(files["file.bac"], model)
        except BitstreamError as exc:
            msg = man["expect"]["bac_ref_message"]
            if msg not in str(exc):
                raise CaseFailure(f"refused for another reason: {exc} (expected {msg!r})") from None
            return None
        raise CaseFailure("an invalid file was accepted")
    exp = read_npz(io.BytesIO(files["symbols.npz"]))
    try:
        dec = codec.decompress_details(files["file.bac"], model,
                                       synthesize="recon.png" in files)
    except BitstreamError as exc:
        raise CaseFailure(f"decoder refused the file: {exc}") from None
    _check_header(man, dec.header)
    _check_symbols(exp, dec.depth, dec.index, dec.zhat)
    if "recon.png" in files:
        _diff_pixels(_png_pixels(files["recon.png"]), dec.pixels)
    if kind == "array":
        inp = read_npz(io.BytesIO(files["input.npz"]))
        data, q = encode_arrays(inp, model)
        _diff_arrays("vbq_zhat", exp["vbq_zhat"], q.zhat, bitwise=True)
        if data != files["file.bac"]:
            raise CaseFailure("re-encode: " + _first_byte_diff(files["file.bac"], data))
        return None
    # image: re-encoding may differ across platforms (float32 g_a)
    p = man["params"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.png"
        path.write_bytes(files["input.png"])
        enc = codec.compress_details(str(path), lam=np.asarray(p["lam"], dtype=np.float64)
                                     if isinstance(p["lam"], list) else p["lam"], model=model,
                                     max_depth=p["max_depth"], second_pass=p["second_pass"])
    _, d2, k2, _ = codec.decode_symbols(enc.data, model)
    if not (np.array_equal(d2, enc.depth) and np.array_equal(k2, enc.index)):
        raise CaseFailure("re-encode: its own stream does not decode to its symbols")
    if enc.data != files["file.bac"]:
        differ = int(((enc.depth != exp["depth"]) | (enc.index != exp["index"])).sum())
        return (f"re-encode: {_first_byte_diff(files['file.bac'], enc.data)}; {differ} latents "
                "quantized differently (g_a is float32 BLAS, SPEC.md §7.3: allowed)")
    return None


DECODING_FIELDS = ("height", "width", "max_depth", "grey", "model_id")   # SPEC.md §8


def _check_header(man, header, fields=None):
    """Header fields against the manifest (all, or only ``fields``)."""
    want = man.get("header")
    if not want:
        return
    got = _header_dict(header)
    for key, value in want.items():
        if fields is not None and key not in fields:
            continue
        g = got[key]
        same = (struct.pack(">d", g) == struct.pack(">d", value)) if key == "lambda" else g == value
        if not same:
            raise CaseFailure(f"header {key} = {g!r}, expected {value!r}")


def _run_command(template: str, inp: str, out: str, timeout: float):
    argv = [a.replace("{in}", inp).replace("{out}", out) for a in shlex.split(template)]
    if not argv:
        raise CaseFailure("empty command")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CaseFailure(f"command timed out after {timeout:g} s") from None
    except OSError as exc:
        raise CaseFailure(f"cannot run {argv[0]!r}: {exc}") from None
    return proc


def _tail(b: bytes) -> str:
    text = b.decode("utf-8", "replace").strip().splitlines()
    return text[-1][:200] if text else ""


def _check_decoder_cmd(man, files, folder, template, timeout):
    kind = man["kind"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        proc = _run_command(template, str((folder / "file.bac").resolve()), out, timeout)
        if kind == "reject":
            if proc.returncode == 0:
                raise CaseFailure("the decoder accepted an invalid file (exit status 0)")
            return None
        if proc.returncode != 0:
            raise CaseFailure(f"decoder exited with {proc.returncode}: {_tail(proc.stderr)}")
        if not os.path.exists(out):
            raise CaseFailure("decoder wrote no output file")
        try:
            got = read_npz(out)
        except Exception as exc:                                  # noqa: BLE001 (report it)
            raise CaseFailure(f"output is not a readable .npz: {exc}") from None
    missing = [k for k in ("depth", "index", "zhat") if k not in got]
    if missing:
        raise CaseFailure(f"output lacks {', '.join(missing)}")
    exp = read_npz(io.BytesIO(files["symbols.npz"]))
    _check_symbols(exp, got["depth"], got["index"], got["zhat"])
    if "image" in got and "recon.png" in files:
        _diff_pixels(_png_pixels(files["recon.png"]), got["image"])
    return None


def _check_encoder_cmd(man, files, folder, template, timeout, model):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.bac")
        proc = _run_command(template, str((folder / "input.npz").resolve()), out, timeout)
        if proc.returncode != 0:
            raise CaseFailure(f"encoder exited with {proc.returncode}: {_tail(proc.stderr)}")
        if not os.path.exists(out):
            raise CaseFailure("encoder wrote no output file")
        data = Path(out).read_bytes()
    try:
        header, depth, index, zhat = codec.decode_symbols(data, model)
    except BitstreamError as exc:
        raise CaseFailure(f"bac_ref cannot decode the stream: {exc}") from None
    exp = read_npz(io.BytesIO(files["symbols.npz"]))
    _check_symbols(exp, depth, index, zhat)
    _check_header(man, header, DECODING_FIELDS)
    if data != files["file.bac"]:
        try:
            _check_header(man, header)
            note = ""
        except CaseFailure as exc:
            note = f" (informational {exc})"
        return ("stream decodes to the expected symbols but "
                + _first_byte_diff(files["file.bac"], data) + note)
    return None


def check(vectors=None, decoder=None, encoder=None, cases=None, timeout=DEFAULT_TIMEOUT,
          model=None, report=print) -> dict:
    """Run every case; returns {"passed", "failed", "warned", "skipped", "results"}.

    Without commands, bac_ref itself is checked (decode, compare, re-encode).
    ``decoder``/``encoder`` are command templates with {in} and {out}.
    """
    root = Path(vectors) if vectors is not None else DEFAULT_VECTORS
    results = []
    ipath = root / "index.json"
    if not ipath.exists():
        report(f"FAIL index: {ipath} not found")
        return {"passed": 0, "failed": 1, "warned": 0, "skipped": 0, "results": [("index", "FAIL")]}
    index = json.loads(ipath.read_text(encoding="utf-8"))
    if index.get("format") != FORMAT:
        report(f"FAIL index: vector format {index.get('format')!r}, this runner reads {FORMAT}")
        return {"passed": 0, "failed": 1, "warned": 0, "skipped": 0, "results": [("index", "FAIL")]}
    model = codec.get_model(model)
    current = model.model_id[:16]
    mismatch = index.get("model_id") != current
    if mismatch:
        report(f"ERROR: vectors were made with model {index.get('model_id')} "
               f"({index.get('model')}), the current model is {current} "
               f"({os.path.basename(str(model.path))}): regenerate them with "
               + REGENERATE_CMD.format(dir=root))
    listed = {c["id"] for c in index["cases"]}
    on_disk = {p.name for p in root.iterdir() if p.is_dir()}
    for extra in sorted(on_disk - listed):
        results.append((extra, "FAIL"))
        report(f"FAIL {extra}: folder not listed in index.json")
    for entry in index["cases"]:
        cid = entry["id"]
        if cases is not None and cid not in cases:
            continue
        folder = root / cid
        try:
            man, files = _load_case(folder, entry.get("manifest_sha256"))
            if man["id"] != cid or man["kind"] != entry["kind"]:
                raise CaseFailure("manifest id/kind differ from index.json")
            if man["kind"] != "coder" and (mismatch or man.get("model_id") != current):
                raise CaseFailure(f"made with model {man.get('model_id')}, the current model is "
                                  f"{current}: regenerate the vectors")
            warn = None
            if decoder is None and encoder is None:
                warn = _check_self(man, files, model, folder)
            else:
                ran = False
                if decoder is not None and man["kind"] in ("image", "array", "reject"):
                    warn = _check_decoder_cmd(man, files, folder, decoder, timeout)
                    ran = True
                if encoder is not None and man["kind"] == "array":
                    w2 = _check_encoder_cmd(man, files, folder, encoder, timeout, model)
                    warn = "; ".join(w for w in (warn, w2) if w) or None
                    ran = True
                if not ran:
                    results.append((cid, "SKIP"))
                    report(f"SKIP {cid}: no {'decoder' if encoder is None else 'encoder'} "
                           f"check applies to a {man['kind']} case")
                    continue
        except CaseFailure as exc:
            results.append((cid, "FAIL"))
            report(f"FAIL {cid}: {exc}")
            continue
        except Exception as exc:                                  # noqa: BLE001 (a bug: report)
            results.append((cid, "FAIL"))
            report(f"FAIL {cid}: unexpected {type(exc).__name__}: {exc}")
            continue
        if warn:
            results.append((cid, "WARN"))
            report(f"WARN {cid}: {warn}")
        else:
            results.append((cid, "PASS"))
            report(f"PASS {cid}")
    counts = collections.Counter(r for _, r in results)
    passed = counts["PASS"] + counts["WARN"]
    line = f"{passed} passed, {counts['FAIL']} failed"
    extras = [f"{counts['WARN']} with warnings"] if counts["WARN"] else []
    extras += [f"{counts['SKIP']} skipped"] if counts["SKIP"] else []
    report(line + (f" ({', '.join(extras)})" if extras else ""))
    return {"passed": passed, "failed": counts["FAIL"], "warned": counts["WARN"],
            "skipped": counts["SKIP"], "results": results}


# ---------------------------------------------------------------------------
# Fuzzing hostile input
# ---------------------------------------------------------------------------
FUZZ_SLOW_S = 5.0


def fuzz_seeds(model=None) -> list:
    """Small valid .bac files (made now with the current model) to mutate."""
    model = codec.get_model(model)
    img = _synthetic(20, 37, 9)
    return [codec.compress(img[:1, :1], lam=0.1, model=model),
            codec.compress(img, lam=0.05, model=model, max_depth=12),
            codec.compress(img[:16, :16, :1], lam=0.0, model=model, max_depth=16)]


def _pack_raw(fields: bytes, payload: bytes) -> bytes:
    return fields + struct.pack(">I", zlib.crc32(payload, zlib.crc32(fields))) + payload


def fuzz_one(rnd: random.Random, seeds, model, category=None):
    """One hostile input: (category, outcome); outcome 'BUG ...' means a non-clean failure."""
    cats = ["random_bytes", "truncation", "bit_flip", "byte_edit", "header_fields",
            "payload_valid_crc", "entropy_decode", "splice", "model_file"]
    cat = category or rnd.choice(cats)
    seed = rnd.choice(seeds)
    if cat == "entropy_decode":
        return cat, _fuzz_entropy_decode(rnd)
    if cat == "model_file":
        return cat, _fuzz_model_file(rnd)
    if cat == "random_bytes":
        data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 120)))
        if rnd.random() < 0.5:
            data = bitstream.MAGIC + data
    elif cat == "truncation":
        data = seed[:rnd.randrange(len(seed))]
    elif cat == "bit_flip":
        b = bytearray(seed)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
        data = bytes(b)
    elif cat == "byte_edit":
        b = bytearray(seed)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.getrandbits(8)
        data = bytes(b)
    elif cat == "header_fields":
        h = bytearray(seed[:28])
        for _ in range(rnd.randint(1, 3)):
            what = rnd.choice(["version", "variant", "depth", "flags", "model", "size", "bigsize",
                               "lam"])
            if what == "version":
                h[4] = rnd.getrandbits(8)
            elif what == "variant":
                h[5] = rnd.getrandbits(8)
            elif what == "depth":
                h[6] = rnd.randint(0, 20)
            elif what == "flags":
                h[7] = rnd.getrandbits(8)
            elif what == "model":
                h[8 + rnd.randrange(8)] = rnd.getrandbits(8)
            elif what == "size":
                struct.pack_into(">HH", h, 16, rnd.randrange(64), rnd.randrange(64))
            elif what == "bigsize":          # above the pixel limit: refused before allocating
                struct.pack_into(">HH", h, 16, rnd.randint(1024, 0xFFFF), 0xFFFF)
            else:
                struct.pack_into(">Q", h, 20, rnd.getrandbits(64))
        data = _pack_raw(bytes(h), seed[32:])
    elif cat == "payload_valid_crc":
        words = rnd.choice([0, 1, 2, 3, 8, 32, len(seed[32:]) // 4])
        payload = bytes(rnd.getrandbits(8) for _ in range(4 * words))
        if rnd.random() < 0.3 and len(seed) > 32:             # a valid payload, one word changed
            p = bytearray(seed[32:])
            p[rnd.randrange(len(p))] = rnd.getrandbits(8)
            payload = bytes(p)
        data = _pack_raw(seed[:28], payload)
    else:                                       # splice: header of one, payload of another
        other = rnd.choice(seeds)
        data = _pack_raw(seed[:28], other[32:])
    t0 = time.perf_counter()
    try:
        dec = codec.decompress_details(data, model)
    except BitstreamError:
        outcome = "rejected"
    except ModelFileError:
        outcome = "model error"
    except Exception as exc:                                      # noqa: BLE001
        outcome = f"BUG {type(exc).__name__}: {exc}"
    else:
        outcome = "decoded"
        if dec.pixels is None or dec.pixels.shape[:2] != (dec.header.height, dec.header.width):
            outcome = "BUG decoded to a wrong image size"
    if time.perf_counter() - t0 > FUZZ_SLOW_S:
        outcome = "BUG slow"
    return cat, outcome


def _fuzz_entropy_decode(rnd: random.Random) -> str:
    """entropy_model.decode_symbols on a random payload, or on a real one, maybe mutated.

    Decoding must end in BitstreamError or in symbols that re-encode to exactly the
    payload (SPEC.md §2.8 check 3 makes every accepted payload the unique encoding).
    """
    shape = (rnd.randint(1, 6), rnd.randint(1, 4), rnd.randint(1, 4))
    n = rnd.randint(1, 16)
    original = None
    if rnd.random() < 0.4:
        payload = bytes(rnd.getrandbits(8) for _ in range(4 * rnd.randint(0, 24)))
    else:
        p0 = rnd.random()
        d = np.array([0 if rnd.random() < p0 else rnd.randint(1, n)
                      for _ in range(int(np.prod(shape)))], dtype=np.int64).reshape(shape)
        k = np.array([rnd.getrandbits(int(r)) for r in d.ravel()], dtype=np.int64).reshape(shape)
        payload = entropy_model.encode_symbols(d, k, n)
        how = rnd.choice(["none", "flip", "drop", "append", "word"])
        b = bytearray(payload)
        if how == "none":
            original = (d, k)
        elif how == "flip" and b:
            i = rnd.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
        elif how == "drop":
            b = b[:-4]
        elif how == "append":
            b += bytes(rnd.getrandbits(8) for _ in range(4))
        elif b:
            i = 4 * rnd.randrange(len(b) // 4)
            b[i:i + 4] = bytes(rnd.getrandbits(8) for _ in range(4))
        payload = bytes(b)
    t0 = time.perf_counter()
    try:
        d2, k2 = entropy_model.decode_symbols(payload, shape, n)
    except BitstreamError:
        outcome = "rejected"
    except Exception as exc:                                      # noqa: BLE001
        outcome = f"BUG {type(exc).__name__}: {exc}"
    else:
        if entropy_model.encode_symbols(d2, k2, n) != payload:
            outcome = "BUG decoded, but re-encodes differently"
        elif original is not None and not (np.array_equal(d2, original[0])
                                           and np.array_equal(k2, original[1])):
            outcome = "BUG round trip changed the symbols"
        else:
            outcome = "decoded"
    if time.perf_counter() - t0 > FUZZ_SLOW_S:
        outcome = "BUG slow"
    return outcome


def tiny_model_bytes(n: int = 4, m: int = 2, seed: int = 0) -> bytes:
    """A small valid model file (SPEC.md §6) with a Gaussian coding prior, as .npz bytes."""
    from .weights import PARAM_LAYOUT
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape_of in PARAM_LAYOUT.items():
        shape = shape_of(n, m)
        if name.endswith(".beta"):
            a = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(".gamma"):
            a = rng.uniform(0.0, 0.2, shape)
        else:
            a = 0.1 * rng.standard_normal(shape)
        arrays[name] = a.astype(np.float32)
    arrays["meta_json"] = np.array(json.dumps(
        {"architecture": "bmshj2017-gaussian-vae", "N": n, "M": m}))
    arrays.update(priors.gaussian(np.zeros(m), np.ones(m)).to_arrays("prior."))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_TINY_MODEL = []


def _fuzz_model_file(rnd: random.Random) -> str:
    """A mutated model file: ModelFileError, or a model whose prior also loads cleanly."""
    from .model import load_model
    if not _TINY_MODEL:
        _TINY_MODEL.append(tiny_model_bytes())
    b = bytearray(_TINY_MODEL[0])
    how = rnd.choice(["flip", "byte", "truncate", "npy_header"])
    if how == "flip":
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
    elif how == "byte":
        b[rnd.randrange(len(b))] = rnd.getrandbits(8)
    elif how == "truncate":
        b = b[:rnd.randrange(len(b))]
    else:                                   # one .npy member edited, zip CRCs recomputed
        with zipfile.ZipFile(io.BytesIO(bytes(b))) as zf:
            members = {name: zf.read(name) for name in zf.namelist()}
        name = rnd.choice(sorted(members))
        npy = bytearray(members[name])
        for _ in range(rnd.randint(1, 2)):
            if rnd.random() < 0.6:          # the header: shape, dtype, order
                i = rnd.randrange(10, min(len(npy), 100))
                npy[i] = rnd.choice(b"0123456789(), '<>fiuUOb|:TF")
            else:                           # the data
                i = rnd.randrange(8 * len(npy))
                npy[i // 8] ^= 1 << (i % 8)
        members[name] = bytes(npy)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for key, value in members.items():
                zf.writestr(key, value)
        b = bytearray(out.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as fh:
            fh.write(bytes(b))
        try:
            mdl = load_model(path)
            codec.model_prior(mdl)
        except ModelFileError:
            return "rejected"
        except Exception as exc:                                  # noqa: BLE001
            return f"BUG {type(exc).__name__}: {exc}"
    return "loaded"


def fuzz(n: int, seed: int = 0, model=None, report=print) -> collections.Counter:
    """Run ``n`` hostile inputs; returns a Counter of (category, outcome)."""
    model = codec.get_model(model)
    seeds = fuzz_seeds(model)
    rnd = random.Random(seed)
    counts = collections.Counter()
    t0 = time.time()
    for i in range(n):
        counts[fuzz_one(rnd, seeds, model)] += 1
        if report and (i + 1) % 1000 == 0:
            report(f"  {i + 1}/{n} inputs, {time.time() - t0:.0f} s")
    return counts


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def main(argv=None, prog=None) -> int:
    p = argparse.ArgumentParser(
        prog=prog, description="Check a decoder/encoder against the bac_ref conformance vectors "
        "(SPEC.md §11), regenerate them, or fuzz the decoder with hostile input.")
    p.add_argument("--vectors", default=str(DEFAULT_VECTORS),
                   help="vector folder (default: %(default)s)")
    p.add_argument("--decoder", metavar="CMD",
                   help="decoder command with {in} (.bac) and {out} (.npz)")
    p.add_argument("--encoder", metavar="CMD",
                   help="encoder command with {in} (input .npz) and {out} (.bac)")
    p.add_argument("--case", action="append", metavar="ID", help="only this case (repeatable)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per command")
    p.add_argument("--model", help="model file (default: the default model)")
    p.add_argument("--generate", metavar="DIR",
                   help=f"write the vectors (needs {REGENERATE_ENV}=1)")
    p.add_argument("--fuzz", type=int, metavar="N",
                   help="run N hostile inputs and print the outcomes")
    p.add_argument("--seed", type=int, default=0, help="fuzz seed")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the total")
    args = p.parse_args(argv)
    try:
        if args.generate:
            if os.environ.get(REGENERATE_ENV) != "1":
                print(f"refusing to rewrite vectors: set {REGENERATE_ENV}=1 to regenerate",
                      file=sys.stderr)
                return 2
            ids = generate(args.generate, model=args.model)
            print(f"wrote {len(ids)} cases to {args.generate}")
            return 0
        if args.fuzz is not None:
            t0 = time.time()
            counts = fuzz(args.fuzz, args.seed, model=args.model)
            bugs = 0
            for (cat, outcome), k in sorted(counts.items()):
                print(f"{k:8d}  {cat:18s} {outcome}")
                bugs += k if outcome.startswith("BUG") else 0
            by_outcome = collections.Counter()
            for (_, outcome), k in counts.items():
                by_outcome[outcome.split(":")[0]] += k
            print(f"{sum(counts.values())} inputs in {time.time() - t0:.0f} s: "
                  + ", ".join(f"{k} {o}" for o, k in sorted(by_outcome.items())))
            return 1 if bugs else 0

        def report(line):
            if not args.quiet or not line.startswith(("PASS", "SKIP")):
                print(line, flush=True)

        res = check(args.vectors, decoder=args.decoder, encoder=args.encoder,
                    cases=set(args.case) if args.case else None, timeout=args.timeout,
                    model=args.model, report=report)
        return 0 if res["failed"] == 0 and res["passed"] > 0 else 1
    except (ModelFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
