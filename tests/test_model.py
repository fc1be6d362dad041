"""bac_ref.model: the model-file loader (SPEC.md §6) and the Model API (SPEC.md §7); NumPy only."""
import hashlib
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import bac_ref
from bac_ref import g_a, model as model_mod
from bac_ref.errors import ModelFileError
from bac_ref.weights import PARAM_LAYOUT, export_npz
from helpers import tiny_model_arrays, tiny_model_meta

N, M = 8, 4


def make_arrays(n=N, m=M, seed=0):
    """Random but valid weights (tests/helpers.py)."""
    return tiny_model_arrays(n, m, seed)


def make_meta(n=N, m=M):
    return tiny_model_meta(n, m)


def write_raw(path, arrays, meta=None, **extra):
    """np.savez without the manifest (structural-error cases)."""
    payload = dict(arrays)
    if meta is not None:
        payload["meta_json"] = np.array(json.dumps(meta))
    payload.update(extra)
    with open(path, "wb") as fh:
        np.savez(fh, **payload)
    return str(path)


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "m.npz"
    export_npz(str(path), make_arrays(), make_meta(),
               extra={"prior.table": np.arange(5, dtype=np.int64),
                      "codec.cdf": np.array([0, 7, 1 << 24], dtype=np.uint32)})
    return str(path)


@pytest.fixture
def model(model_path):
    return bac_ref.load_model(model_path)


def test_attributes(model, model_path):
    with open(model_path, "rb") as fh:
        assert model.model_id == hashlib.sha256(fh.read()).hexdigest()
    assert model.verified                     # tmp_path holds the MANIFEST.json export_npz wrote
    assert (model.N, model.M, model.path) == (N, M, os.path.abspath(model_path))
    assert model.meta == make_meta()
    assert sorted(model.arrays_extra) == ["codec.cdf", "prior.table"]
    assert model.arrays_extra["codec.cdf"].dtype == np.uint32
    np.testing.assert_array_equal(model.arrays_extra["prior.table"], np.arange(5))
    assert set(model.params) == set(PARAM_LAYOUT)
    assert "N=8" in repr(model)


