"""bac_ref.training.finetune_gs: the lookup table, the crops, and a toy run.

The toy run fine-tunes the small conformance model (N = 16, M = 12) on three random
images for a few steps: it checks the plumbing (g_a and the prior kept bit for bit, g_s
changed, the log and metadata written), not quality.
"""
import json
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (extra 'train')")
Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

from bac_ref.priors import QuantilePrior  # noqa: E402
from bac_ref.training import finetune_gs  # noqa: E402
from bac_ref.vbq import dequantize, grid_depth_index  # noqa: E402
from bac_ref.weights import PARAM_LAYOUT, load_npz_arrays  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONF_MODEL = os.path.join(REPO, "data", "vectors", "conformance-model-n16m12.npz")


def test_grid_lut_is_the_decoders_zhat_of_every_grid_point():
    rng = np.random.default_rng(1)
    table = np.sort(rng.normal(size=(3, 2 ** 12 + 1)), axis=1)
    table[:, 0], table[:, -1] = -8.0, 8.0
    prior = QuantilePrior(table)
    n = 6
    lut = finetune_gs.grid_lut(prior, n)
    assert lut.shape == (3, 2 ** (n + 1)) and lut.dtype == np.float32
    j = rng.integers(1, 2 ** (n + 1), size=(3, 50))
    depth, index = grid_depth_index(j, n)
    want = dequantize(depth, index, prior, axis=0).astype(np.float32)
    got = lut[np.arange(3)[:, None], j]
    np.testing.assert_array_equal(got, want)


def test_crops_put_the_pixels_under_the_inner_latents():
    # Pixels and grid integers both encode the latent position, so a window that is
    # off by the margin (or by a row) shows up as a mismatch.
    h_lat, w_lat, m_ch = 7, 9, 2
    yy, xx = np.meshgrid(np.arange(16 * h_lat) // 16, np.arange(16 * w_lat) // 16, indexing="ij")
    pixels = np.stack([yy, xx, np.zeros_like(yy)], axis=-1).astype(np.uint8)
    pos = (np.arange(h_lat)[:, None] * w_lat + np.arange(w_lat)[None, :]) + 1   # 1..63
    js = np.broadcast_to(pos, (2, m_ch, h_lat, w_lat)).astype(np.uint16)
    lut = np.broadcast_to(np.arange(128, dtype=np.float32), (m_ch, 128)).copy()
    sampler = finetune_gs.LatentCropSampler([(pixels, js)], lut, crop=32, margin=1, seed=3)
    for _ in range(20):
        zhat, x, li = sampler.batch(4)
        assert zhat.shape == (4, m_ch, 4, 4) and x.shape == (4, 3, 32, 32)
        assert set(li.tolist()) <= {0, 1}
        for b in range(4):
            p = int(zhat[b, 0, 1, 1]) - 1                  # the first inner latent
            y_lat, x_lat = divmod(p, w_lat)
            assert round(float(x[b, 0, 0, 0]) * 255) == y_lat
            assert round(float(x[b, 1, 0, 0]) * 255) == x_lat
            assert round(float(x[b, 0, -1, -1]) * 255) == y_lat + 1


def test_toy_finetune_changes_only_g_s(tmp_path):
    rng = np.random.default_rng(0)
    data = tmp_path / "train"
    data.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(data / f"{i}.png")
    model = tmp_path / "base.npz"
    shutil.copy(CONF_MODEL, model)
    out = tmp_path / "ft"
    args = ["--model", str(model), "--data", str(data), "--out", str(out), "--lams", "0.5,8",
            "--steps", "4", "--batch", "2", "--crop", "16", "--margin", "1", "--eval-every", "2",
            "--lr", "1e-2", "--warmup", "1"]
    assert finetune_gs.main(args) == 0
    before, _ = load_npz_arrays(str(model))
    after, meta = load_npz_arrays(str(out / "model.npz"))
    assert set(after) == set(before)
    for k in before:
        if k.startswith("g_s."):
            continue
        np.testing.assert_array_equal(after[k], before[k], err_msg=k)      # g_a, prior
    assert any(not np.array_equal(after[k], before[k]) for k in PARAM_LAYOUT if k.startswith("g_s."))
    ft = meta["g_s_finetune"]
    assert ft["steps"] == 4 and ft["lams"] == [0.5, 8.0] and ft["training_images"] == 2
    log = [json.loads(line) for line in open(out / "log.jsonl")]
    assert [e["step"] for e in log] == [0, 2, 4]
    assert len(log[0]["val_psnr_all"]) == 2 and np.isfinite(log[-1]["val_psnr_all"]).all()
    assert "previous" not in ft

    # A fine-tune of a fine-tuned model records both: the metadata must say how g_s was trained.
    out2 = tmp_path / "ft2"
    args2 = ["--model", str(out / "model.npz"), "--data", str(data), "--out", str(out2),
             "--lams", "0,2", "--steps", "2", "--batch", "2", "--crop", "16", "--eval-every", "2"]
    assert finetune_gs.main(args2) == 0
    ft2 = load_npz_arrays(str(out2 / "model.npz"))[1]["g_s_finetune"]
    assert ft2["lams"] == [0.0, 2.0] and ft2["steps"] == 2
    assert ft2["previous"] == ft
