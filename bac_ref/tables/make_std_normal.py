"""Generate ``std_normal_k12.npy``: the standard-normal quantile table of SPEC.md §4.4.

Run from the repository root (needs mpmath, a development dependency only)::

    python bac_ref/tables/make_std_normal.py            # rewrite the table
    python bac_ref/tables/make_std_normal.py --check    # verify the shipped bytes

The table has 2^K + 1 = 4097 float64 entries (K = 12), indexed by i = 0..4096:

    Q[i]    = round_to_float64( Phi^-1(i / 4096) )          for 1 <= i <= 4095
    Q[0]    = round_to_float64( 2 m - Phi^-1(1/4096) ),     m = E[Z | Z < Phi^-1(1/4096)]
                                                              = -phi(q1) / Phi(q1) = -4096 phi(q1)
    Q[4096] = -Q[0]

Every value is computed with 60 significant decimal digits and rounded once to
the nearest float64, so each interior entry is the correctly rounded quantile
(Q[2048] is +0.0, the table is exactly antisymmetric).  The end points make
the outermost piece of the piecewise-linear quantile function (SPEC.md §4.2)
a uniform density on [Q[0], Q[1]] whose mean equals the true mean of the
normal tail below Q[1] ("mean-matched tails", SPEC.md §4.4).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

K = 12
HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, f"std_normal_k{K}.npy")


def compute(k: int = K) -> np.ndarray:
    import mpmath as mp

    mp.mp.dps = 60
    n = 1 << k
    out = np.empty(n + 1, dtype=np.float64)
    q = [None] * (n + 1)
    for i in range(1, n):
        p = mp.mpf(i) / n
        q[i] = mp.sqrt(2) * mp.erfinv(2 * p - 1)
        out[i] = float(q[i])          # mpmath rounds to nearest
    q1 = q[1]
    phi = mp.exp(-q1 * q1 / 2) / mp.sqrt(2 * mp.pi)
    tail_mean = -phi * n               # -phi(q1) / Phi(q1), Phi(q1) = 1/n
    q0 = 2 * tail_mean - q1
    out[0] = float(q0)
    out[n] = float(-q0)
    out[n // 2] = 0.0
    out += 0.0                         # no negative zeros in a table (SPEC.md §4.2)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped file, write nothing")
    args = ap.parse_args(argv)
    table = compute()
    if args.check:
        shipped = np.load(PATH, allow_pickle=False)
        same = shipped.dtype == table.dtype and np.array_equal(shipped.view(np.uint64), table.view(np.uint64))
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    np.save(PATH, table, allow_pickle=False)
    print(PATH, hashlib.sha256(table.tobytes()).hexdigest())
    return 0


if __name__ == "__main__":
    sys.exit(main())
