"""Kodak figures of the model itself, before any quantization (model card figures).

    python -m bac_ref.bench.eval_model [--model PATH] [--kodak DIR]

Per image and averaged over Kodak:

* mean reconstruction: PSNR of g_s(mu), the quality ceiling of VBQ as lambda -> 0;
* KL(q(z|x) || N(0, I)) in bits per pixel, the rate term of the training ELBO;
* sample reconstruction: PSNR of g_s(z) for one posterior sample z = mu + sigma * eps
  (seeded).  (KL, sample PSNR) is the model's own rate-distortion point: what a coder
  that transmits a posterior sample at the KL rate (bits-back / relative-entropy coding)
  would reach.  VBQ's curve passing near it says the quantizer loses little, and that
  a better curve needs a better model.

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


def kodak_mean_reconstruction(model, kodak_dir, seed: int = 0):
    """{"psnr", "kl_bpp", "sample_psnr", "n"}: means over kodim*.png in kodak_dir.

    psnr: g_s(mu); kl_bpp: KL(q || N(0, I)) in bits/pixel; sample_psnr: g_s(mu + sigma * eps),
    eps ~ N(0, I) drawn from ``seed`` (one sample per image).
    """
    files = sorted(glob.glob(os.path.join(kodak_dir, "kodim*.png")))
    rng = np.random.default_rng(seed)
    values, kls, samples = [], [], []
    for f in files:
        img = read_image(f)
        x = to_rgb_float(img)
        ref = img.pixels[:, :, :3]
        mu, sigma = model.analysis(x)
        values.append(psnr(ref, to_pixels(model.synthesis(mu, size=x.shape[:2]), False)))
        z = mu + sigma * rng.standard_normal(mu.shape).astype(np.float32)
        samples.append(psnr(ref, to_pixels(model.synthesis(z, size=x.shape[:2]), False)))
        s2 = sigma.astype(np.float64) ** 2
        kl = 0.5 * np.sum(mu.astype(np.float64) ** 2 + s2 - 1.0 - np.log(s2))
        kls.append(kl / np.log(2) / (x.shape[0] * x.shape[1]))
        print(f"{os.path.basename(f)}: {values[-1]:.2f} dB, KL {kls[-1]:.3f} bpp, "
              f"sample {samples[-1]:.2f} dB", file=sys.stderr, flush=True)
    if not files:
        return {"psnr": float("nan"), "kl_bpp": float("nan"), "sample_psnr": float("nan"), "n": 0}
    return {"psnr": float(np.mean(values)), "kl_bpp": float(np.mean(kls)),
            "sample_psnr": float(np.mean(samples)), "n": len(files)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None)
    p.add_argument("--kodak", default=os.path.join("..", "shared", "data", "kodak"))
    args = p.parse_args(argv)
    model = load_model(args.model)
    t0 = time.time()
    r = kodak_mean_reconstruction(model, args.kodak)
    if r["n"] == 0:
        print(f"no Kodak images in {args.kodak}", file=sys.stderr)
        return 2
    print(f"model {model.path} (steps {model.meta.get('steps')}), {r['n']} Kodak images "
          f"({time.time() - t0:.0f} s): mean reconstruction {r['psnr']:.2f} dB PSNR; "
          f"KL {r['kl_bpp']:.3f} bits/pixel; posterior-sample reconstruction "
          f"{r['sample_psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
