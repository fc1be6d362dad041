"""Compare priors for VBQ by measured rate on HELD-OUT latents (SPEC.md §4.4).

    python -m bac_ref.bench.compare_empirical_priors [--model runs/vae/ckpt.pt | model.npz]
                                                  [--fit-images 160] [--json out.json]

Data (never Kodak): the deterministic split of ``bac_ref.training.train.split_train_val``.
Priors are FITTED on the posterior means of centre crops (256 x 256) of training
images (every k-th of the training list, ``--fit-images`` of them) and EVALUATED
on the centre crops of the validation images.  The per-channel frequency tables
of the rate estimate are also counted on the fitting crops, so nothing about the
evaluation set is used to build the code.

Priors compared: N(0,1) (the VAE's training prior); per-channel Gaussian
(mean, std); "kde" (smoothed quantile table) and "balle2018" (Balle et al. 2018
flexible density, hidden dims 3-3-3, L-BFGS), both K = ``--table-bits``.

For every prior and lambda, VBQ (max_depth ``--max-depth``, L = depth) on the
held-out latents, reporting
  rate_paper  bits/pixel: sum of -log2 of the per-channel frequency of j (2^(N+1)-1
              levels, add-one smoothing) counted on the fitting set (the paper's estimate)
  bytes       real range-coded size (bac_ref.rangecoder, per-channel 24-bit tables from the
              same counts via cdf_from_counts), in bits/pixel (tables not counted)
  raw         mean depth: the prior's own code length (L = depth bits per latent, no
              signalling of the depth itself), bits per latent
  mse_z       latent-space mean squared error of zhat vs mu; wd = mean ((zhat-mu)/sigma)^2
  psnr        dB of the decoded crops (synthesis of zhat, uint8 rounding, RGB)
and a BD-rate of each prior against "kde" (rate_paper vs psnr, piecewise-linear in log rate).
With --baselines, the bac_ref.bench.baselines quantizers (uniform, k-means, uncertainty-blind
VBQ with the kde prior, integer rounding) run on the same split with real range-coded
sizes, and their BD-rate against VBQ (real bytes vs PSNR) is printed.
Run time: minutes (the Balle fit dominates); timings are not the point.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
from bac_ref import priors, vbq  # noqa: E402
from bac_ref.training import prior_fit  # noqa: E402
from bac_ref.bench.baselines import ChannelEntropyModel  # noqa: E402

DEFAULT_LAMBDAS = [0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]


def load_vae(path):
    import torch
    from bac_ref.training.train import GaussianVAE
    if path.endswith(".npz"):
        from bac_ref.weights import load_npz_arrays
        arrays, meta = load_npz_arrays(path)
        model = GaussianVAE(int(meta.get("N", 128)), int(meta.get("M", 128)))
        model.load_effective_params(arrays)
        step = meta.get("steps")
    else:
        ck = torch.load(path, weights_only=False, map_location="cpu")
        args = ck.get("args", {})
        model = GaussianVAE(args.get("n", 128), args.get("m", 128))
        model.load_state_dict(ck["model"])
        step = ck.get("step")
    model.eval()
    return model, step


def encode_crops(model, crops, batch=8):
    """crops: list of (3, h, w) float in [0, 1] -> mu, sigma as (n, M, h/16, w/16) float64."""
    import torch
    mus, sigmas = [], []
    with torch.no_grad():
        for s in range(0, len(crops), batch):
            x = torch.as_tensor(np.stack(crops[s:s + batch]), dtype=torch.float32)
            mu, logvar = model.analysis(x)
            mus.append(mu.double().numpy())
            sigmas.append(torch.exp(0.5 * logvar).double().numpy())
    return np.concatenate(mus), np.concatenate(sigmas)


def psnr_of(model, zhat, crops, batch=8):
    import torch
    out = []
    with torch.no_grad():
        for s in range(0, len(crops), batch):
            z = torch.as_tensor(zhat[s:s + batch], dtype=torch.float32)
            xh = model.synthesis(z).clamp(0, 1).numpy()
            for i, c in enumerate(crops[s:s + batch]):
                a = np.round(c * 255.0)
                b = np.round(xh[i].astype(np.float64) * 255.0)
                mse = np.mean((a - b) ** 2)
                out.append(10 * math.log10(255.0 ** 2 / max(mse, 1e-10)))
    return float(np.mean(out))


def bd_rate(r_ref, p_ref, r_test, p_test):
    """Mean log-rate difference over the common PSNR range (piecewise linear), in percent."""
    def curve(r, p):
        o = np.argsort(p)
        return np.asarray(p)[o], np.log(np.asarray(r)[o])
    pa, la = curve(r_ref, p_ref)
    pb, lb = curve(r_test, p_test)
    lo, hi = max(pa[0], pb[0]), min(pa[-1], pb[-1])
    if not hi > lo:
        return float("nan")
    grid = np.linspace(lo, hi, 200)
    diff = np.interp(grid, pb, lb) - np.interp(grid, pa, la)
    return float((np.exp(np.mean(diff)) - 1) * 100)


def run_baselines(args, model, fitted, mu_f, sg_f, mu_e, sg_e, ev_crops, pixels):
    """Uniform, k-means, uncertainty-blind VBQ and integer rounding on the same split (real bytes)."""
    from bac_ref.bench import baselines as bl
    cf = lambda a: np.moveaxis(a, 1, 0)                                  # noqa: E731
    prior = fitted.get("kde") or next(iter(fitted.values()))
    families = {
        "uniform": [lambda n=n: bl.UniformQuantizer(n) for n in (2, 4, 8, 16, 32, 64)],
        "kmeans": [lambda n=n: bl.KMeansQuantizer(n) for n in (2, 4, 8, 16, 32)],
        "blind_vbq": [lambda lam=lam: bl.BlindVBQ(lam, prior, args.max_depth) for lam in args.lambdas],
        "rounding": [lambda s=s: bl.IntegerRounding(s) for s in (2.0, 1.0, 0.5, 0.25, 0.125)],
    }
    out = {}
    for fam, makers in families.items():
        rows = []
        for make in makers:
            q = make()
            if fam == "blind_vbq":
                q.fit(cf(mu_f), cf(sg_f))
            else:
                q.fit(cf(mu_f))
            r = q.quantize(cf(mu_e), cf(sg_e))
            data = q.encode(r.symbols)
            zhat = np.moveaxis(r.zhat, 0, 1)
            row = {"param": getattr(q, "levels", getattr(q, "k", getattr(q, "lam", getattr(q, "step", None)))),
                   "bytes": len(data), "bytes_bpp": 8 * len(data) / pixels,
                   "mse_z": float(np.mean((zhat - mu_e) ** 2))}
            if not args.no_psnr:
                row["psnr"] = psnr_of(model, zhat, ev_crops)
            rows.append(row)
            print(f"{fam:10s} {row['param']!s:>6s}  bytes {row['bytes_bpp']:.4f} bpp  mse_z {row['mse_z']:.4f}"
                  + (f"  psnr {row['psnr']:.2f}" if "psnr" in row else ""), flush=True)
        out[fam] = rows
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join("runs", "vae", "ckpt.pt"),
                    help="a torch checkpoint (.pt) or an exported model (.npz)")
    ap.add_argument("--data", default=os.path.join("..", "shared", "data", "train"))
    ap.add_argument("--fit-images", type=int, default=160)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--lambdas", type=float, nargs="+", default=DEFAULT_LAMBDAS)
    ap.add_argument("--max-depth", type=int, default=10)
    ap.add_argument("--table-bits", type=int, nargs="+", default=[8])
    ap.add_argument("--balle-samples", type=int, default=2000)
    ap.add_argument("--balle-maxiter", type=int, default=300)
    ap.add_argument("--kde-samples", type=int, default=50_000)
    ap.add_argument("--priors", nargs="+", default=["std_normal", "gaussian", "kde", "balle2018"])
    ap.add_argument("--no-bytes", action="store_true", help="skip the real range coding")
    ap.add_argument("--no-psnr", action="store_true", help="skip synthesis / PSNR")
    ap.add_argument("--baselines", action="store_true",
                    help="also run the bac_ref.bench.baselines quantizers (real bytes, PSNR)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write all numbers here")
    args = ap.parse_args(argv)

    import torch
    from bac_ref.training.train import list_images, load_rgb, split_train_val, val_crops
    torch.set_num_threads(args.threads)
    t0 = time.time()
    model, step = load_vae(args.model)
    files = list_images(args.data)
    train_files, val_files = split_train_val(files)
    every = max(1, len(train_files) // args.fit_images)
    fit_files = train_files[::every][:args.fit_images]
    fit_crops = val_crops([load_rgb(f) for f in fit_files], args.crop)
    ev_crops = val_crops([load_rgb(f) for f in val_files], args.crop)
    # keep crops of the full size only (stackable batches)
    fit_crops = [c for c in fit_crops if c.shape[1:] == (args.crop, args.crop)]
    ev_crops = [c for c in ev_crops if c.shape[1:] == (args.crop, args.crop)]
    mu_f, sg_f = encode_crops(model, fit_crops)                        # (n, M, h, w)
    mu_e, sg_e = encode_crops(model, ev_crops)
    pixels = len(ev_crops) * args.crop * args.crop
    C = mu_f.shape[1]
    print(f"model {args.model} (step {step}); fit: {len(fit_crops)} training crops "
          f"({mu_f.size} latents), eval: {len(ev_crops)} validation crops ({mu_e.size} latents); "
          f"{time.time() - t0:.0f} s", flush=True)
    print(f"posterior means: |mu| max {np.abs(mu_f).max():.2f}, channel std range "
          f"{mu_f.std(axis=(0, 2, 3)).min():.3f}..{mu_f.std(axis=(0, 2, 3)).max():.3f}; "
          f"sigma median {np.median(sg_f):.3f}", flush=True)
    psnr_mean = None if args.no_psnr else psnr_of(model, mu_e, ev_crops)
    if psnr_mean is not None:
        print(f"unquantized mean reconstruction PSNR {psnr_mean:.2f} dB", flush=True)

    # channel-first views (C, n, h, w) for the per-channel priors
    cf = lambda a: np.moveaxis(a, 1, 0)                                  # noqa: E731
    fitted = {}
    for name in args.priors:
        for kb in (args.table_bits if name in ("kde", "balle2018") else [None]):
            label = name if kb is None or len(args.table_bits) == 1 else f"{name}_K{kb}"
            t = time.time()
            if name == "std_normal":
                p = priors.standard_normal()
            elif name == "gaussian":
                p = prior_fit.fit_gaussian(cf(mu_f), axis=0)
            elif name == "kde":
                p = prior_fit.fit_empirical_prior(cf(mu_f), axis=0, method="kde", table_bits=kb,
                                               max_samples=args.kde_samples)
            else:
                p = prior_fit.fit_empirical_prior(cf(mu_f), axis=0, method="balle2018", table_bits=kb,
                                               max_samples=args.balle_samples, maxiter=args.balle_maxiter)
            fitted[label] = p
            print(f"fitted {label}: {time.time() - t:.0f} s", flush=True)

    n_levels = (1 << (args.max_depth + 1)) - 1
    results = {"model": os.path.abspath(args.model), "step": step, "fit_crops": len(fit_crops),
               "eval_crops": len(ev_crops), "pixels": pixels, "psnr_unquantized": psnr_mean,
               "lambdas": args.lambdas, "max_depth": args.max_depth, "priors": {}}
    for label, p in fitted.items():
        rows = []
        for lam in args.lambdas:
            qf = vbq.quantize(cf(mu_f), cf(sg_f), lam, p, args.max_depth, axis=0)
            qe = vbq.quantize(cf(mu_e), cf(sg_e), lam, p, args.max_depth, axis=0)
            sym_f, sym_e = qf.j - 1, qe.j - 1                              # (C, n, h, w)
            counts = np.stack([np.bincount(sym_f[c].ravel(), minlength=n_levels) for c in range(C)])
            freq = (counts + 1.0) / (counts.sum(axis=1, keepdims=True) + n_levels)
            bits = -np.log2(np.take_along_axis(freq, sym_e.reshape(C, -1), axis=1)).sum()
            zhat = np.moveaxis(qe.zhat, 0, 1)
            row = {"lam": lam, "rate_paper_bpp": bits / pixels,
                   "raw_bits_per_latent": float(qe.depth.mean()),
                   "mse_z": float(np.mean((zhat - mu_e) ** 2)),
                   "wd": float(np.mean(((zhat - mu_e) / sg_e) ** 2))}
            if not args.no_bytes:
                em = ChannelEntropyModel(counts)
                data = em.encode(sym_e, axis=0)
                row["bytes"] = len(data)
                row["bytes_bpp"] = 8 * len(data) / pixels
                assert np.array_equal(em.decode(data, sym_e.shape, axis=0), sym_e)
            if not args.no_psnr:
                row["psnr"] = psnr_of(model, zhat, ev_crops)
            rows.append(row)
            print(f"{label:12s} lam {lam:8.3g}  rate {row['rate_paper_bpp']:.4f} bpp"
                  + (f"  bytes {row['bytes_bpp']:.4f} bpp" if "bytes" in row else "")
                  + f"  raw {row['raw_bits_per_latent']:.3f} b/latent  mse_z {row['mse_z']:.4f}"
                  + f"  wd {row['wd']:.3f}" + (f"  psnr {row['psnr']:.2f}" if "psnr" in row else ""),
                  flush=True)
        results["priors"][label] = rows
    if args.baselines:
        results["baselines"] = run_baselines(args, model, fitted, mu_f, sg_f, mu_e, sg_e, ev_crops, pixels)
    if not args.no_psnr:
        ref = next((k for k in results["priors"] if k.startswith("kde")), None)
        if ref is not None:
            rr = results["priors"][ref]
            print(f"BD-rate vs {ref} (rate_paper vs PSNR; negative = fewer bits):")
            results["bd_rate_vs_" + ref] = {}
            for label, rows in results["priors"].items():
                bd = bd_rate([r["rate_paper_bpp"] for r in rr], [r["psnr"] for r in rr],
                             [r["rate_paper_bpp"] for r in rows], [r["psnr"] for r in rows])
                results["bd_rate_vs_" + ref][label] = bd
                print(f"  {label:12s} {bd:+7.2f} %")
            if "baselines" in results and "bytes" in rr[0]:
                print(f"BD-rate vs VBQ with {ref} (real bytes vs PSNR; positive = baseline needs more bits):")
                for label, rows in results["baselines"].items():
                    bd = bd_rate([r["bytes_bpp"] for r in rr], [r["psnr"] for r in rr],
                                 [r["bytes_bpp"] for r in rows], [r["psnr"] for r in rows])
                    results["bd_rate_vs_" + ref]["baseline_" + label] = bd
                    print(f"  {label:12s} {bd:+7.2f} %")
    print(f"total {time.time() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
