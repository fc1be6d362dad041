"""The benchmark runner (bac_ref/bench/rd.py, ``bac-ref bench``) on a 64 x 96 crop of kodim23.

Sizes must be real: the vbq entry equals the .bac file ``codec.compress``
writes, the jpeg entry the file Pillow writes, a baseline entry its range-coder
payload + 32 bytes.  Runs resume: a second run measures nothing new.  The
baselines are fitted here on synthetic "training" images in a temporary
folder (the real runs fit on ../shared/data/train, never on Kodak).
"""
from __future__ import annotations

import copy
import io
import json
import os

import numpy as np
import pytest

from bac_ref.bench import rd as bench, evaluate
from bac_ref import cli, codec
from bac_ref.imageio import write_png

PIL = pytest.importorskip("PIL", reason="the jpeg codec of the bench needs Pillow")

LAMS = (1.0, 30.0)
QUALS = (10, 50)


@pytest.fixture(scope="module")
def crop(kodim23, tmp_path_factory):
    d = tmp_path_factory.mktemp("bench_in")
    pixels = np.array(kodim23[200:264, 300:396])                 # (64, 96, 3)
    write_png(d / "crop.png", pixels)
    return d / "crop.png", pixels


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory):
    """Three smooth synthetic photos; training_images keeps two (every 25th is validation)."""
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(1)
    for i in range(3):
        x = np.cumsum(rng.normal(0, 5, (48, 64, 3)), axis=1) + rng.uniform(60, 190)
        write_png(d / f"t{i}.png", np.clip(x, 0, 255).astype(np.uint8))
    return d


def _has_matplotlib():
    import importlib.util
    return importlib.util.find_spec("matplotlib") is not None


def test_mini_bench_vbq_jpeg_real_sizes_and_resume(crop, tmp_path, monkeypatch):
    path, pixels = crop
    out = tmp_path / "out"
    cfg = bench.BenchConfig(codecs=("vbq", "jpeg"), lambdas=LAMS, qualities=QUALS,
                            plot=_has_matplotlib())
    s = bench.run([path], out, cfg, quiet=True)
    assert s["computed"] == 4 and s["images"] == ["crop.png"]
    for name in ("results.json", "results.md", "images/crop.json"):
        assert (out / name).is_file(), name
    assert (out / "rd.png").is_file() == _has_matplotlib()

    rec = json.loads((out / "images" / "crop.json").read_text())
    assert rec["height"] == 64 and rec["width"] == 96
    vbq = rec["results"]["vbq"]
    assert sorted(vbq) == ["lam=1", "lam=30"]
    for lam in LAMS:
        e = vbq[bench.setting_key("vbq", lam)]
        data = codec.compress(pixels, lam, second_pass=False, context_pass=False)  # the .bac file
        assert e["bytes"] == len(data)
        assert e["bpp"] == 8 * len(data) / (64 * 96)
        assert e["psnr"] == pytest.approx(codec.psnr(pixels, codec.decompress(data)), abs=1e-12)
        assert e["ms_ssim"] is None                                   # < 161 px: undefined
    assert vbq["lam=1"]["bpp"] > vbq["lam=30"]["bpp"]
    from PIL import Image
    for q in QUALS:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, "JPEG", quality=q)
        assert rec["results"]["jpeg"][f"quality={q}"]["bytes"] == len(buf.getvalue())

    summary = json.loads((out / "results.json").read_text())
    assert [p["lam"] for p in summary["mean"]["vbq"]] == list(LAMS)
    assert summary["mean"]["vbq"][0]["bpp"] == vbq["lam=1"]["bpp"]     # one image: mean = value
    assert set(summary["bd_vs_jpeg"]) == {"vbq"}
    md = (out / "results.md").read_text()
    assert "| vbq | lam=30 |" in md and "| jpeg | quality=50 |" in md and "BD-rate" in md

    # resumable: nothing new; one more lambda costs one measurement
    assert bench.run([path], out, cfg, quiet=True)["computed"] == 0
    more = bench.BenchConfig(codecs=("vbq", "jpeg"), lambdas=LAMS + (5.0,), qualities=QUALS,
                             plot=False)
    s = bench.run([path], out, more, quiet=True)
    assert s["computed"] == 1 and len(s["mean"]["vbq"]) == 3
    # an edit to the codec's code invalidates the latent codecs' entries, not JPEG's
    real = bench.code_fingerprint
    monkeypatch.setattr(bench, "code_fingerprint", lambda: "edited")
    assert bench.run([path], out, more, quiet=True)["computed"] == 3
    monkeypatch.setattr(bench, "code_fingerprint", real)
    assert bench.run([path], out, more, quiet=True)["computed"] == 3
    # a changed image is measured again
    write_png(tmp_path / "crop.png", pixels[::-1].copy())
    s = bench.run([tmp_path / "crop.png"], out, cfg, quiet=True)
    assert s["computed"] == 4


