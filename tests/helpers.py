"""Helpers shared by several test modules (import as ``from helpers import ...``).

* :func:`tiny_model_bytes` / :func:`tiny_model_arrays`: a small valid model (SPEC.md §6)
  with random weights, from the one builder of the project (the conformance suite's).
* :func:`vbq_by_definition`: VBQ (SPEC.md §5.1, §5.3) by exhaustive search, written
  from the SPEC's text alone: it shares no code with ``bac_ref.vbq`` (not its input
  handling, grid, objective or tie rule) and reads the prior only as its raw table, so
  a bug in any of those parts of vbq shows up as a disagreement.
"""
from __future__ import annotations

import io

import numpy as np


# ---------------------------------------------------------------------------
# A tiny model
# ---------------------------------------------------------------------------
def tiny_model_bytes(n: int = 4, m: int = 2, seed: int = 0) -> bytes:
    """A small valid model file (SPEC.md §6) with a per-channel N(0, 1) coding prior, as .npz
    bytes: the conformance suite's builder, the one tiny-model builder of the project."""
    from bac_ref.conformance import runner as conformance
    return conformance.tiny_model_bytes(n, m, seed)


def tiny_model_arrays(n: int = 8, m: int = 4, seed: int = 0) -> dict:
    """The transform weights of :func:`tiny_model_bytes` (float32, beta > 0, gamma >= 0)."""
    from bac_ref.weights import PARAM_LAYOUT
    with np.load(io.BytesIO(tiny_model_bytes(n, m, seed)), allow_pickle=False) as z:
        return {name: z[name] for name in PARAM_LAYOUT}


def tiny_model_meta(n: int = 8, m: int = 4) -> dict:
    return {"architecture": "bmshj2017-gaussian-vae", "N": n, "M": m}


# ---------------------------------------------------------------------------
# VBQ by its definition (SPEC.md §4.1, §4.2, §5.1, §5.3)
# ---------------------------------------------------------------------------
def _grid(table: np.ndarray, n: int):
    """All level-(N+1) grid points j = 1 .. 2^(N+1)-1 of one channel's table, increasing:
    (zhat, depth, index).  zhat by SPEC.md §4.2: G = d + 1, jj = 2k + 1; G <= K looks up
    Q[jj << (K - G)], G > K interpolates a = Q[i+1] - Q[i]; b = t * a; zhat = Q[i] + b."""
    q = np.asarray(table, dtype=np.float64)
    k_bits = (q.size - 1).bit_length() - 1
    j = np.arange(1, 1 << (n + 1), dtype=np.int64)
    tz = np.log2(j & -j).astype(np.int64)        # j = (2k + 1) 2^(N - d): exact for 2^tz
    depth = n - tz
    index = j >> (tz + 1)
    big_g, jj = depth + 1, 2 * index + 1
    zhat = np.empty(j.size)
    look = big_g <= k_bits
    zhat[look] = q[jj[look] << (k_bits - big_g[look])]
    s = big_g[~look] - k_bits
    i = jj[~look] >> s
    r = jj[~look] & ((np.int64(1) << s) - 1)
    t = r / (np.int64(1) << s).astype(np.float64)                 # exact: r < 2^s <= 2^21
    a = q[i + 1] - q[i]
    zhat[~look] = q[i] + t * a
    return zhat, depth, index


def vbq_by_definition(mu, sigma, lam, table, n, code_length=None, chunk=1 << 21):
    """(depth, index, zhat) of VBQ for 2-d (C, S) float arrays mu, sigma, lam.

    ``table``: the prior's (C, 2^K + 1) or (1, 2^K + 1) quantile table; ``code_length``:
    None (L(d) = d) or a (C, N + 1) / (N + 1,) table.  Per latent, over every grid point:
    O = (-D) - T with a = zhat - mu, b = a / sigma, D = (b * b) * 0.5 (0 where sigma = inf),
    T = lambda * L(d) (SPEC.md §5.1); the winner has the largest O, then the smallest
    depth, then the smallest rho = j_lo - j (j <= j_lo) or j - j_lo - 1, j_lo = #{zhat <= mu},
    then the smallest index (SPEC.md §5.3).
    """
    mu, sigma, lam = (np.asarray(x, dtype=np.float64) for x in (mu, sigma, lam))
    c_count, s_count = mu.shape
    sigma = np.broadcast_to(sigma, mu.shape)
    lam = np.broadcast_to(lam, mu.shape)
    table = np.atleast_2d(np.asarray(table, dtype=np.float64))
    cl = None if code_length is None else np.atleast_2d(np.asarray(code_length, np.float64))
    out_d = np.empty(mu.shape, np.int64)
    out_k = np.empty(mu.shape, np.int64)
    out_z = np.empty(mu.shape)
    grids = {}
    with np.errstate(over="ignore", under="ignore"):
        for c in range(c_count):
            t = 0 if table.shape[0] == 1 else c
            if t not in grids:
                grids[t] = _grid(table[t], n)
            zhat, depth, index = grids[t]
            length = depth.astype(np.float64) if cl is None else cl[0 if cl.shape[0] == 1 else c][depth]
            j = np.arange(1, zhat.size + 1)
            step = max(1, chunk // zhat.size)
            for s0 in range(0, s_count, step):
                sl = slice(s0, min(s0 + step, s_count))
                m, sg, lm = mu[c, sl], sigma[c, sl], lam[c, sl]
                a = zhat[:, None] - m[None, :]
                b = a / sg[None, :]
                dist = (b * b) * 0.5
                dist[:, np.isinf(sg)] = 0.0
                obj = (-dist) - (lm[None, :] * length[:, None])
                j_lo = np.count_nonzero(zhat[:, None] <= m[None, :], axis=0)
                rho = np.where(j[:, None] <= j_lo[None, :], j_lo[None, :] - j[:, None],
                               j[:, None] - j_lo[None, :] - 1)
                # lexicographic: largest O, smallest depth, smallest rho, smallest index
                keep = obj == obj.max(axis=0)
                dd = np.where(keep, depth[:, None], np.iinfo(np.int64).max)
                keep &= dd == dd.min(axis=0)
                rr = np.where(keep, rho, np.iinfo(np.int64).max)
                keep &= rr == rr.min(axis=0)
                kk = np.where(keep, index[:, None], np.iinfo(np.int64).max)
                win = np.argmin(kk, axis=0)
                out_d[c, sl] = depth[win]
                out_k[c, sl] = index[win]
                out_z[c, sl] = zhat[win]
    return out_d, out_k, out_z
