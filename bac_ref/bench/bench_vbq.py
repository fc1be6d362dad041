"""Throughput of bac_ref.vbq.quantize (SPEC.md §5.2): 10^6 latents at max_depth 10.

    python -m bac_ref.bench.bench_vbq [--n 1000000] [--repeat 3]

Prints the best-of-``repeat`` wall time for: the N(0,1) prior; a 128-channel
Gaussian prior on latents shaped (128, H, W); the same with a second-pass
code-length table; and max_depth 16.  Target (issue 3): <= 1 s for 10^6 latents
at max_depth 10 on the 2-core development machine.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from bac_ref import priors, vbq  # noqa: E402


def best_time(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    c = 128
    per = args.n // c
    mu = rng.standard_normal((c, per)) * rng.uniform(0.2, 3, (c, 1))
    sigma = np.exp(rng.uniform(-4, 1, mu.shape))
    prior_c = priors.gaussian(rng.standard_normal(c) * 0.1, rng.uniform(0.2, 3, c))
    first = vbq.quantize(mu, sigma, 1.0, prior_c, 10)
    cl = vbq.depth_code_lengths(first.depth, 10, num_channels=c)
    total = mu.size
    cases = [
        ("N(0,1) prior, max_depth 10", lambda: vbq.quantize(mu.reshape(-1), sigma.reshape(-1), 1.0, None, 10)),
        ("128-channel Gaussian prior, max_depth 10", lambda: vbq.quantize(mu, sigma, 1.0, prior_c, 10)),
        ("  + second-pass code lengths", lambda: vbq.quantize(mu, sigma, 1.0, prior_c, 10, code_length=cl)),
        ("128-channel Gaussian prior, max_depth 16", lambda: vbq.quantize(mu, sigma, 1.0, prior_c, 16)),
    ]
    print(f"{total} latents, best of {args.repeat}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    for name, fn in cases:
        t = best_time(fn, args.repeat)
        print(f"{name:45s} {t:7.3f} s   {total / t / 1e6:6.2f} M latents/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