def test_baselines_fit_cache_and_sizes(crop, train_dir, tmp_path, monkeypatch):
    path, pixels = crop
    out = tmp_path / "out"
    cfg = bench.BenchConfig(codecs=("uniform", "kmeans", "blind", "blind2", "rounding"),
                            lambdas=(3.0,), levels=(4,), steps=(1.0,), train_dir=str(train_dir),
                            fit_images=40, plot=False)
    s = bench.run([path], out, cfg, quiet=True)
    assert s["computed"] == 5 and s["baselines"]["fit_images"] == 2
    manifest = json.loads((out / "baselines.json").read_text())
    assert manifest["files"] == ["t1.png", "t2.png"]
    assert len(manifest["settings"]) == 4                  # blind2 uses blind's fit

    # the cached quantizers are the fitted ones, and a baseline's size is payload + 32 bytes
    monkeypatch.setattr(bench, "_training_latents", lambda *a: pytest.fail("refitted"))
    model = codec.get_model(None)
    quantizers, info = bench.load_or_fit_baselines(model, cfg, str(out), [str(path)],
                                                   lambda m: None)
    assert info["fit_id"] == manifest["fit_id"]
    rec = json.loads((out / "images" / "crop.json").read_text())
    a = codec.Encoder(pixels, model, 10)
    for (name, key), q in quantizers.items():
        if name == "blind":
            continue                                    # coded as .bac: the next test
        r = q.quantize(a.mu)
        data = q.encode(r.symbols)
        np.testing.assert_array_equal(q.decode(data, r.symbols.shape), r.symbols)
        assert rec["results"][name][key]["bytes"] == len(data) + bench.BASELINE_HEADER_BYTES
        zhat = q.reconstruct(r.symbols)
        np.testing.assert_array_equal(zhat, r.zhat)
    assert bench.run([path], out, cfg, quiet=True)["computed"] == 0


def test_blind_is_vbq_with_channel_sigma_in_a_real_bac_file(crop, train_dir, tmp_path):
    """blind / blind2 differ from vbq / vbq2 in sigma alone; their files decode as any .bac."""
    path, pixels = crop
    out = tmp_path / "out"
    cfg = bench.BenchConfig(codecs=("vbq", "vbq2", "blind", "blind2"), lambdas=(1.0,),
                            train_dir=str(train_dir), fit_images=40, plot=False)
    bench.run([path], out, cfg, quiet=True)
    rec = json.loads((out / "images" / "crop.json").read_text())["results"]
    model = codec.get_model(None)
    quantizers, _ = bench.load_or_fit_baselines(model, cfg, str(out), [str(path)], lambda m: None)
    sigma_c = quantizers[("blind", "lam=1")].sigma_c
    a = codec.Encoder(pixels, model, 10)
    for name, second in (("blind", False), ("blind2", True)):
        blind = copy.copy(a)
        blind.sigma = np.broadcast_to(sigma_c[:, None, None], a.mu.shape).astype(np.float64)
        enc = blind.encode(1.0, second_pass=second, context_pass=second)
        assert rec[name]["lam=1"]["bytes"] == len(enc.data)
        dec = codec.decompress(enc.data, model=model)
        psnr = evaluate.psnr(pixels, dec)
        assert rec[name]["lam=1"]["psnr"] == pytest.approx(psnr, abs=1e-9)
        # the same image through the codec with its own sigma is a different file
        own = a.encode(1.0, second_pass=second, context_pass=second).data
        assert own != enc.data
        assert rec[name.replace("blind", "vbq")]["lam=1"]["bytes"] == len(own)


