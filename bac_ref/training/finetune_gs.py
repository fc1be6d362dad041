"""Fine-tune the synthesis transform g_s on VBQ-quantized latents (issue 15, lever 4).

    python -m bac_ref.training.finetune_gs --model pretrained_npz/bmshj2017-vae-n128.npz \\
        --data ../shared/data/train --out runs/ftgs --minutes 60

The VAE's decoder was trained on posterior samples z ~ q(z | x); the codec feeds it
VBQ's grid points zhat = F^-1(xi) instead (SPEC.md §4-5), whose errors are larger
than sigma at low rates and are not Gaussian.  This script keeps g_a and the
coding prior fixed, so every file keeps its symbols and its size at every lambda,
and trains only g_s to reconstruct x from zhat:

    zhat_l = VBQ(g_a(x), lambda_l)       precomputed once, the codec's default (second pass)
    loss   = mean over the batch of  ||g_s(zhat_l) - x||^2 / D_l

with lambda_l drawn uniformly from a grid (default 2^-3 .. 2^7, about 0.05-2 bpp) and
D_l the starting decoder's mean squared error at lambda_l on the validation images.
Dividing by D_l weighs the lambdas as the gradient of sum_l log D_l does, i.e. as a
mean of PSNRs over the rate range: without it the coarse (low-rate) lambdas, whose
errors are largest, dominate and the fine-tune trades high-rate quality for
low-rate quality (measured, issue 15).

Only g_s changes, so a decoder of an older file made with the same g_a and prior
reads it with the new g_s (the model id changes, SPEC.md §6.3, so it must be told
which model to use).  Each latent crop carries a margin of latents around the
pixels the loss sees, so g_s is trained with the context it has in a whole image.

The zhat of every training image is stored as its grid integer j (SPEC.md §4.1,
uint16) and turned into floats by a per-channel lookup table of the prior's exact
F^-1 (``grid_lut``): about 2 bytes a latent and lambda.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

from ..entry import require_file, require_folder, run

DEFAULT_LAMS = tuple(2.0 ** e for e in range(-3, 8))     # 0.125 .. 128: 2 bpp .. 0.04 bpp


def grid_lut(prior, max_depth: int) -> np.ndarray:
    """(C, 2^(N+1)) float32: zhat of every grid integer j per channel (column 0 unused)."""
    from ..vbq import dequantize, grid_depth_index
    n_j = 1 << (max_depth + 1)
    j = np.arange(1, n_j, dtype=np.int64)
    depth, index = grid_depth_index(j, max_depth)
    c = prior.num_channels
    z = dequantize(np.broadcast_to(depth, (c, n_j - 1)), np.broadcast_to(index, (c, n_j - 1)),
                   prior, axis=0)
    return np.concatenate([np.zeros((c, 1)), z], axis=1).astype(np.float32)


def quantize_images(model, files, lams, max_depth: int, progress: bool = True):
    """Per image: (pixels uint8 (H, W, 3), j uint16 (L, M, h, w)), the codec's VBQ at each lambda."""
    from ..codec import Encoder
    from ..imageio import read_image, to_rgb_float
    out = []
    t0 = time.time()
    for i, f in enumerate(files):
        img = read_image(f)
        rgb = np.clip(np.round(to_rgb_float(img) * 255), 0, 255).astype(np.uint8)
        enc = Encoder(rgb, model, max_depth=max_depth)
        js = np.stack([enc.symbols(lam).j.astype(np.uint16) for lam in lams])
        out.append((rgb, js))
        if progress:
            print(f"\r  VBQ of {len(files)} images at {len(lams)} lambdas: {i + 1} "
                  f"({time.time() - t0:.0f} s)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return out


class LatentCropSampler:
    """Random (zhat, x) crops: an image, a lambda, a 16-aligned window.

    zhat: (B, M, c/16 + 2 margin, same) float32; x: (B, 3, c, c) in [0, 1], the pixels
    under the window's inner c/16 x c/16 latents.
    """

    def __init__(self, data, lut: np.ndarray, crop: int, margin: int, seed: int):
        import torch
        self.torch = torch
        self.cl = crop // 16
        self.margin = margin
        need = self.cl + 2 * margin
        self.data = [(x, j) for x, j in data if min(x.shape[0], x.shape[1]) // 16 >= need]
        if not self.data:
            raise SystemExit(f"no training image has {need * 16} x {need * 16} pixels")
        self.lut = torch.from_numpy(lut)                          # (M, 2^(N+1))
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int):
        torch = self.torch
        m, cl = self.margin, self.cl
        w_lat = cl + 2 * m
        zs, xs, ls = [], [], []
        for _ in range(size):
            x, js = self.data[self.rng.integers(len(self.data))]
            li = int(self.rng.integers(js.shape[0]))
            y0 = int(self.rng.integers(x.shape[0] // 16 - w_lat + 1))
            x0 = int(self.rng.integers(x.shape[1] // 16 - w_lat + 1))
            zs.append(js[li, :, y0:y0 + w_lat, x0:x0 + w_lat])
            px = x[16 * (y0 + m):16 * (y0 + m + cl), 16 * (x0 + m):16 * (x0 + m + cl)]
            xs.append(px.transpose(2, 0, 1))
            ls.append(li)
        j = torch.from_numpy(np.stack(zs).astype(np.int64))     # (B, M, w, w)
        ch = torch.arange(j.shape[1]).view(1, -1, 1, 1)
        zhat = self.lut[ch, j]                                  # (B, M, w, w) float32
        x = torch.from_numpy(np.stack(xs)).float() / 255.0
        return zhat, x, torch.tensor(ls)


def psnr_by_lambda(vae, data, lut) -> np.ndarray:
    """(L,) mean over images of the PSNR (uint8-rounded RGB) of g_s(zhat_l), float32."""
    import torch
    lut_t = torch.from_numpy(lut)
    n_l = data[0][1].shape[0]
    ps = np.zeros((len(data), n_l))
    with torch.no_grad():
        for i, (x, js) in enumerate(data):
            ref = torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32))
            h, w = x.shape[:2]
            ch = torch.arange(js.shape[1]).view(-1, 1, 1)
            for li in range(n_l):
                zhat = lut_t[ch, torch.from_numpy(js[li].astype(np.int64))][None]
                x_hat = vae.synthesis(zhat)[0, :, :h, :w]
                px = torch.round(x_hat.clamp(0, 1) * 255)
                mse = (px - ref).pow(2).mean().item()
                ps[i, li] = 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))
    return ps.mean(axis=0)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Fine-tune g_s on VBQ-quantized latents (g_a and the coding prior fixed).")
    p.add_argument("--model", required=True, help="a model file with its coding prior (.npz)")
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "train"),
                   help="training images (the split of bac_ref.training.train: every 25th file "
                        "is validation)")
    p.add_argument("--out", default=os.path.join("runs", "ftgs"), help="folder for model.npz and log.jsonl")
    p.add_argument("--lams", default=",".join(f"{v:g}" for v in DEFAULT_LAMS),
                   help="comma-separated lambdas to train on (uniform mixture)")
    p.add_argument("--images", type=int, default=0, help="use only this many training images (0: all)")
    p.add_argument("--val-images", type=int, default=8,
                   help="validation images for the periodic PSNR table (all 24 at the end)")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--minutes", type=float, help="stop after this wall-clock budget instead")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128, help="pixels the loss sees (multiple of 16)")
    p.add_argument("--margin", type=int, default=1, help="latents of context around the crop")
    p.add_argument("--lr", type=float, default=3e-5)
    p.add_argument("--lr-final", type=float, default=1e-6, help="cosine decay to this lr")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--max-depth", type=int, default=10)
    p.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    require_file(args.model, "model file (--model)")
    require_folder(args.data, "training images (--data)")
    if args.crop % 16 or args.crop <= 0:
        raise SystemExit("--crop must be a positive multiple of 16")
    lams = [float(v) for v in args.lams.split(",")]
    return _finetune(args, lams)


