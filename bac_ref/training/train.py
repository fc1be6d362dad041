"""Training the Gaussian VAE (optional extra ``train``: PyTorch).

The model is Balle et al. (2017)'s transform pair trained as a plain
Gaussian VAE, exactly as in the VBQ paper (Yang, Bamler & Mandt 2020, Sec. 5):

    g_a : x -> conv9x9/4 -> GDN -> conv5x5/2 -> GDN -> conv5x5/2 -> (mu, log sigma^2)
    g_s : z -> convT5x5/2 -> IGDN -> convT5x5/2 -> IGDN -> convT9x9/4 -> x_hat

Loss (per image, in nats): the negative ELBO with one reparameterised sample

    L = sum_pixels (x - g_s(z))^2 / (2 v)  +  KL( N(mu, sigma^2) || N(0, I) ),
    z = mu + sigma * eps,  eps ~ N(0, I),

with v the likelihood variance (paper: 0.001) on pixels in [0, 1].  The
additive constant of the Gaussian likelihood is dropped.

GDN parameters use Balle's reparameterisation (as tensorflow-compression
and CompressAI do): beta and gamma are stored as square roots plus a small
pedestal and are bounded from below, which keeps training stable.  The
exported .npz holds the *effective* beta and gamma, so the NumPy forward
pass (bac_ref.g_a / bac_ref.g_s) needs no knowledge of the trick.

Run ``python -m bac_ref.training.train --help``.  Training is resumable: it writes a
full checkpoint (weights + Adam state) and, every ``--export-every`` steps,
the NumPy model file; ``--resume`` accepts either.  ``--device cuda`` trains
on a GPU (crops are cut on the device); ``--minutes`` gives a wall-clock
budget instead of a step count: after a short timing phase the step count
that fits the budget is fixed, and the cosine schedule runs to it.

Precision: the transforms run under bfloat16 autocast by default
(``--precision bf16``; parameters, Adam state, sampling and loss stay
float32).  On CPUs with AMX-bf16 a step is 2-3x faster than in float32, and
a 2,000-step run from scratch learned as well as its float32 twin
(results/training/precision_check.md).  Denormals are flushed to zero: a
freshly initialised model otherwise ran 10x slower in float32.

Capacity: ``--resume SMALL.npz --widen --n 256 --m 256`` starts a wider
model from a trained narrower one, computing the same function at first
(:func:`widen_params`), so extra filters are trained from where the narrow
model is rather than from scratch.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - exercised only without torch
    raise ImportError(
        "bac_ref.training.train needs PyTorch: pip install 'bac_ref[train]' "
        "(CPU wheel: pip install torch==2.13.0)") from exc

from .release import image_files, split_train_val  # noqa: E402,F401 (split: also for callers)
from ..entry import require_folder, run  # noqa: E402
from ..weights import export_npz  # noqa: E402

# ---------------------------------------------------------------------------
# GDN with Balle's reparameterisation
# ---------------------------------------------------------------------------
_REPARAM_OFFSET = 2.0 ** -18
_PEDESTAL = _REPARAM_OFFSET ** 2
_BETA_MIN = 1e-6


class _LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when it pushes x upwards."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x)
        ctx.bound = bound
        return x.clamp_min(bound)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        pass_through = (x >= ctx.bound) | (grad < 0)
        return grad * pass_through.to(grad.dtype), None


class GDN(nn.Module):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)  (inverse: multiply)."""

    def __init__(self, channels: int, inverse: bool = False):
        super().__init__()
        self.inverse = inverse
        self.beta_p = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        self.gamma_p = nn.Parameter(
            torch.sqrt(0.1 * torch.eye(channels) + _PEDESTAL))

    def effective(self):
        beta = _LowerBound.apply(self.beta_p, math.sqrt(_BETA_MIN + _PEDESTAL))
        gamma = _LowerBound.apply(self.gamma_p, _REPARAM_OFFSET)
        return beta * beta - _PEDESTAL, gamma * gamma - _PEDESTAL

    def set_effective(self, beta, gamma):
        with torch.no_grad():
            self.beta_p.copy_(torch.sqrt(torch.as_tensor(beta) + _PEDESTAL))
            self.gamma_p.copy_(torch.sqrt(
                torch.clamp(torch.as_tensor(gamma), min=0.0) + _PEDESTAL))

    def forward(self, x):
        beta, gamma = self.effective()
        c = gamma.shape[0]
        norm = F.conv2d(x * x, gamma.view(c, c, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


class GaussianVAE(nn.Module):
    """Balle-2017 transforms as a Gaussian VAE (see the module docstring)."""

    def __init__(self, n: int = 128, m: int = 128):
        super().__init__()
        self.n, self.m = n, m
        self.g_a = nn.ModuleDict({
            "conv0": nn.Conv2d(3, n, 9, stride=4, padding=4),
            "gdn0": GDN(n),
            "conv1": nn.Conv2d(n, n, 5, stride=2, padding=2),
            "gdn1": GDN(n),
            "conv2": nn.Conv2d(n, 2 * m, 5, stride=2, padding=2),
        })
        self.g_s = nn.ModuleDict({
            "deconv0": nn.ConvTranspose2d(m, n, 5, stride=2, padding=2, output_padding=1),
            "igdn0": GDN(n, inverse=True),
            "deconv1": nn.ConvTranspose2d(n, n, 5, stride=2, padding=2, output_padding=1),
            "igdn1": GDN(n, inverse=True),
            "deconv2": nn.ConvTranspose2d(n, 3, 9, stride=4, padding=4, output_padding=3),
        })
        # Start with small log-variances so the posterior is not collapsed at init.
        with torch.no_grad():
            self.g_a["conv2"].bias[m:].fill_(-4.0)

    def analysis(self, x):
        """x: (B, 3, H, W) in [0, 1], H and W multiples of 16 -> (mu, logvar)."""
        for name in ("conv0", "gdn0", "conv1", "gdn1", "conv2"):
            x = self.g_a[name](x)
        return x[:, : self.m], x[:, self.m:]

    def synthesis(self, z):
        for name in ("deconv0", "igdn0", "deconv1", "igdn1", "deconv2"):
            z = self.g_s[name](z)
        return z

    # -- export / import of the effective parameters (names: bac_ref.weights) --
    def effective_params(self) -> dict:
        out = {}
        for part in ("g_a", "g_s"):
            for name, mod in getattr(self, part).items():
                key = f"{part}.{name}"
                if isinstance(mod, GDN):
                    beta, gamma = mod.effective()
                    out[key + ".beta"] = beta.detach().cpu().numpy()
                    out[key + ".gamma"] = gamma.detach().cpu().numpy()
                else:
                    out[key + ".weight"] = mod.weight.detach().cpu().numpy()
                    out[key + ".bias"] = mod.bias.detach().cpu().numpy()
        return {k: v.astype(np.float32) for k, v in out.items()}

    def load_effective_params(self, params: dict) -> None:
        for part in ("g_a", "g_s"):
            for name, mod in getattr(self, part).items():
                key = f"{part}.{name}"
                if isinstance(mod, GDN):
                    mod.set_effective(params[key + ".beta"], params[key + ".gamma"])
                else:
                    with torch.no_grad():
                        mod.weight.copy_(torch.as_tensor(params[key + ".weight"]))
                        mod.bias.copy_(torch.as_tensor(params[key + ".bias"]))


def neg_elbo(model, x, variance, generator=None, bf16=False):
    """Return (loss, kl, mse) for a batch; loss and kl in nats per image.

    With ``bf16`` the two transforms run under bfloat16 autocast (AMX on
    recent x86 CPUs, tensor cores on GPUs); the sampling, the loss and the
    parameters stay float32.
    """
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        mu, logvar = model.analysis(x)
    mu, logvar = mu.float(), logvar.float()
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + torch.exp(0.5 * logvar) * eps
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        x_hat = model.synthesis(z)
    x_hat = x_hat.float()
    sq = (x - x_hat).pow(2)
    nll = sq.sum(dim=(1, 2, 3)) / (2.0 * variance)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3))
    return (nll + kl).mean(), kl.mean(), sq.mean()


