# Issue 15 experiment, session 9 (2026-12-03), run as: see results/encoder/README.md.
# Paths are this machine's (/work/runs/val: the 24 validation images).
"""Context-aware VBQ pass (ICM): price depths by the entropy model's own contexts (SPEC §9.2)."""
import sys, time, glob, json
import numpy as np
sys.path.insert(0, "/work/main")
from bac_ref.codec import Encoder, get_model
from bac_ref import vbq
from bac_ref.bench.evaluate import bd_rate

MODEL = "/work/main/pretrained_npz/bmshj2017-vae-n128.npz"
model = get_model(MODEL)
step = int(sys.argv[1]); SWEEPS = [int(s) for s in sys.argv[2].split(",")]
ALPHA = float(sys.argv[3]) if len(sys.argv) > 3 else 0.5
files = sorted(glob.glob("/work/runs/val/*"))[::step]
LAMS = [0.125, 0.5, 2, 8, 32, 128]
N = 10

def contexts(D):
    """D (C, h, w) int -> ctx (C, h, w) per SPEC §9.2."""
    C, h, w = D.shape
    left = np.zeros_like(D); left[:, :, 1:] = D[:, :, :-1]
    up = np.zeros_like(D); up[:, 1:, :] = D[:, :-1, :]
    up[:, 0, :] = left[:, 0, :]
    ctxn = (left + up + 1) >> 1
    ctxn[:, 1:, 0] = D[:, :-1, 0]
    ctxn[:, 0, 0] = N + 1
    flat = D.reshape(C, -1)
    S = np.cumsum(flat, axis=1) - flat                      # sum before
    n = np.arange(h * w)[None, :]
    cc = np.where(n > 0, np.minimum(6, (4 * S + n) // np.maximum(2 * n, 1)) + 1, 0).reshape(C, h, w)
    return 8 * ctxn + cc, cc

def table(D, ctx, active):
    T = np.zeros((8 * (N + 2), N + 1))
    np.add.at(T, (ctx[active].ravel(), D[active].ravel()), 1)
    P = (T + ALPHA) / (T.sum(1, keepdims=True) + ALPHA * (N + 1))
    return -np.log2(P)

FIXED = None
def icm(E, D, lam, sweeps):
    """E (N+1, C, h, w) distortion terms (negative), D (C, h, w) start depths."""
    C, h, w = D.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    color = (xx + 2 * yy) % 3
    dgrid = np.arange(N + 1)[:, None]
    for s in range(sweeps):
        active = (D.reshape(C, -1).max(1) > 0)
        ctx, cc = contexts(D)
        L = table(D, ctx, active) if FIXED is None else FIXED
        for k in range(3):
            ys, xs = np.nonzero(color == k)
            # own cost: (N+1, C, n)
            own = L[ctx[:, ys, xs]].transpose(2, 0, 1)          # L[ctx, :] -> (C, n, N+1)
            cost = dgrid[:, :, None] + own                        # (N+1, C, n) via broadcast
            cost = np.broadcast_to(np.arange(N + 1)[:, None, None], own.shape) + own
            # right neighbour
            m = xs + 1 < w
            yr, xr = ys[m], xs[m] + 1
            upr = np.where(yr > 0, D[:, np.maximum(yr - 1, 0), xr], -1)   # (C, nm)
            dn = np.arange(N + 1)[:, None, None]
            upr_b = np.where(upr[None] >= 0, upr[None], dn)
            ctxn_r = (dn + upr_b + 1) >> 1
            ctx_r = 8 * ctxn_r + cc[:, yr, xr][None]
            cost[:, :, m] += L[ctx_r, D[:, yr, xr][None]]
            # down neighbour
            m = ys + 1 < h
            yd, xd = ys[m] + 1, xs[m]
            lf = np.where(xd > 0, D[:, yd, np.maximum(xd - 1, 0)], -1)
            lf_b = np.where(lf[None] >= 0, lf[None], dn)
            ctxn_d = np.where(lf[None] >= 0, (lf_b + dn + 1) >> 1, dn)
            ctx_d = 8 * ctxn_d + cc[:, yd, xd][None]
            cost[:, :, m] += L[ctx_d, D[:, yd, xd][None]]
            o = E[:, :, ys, xs] - lam * cost
            D[:, ys, xs] = np.argmax(o, axis=0)
        # channels whose latents are all 0 stay inactive automatically
    return D

res = {"base": {"bytes": [], "psnr": []}}
for s in SWEEPS: res[f"icm{s}"] = {"bytes": [], "psnr": []}
t0 = time.time()
for f in files:
    enc = Encoder(f, model=model)
    C, h, w = enc.mu.shape
    cand = vbq.Candidates(enc.mu.astype(np.float64), enc.sigma.astype(np.float64), enc.prior, N)
    E = np.empty((N + 1, C, h * w)); EH = np.empty((N + 1, C, h * w), bool)
    for c0, c1, p0, p1, eff, eff_hi in cand.chunks:
        E[:, c0:c1, p0:p1] = eff; EH[:, c0:c1, p0:p1] = eff_hi
    E4 = E.reshape(N + 1, C, h, w)
    for lam in LAMS:
        q0 = cand.symbols(lam)
        e = enc.encode(lam, q=q0)
        res["base"]["bytes"].append(len(e.data)); res["base"]["psnr"].append(enc.quality(q0))
        D = q0.depth.copy()
        done = 0
        if len(sys.argv) > 4 and sys.argv[4] == "fixed":
            _c, _ = contexts(D); FIXED = table(D, _c, D.reshape(C, -1).max(1) > 0)
        for s in SWEEPS:
            D = icm(E4, D, lam, s - done); done = s
            Df = D.reshape(C, -1)
            hi = np.take_along_axis(EH, Df[None], 0)[0]
            q = cand._result(Df, hi)
            e = enc.encode(lam, q=q)
            res[f"icm{s}"]["bytes"].append(len(e.data)); res[f"icm{s}"]["psnr"].append(enc.quality(q))
    print(f.split("/")[-1], f"{time.time()-t0:.0f}s", " | ".join(
        k + ": " + " ".join(f"{b*8/(enc.height*enc.width):.3f}/{p:.2f}" for b, p in zip(v['bytes'][-6:], v['psnr'][-6:])) for k, v in res.items()), flush=True)
n = len(files)
for k, v in res.items():
    per = []
    for i in range(n):
        sl = slice(i * 6, i * 6 + 6)
        per.append(bd_rate(np.array(res['base']['bytes'][sl]), np.array(res['base']['psnr'][sl]),
                           np.array(v['bytes'][sl]), np.array(v['psnr'][sl])))
    dr = np.array(v['bytes']).reshape(n, -1).sum(0) / np.array(res['base']['bytes']).reshape(n, -1).sum(0)
    dp = np.array(v['psnr']).reshape(n, -1).mean(0) - np.array(res['base']['psnr']).reshape(n, -1).mean(0)
    print(k, "per-image BD mean %.2f%%" % np.nanmean(per), "rate ratio by lam", np.round(dr, 3), "dPSNR", np.round(dp, 3))
json.dump(res, open(f"/work/runs/refine/res7_a{ALPHA}_{sys.argv[4]}.json", "w"))
