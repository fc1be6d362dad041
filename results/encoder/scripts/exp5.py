# Issue 15 experiment, session 9 (2026-12-03), run as: see results/encoder/README.md.
# Paths are this machine's (/work/runs/val: the 24 validation images).
"""VBQ with a decoder-curvature (Laplace) sigma instead of / mixed with the encoder's."""
import sys, time, glob, json
import numpy as np, torch
sys.path.insert(0, "/work/main")
from bac_ref.codec import Encoder, get_model
from bac_ref.training.train import GaussianVAE
from bac_ref.weights import load_npz_arrays
from bac_ref.bench.evaluate import bd_rate

torch.set_num_threads(2); torch.set_flush_denormal(True)
MODEL = sys.argv[3] if len(sys.argv) > 3 else "/work/main/pretrained_npz/bmshj2017-vae-n128.npz"
model = get_model(MODEL)
arrays, meta = load_npz_arrays(MODEL)
vae = GaussianVAE(model.N, model.M)
vae.load_effective_params({k: v.astype(np.float32) for k, v in arrays.items() if k.startswith(("g_a", "g_s"))})
for p in vae.parameters(): p.requires_grad_(False)
step = int(sys.argv[1]); K = int(sys.argv[2])
files = sorted(glob.glob("/work/runs/val/*"))[::step]
LAMS = [float(v) for v in 2.0 ** np.linspace(-3, 9, 13)]
VAR = 0.001
variants = ["enc", "a75", "geo", "a25", "lap"]
res = {k: {"bpp": [], "psnr": []} for k in variants}
t0 = time.time()
gen = torch.Generator().manual_seed(0)
for f in files:
    enc = Encoder(f, model=model)
    H, W = enc.height, enc.width
    mu0, sg = enc.mu.astype(np.float32), enc.sigma.astype(np.float32)
    z = torch.as_tensor(mu0)[None].requires_grad_(True)
    xh = vae.synthesis(z)[:, :, :H, :W]
    diag = torch.zeros_like(z)
    for k in range(K):
        v = torch.randint(0, 2, xh.shape, generator=gen).float() * 2 - 1
        g, = torch.autograd.grad(xh, z, v, retain_graph=True)
        diag += g * g
    diag = (diag / K)[0].numpy()
    lap = 1 / np.sqrt(diag / VAR + 1.0)
    lapn = 1 / np.sqrt(diag / VAR + 1e-6)
    sig = {"enc": sg, "lap": lap, "geo": np.sqrt(sg * lap), "a75": sg**0.75 * lap**0.25, "a25": sg**0.25 * lap**0.75}
    r = np.log(lap / sg)
    print(f.split('/')[-1], f"log(lap/enc) mean {r.mean():.2f} sd {r.std():.2f} corr {np.corrcoef(np.log(lap).ravel(), np.log(sg).ravel())[0,1]:.2f}", flush=True)
    for name in variants:
        enc._set_latents(mu0, sig[name].astype(np.float32))
        for lam in LAMS:
            q = enc.symbols(lam)
            res[name]["bpp"].append(enc.rate(q)); res[name]["psnr"].append(enc.quality(q))
n = len(files)
def mean_curve(k):
    return np.array(res[k]["bpp"]).reshape(n, -1).mean(0), np.array(res[k]["psnr"]).reshape(n, -1).mean(0)
b0, p0 = mean_curve("enc")
for k in variants:
    b, p = mean_curve(k)
    # bd per image
    per = [bd_rate(np.array(res['enc']['bpp'][i*13:i*13+13]), np.array(res['enc']['psnr'][i*13:i*13+13]),
                   np.array(res[k]['bpp'][i*13:i*13+13]), np.array(res[k]['psnr'][i*13:i*13+13])) for i in range(n)]
    print(k, " ".join(f"{bb:.3f}/{pp:.2f}" for bb, pp in zip(b, p)), f"BD(mean curve) {bd_rate(b0, p0, b, p):.2f}%  per-image mean {np.nanmean(per):.2f}%")
json.dump(res, open(f"/work/runs/refine/res5_lap_K{K}.json", "w"))