def widen_params(params: dict, n: int, m: int, seed: int = 0, scale: float = 1e-3) -> dict:
    """Widen a trained model's effective parameters to N = n, M = m, keeping its function.

    New channels get small random weights (N(0, scale^2)) *into* them and zero
    weights *out of* them, so the old channels compute exactly what they did
    while the new ones still receive gradient; new GDN rows and columns leave
    the old channels' normaliser unchanged (beta 1, gamma 0.1 on the new
    diagonal, 0 across); new latent channels start at mu ~ 0 and
    log sigma^2 = 0, i.e. at about zero KL.  The mean reconstruction g_s(mu)
    of the widened model equals the original's up to float rounding.
    """
    rng = np.random.default_rng(seed)
    n0 = params["g_a.gdn0.beta"].shape[0]
    m0 = params["g_s.deconv0.weight"].shape[0]
    if n < n0 or m < m0:
        raise ValueError(f"cannot narrow N={n0}, M={m0} to N={n}, M={m}")
    out = {}

    def conv(w, rows_old, rows_new, cols_old, cols_new, transposed=False, new_rows_zero=False):
        # w: (out, in, k, k), or (in, out, k, k) for transposed convolutions.
        if transposed:
            w = w.transpose(1, 0, 2, 3)
        k = w.shape[2:]
        big = np.zeros((rows_old + rows_new, cols_old + cols_new) + k, np.float32)
        if not new_rows_zero:
            big[rows_old:] = rng.normal(0.0, scale, big[rows_old:].shape)
        big[:rows_old, :cols_old] = w          # old outputs ignore the new inputs
        return big.transpose(1, 0, 2, 3) if transposed else big

    def gdn(beta, gamma, c):
        b = np.ones(c, np.float32)
        g = np.zeros((c, c), np.float32)
        c0 = beta.shape[0]
        b[:c0], g[:c0, :c0] = beta, gamma
        g[np.arange(c0, c), np.arange(c0, c)] = 0.1
        return b, g

    def bias(b, c):
        big = np.zeros(c, np.float32)
        big[:b.shape[0]] = b
        return big

    out["g_a.conv0.weight"] = conv(params["g_a.conv0.weight"], n0, n - n0, 3, 0)
    out["g_a.conv0.bias"] = bias(params["g_a.conv0.bias"], n)
    out["g_a.conv1.weight"] = conv(params["g_a.conv1.weight"], n0, n - n0, n0, n - n0)
    out["g_a.conv1.bias"] = bias(params["g_a.conv1.bias"], n)
    w2, b2 = params["g_a.conv2.weight"], params["g_a.conv2.bias"]
    mu_w = conv(w2[:m0], m0, m - m0, n0, n - n0)
    lv_w = conv(w2[m0:], m0, m - m0, n0, n - n0, new_rows_zero=True)
    out["g_a.conv2.weight"] = np.concatenate([mu_w, lv_w])
    out["g_a.conv2.bias"] = np.concatenate([bias(b2[:m0], m), bias(b2[m0:], m)])
    out["g_s.deconv0.weight"] = conv(params["g_s.deconv0.weight"], n0, n - n0, m0, m - m0, True)
    out["g_s.deconv0.bias"] = bias(params["g_s.deconv0.bias"], n)
    out["g_s.deconv1.weight"] = conv(params["g_s.deconv1.weight"], n0, n - n0, n0, n - n0, True)
    out["g_s.deconv1.bias"] = bias(params["g_s.deconv1.bias"], n)
    out["g_s.deconv2.weight"] = conv(params["g_s.deconv2.weight"], 3, 0, n0, n - n0, True)
    out["g_s.deconv2.bias"] = params["g_s.deconv2.bias"].astype(np.float32)
    for name in ("g_a.gdn0", "g_a.gdn1", "g_s.igdn0", "g_s.igdn1"):
        out[name + ".beta"], out[name + ".gamma"] = gdn(
            params[name + ".beta"], params[name + ".gamma"], n)
    return out


