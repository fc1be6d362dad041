"""bac_ref.train on a toy data set: export, resume, a fine-tune's schedule, the wall-clock budget.

A tiny VAE (N = M = 8) on three random 64x64 images, a few steps each: this checks the
plumbing (files written, steps counted, the learning rate a fine-tune sees), not quality.
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (extra 'train')")
Image = pytest.importorskip("PIL.Image", reason="Pillow is not installed")

from bac_ref import train  # noqa: E402
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
