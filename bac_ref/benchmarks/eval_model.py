"""Kodak PSNR of the unquantized mean reconstruction g_s(mu) (model card figure).

    python -m bac_ref.benchmarks.eval_model [--model PATH] [--kodak DIR]

Kodak is the test set: this script only reports, it never tunes anything.
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
import time

import numpy as np

from ..codec import psnr, to_pixels
from ..imageio import read_image, to_rgb_float
from ..model import load_model


def kodak_mean_reconstruction(model, kodak_dir):
    """(mean PSNR dB, mean KL bits/pixel, n) of g_s(mu) over kodim*.png in kodak_dir."""
    files = sorted(glob.glob(os.path.join(kodak_dir, "kodim*.png")))
    values, kls = [], []
    for f in files:
        img = read_image(f)
        x = to_rgb_float(img)
        mu, sigma = model.analysis(x)
        x_hat = model.synthesis(mu, size=x.shape[:2])
        values.append(psnr(img.pixels[:, :, :3], to_pixels(x_hat, False)))
        s2 = sigma.astype(np.float64) ** 2
        kl = 0.5 * np.sum(mu.astype(np.float64) ** 2 + s2 - 1.0 - np.log(s2))
        kls.append(kl / np.log(2) / (x.shape[0] * x.shape[1]))
        print(f"{os.path.basename(f)}: {values[-1]:.2f} dB, KL {kls[-1]:.3f} bpp",
              file=sys.stderr, flush=True)
    return float(np.mean(values)), float(np.mean(kls)), len(files)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--kodak", default=os.path.join("..", "shared", "data", "kodak"))
    args = p.parse_args(argv)
    model = load_model(args.model)
    t0 = time.time()
    mean_psnr, mean_kl, n = kodak_mean_reconstruction(model, args.kodak)
    if n == 0:
        print(f"no Kodak images in {args.kodak}", file=sys.stderr)
        return 2
    print(f"model {model.path} (steps {model.meta.get('steps')}): Kodak mean-reconstruction PSNR "
          f"{mean_psnr:.2f} dB, KL {mean_kl:.3f} bits/pixel over {n} images "
          f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