# ---------------------------------------------------------------------------
# Data: random crops and flips from ../shared/data/train (never Kodak)
# ---------------------------------------------------------------------------
def list_images(root: str):
    files = image_files(root)
    if not files:
        raise SystemExit(f"no training images under {root}")
    return files


def load_rgb(path: str) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class CropSampler:
    """Random crops with random horizontal and vertical flips.

    The images live on ``device`` as uint8 (C, H, W) tensors, so on a GPU
    the crops are cut there; positions come from a seeded NumPy generator.
    """

    def __init__(self, images, crop: int, seed: int, device: str = "cpu"):
        self.images = [torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1))).to(device)
                       for im in images if min(im.shape[:2]) >= crop]
        self.crop = crop
        self.rng = np.random.default_rng(seed)

    def batch(self, size: int) -> "torch.Tensor":
        c = self.crop
        patches = []
        for _ in range(size):
            im = self.images[self.rng.integers(len(self.images))]
            y = self.rng.integers(im.shape[1] - c + 1)
            x = self.rng.integers(im.shape[2] - c + 1)
            patch = im[:, y:y + c, x:x + c]
            flips = [d for d, u in ((2, self.rng.random()), (1, self.rng.random())) if u < 0.5]
            patches.append(torch.flip(patch, flips) if flips else patch)
        return torch.stack(patches).float() / 255.0


