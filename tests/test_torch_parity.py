"""NumPy g_a / g_s against PyTorch's GaussianVAE (bac_ref.training.train), same weights (SPEC.md §7.3).

The PyTorch model is built with a fixed seed, its GDN parameters are moved off their
identity-like initialisation (so the gamma_ij x_j^2 cross terms matter), its effective
parameters are exported with bac_ref.weights.export_npz and read back with load_model.
Images have odd sizes; both sides see the same edge-padded image (SPEC.md §7.2).
"""
import os
import shutil

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (extra 'train'): no independent implementation "
                    "to compare the NumPy transforms with")

import bac_ref  # noqa: E402
from bac_ref import g_a  # noqa: E402
from bac_ref.training.train import GaussianVAE, GDN  # noqa: E402
from bac_ref.weights import export_npz  # noqa: E402

TOL = 1e-4          # max abs difference on mu, sigma and x_hat (SPEC.md §7.3)
REAL_MODEL = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "runs", "vae", "model.npz")


def perturbed_vae(n, m, seed):
    torch.manual_seed(seed)
    vae = GaussianVAE(n, m)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for mod in vae.modules():
            if isinstance(mod, GDN):
                c = mod.beta_p.shape[0]
                beta = 0.5 + 1.5 * torch.rand(c, generator=gen)
                gamma = torch.rand(c, c, generator=gen) / c ** 0.5 + 0.1 * torch.eye(c)
                mod.set_effective(beta, gamma)
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                mod.weight.mul_(3.0)        # activations of order 1: GDN far from linear
    return vae.eval()


def export(vae, tmp_path):
    path = str(tmp_path / f"vae-{vae.n}-{vae.m}.npz")
    meta = {"architecture": "bmshj2017-gaussian-vae", "N": vae.n, "M": vae.m}
    export_npz(path, vae.effective_params(), meta)
    return path


@torch.no_grad()
def torch_reference(vae, x):
    """x (H, W, 3) -> mu, sigma (M, h, w) and x_hat (H, W, 3) from PyTorch, float32."""
    h, w, _ = x.shape
    xp = g_a.pad_image(np.ascontiguousarray(x.transpose(2, 0, 1)))      # (3, 16h, 16w)
    mu, logvar = vae.analysis(torch.from_numpy(xp)[None])
    x_hat = vae.synthesis(mu)[0, :, :h, :w].permute(1, 2, 0)
    return mu[0].numpy(), torch.exp(0.5 * logvar[0]).numpy(), x_hat.numpy()


def compare(model, vae, x, tol=TOL):
    mu_t, sigma_t, xh_t = torch_reference(vae, x)
    mu, sigma = model.analysis(x)
    xh = model.synthesis(mu, size=x.shape[:2])
    errs = {"mu": np.abs(mu - mu_t).max(), "sigma": np.abs(sigma - sigma_t).max(),
            "x_hat": np.abs(xh - xh_t).max()}
    assert max(errs.values()) <= tol, errs
    print(f"max |numpy - torch|: {errs}; max |mu| {np.abs(mu_t).max():.3g}, "
          f"max |x_hat| {np.abs(xh_t).max():.3g}")
    # g_s alone, from the PyTorch latents: isolates the synthesis side.
    assert np.abs(model.synthesis(mu_t, size=x.shape[:2]) - xh_t).max() <= tol
    return errs


@pytest.mark.parametrize("hw", [(37, 53), (16, 16), (50, 33), (1, 70)])
def test_small_model_parity(tmp_path, hw):
    vae = perturbed_vae(16, 8, seed=0)
    model = bac_ref.load_model(export(vae, tmp_path))
    assert (model.N, model.M) == (16, 8) and model.verified
    x = np.random.default_rng(hw[0] * 100 + hw[1]).random(hw + (3,), dtype=np.float32)
    compare(model, vae, x)


def test_full_size_model_parity(tmp_path):
    vae = perturbed_vae(128, 128, seed=1)
    model = bac_ref.load_model(export(vae, tmp_path))
    x = np.random.default_rng(7).random((64, 96, 3), dtype=np.float32)
    compare(model, vae, x)


def test_gdn_is_not_trivial(tmp_path):
    """The perturbation matters: ignoring gamma's off-diagonal changes the output visibly."""
    vae = perturbed_vae(16, 8, seed=0)
    model = bac_ref.load_model(export(vae, tmp_path))
    x = np.random.default_rng(0).random((37, 53, 3), dtype=np.float32)
    mu = model.analysis(x)[0]
    params = dict(model.params)
    for k in params:
        if k.endswith(".gamma"):
            params[k] = np.diag(np.diag(params[k])).astype(np.float32)
    mu_diag = g_a.analysis(params, g_a.pad_image(np.ascontiguousarray(x.transpose(2, 0, 1))))[0]
    assert np.abs(mu - mu_diag).max() > 0.05 * np.abs(mu).max()


def test_shipped_model_parity():
    """The shipped model (pretrained_npz/, always present) against PyTorch."""
    model = bac_ref.load_model()
    check_trained_model(model)


@pytest.mark.skipif(not os.path.isfile(REAL_MODEL), reason="no training run at runs/vae/model.npz")
def test_training_run_parity(tmp_path):
    # Copy first: training rewrites runs/vae/model.npz (and its manifest) while tests run.
    path = str(tmp_path / "model.npz")
    shutil.copyfile(REAL_MODEL, path)
    check_trained_model(bac_ref.load_model(path))


def check_trained_model(model):
    vae = GaussianVAE(model.N, model.M).eval()
    vae.load_effective_params({k: v.copy() for k, v in model.params.items()})
    rng = np.random.default_rng(11)
    # A smooth image with some texture: closer to what the model was trained on than noise.
    yy, xx = np.mgrid[0:53, 0:77] / 60.0
    x = np.stack([0.5 + 0.4 * np.sin(3 * xx + c) * np.cos(2 * yy - c) for c in range(3)], -1)
    x = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1).astype(np.float32)
    compare(model, vae, x)