def _finetune(args, lams):
    import torch
    from ..model import load_model
    from ..codec import model_prior
    from ..weights import PARAM_LAYOUT, export_npz, load_npz_arrays
    from .release import image_files, split_train_val
    from .train import GaussianVAE

    started = time.time()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "log.jsonl")

    model = load_model(args.model)
    prior = model_prior(model)
    lut = grid_lut(prior, args.max_depth)
    train_files, val_files = split_train_val(image_files(args.data))
    if args.images:
        train_files = train_files[:: max(1, len(train_files) // args.images)][: args.images]
    print(f"{model}: {len(train_files)} training, {len(val_files)} validation images, "
          f"lambdas {lams}", flush=True)
    val = quantize_images(model, val_files, lams, args.max_depth)
    train = quantize_images(model, train_files, lams, args.max_depth)

    arrays, meta = load_npz_arrays(args.model)
    vae = GaussianVAE(model.N, model.M)
    vae.load_effective_params({k: v.astype(np.float32) for k, v in arrays.items()
                               if k.startswith(("g_a.", "g_s."))})
    vae.eval()
    params = list(vae.g_s.parameters())
    for q in vae.g_a.parameters():
        q.requires_grad_(False)

    def log(entry):
        entry["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    n_val = args.val_images or len(val)
    base_quick = psnr_by_lambda(vae, val[:n_val], lut)
    t_eval = time.time()
    base_full = psnr_by_lambda(vae, val, lut)
    t_eval = time.time() - t_eval                 # the final evaluation's cost, kept in the budget
    # D_l: the starting decoder's MSE at each lambda on pixels in [0, 1] (PSNR -> MSE)
    ref_mse = torch.tensor([10 ** (-p / 10) for p in base_full], dtype=torch.float32)
    print("start, validation PSNR by lambda: "
          + " ".join(f"{l:g}:{p:.2f}" for l, p in zip(lams, base_full)), flush=True)
    log({"step": 0, "lams": lams, "val_psnr_all": [round(v, 3) for v in base_full],
         "val_psnr_quick": [round(v, 3) for v in base_quick]})

    sampler = LatentCropSampler(train, lut, args.crop, args.margin, args.seed)
    opt = torch.optim.Adam(params, lr=args.lr)
    bf16 = args.precision == "bf16"
    steps = args.steps
    m16, c = 16 * args.margin, args.crop

    def lr_at(step):
        frac = min(step / max(steps, 1), 1.0)
        lr = args.lr_final + 0.5 * (args.lr - args.lr_final) * (1 + math.cos(math.pi * frac))
        return lr * min(1.0, (step + 1) / max(args.warmup, 1))

    def save(step, loss):
        weights = {k: arrays[k].astype(np.float32) for k in PARAM_LAYOUT}
        weights.update({k: v for k, v in vae.effective_params().items() if k.startswith("g_s.")})
        extra = {k: v for k, v in arrays.items() if k not in PARAM_LAYOUT}
        m = dict(meta)
        m["g_s_finetune"] = {
            "what": "g_s fine-tuned on VBQ-quantized latents (g_a and prior unchanged)",
            "base_model_id": model.model_id, "lams": lams, "steps": step,
            "batch": args.batch, "crop": args.crop, "margin": args.margin, "lr": args.lr,
            "lr_final": args.lr_final, "precision": args.precision,
            "training_images": len(train_files), "final_loss": loss}
        if "g_s_finetune" in meta:                  # a second fine-tune keeps the first's record
            m["g_s_finetune"]["previous"] = meta["g_s_finetune"]
        export_npz(os.path.join(args.out, "model.npz"), weights, m, extra=extra)

    step, ema, t0, timing = 0, None, time.time(), None
    while step < steps:
        if args.minutes is not None:
            if step == 50:
                timing = time.time()
            elif step == 250:
                per = (time.time() - timing) / 200
                left = 60 * args.minutes - (time.time() - started) - 2 * t_eval - 30
                steps = step + max(int(left / per * 0.97), 1)
                print(f"{per * 1e3:.0f} ms/step: training to step {steps}", flush=True)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        zhat, x, li = sampler.batch(args.batch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            x_hat = vae.synthesis(zhat)
        x_hat = x_hat.float()[:, :, m16:m16 + c, m16:m16 + c]
        mse = (x_hat - x).pow(2).mean(dim=(1, 2, 3))             # (B,)
        loss = (mse / ref_mse[li]).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        if step % 100 == 0:
            print(f"step {step} loss {ema:.4f} lr {lr_at(step):.2e} "
                  f"{(time.time() - t0) / 100:.3f} s/step", flush=True)
            t0 = time.time()
        if step % args.eval_every == 0 and step < steps:
            ps = psnr_by_lambda(vae, val[:n_val], lut)
            print(f"step {step}, quick validation gain by lambda (dB): "
                  + " ".join(f"{l:g}:{d:+.2f}" for l, d in zip(lams, ps - base_quick)), flush=True)
            log({"step": step, "loss": round(ema, 5),
                 "val_psnr_quick": [round(v, 3) for v in ps]})
            save(step, ema)
    full = psnr_by_lambda(vae, val, lut)
    print("end, validation gain by lambda (dB): "
          + " ".join(f"{l:g}:{d:+.2f}" for l, d in zip(lams, full - base_full)), flush=True)
    log({"step": step, "loss": round(ema, 5), "val_psnr_all": [round(v, 3) for v in full]})
    save(step, ema)
    print(f"wrote {os.path.join(args.out, 'model.npz')} after {step} steps, "
          f"{(time.time() - started) / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m bac_ref.training.finetune_gs"))