def test_fitting_set_must_not_contain_benchmark_images(crop, tmp_path):
    path, pixels = crop
    train = tmp_path / "train"
    train.mkdir()
    for i in range(3):
        write_png(train / f"t{i}.png", pixels)
    cfg = bench.BenchConfig(codecs=("uniform",), levels=(4,), train_dir=str(train), plot=False)
    with pytest.raises(bench.BenchError, match="fitting set"):
        bench.run([train / "t1.png"], tmp_path / "out", cfg, quiet=True)


def test_unsupported_pillow_codec_is_skipped(crop, tmp_path, monkeypatch):
    from PIL import features
    monkeypatch.setattr(features, "check", lambda name: False)
    cfg = bench.BenchConfig(codecs=("jpeg", "avif"), qualities=(20,), plot=False)
    s = bench.run([crop[0]], tmp_path / "out", cfg, quiet=True)
    assert "avif" in s["skipped"] and set(s["mean"]) == {"jpeg"}


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_bench(crop, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    code, stdout, err = run_cli(capsys, "bench", crop[0].parent, "--out", out, "--codecs", "jpeg",
                                "--qualities", "5,40", "--no-plot", "--quiet", "--limit", "1")
    assert code == 0, err
    assert "| jpeg | quality=40 |" in stdout and err == ""
    assert not (out / "rd.png").exists()
    code, _, err = run_cli(capsys, "bench", crop[0], "--out", out, "--codecs", "jpeg,h264")
    assert code == 2 and err.startswith("bac-ref: error: unknown codec(s) h264")
    code, _, err = run_cli(capsys, "bench", crop[0], "--out", out, "--lambdas", "1,x")
    assert code == 2 and len(err.strip().splitlines()) == 1
    monkeypatch.setitem(__import__("sys").modules, "PIL", None)      # Pillow absent
    code, _, err = run_cli(capsys, "bench", crop[0], "--out", out, "--codecs", "jpeg")
    assert code == 2 and "need Pillow" in err and "--codecs" in err


def test_evaluate_and_bench_import_without_pillow_or_matplotlib():
    import subprocess
    import sys
    code = ("import sys; sys.modules['PIL'] = None; sys.modules['matplotlib'] = None\n"
            "import bac_ref.bench.evaluate, bac_ref.bench.rd, bac_ref.cli\n"
            "assert bac_ref.bench.rd.plot({'mean': {}}, 'x.png') is False\n")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_vbq2_is_the_codecs_default_file(crop, tmp_path):
    path, pixels = crop
    cfg = bench.BenchConfig(codecs=("vbq2", "jpeg"), lambdas=LAMS, qualities=QUALS, plot=False)
    bench.run([path], tmp_path / "out", cfg, quiet=True)
    rec = json.loads((tmp_path / "out" / "images" / "crop.json").read_text())
    for lam in LAMS:
        e = rec["results"]["vbq2"][bench.setting_key("vbq2", lam)]
        data = codec.compress(pixels, lam)                            # second + context pass
        assert e["bytes"] == len(data)
        assert data != codec.compress(pixels, lam, context_pass=False)
        assert data != codec.compress(pixels, lam, second_pass=False, context_pass=False)
        assert e["psnr"] == pytest.approx(codec.psnr(pixels, codec.decompress(data)), abs=1e-12)


def test_psnr_at_reads_the_pareto_curve_in_log_rate():
    pts = [{"bpp": 0.1, "psnr": 20.0}, {"bpp": 0.4, "psnr": 30.0},
           {"bpp": 0.3, "psnr": 19.0},                      # dominated: ignored
           {"bpp": 0.8, "psnr": None}]                      # no PSNR: ignored
    assert bench.psnr_at(pts, 0.2) == pytest.approx(25.0)  # halfway in log(bpp)
    assert bench.psnr_at(pts, 0.1) == 20.0 and bench.psnr_at(pts, 0.4) == 30.0
    assert bench.psnr_at(pts, 0.09) is None and bench.psnr_at(pts, 0.5) is None
    table = bench._psnr_at_rates({"a": pts, "empty": []})
    assert list(table) == ["a"] and table["a"]["0.25"] == pytest.approx(bench.psnr_at(pts, 0.25))
