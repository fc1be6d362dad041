# Issue 15 experiment, session 9 (2026-12-03), run as: see results/encoder/README.md.
# Paths are this machine's (/work/runs/val: the 24 validation images).
"""Experiment: per-image latent refinement through g_s (encoder-side only), then VBQ."""
import sys, time, glob, json
import numpy as np, torch
sys.path.insert(0, "/work/main")
from bac_ref.codec import Encoder, get_model
from bac_ref.training.train import GaussianVAE
from bac_ref.weights import load_npz_arrays
from bac_ref.bench.evaluate import bd_rate

torch.set_num_threads(1); torch.set_flush_denormal(True)
MODEL = "/work/main/pretrained_npz/bmshj2017-vae-n128.npz"
model = get_model(MODEL)
arrays, meta = load_npz_arrays(MODEL)
vae = GaussianVAE(model.N if hasattr(model, "N") else 128, model.M)
vae.load_effective_params({k: v.astype(np.float32) for k, v in arrays.items() if k.startswith(("g_a", "g_s"))})
for p in vae.parameters(): p.requires_grad_(False)

files = sorted(glob.glob("/work/runs/val/*"))[:: int(sys.argv[1]) if len(sys.argv) > 1 else 4]
LAMS = [0.125, 0.25, 0.5, 1.0, 2.0]
ITERS = [int(s) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 else [0, 10, 30, 100]
mode = sys.argv[3] if len(sys.argv) > 3 else "mse"
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 0.02
var = 0.001
res = {k: {"bpp": [], "psnr": []} for k in ITERS}
for f in files:
    enc = Encoder(f, model=model)
    H, W = enc.height, enc.width
    x = torch.as_tensor(enc.source.rows(0, H))[None]          # (1,3,H,W)
    mu0 = torch.as_tensor(enc.mu.astype(np.float32))[None]
    sg0 = torch.as_tensor(enc.sigma.astype(np.float32))[None]
    mu = mu0.clone().requires_grad_(True)
    ls = torch.log(sg0).clone().requires_grad_(mode == "elbo")
    opt = torch.optim.Adam([mu, ls] if mode == "elbo" else [mu], lr=lr)
    t0 = time.time(); it = 0
    for target in ITERS:
        while it < target:
            opt.zero_grad()
            z = mu + torch.exp(ls) * torch.randn_like(mu) if mode == "elbo" else mu
            with torch.autocast("cpu", dtype=torch.bfloat16):
                xh = vae.synthesis(z)
            xh = xh.float()[:, :, :H, :W]
            loss = ((xh - x) ** 2).sum() / (2 * var)
            if mode == "elbo":
                s2 = torch.exp(2 * ls)
                loss = loss + 0.5 * (mu ** 2 + s2 - 1 - 2 * ls).sum()
            elif mode == "map":
                loss = loss + 0.5 * (mu ** 2).sum()
            loss.backward(); opt.step(); it += 1
        m = mu.detach()[0].numpy().astype(np.float32)
        s = torch.exp(ls).detach()[0].numpy().astype(np.float32)
        enc._set_latents(m, s)
        for lam in LAMS:
            q = enc.symbols(lam)
            res[target]["bpp"].append(enc.rate(q)); res[target]["psnr"].append(enc.quality(q))
        print(f"{f.split('/')[-1]} it={target} t={time.time()-t0:.1f}s " +
              " ".join(f"{b:.3f}/{p:.2f}" for b, p in zip(res[target]['bpp'][-5:], res[target]['psnr'][-5:])), flush=True)
n = len(files)
def mean_curve(k):
    b = np.array(res[k]["bpp"]).reshape(n, -1).mean(0); p = np.array(res[k]["psnr"]).reshape(n, -1).mean(0)
    return b, p
b0, p0 = mean_curve(ITERS[0])
for k in ITERS:
    b, p = mean_curve(k)
    print(k, " ".join(f"{bb:.3f}/{pp:.2f}" for bb, pp in zip(b, p)), f"BD vs it0 {bd_rate(b0, p0, b, p):.2f}%")
json.dump(res, open(f"/work/runs/refine/res4_{mode}_{lr}.json", "w"))
