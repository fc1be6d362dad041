"""The model-card writer and the model's own Kodak figures (bac_ref.training.release, eval_model).

Run on a tiny random model and two small synthetic "kodim" images: the real Kodak set is
never needed (nor used) here.
"""
from __future__ import annotations

import numpy as np

from bac_ref.training import release
from bac_ref.bench import eval_model
from bac_ref.imageio import write_png
from bac_ref.model import load_model
from helpers import tiny_model_bytes


def _setup(tmp_path):
    path = tmp_path / "tiny.npz"
    path.write_bytes(tiny_model_bytes())
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    rng = np.random.default_rng(1)
    for i, (h, w) in ((1, (40, 56)), (2, (24, 72))):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if i == 2:                                  # black: a different PSNR and KL
            img = np.zeros_like(img)
        write_png(str(kodak / f"kodim0{i}.png"), np.ascontiguousarray(img))
    return str(path), str(kodak)


def test_model_figures_are_means_over_the_images(tmp_path):
    path, kodak = _setup(tmp_path)
    r = eval_model.kodak_mean_reconstruction(load_model(path), kodak, seed=3)
    assert r["n"] == 2 and all(np.isfinite(r[k]) for k in ("psnr", "kl_bpp", "sample_psnr"))
    assert r["kl_bpp"] >= 0
    assert r == eval_model.kodak_mean_reconstruction(load_model(path), kodak, seed=3)  # seeded
    assert eval_model.kodak_mean_reconstruction(load_model(path), str(tmp_path / "none"))["n"] == 0
    # the figures are the plain means of the per-image figures (not pooled over pixels, not
    # the last image's): each image alone in a folder gives its own figures
    singles = []
    for i in (1, 2):
        one = tmp_path / f"one{i}"
        one.mkdir()
        (one / f"kodim0{i}.png").write_bytes((tmp_path / "kodak" / f"kodim0{i}.png").read_bytes())
        singles.append(eval_model.kodak_mean_reconstruction(load_model(path), str(one), seed=3))
    for key in ("psnr", "kl_bpp"):
        a, b = singles[0][key], singles[1][key]
        assert abs(a - b) > 1e-4, (key, a, b)       # the images differ, so a mean is visible
        assert np.isclose(r[key], (a + b) / 2, rtol=0, atol=1e-9), (key, r[key], a, b)


def test_card_has_the_figures_and_the_notes(tmp_path):
    path, kodak = _setup(tmp_path)
    meta = {"architecture": "bmshj2017-gaussian-vae", "N": 4, "M": 2, "steps": 7, "final_loss": 1.5,
            "prior": {"method": "kde", "images": ["a.png"], "samples_per_channel": 10},
            "history": [{"step": 7, "val_psnr_mean_recon": 20.0, "val_kl_bpp": 0.5,
                         "train_loss_per_px": 1.5}]}
    card = release.write_card(path, meta, kodak, notes="Schedule: **constant** 1e-4.\n")
    text = open(card).read()
    r = eval_model.kodak_mean_reconstruction(load_model(path), kodak)
    assert f"{r['psnr']:.2f} dB PSNR" in text and f"{r['sample_psnr']:.2f} dB" in text
    assert "Schedule: **constant** 1e-4." in text and "| 7 | 20.00 | 0.500 | 1.500 |" in text
    assert "**7 steps**" in text


def test_keep_prior_copies_the_prior_and_the_card_names_the_finetune(tmp_path):
    import json
    from bac_ref.weights import export_npz, load_npz_arrays
    path, kodak = _setup(tmp_path)
    arrays, meta = load_npz_arrays(path)
    meta = dict(meta, steps=7, final_loss=1.5,
                prior={"method": "kde", "images": ["a.png"], "samples_per_channel": 10},
                g_s_finetune={"lams": [0.5, 8.0], "steps": 1234, "batch": 8, "crop": 128,
                              "margin": 1, "lr": 3e-5, "lr_final": 1e-6, "precision": "bf16",
                              "training_images": 5, "base_model_id": "ab" * 32})
    weights = {k: v for k, v in arrays.items() if not k.startswith("prior.")}
    prior = {k: v for k, v in arrays.items() if k.startswith("prior.")}
    assert prior
    src = tmp_path / "ft" / "model.npz"
    export_npz(str(src), weights, meta, extra=prior)
    data = tmp_path / "no_images"
    data.mkdir()                        # fitting would fail here: no training images
    out = tmp_path / "rel" / "m.npz"
    assert release.main(["--weights", str(src), "--out", str(out), "--data", str(data),
                         "--kodak", kodak, "--keep-prior"]) == 0
    got, got_meta = load_npz_arrays(str(out))
    assert set(got) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(got[k], arrays[k], err_msg=k)
    assert got_meta["prior"] == meta["prior"]
    card = open(tmp_path / "rel" / "README.md").read()
    assert "fine-tuned on VBQ-quantized latents" in card and "1,234 steps" in card
    assert "lambda 0.5, 8" in card and "abababababababab" in card
    assert "fine-tuned again" not in card
    twice = dict(meta["g_s_finetune"], lams=[0.0, 2.0], steps=99, base_model_id="cd" * 32,
                 previous=meta["g_s_finetune"])
    lines = release._finetune_lines({"g_s_finetune": twice})
    assert len(lines) == 2 and "1,234 steps" in lines[0] and "lambda 0, 2" in lines[1]
    assert "fine-tuned again" in lines[1] and "cdcdcdcdcdcdcdcd" in lines[1]
    assert json.load(open(tmp_path / "rel" / "MANIFEST.json"))["m.npz"]

    # a file without a prior cannot keep one
    export_npz(str(tmp_path / "ft" / "bare.npz"), weights, dict(meta))
    import pytest
    with pytest.raises(SystemExit, match="no coding prior"):
        release.main(["--weights", str(tmp_path / "ft" / "bare.npz"), "--out", str(out),
                      "--data", str(data), "--kodak", kodak, "--keep-prior"])
