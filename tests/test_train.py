"""bac_ref.training.train on a toy data set: export, resume, a fine-tune's schedule, the wall-clock budget.

A tiny VAE (N = M = 8) on three random 64x64 images, a few steps each: this checks the
plumbing (files written, steps counted, the learning rate a fine-tune sees), not quality.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (extra 'train')")
Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

from bac_ref.training import train  # noqa: E402
from bac_ref.weights import load_npz_arrays  # noqa: E402


@pytest.fixture()
def toy_data(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "train"
    root.mkdir()
    for i, ext in enumerate(("png", "png", "webp")):
        pixels = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"img{i}.{ext}", lossless=True)
    return root


def run(tmp_path, data, *extra):
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--export", str(out / "model.npz"),
            "--n", "8", "--m", "8", "--batch", "2", "--crop", "32", "--threads", "1",
            "--log-every", "1", "--eval-every", "2", "--export-every", "2", *extra]
    assert train.main(args) == 0
    return out


def test_train_exports_and_resumes(tmp_path, toy_data, capsys):
    out = run(tmp_path, toy_data, "--steps", "3")
    arrays, meta = load_npz_arrays(str(out / "model.npz"))
    assert meta["steps"] == 3 and meta["N"] == 8
    assert len(meta["training_data"]) == 2 and meta["validation_data"] == ["img0.png"]
    assert [h["step"] for h in meta["history"]] == [2, 3]
    log = [json.loads(line) for line in open(out / "train_log.jsonl")]
    assert [h["step"] for h in log] == [2, 3]
    assert all(np.isfinite(v).all() for v in arrays.values())

    # Resume from the full checkpoint: the step count goes on, the history is kept.
    run(tmp_path, toy_data, "--steps", "5", "--resume", str(out / "ckpt.pt"))
    _, meta = load_npz_arrays(str(out / "model.npz"))
    assert meta["steps"] == 5
    assert [h["step"] for h in meta["history"]] == [2, 3, 4, 5]
    assert "VALID at the start (step 3)" in capsys.readouterr().out


def test_fine_tune_schedule_starts_at_the_resumed_step(tmp_path, toy_data, monkeypatch):
    out = run(tmp_path, toy_data, "--steps", "2")
    seen = []
    real_step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    run(tmp_path, toy_data, "--resume", str(out / "model.npz"), "--steps", "6",
        "--lr", "1e-3", "--lr-final", "1e-5", "--lr-from-step", "resume", "--warmup", "2")
    # steps 2..5: warm-up halves the first two; the cosine runs from step 2 to step 6.
    cosine = [1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + np.cos(np.pi * k / 4)) for k in range(4)]
    expected = [cosine[0] / 2, cosine[1], cosine[2], cosine[3]]
    np.testing.assert_allclose(seen, expected, rtol=1e-12)


def test_wall_clock_budget_stops_and_exports(tmp_path, toy_data, capsys):
    out = run(tmp_path, toy_data, "--minutes", "0.02", "--timing-steps", "2")
    text = capsys.readouterr().out
    assert "budget:" in text and "ms/step, training to step" in text
    _, meta = load_npz_arrays(str(out / "model.npz"))
    assert meta["steps"] >= 4                      # two timing phases of 2 steps
    assert meta["history"][-1]["step"] == meta["steps"]
    log = [json.loads(line) for line in open(out / "train_log.jsonl")]
    assert log[-1]["step"] == meta["steps"]


def test_widened_model_computes_the_same_function_and_learns():
    torch.manual_seed(0)
    narrow = train.GaussianVAE(8, 6)
    with torch.no_grad():  # a model that is not at its initialisation
        for p in narrow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    params = narrow.effective_params()
    wide = train.GaussianVAE(12, 10)
    wide.load_effective_params(train.widen_params(params, 12, 10, seed=1))
    x = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        mu0, lv0 = narrow.analysis(x)
        mu1, lv1 = wide.analysis(x)
        torch.testing.assert_close(mu1[:, :6], mu0, rtol=0, atol=1e-6)
        torch.testing.assert_close(lv1[:, :6], lv0, rtol=0, atol=1e-6)
        assert lv1[:, 6:].abs().max() == 0                  # new latents: sigma = 1, no KL
        assert 0 < mu1[:, 6:].abs().max() < 0.05             # ... and mu near 0
        torch.testing.assert_close(wide.synthesis(mu1), narrow.synthesis(mu0),
                                   rtol=0, atol=1e-6)
    # The zero weights out of the new channels still receive gradient.
    loss, _, _ = train.neg_elbo(wide, x, 0.001)
    loss.backward()
    w = wide.g_s["deconv0"].weight.grad                     # (M, N, 5, 5): rows = inputs
    assert w[6:, :8].abs().sum() > 0
    with pytest.raises(ValueError, match="narrow"):
        train.widen_params(params, 4, 6)


def test_bf16_autocast_runs_the_transforms_in_bfloat16():
    model = train.GaussianVAE(8, 8)
    seen = []
    model.g_a["conv1"].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    model.g_s["deconv1"].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    x = torch.rand(2, 3, 32, 32)
    loss16, kl16, _ = train.neg_elbo(model, x, 0.001, torch.Generator().manual_seed(0), bf16=True)
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert loss16.dtype == torch.float32 and kl16.dtype == torch.float32
    seen.clear()
    loss32, _, _ = train.neg_elbo(model, x, 0.001, torch.Generator().manual_seed(0), bf16=False)
    assert seen == [torch.float32, torch.float32]
    assert abs(loss16.item() - loss32.item()) < 0.02 * abs(loss32.item())


def test_resume_widened_from_a_model_file(tmp_path, toy_data, capsys):
    out = run(tmp_path, toy_data, "--steps", "2")
    run(tmp_path, toy_data, "--resume", str(out / "model.npz"), "--widen",
        "--n", "12", "--m", "10", "--steps", "3")
    arrays, meta = load_npz_arrays(str(out / "model.npz"))
    assert (meta["N"], meta["M"], meta["steps"]) == (12, 10, 3)
    assert arrays["g_a.conv2.weight"].shape == (20, 12, 5, 5)
    assert "widened N=8, M=8 to N=12, M=10" in capsys.readouterr().out


def test_training_leaves_denormals_alone_afterwards(tmp_path, toy_data):
    run(tmp_path, toy_data, "--steps", "1")
    tiny = torch.tensor([5e-324], dtype=torch.float64)   # the smallest subnormal
    assert (tiny * 1.0).item() == 5e-324                  # not flushed to zero
