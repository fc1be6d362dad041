"""Rate and quality targets: time against one fixed-lambda compress, and accuracy (issue 18).

    python -m bac_ref.bench.bench_targets [IMAGES...] [--bpp 0.15 0.3 0.5 1] [--psnr 28 30 32 34]

For each image (default data/kodim23.png) and each target, one compress exactly as
``bac-ref compress`` does it (bac_ref.cli.compress_file: read, g_a, search, coding, the
PSNR of the result), timed in this process with the model loaded; the reference is the
same call with ``--lam 3`` (which also measures the PSNR, as the CLI does by default),
timed before and after the targets.  Prints seconds, the ratio to the reference
(target: <= 2), the bpp error (target: within 2 %), the PSNR above the target (target:
0 .. 0.05 dB), the number of VBQ runs and codings, and the real / estimated size ratio
of the ideal code length the search predicts with.  Images are never written into the
repository (outputs go to a temporary folder).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time


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
    codings = []
    real_encode = entropy_model.encode_symbols

    def counting(*a):
        codings.append(1)
        return real_encode(*a)
    entropy_model.encode_symbols = counting
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} "
          "(figures are rough when other processes run)")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "x.bac")

        def one(path, rate):
            codings.clear()
            t0 = time.perf_counter()
            line, _, times = compress_file(path, out, rate=rate, model=model, force=True,
                                           show_progress=False)
            return time.perf_counter() - t0, line, times, len(codings)

        for path in images:
            print(f"\n{os.path.basename(path)}")
            ref = [one(path, {"lam": 3.0})[0] for _ in range(2)]
            rows = []
            for kind, values in (("bpp", args.bpp), ("psnr", args.psnr)):
                for v in values:
                    rows.append((kind, v) + one(path, {kind: v}))
            ref += [one(path, {"lam": 3.0})[0] for _ in range(2)]
            t_ref = statistics.median(ref)
            print(f"  --lam 3 (reference, median of 4): {t_ref:.2f} s")
            print(f"  {'target':>12} {'s':>6} {'x ref':>6} {'bpp':>7} {'error':>8} {'PSNR':>7} "
                  f"{'VBQ runs':>8} {'codings':>7}  note")
            for kind, v, t, line, times, ncod in rows:
                bpp = float(line.split(" bpp")[0].split()[-1])
                psnr = float(line.split("(PSNR ")[1].split()[0]) if "(PSNR " in line else float("nan")
                err = (f"{100 * (bpp / v - 1):+7.2f}%" if kind == "bpp" else f"{psnr - v:+7.3f}")
                note = line.split("; ", 1)[1] if "; " in line else ""
                ratios.append(t / t_ref)
                print(f"  {'--' + kind + ' ' + format(v, 'g'):>12} {t:6.2f} {t / t_ref:6.2f} "
                      f"{bpp:7.4f} {err:>8} {psnr:7.2f} "
                      f"{times.get('search steps (VBQ runs)', 0):>8} {ncod:>7}  {note[:60]}")
            enc = codec.Encoder(path, model)
            est = []
            for lam in (10.0, 3.0, 1.0, 0.3, 0.1):
                q = enc.symbols(lam)
                est.append(f"{lam:g}: {enc.encode(lam, q=q).bpp / enc.rate(q):.3f}")
            print("  real / estimated size by lambda: " + ", ".join(est))
    entropy_model.encode_symbols = real_encode
    if ratios:
        print(f"\ntime / reference: median {statistics.median(ratios):.2f}, "
              f"max {max(ratios):.2f} (target <= 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
