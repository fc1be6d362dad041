"""Rate and quality targets: time against one fixed-lambda compress, and accuracy (issue 18).

    python -m bac_ref.bench.bench_targets [IMAGES...] [--bpp 0.15 0.3 0.5 1] [--psnr 28 30 32 34]

For each image (default data/kodim23.png) and each target, one compress exactly as
``bac-ref compress`` does it (bac_ref.cli.compress_file: read, g_a, search, coding, the
PSNR of the result), timed in this process with the model loaded; the reference is the
same call with ``--lam 3`` (which also measures the PSNR, as the CLI does by default),
run before every second target and once at the end, so that it sees the same load.
Times are CPU seconds of this process (``time.process_time``: steadier than the wall
clock on a shared machine) and wall seconds; the ratios to the reference's median are
the figures (target: <= 2).  Also printed: the bpp error (target: within 2 %), the PSNR
above the target (target: 0 .. 0.05 dB), and where a run's time went (CPU seconds and
counts): g_a, VBQ runs, predicted rates (the ideal code length), codings (entropy model
+ range coder), g_s runs (trial decodes, and the PSNR of the result), the rest (reading,
checks, the search's own work).  Last, the real / estimated size ratio of the predictor.
Images are never written into the repository (outputs go to a temporary folder).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

STAGES = (("g_a", "__init__"), ("VBQ", "symbols"), ("rate", "rate"), ("g_s", "quality"))


def _instrument(codec, entropy_model):
    """Wrap the Encoder's stages and the entropy coder to count calls and CPU seconds."""
    log = {}
    saved = []

    def wrap(owner, attr, name):
        real = getattr(owner, attr)
        saved.append((owner, attr, real))

        def timed(*a, **k):
            t0 = time.process_time()
            try:
                return real(*a, **k)
            finally:
                n, s = log.get(name, (0, 0.0))
                log[name] = (n + 1, s + time.process_time() - t0)
        setattr(owner, attr, timed)

    for name, attr in STAGES:
        wrap(codec.Encoder, attr, name)
    wrap(entropy_model, "encode_symbols", "coding")

    def restore():
        for owner, attr, real in saved:
            setattr(owner, attr, real)
    return log, restore


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="*")
    p.add_argument("--bpp", type=float, nargs="*", default=[0.15, 0.3, 0.5, 1.0])
    p.add_argument("--psnr", type=float, nargs="*", default=[28.0, 30.0, 32.0, 34.0])
    p.add_argument("--model")
    args = p.parse_args(argv)
    from .. import codec, entropy_model
    from ..cli import compress_file
    from ..sample import find_demo_image
    images = args.images or [find_demo_image()]
    model = codec.get_model(args.model)
    log, restore = _instrument(codec, entropy_model)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(wall-clock figures are rough when other processes run)")
    ratios, wall_ratios = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "x.bac")

            def one(path, rate):
                log.clear()
                t0, c0 = time.perf_counter(), time.process_time()
                line, _, times = compress_file(path, out, rate=rate, model=model, force=True,
                                               show_progress=False)
                cpu, wall = time.process_time() - c0, time.perf_counter() - t0
                return cpu, wall, line, dict(log)

            for path in images:
                print(f"\n{os.path.basename(path)}")
                one(path, {"lam": 3.0})                       # warm caches (pixels, imports)
                ref = []
                rows = []
                todo = [(k, v) for k, vs in (("bpp", args.bpp), ("psnr", args.psnr)) for v in vs]
                for i, (kind, v) in enumerate(todo):
                    if i % 2 == 0:
                        ref.append(one(path, {"lam": 3.0}))
                    rows.append((kind, v) + one(path, {kind: v}))
                ref.append(one(path, {"lam": 3.0}))
                c_ref = statistics.median(r[0] for r in ref)
                w_ref = statistics.median(r[1] for r in ref)
                print(f"  --lam 3 (reference, median of {len(ref)}): {c_ref:.2f} s CPU, "
                      f"{w_ref:.2f} s wall; where it went: {_split(ref[len(ref) // 2])}")
                print(f"  {'target':>12} {'CPU s':>6} {'x ref':>6} {'wall x':>6} {'bpp':>7} "
                      f"{'error':>8} {'PSNR':>7}  where the CPU time went; note")
                for kind, v, cpu, wall, line, stages in rows:
                    bpp = float(line.split(" bpp")[0].split()[-1])
                    psnr = (float(line.split("(PSNR ")[1].split()[0]) if "(PSNR " in line
                            else float("nan"))
                    err = (f"{100 * (bpp / v - 1):+7.2f}%" if kind == "bpp"
                           else f"{psnr - v:+7.3f}")
                    note = line.split("; ", 1)[1] if "; " in line else ""
                    ratios.append(cpu / c_ref)
                    wall_ratios.append(wall / w_ref)
                    name = "--" + kind + " " + format(v, "g")
                    print(f"  {name:>12} {cpu:6.2f} {cpu / c_ref:6.2f} "
                          f"{wall / w_ref:6.2f} {bpp:7.4f} {err:>8} {psnr:7.2f}  "
                          f"{_split((cpu, wall, line, stages))}"
                          + (f"; {note[:70]}" if note else ""))
                restore()
                enc = codec.Encoder(path, model)
                est = []
                for lam in (10.0, 3.0, 1.0, 0.3, 0.1):
                    q = enc.symbols(lam)
                    est.append(f"{lam:g}: {enc.encode(lam, q=q).bpp / enc.rate(q):.3f}")
                print("  real / estimated size by lambda: " + ", ".join(est))
                log, restore = _instrument(codec, entropy_model)
    finally:
        restore()
    if ratios:
        within = sum(r <= 2 for r in ratios)
        print(f"\ntime / reference, CPU: median {statistics.median(ratios):.2f}, "
              f"max {max(ratios):.2f}, {within} of {len(ratios)} runs <= 2 (target: all)")
        print(f"time / reference, wall: median {statistics.median(wall_ratios):.2f}, "
              f"max {max(wall_ratios):.2f}")
    return 0


def _split(run) -> str:
    """'g_a 0.36, 4 VBQ 0.31, ...': CPU seconds (and counts) per stage of one run."""
    cpu, _, _, stages = run
    parts, known = [], 0.0
    for name in ("g_a", "VBQ", "rate", "coding", "g_s"):
        n, s = stages.get(name, (0, 0.0))
        if name == "g_a":
            parts.append(f"g_a {s:.2f}")
        elif n:
            parts.append(f"{n} {name} {s:.2f}")
        known += s
    parts.append(f"rest {cpu - known:.2f}")
    return ", ".join(parts)


if __name__ == "__main__":
    sys.exit(main())