def val_crops(images, crop: int = 256) -> np.ndarray:
    """Centre crops of the validation images, fixed forever."""
    out = []
    for im in images:
        h, w = im.shape[:2]
        c = min(crop, h, w) // 16 * 16
        y, x = (h - c) // 2, (w - c) // 2
        out.append(im[y:y + c, x:x + c].transpose(2, 0, 1) / 255.0)
    return out


@torch.no_grad()
def evaluate(model, crops, device="cpu"):
    """Mean-reconstruction PSNR (dB, on uint8-rounded pixels) and KL in bits/pixel."""
    psnrs, kls = [], []
    for c in crops:
        x = torch.as_tensor(np.ascontiguousarray(c), dtype=torch.float32, device=device)[None]
        mu, logvar = model.analysis(x)
        x_hat = model.synthesis(mu).clamp(0, 1)
        a = torch.round(x * 255)
        b = torch.round(x_hat * 255)
        mse = (a - b).pow(2).mean().item()
        psnrs.append(10 * math.log10(255.0 ** 2 / max(mse, 1e-10)))
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum().item()
        kls.append(kl / math.log(2) / (x.shape[2] * x.shape[3]))
    return float(np.mean(psnrs)), float(np.mean(kls))


# ---------------------------------------------------------------------------
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "train"))
    p.add_argument("--out", default="runs/vae", help="checkpoint directory")
    p.add_argument("--export", default="runs/vae/model.npz")
    p.add_argument("--resume", help="a .pt checkpoint or a .npz model file")
    p.add_argument("--steps", type=int, default=100_000, help="total step count to reach")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock budget from start-up: replaces --steps by the step count "
                        "that fits, measured after --timing-steps steps")
    p.add_argument("--timing-steps", type=int, default=300)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--m", type=int, default=128)
    p.add_argument("--widen", action="store_true",
                   help="with --resume FILE.npz of a narrower model: widen it to --n/--m, "
                        "keeping its function (new channels start silent)")
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                   help="bf16: bfloat16 autocast for the transforms (2-3x faster on CPUs with "
                        "AMX, parameters and loss stay float32); fp32: plain float32")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--lr-final", type=float, default=None,
                   help="cosine-decay the learning rate to this value at --steps")
    p.add_argument("--lr-from-step", default="0",
                   help="step at which the cosine schedule starts (default 0; 'resume' = the "
                        "step resumed from, for a fine-tune with a schedule of its own)")
    p.add_argument("--warmup", type=int, default=0,
                   help="linear learning-rate warm-up over this many steps after the start")
    p.add_argument("--variance", type=float, default=0.001)
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--log-every", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=2000)
    p.add_argument("--export-every", type=int, default=5000)
    args = p.parse_args(argv)
    require_folder(args.data, "training images (--data)")
    # Denormals made a fresh model's float32 CPU steps 10x slower: flush them while
    # training, and restore the default (the flag is process-wide) when done.
    torch.set_flush_denormal(True)
    try:
        return _train(args)
    finally:
        torch.set_flush_denormal(False)