@pytest.mark.parametrize("hw", [(37, 53), (1, 1), (16, 32), (17, 15)])
def test_shapes_and_dtypes(model, hw):
    h, w = hw
    x = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    mu, sigma = model.analysis(x)
    hl, wl = -(-h // 16), -(-w // 16)
    assert mu.shape == sigma.shape == (M, hl, wl)
    assert mu.dtype == sigma.dtype == np.float32 and (sigma > 0).all()
    x_hat = model.synthesis(mu, size=(h, w))
    assert x_hat.shape == (h, w, 3) and x_hat.dtype == np.float32
    assert model.synthesis(mu).shape == (16 * hl, 16 * wl, 3)


def test_batch_axis_matches_single_images(model):
    x = np.random.default_rng(1).random((3, 20, 35, 3))
    mu, sigma = model.analysis(x)                         # float64 input is accepted
    assert mu.shape == (3, M, 2, 3)
    x_hat = model.synthesis(mu, size=(20, 35))
    assert x_hat.shape == (3, 20, 35, 3)
    for b in range(3):
        mb, sb = model.analysis(x[b].astype(np.float32))
        np.testing.assert_array_equal(mu[b], mb)
        np.testing.assert_array_equal(sigma[b], sb)
        np.testing.assert_array_equal(x_hat[b], model.synthesis(mb, size=(20, 35)))


def test_padding_is_edge_replication(model):
    """SPEC.md §7.2: g_a sees the image padded bottom/right by repeating the last row/column."""
    x = np.random.default_rng(2).random((37, 53, 3)).astype(np.float32)
    padded = np.pad(x, ((0, 11), (0, 11), (0, 0)), mode="edge")     # 48 x 64
    for a, b in zip(model.analysis(x), model.analysis(padded)):
        np.testing.assert_array_equal(a, b)
    mu = model.analysis(x)[0]
    np.testing.assert_array_equal(model.synthesis(mu, size=(37, 53)),
                                  model.synthesis(mu)[:37, :53])
    assert g_a.padded_size(37, 53) == (48, 64) and g_a.padded_size(32, 16) == (32, 16)


def test_sigma_is_exp_half_logvar(model):
    x = np.random.default_rng(3).random((3, 32, 32)).astype(np.float32)
    mu, sigma = g_a.analysis(model.params, x)
    p = model.params
    from bac_ref.layers import conv2d, gdn
    y = conv2d(x, p["g_a.conv0.weight"], p["g_a.conv0.bias"], 4, 4)
    y = gdn(y, p["g_a.gdn0.beta"], p["g_a.gdn0.gamma"])
    y = conv2d(y, p["g_a.conv1.weight"], p["g_a.conv1.bias"], 2, 2)
    y = gdn(y, p["g_a.gdn1.beta"], p["g_a.gdn1.gamma"])
    y = conv2d(y, p["g_a.conv2.weight"], p["g_a.conv2.bias"], 2, 2)
    np.testing.assert_array_equal(mu, y[:M])
    np.testing.assert_allclose(sigma, np.exp(y[M:] / 2), rtol=1e-6)


def test_bad_inputs(model):
    with pytest.raises(TypeError, match="255"):
        model.analysis(np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        model.analysis(np.zeros((16, 16, 4), np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.analysis(np.zeros((0, 16, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        model.analysis(np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        model.synthesis(np.zeros((M + 1, 2, 2), np.float32))
    with pytest.raises(ValueError, match="ceil"):
        model.synthesis(np.zeros((M, 2, 2), np.float32), size=(16, 32))
    with pytest.raises(ValueError, match="ceil"):
        model.synthesis(np.zeros((M, 2, 2), np.float32), size=(33, 32))


# -- name resolution -------------------------------------------------------------------
def test_lazy_export():
    from bac_ref.model import load_model
    assert bac_ref.load_model is load_model
    with pytest.raises(AttributeError):
        bac_ref.no_such_thing


def test_numpy_path_never_imports_torch(model_path):
    code = ("import sys, numpy as np, bac_ref; m = bac_ref.load_model(sys.argv[1]); "
            "m.synthesis(m.analysis(np.zeros((20, 20, 3)))[0]); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code, model_path], check=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_bare_name_from_env_dir(model_path, tmp_path, monkeypatch):
    monkeypatch.setenv("BAC_REF_MODEL_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path.parent)
    assert bac_ref.load_model("m.npz").path == os.path.abspath(model_path)
    assert bac_ref.load_model("m").path == os.path.abspath(model_path)
    assert model_mod.model_search_dirs()[0] == str(tmp_path)
    with pytest.raises(ModelFileError, match="not found.*BAC_REF_MODEL_DIR"):
        bac_ref.load_model("other")


def test_missing_files(tmp_path, monkeypatch):
    monkeypatch.setenv("BAC_REF_MODEL_DIR", str(tmp_path))
    with pytest.raises(ModelFileError, match="model file not found"):
        bac_ref.load_model(str(tmp_path / "nope" / "m.npz"))
    if not any(os.path.isfile(os.path.join(d, model_mod.DEFAULT_MODEL))
               for d in model_mod.model_search_dirs()):
        with pytest.raises(ModelFileError, match="default model"):
            bac_ref.load_model()


# -- loader checks -----------------------------------------------------------------------
def check_error(path, pattern):
    with pytest.raises(ModelFileError, match=pattern) as info:
        bac_ref.load_model(path)
    assert os.path.basename(path) in str(info.value)


def test_wrong_names(tmp_path):
    arrays = make_arrays()
    check_error(write_raw(tmp_path / "a.npz", arrays, make_meta(), **{"g_a.extra": arrays["g_a.conv0.bias"]}),
                "unknown arrays: g_a.extra")
    del arrays["g_s.igdn1.beta"]
    check_error(write_raw(tmp_path / "b.npz", arrays, make_meta()), "missing arrays: g_s.igdn1.beta")
    check_error(write_raw(tmp_path / "c.npz", make_arrays()), "missing arrays: meta_json")


def test_wrong_shapes(tmp_path):
    arrays = make_arrays()
    arrays["g_a.gdn1.gamma"] = arrays["g_a.gdn1.gamma"][:, :-1].copy()
    check_error(write_raw(tmp_path / "a.npz", arrays, make_meta()), r"g_a.gdn1.gamma has shape \(8, 7\)")
    arrays = make_arrays(n=8, m=4)
    arrays["g_a.conv2.weight"] = make_arrays(n=8, m=5)["g_a.conv2.weight"]
    check_error(write_raw(tmp_path / "b.npz", arrays, make_meta()), "g_a.conv2.weight has shape")
    arrays = make_arrays()
    arrays["g_a.conv0.weight"] = arrays["g_a.conv0.weight"][0]
    check_error(write_raw(tmp_path / "c.npz", arrays, make_meta()), "cannot derive N and M")


def test_wrong_dtype_and_values(tmp_path):
    for i, (name, value, pattern) in enumerate([
            ("g_s.deconv1.weight", "float64", "dtype float64, expected float32"),
            ("g_a.conv1.bias", np.nan, "NaN or infinite"),
            ("g_s.deconv2.weight", np.inf, "NaN or infinite"),
            ("g_a.gdn0.beta", 0.0, "must be > 0"),
            ("g_s.igdn0.gamma", -1.0, "must be >= 0")]):
        arrays = make_arrays()
        if value == "float64":
            arrays[name] = arrays[name].astype(np.float64)
        else:
            arrays[name].flat[3] = value
        check_error(write_raw(tmp_path / f"{i}.npz", arrays, make_meta()), pattern)


def test_bad_meta(tmp_path):
    a = make_arrays()
    check_error(write_raw(tmp_path / "a.npz", a, dict(make_meta(), N=16)), "meta N is 16")
    check_error(write_raw(tmp_path / "b.npz", a, {"N": N, "M": M}), "architecture")
    check_error(write_raw(tmp_path / "c.npz", a, [1, 2]), "JSON object")
    check_error(write_raw(tmp_path / "d.npz", a, None, meta_json=np.array("{not json")), "not valid JSON")
    check_error(write_raw(tmp_path / "e.npz", a, None, meta_json=np.zeros(3)), "0-d unicode")


def test_hash_and_manifest(model_path, tmp_path):
    mpath = tmp_path / "MANIFEST.json"
    manifest = json.loads(mpath.read_text())
    good = dict(manifest)
    manifest["m.npz"] = dict(manifest["m.npz"], sha256="0" * 64)
    mpath.write_text(json.dumps(manifest))
    check_error(model_path, "sha256 mismatch")
    manifest["m.npz"] = dict(good["m.npz"], bytes=1)
    mpath.write_text(json.dumps(manifest))
    check_error(model_path, "size")
    mpath.write_text(json.dumps({}))
    check_error(model_path, "not listed in")
    mpath.write_text("{broken")
    check_error(model_path, "unreadable manifest")
    # A changed file (one flipped byte) against the original manifest.
    mpath.write_text(json.dumps(good))
    data = bytearray(open(model_path, "rb").read())
    data[-100] ^= 1
    open(model_path, "wb").write(bytes(data))
    check_error(model_path, "sha256 mismatch")
    # Without a manifest the file loads unverified, with its hash computed.
    os.unlink(mpath)
    ok = tmp_path / "ok.npz"
    write_raw(ok, make_arrays(), make_meta())
    m = bac_ref.load_model(str(ok))
    assert not m.verified and m.model_id == hashlib.sha256(ok.read_bytes()).hexdigest()


def test_pickles_are_refused(tmp_path):
    evil = np.array([{"run": "code"}], dtype=object)
    check_error(write_raw(tmp_path / "a.npz", make_arrays(), make_meta(), **{"prior.evil": evil}),
                "pickle")
    (tmp_path / "b.npz").write_bytes(pickle.dumps(make_arrays()))
    check_error(str(tmp_path / "b.npz"), "not a readable .npz")


def test_not_an_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3, np.float32))
    os.replace(tmp_path / "a.npy", tmp_path / "a.npz")
    check_error(str(tmp_path / "a.npz"), "not an .npz archive")
    (tmp_path / "b.npz").write_bytes(b"hello")
    check_error(str(tmp_path / "b.npz"), "not a readable .npz")
    good = write_raw(tmp_path / "c.npz", make_arrays(), make_meta())
    data = open(good, "rb").read()
    open(good, "wb").write(data[: len(data) // 2])                  # truncated
    check_error(good, "not a readable .npz")
    (tmp_path / "d.npz").mkdir()
    check_error(str(tmp_path / "d.npz"), "not found|cannot read")
