"""Build a shippable model file: trained weights + the fitted coding prior.

    python -m bac_ref.training.release --weights runs/vae/model.npz \\
        --out pretrained_npz/bmshj2017-vae-n128.npz

The VAE is trained with an N(0, I) prior, but VBQ codes in the CDF space of
an *empirical* prior fitted per channel to posterior means (the paper, Sec.
5; SPEC.md §4.4).  This script runs the NumPy analysis transform on training
images (never Kodak), fits that prior with :func:`bac_ref.training.prior_fit.fit_empirical_prior`
and writes weights, metadata and ``prior.*`` arrays into one .npz, then
records its sha256 in the folder's MANIFEST.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from ..entry import require_file, require_folder, run
from ..imageio import read_image, to_rgb_float
from ..model import load_model
from .prior_fit import fit_empirical_prior
from ..weights import PARAM_LAYOUT, export_npz, load_npz_arrays


IMAGE_EXTENSIONS = ("png", "jpg", "webp")


def image_files(root: str) -> list:
    """Every *.png / *.jpg / *.webp below ``root``, sorted by path, Kodak left out."""
    import glob
    files = sorted(f for ext in IMAGE_EXTENSIONS
                   for f in glob.glob(os.path.join(root, "**", "*." + ext), recursive=True))
    return [f for f in files if "kodak" not in f.lower()]


def split_train_val(files, every: int = 25):
    """Deterministic split (bac_ref.training.train's): every 25th file (sorted by path) is validation."""
    val = [f for i, f in enumerate(files) if i % every == 0]
    train = [f for i, f in enumerate(files) if i % every != 0]
    return train, val


def training_images(root: str):
    """The training split of bac_ref.training.train (sorted; every 25th file is validation)."""
    return split_train_val(image_files(root))[0]


def posterior_means(model, files, progress=True):
    mus = []
    for i, f in enumerate(files):
        x = to_rgb_float(read_image(f))
        mu, _ = model.analysis(x)
        mus.append(mu.reshape(mu.shape[0], -1))
        if progress:
            print(f"\r  posterior means: {i + 1}/{len(files)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return np.concatenate(mus, axis=1)              # (M, n)


def main(argv=None):
    p = argparse.ArgumentParser(description="Build a model file with its fitted coding prior.")
    p.add_argument("--weights", default="runs/vae/model.npz")
    p.add_argument("--out", default="pretrained_npz/bmshj2017-vae-n128.npz")
    p.add_argument("--data", default=os.path.join("..", "shared", "data", "train"))
    p.add_argument("--images", type=int, default=120, help="training images to fit on")
    p.add_argument("--method", default="kde", choices=["kde", "balle2018"])
    p.add_argument("--kodak", default=os.path.join("..", "shared", "data", "kodak"),
                   help="for the model card's Kodak figure only (never used for fitting)")
    p.add_argument("--notes", metavar="FILE",
                   help="Markdown for the model card, after the summary (e.g. the schedule used)")
    p.add_argument("--keep-prior", action="store_true",
                   help="keep the coding prior that --weights already holds instead of fitting "
                        "one (a g_s fine-tune, bac_ref.training.finetune_gs, was trained on the "
                        "symbols of that prior)")
    args = p.parse_args(argv)
    require_file(args.weights, "model weights (--weights)")
    require_folder(args.data, "training images (--data)")
    notes = ""
    if args.notes:
        with open(args.notes, encoding="utf-8") as fh:        # read first: fail before the work
            notes = fh.read()

    t0 = time.time()
    arrays, meta = load_npz_arrays(args.weights)
    weights = {k: arrays[k] for k in PARAM_LAYOUT}
    meta = dict(meta)
    if args.keep_prior:
        extra = {k: v for k, v in arrays.items() if k.startswith("prior.")}
        if not extra or "prior" not in meta:
            raise SystemExit(f"{args.weights} holds no coding prior to keep (--keep-prior)")
    else:
        model = load_model(args.weights)
        files = training_images(args.data)
        files = files[:: max(1, len(files) // args.images)][: args.images]
        mu = posterior_means(model, files)
        prior = fit_empirical_prior(mu, axis=0, method=args.method)
        meta["prior"] = {"method": args.method, "fitted_on": "posterior means of training images",
                         "images": [os.path.relpath(f, args.data) for f in files],
                         "samples_per_channel": int(mu.shape[1])}
        extra = prior.to_arrays("prior.")
    digest = export_npz(args.out, weights, meta, extra=extra)
    os.chmod(args.out, 0o644)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB, sha256 {digest[:16]}...) "
          f"in {time.time() - t0:.0f} s")
    card = write_card(args.out, meta, args.kodak, notes)
    print(f"wrote {card}")
    return 0


def _training_lines(meta: dict) -> list:
    """The card's training bullet: one line, or one sub-bullet per phase (meta["phases"])."""
    head = (f"* Training: negative ELBO, Gaussian likelihood variance {meta.get('likelihood_variance')} "
            f"on pixels in [0, 1], N(0, I) prior, Adam, random crops with flips; "
            f"**{meta.get('steps')} steps** (`python -m bac_ref.training.train`)")
    phases = meta.get("phases")
    if not phases:
        return [head + f", batch {meta.get('batch')} of {meta.get('crop')}x{meta.get('crop')} "
                "crops, PyTorch 2.13 CPU, 1-2 threads."]
    return [head + f", in {len(phases)} phases:"] + [
        f"  * steps {ph['from']:,} to {ph['to']:,}: batch {ph['batch']} of {ph['crop']}x{ph['crop']} "
        f"crops; {ph['hardware']}; {ph['data']}." for ph in phases]


def _finetune_lines(meta: dict) -> list:
    """The card's bullets for a decoder fine-tuned on VBQ's symbols (meta["g_s_finetune"]).

    A fine-tune of a fine-tuned model keeps the earlier record under "previous"; the card
    lists them oldest first."""
    chain, ft = [], meta.get("g_s_finetune")
    while ft:
        chain.append(ft)
        ft = ft.get("previous")
    lines = []
    for i, ft in enumerate(reversed(chain)):
        lams = ", ".join(f"{v:g}" for v in ft["lams"])
        head = ("The decoder g_s was then fine-tuned on VBQ-quantized latents" if i == 0 else
                "Then fine-tuned again, starting from that decoder")
        lines.append(
            f"* **{head}** (`python -m bac_ref.training.finetune_gs`): the codec's symbols "
            f"(second pass, SPEC.md §5.4) of {ft['training_images']} training images at lambda "
            f"{lams}, {ft['steps']:,} steps of batch {ft['batch']} ({ft['crop']}x{ft['crop']} "
            f"pixels with {ft['margin']} latent(s) of context), Adam lr {ft['lr']:g} cosine to "
            f"{ft['lr_final']:g}, {ft['precision']}, loss sum_l MSE_l / D_l (D_l: the starting "
            f"decoder's validation MSE at lambda l). g_a and the coding prior are the base "
            f"model's (id {ft['base_model_id'][:16]}), so every file keeps its symbols and "
            f"size; only the reconstruction changed.")
    return lines


def write_card(npz_path: str, meta: dict, kodak_dir: str, notes: str = "") -> str:
    """pretrained_npz/README.md: data, steps, training curve, Kodak figures, file size.

    ``notes``: Markdown inserted after the summary (e.g. the learning-rate schedule)."""
    from ..bench.eval_model import kodak_mean_reconstruction
    model = load_model(npz_path)
    kodak = kodak_mean_reconstruction(model, kodak_dir) if os.path.isdir(kodak_dir) else None
    name = os.path.basename(npz_path)
    hist = meta.get("history", [])
    lines = [
        "# Model card: " + name, "",
        f"* Architecture: {meta['architecture']} (Balle et al. 2017 transforms as a Gaussian VAE, "
        f"SPEC.md §7), N = {meta['N']}, M = {meta['M']}.",
        f"* g_a: {meta.get('g_a')}; g_s: {meta.get('g_s')}.",
        *_training_lines(meta),
        f"* Training data: {len(meta.get('training_data', []))} images of ../shared/data/train "
        "(bsds500, debian, wikipedia; the list is in the file's metadata, `meta_json`); "
        f"validation: {len(meta.get('validation_data', []))} images (every 25th file). "
        "Kodak was never used for training, fitting or choosing anything.",
        f"* Coding prior: per-channel empirical prior ({meta['prior']['method']}), fitted on the "
        f"posterior means of {len(meta['prior']['images'])} training images "
        f"({meta['prior']['samples_per_channel']} samples per channel), SPEC.md §4.4.",
        f"* Final training loss (EMA, nats per pixel): {meta.get('final_loss'):.4f}.",
        *_finetune_lines(meta),
        f"* File: {os.path.getsize(npz_path) / 1e6:.1f} MB, sha256 `{model.model_id}`.",
    ]
    if kodak and kodak["n"]:
        lines.append(f"* **Kodak ({kodak['n']} images), unquantized mean reconstruction g_s(mu): "
                     f"{kodak['psnr']:.2f} dB PSNR**; KL(q || N(0, I)) {kodak['kl_bpp']:.3f} "
                     f"bits/pixel; reconstruction from one posterior sample "
                     f"{kodak['sample_psnr']:.2f} dB (the model's own rate-distortion point: "
                     f"`python -m bac_ref.bench.eval_model`).")
    if notes:
        lines += ["", notes.strip()]
    lines += ["", "## Training curve (validation centre crops, never Kodak)", "",
              "| step | mean-reconstruction PSNR (dB) | KL (bits/pixel) | train loss/px |",
              "|---:|---:|---:|---:|"]
    for h in hist:
        loss = h.get("train_loss_per_px")
        mark = " *" if h.get("val_images") else ""
        lines.append(f"| {h['step']}{mark} | {h['val_psnr_mean_recon']:.2f} | {h['val_kl_bpp']:.3f} | "
                     f"{'' if loss is None else f'{loss:.3f}'} |")
    marked = sorted({h["val_images"] for h in hist if h.get("val_images")})
    if marked:
        lines += ["", "\\* measured on " + "; ".join(marked) + " of the validation images "
                  "(not comparable with the unmarked rows; the notes above say by how much). The loss "
                  "is per pixel of the training crops, so it changes with the crop size too."]
    lines += ["", "Resume training from this file (a fresh Adam state):", "",
              "    python -m bac_ref.training.train --resume pretrained_npz/" + name + " --steps 200000",
              "    python -m bac_ref.training.release --weights runs/vae/model.npz", ""]
    path = os.path.join(os.path.dirname(os.path.abspath(npz_path)), "README.md")
    with open(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


if __name__ == "__main__":
    sys.exit(run(main, "python -m bac_ref.training.release"))