def _train(args):

    started = time.time()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "train_log.jsonl")

    files = list_images(args.data)
    train_files, val_files = split_train_val(files)
    print(f"{len(train_files)} training and {len(val_files)} validation images", flush=True)
    train_imgs = [load_rgb(f) for f in train_files]
    crops = val_crops([load_rgb(f) for f in val_files])

    model = GaussianVAE(args.n, args.m).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step = 0
    history = []
    if args.resume:
        if args.resume.endswith(".pt"):
            ck = torch.load(args.resume, weights_only=False, map_location=device)
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            step, history = ck["step"], ck.get("history", [])
        else:
            from ..weights import load_npz_arrays
            arrays, meta = load_npz_arrays(args.resume)
            arrays = {k: v.astype(np.float32) for k, v in arrays.items()  # wip files: float16
                      if k.startswith(("g_a.", "g_s."))}
            if args.widen:
                arrays = widen_params(arrays, args.n, args.m, seed=args.seed)
                print(f"widened N={meta.get('N')}, M={meta.get('M')} to N={args.n}, "
                      f"M={args.m}", flush=True)
            model.load_effective_params(arrays)
            step = int(meta.get("steps", 0))
            history = list(meta.get("history", []))
        print(f"resumed from {args.resume} at step {step}", flush=True)
    start_step = step
    lr_from = start_step if args.lr_from_step == "resume" else int(args.lr_from_step)

    sampler = CropSampler(train_imgs, args.crop, seed=args.seed + step, device=device)
    gen = torch.Generator(device=device).manual_seed(args.seed + 7919 * step)

    def learning_rate(step):
        lr = args.lr
        if args.lr_final is not None:
            frac = min(max(step - lr_from, 0) / max(args.steps - lr_from, 1), 1.0)
            lr = args.lr_final + 0.5 * (args.lr - args.lr_final) * (1 + math.cos(math.pi * frac))
        if step - start_step < args.warmup:
            lr *= (step - start_step + 1) / args.warmup
        return lr

    def save(final_loss):
        ck = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
              "history": history, "args": vars(args)}
        tmp = os.path.join(args.out, "ckpt.pt.tmp")
        torch.save(ck, tmp)
        os.replace(tmp, os.path.join(args.out, "ckpt.pt"))
        meta = {
            "architecture": "bmshj2017-gaussian-vae",
            "N": args.n, "M": args.m,
            "g_a": "conv9x9/4, GDN, conv5x5/2, GDN, conv5x5/2 -> (mu, log sigma^2)",
            "g_s": "convT5x5/2, IGDN, convT5x5/2, IGDN, convT9x9/4 -> RGB",
            "training_data": [os.path.relpath(f, args.data) for f in train_files],
            "validation_data": [os.path.relpath(f, args.data) for f in val_files],
            "likelihood_variance": args.variance, "batch": args.batch, "crop": args.crop,
            "precision": args.precision,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "steps": step, "final_loss": final_loss, "history": history,
        }
        export_npz(args.export, model.effective_params(), meta)
        print(f"step {step}: checkpoint and {args.export} written", flush=True)

    if args.resume:
        vpsnr, vkl = evaluate(model, crops, device)
        print(f"VALID at the start (step {step}): mean-recon PSNR {vpsnr:.2f} dB, "
              f"KL {vkl:.3f} bpp", flush=True)
    def validate():
        vpsnr, vkl = evaluate(model, crops, device)
        entry = {"step": step, "val_psnr_mean_recon": round(vpsnr, 3),
                 "val_kl_bpp": round(vkl, 4), "train_loss_per_px": round(ema["loss"], 5),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        history.append(entry)
        with open(log_path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        print(f"VALID step {step}: mean-recon PSNR {vpsnr:.2f} dB, KL {vkl:.3f} bpp", flush=True)

    t0, ema = time.time(), None
    timing_from = None
    if args.minutes is not None:
        args.steps = step + 10 ** 9  # fixed after the timing phase
    while step < args.steps:
        if args.minutes is not None and time.time() - started > 60 * args.minutes:
            print(f"step {step}: wall-clock budget spent, stopping", flush=True)
            args.steps = step
            if not history or history[-1]["step"] != step:
                validate()
            save(ema["loss"])
            break
        if args.minutes is not None and step - start_step == args.timing_steps:
            timing_from = (time.time(), step)
        if (args.minutes is not None and timing_from is not None
                and step - timing_from[1] == args.timing_steps):
            # Fix the step count that fits the budget (keeping 5 % for the exports).
            per_step = (time.time() - timing_from[0]) / args.timing_steps
            left = 60 * args.minutes * 0.95 - (time.time() - started)
            args.steps = step + max(int(left / per_step), 1)
            print(f"budget: {per_step * 1e3:.1f} ms/step, training to step {args.steps}", flush=True)
        for g in opt.param_groups:
            g["lr"] = learning_rate(step)
        x = sampler.batch(args.batch)
        loss, kl, mse = neg_elbo(model, x, args.variance, gen, bf16=args.precision == "bf16")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        if not torch.isfinite(loss) or not torch.isfinite(gnorm):
            print(f"step {step}: non-finite loss/gradient, skipped", flush=True)
            continue
        opt.step()
        step += 1
        pix = args.crop * args.crop
        rec = {"loss": loss.item() / pix, "kl_bpp": kl.item() / pix / math.log(2),
               "psnr": 10 * math.log10(1.0 / max(mse.item(), 1e-10))}
        ema = rec if ema is None else {k: 0.98 * ema[k] + 0.02 * rec[k] for k in rec}
        if step % args.log_every == 0:
            dt = (time.time() - t0) / args.log_every
            t0 = time.time()
            print(f"step {step} loss/px {ema['loss']:.4f} KL {ema['kl_bpp']:.3f} bpp "
                  f"PSNR(sample) {ema['psnr']:.2f} dB  {dt:.3f} s/step", flush=True)
        if step % args.eval_every == 0 or step == args.steps:
            validate()
        if step % args.export_every == 0 or step == args.steps:
            save(ema["loss"])
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "python -m bac_ref.training.train"))
