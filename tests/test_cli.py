"""The ``bac-ref`` command line (bac_ref/cli.py).

Most checks call ``cli.main(argv)`` in-process (fast); a few run
``python -m bac_ref`` in a subprocess to cover the real entry point and the
process pool.  The contract: exit 0 / 2 (bad input) / 1 (bug), exactly one
``bac-ref: error:`` line on stderr, no partial or replaced output without
--force.
"""
from __future__ import annotations

import os
import subprocess
import sys
import types

import numpy as np
import pytest

from bac_ref import cli, codec
from bac_ref.imageio import encode_png, read_image, write_png

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_module(*argv, cwd, env=None):
    e = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "bac_ref", *map(str, argv)], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=300)


def one_error_line(err, *words):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bac-ref: error: "), err
    for w in words:
        assert w in lines[0], (w, err)
    return lines[0]


def only_files(folder):
    """Every entry of ``folder``, temporary files included (none may be left)."""
    return sorted(os.listdir(folder))


@pytest.fixture(scope="module")
def images(kodim23, tmp_path_factory):
    """Small inputs: RGB crop, grey crop, RGBA crop (PNG), and a PNG with a bad CRC."""
    d = tmp_path_factory.mktemp("img")
    crop = np.array(kodim23[200:232, 300:348])
    write_png(d / "rgb.png", crop)
    write_png(d / "grey.png", np.rint(crop.mean(axis=2)).astype(np.uint8))
    alpha = np.full(crop.shape[:2] + (1,), 200, np.uint8)
    write_png(d / "rgba.png", np.concatenate([crop, alpha], axis=2))
    bad = bytearray(encode_png(crop))
    bad[60] ^= 0xFF                                  # inside IDAT: CRC mismatch
    (d / "badcrc.png").write_bytes(bytes(bad))
    (d / "garbage.bac").write_bytes(b"\x89BAC" + os.urandom(60))
    (d / "notimage.png").write_bytes(b"hello, world\n")
    return d


# ---------------------------------------------------------------------------
# compress / decompress / info
# ---------------------------------------------------------------------------
def test_compress_decompress_round_trip(capsys, images, tmp_path):
    bac, png = tmp_path / "rgb.bac", tmp_path / "rgb.png"
    code, out, err = run_cli(capsys, "compress", images / "rgb.png", bac)
    assert code == 0 and err == ""
    assert out.startswith("rgb.png -> rgb.bac: ") and "bpp, lambda 3 (PSNR " in out
    assert f"{bac.stat().st_size} bytes" in out
    data = bac.read_bytes()
    assert data == codec.compress(images / "rgb.png", 3.0)
    code, out, err = run_cli(capsys, "decompress", bac, png)
    assert code == 0 and err == "" and out.strip() == "rgb.bac -> rgb.png: 48x32 RGB"
    assert np.array_equal(read_image(png).pixels[:, :, :3], codec.decompress(data))
    assert only_files(tmp_path) == ["rgb.bac", "rgb.png"]


def test_compress_rate_options(capsys, images, tmp_path):
    code, out, _ = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "a.bac",
                           "--lam", "30", "--max-depth", "8")
    assert code == 0 and "lambda 30 (PSNR" in out
    h = codec.decode_symbols((tmp_path / "a.bac").read_bytes())[0]
    assert (h.lam, h.max_depth, h.second_pass) == (30.0, 8, True)      # the default
    code, out, _ = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "a1.bac",
                           "--lam", "30", "--no-second-pass", "--quiet")
    assert code == 0 and not codec.decode_symbols((tmp_path / "a1.bac").read_bytes())[0].second_pass
    code, out, _ = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "b.bac",
                           "--bpp", "1.0", "--no-psnr")
    assert code == 0 and " bpp, lambda " in out and "PSNR" not in out
    code, out, _ = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "c.bac",
                           "--psnr", "25")
    assert code == 0 and "(PSNR " in out
    assert float(out.split("(PSNR ")[1].split()[0]) >= 25


def test_grey_and_alpha(capsys, images, tmp_path):
    code, out, err = run_cli(capsys, "compress", images / "grey.png", tmp_path / "g.bac")
    assert code == 0 and err == ""
    code, out, err = run_cli(capsys, "decompress", tmp_path / "g.bac", tmp_path / "g.png")
    assert code == 0 and "grey" in out
    assert read_image(tmp_path / "g.png").mode == "L"
    code, out, err = run_cli(capsys, "compress", images / "rgba.png", tmp_path / "a.bac")
    assert code == 0
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and "alpha" in warnings[0] and "warning" in warnings[0]


def test_info_and_symbols(capsys, images, tmp_path):
    bac = tmp_path / "x.bac"
    assert run_cli(capsys, "compress", images / "rgb.png", bac, "--lam", "2")[0] == 0
    code, out, err = run_cli(capsys, "info", bac)
    assert code == 0 and err == ""
    fields = dict(line.split(":", 1) for line in out.strip().splitlines())
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    size = bac.stat().st_size
    assert fields["image"] == "48 x 32 RGB" and fields["lambda"] == "2"
    assert fields["header bytes"] == "32" and fields["total bytes"] == str(size)
    assert fields["payload bytes"] == str(size - 32)
    assert float(fields["bpp"]) == pytest.approx(8 * size / (48 * 32), abs=1e-4)
    assert fields["max depth"] == "10" and fields["format version"] == "1"
    assert "matches" in fields["model id"]

    npz = tmp_path / "sym.npz"
    code, out, err = run_cli(capsys, "info", bac, "--symbols", npz)
    assert code == 0 and "symbols" in out
    dec = codec.decompress_details(bac.read_bytes(), synthesize=False)
    with np.load(npz, allow_pickle=False) as z:
        assert sorted(z.files) == ["depth", "index", "zhat"]
        assert z["depth"].dtype == z["index"].dtype == np.int64 and z["zhat"].dtype == np.float64
        assert z["depth"].shape == (codec.get_model().M, 2, 3)
        assert np.array_equal(z["depth"], dec.depth) and np.array_equal(z["index"], dec.index)
        assert z["zhat"].tobytes() == dec.zhat.tobytes()
    before = npz.read_bytes()
    code, _, err = run_cli(capsys, "info", bac, "--symbols", npz)
    assert code == 2 and npz.read_bytes() == before
    one_error_line(err, "sym.npz", "--force")
    assert run_cli(capsys, "info", bac, "--symbols", npz, "--force")[0] == 0


# ---------------------------------------------------------------------------
# --force, errors, no partial files
# ---------------------------------------------------------------------------
def test_force(capsys, images, tmp_path):
    out = tmp_path / "o.bac"
    out.write_bytes(b"keep me")
    code, _, err = run_cli(capsys, "compress", images / "rgb.png", out)
    assert code == 2 and out.read_bytes() == b"keep me"
    one_error_line(err, "o.bac", "file exists", "--force")
    assert run_cli(capsys, "compress", images / "rgb.png", out, "--force")[0] == 0
    assert out.read_bytes()[:4] == b"\x89BAC"
    png = tmp_path / "o.png"
    png.write_bytes(b"keep me")
    code, _, err = run_cli(capsys, "decompress", out, png)
    assert code == 2 and png.read_bytes() == b"keep me"
    one_error_line(err, "o.png", "--force")
    assert run_cli(capsys, "decompress", out, png, "--force")[0] == 0
    assert read_image(png).pixels.shape == (32, 48, 3)
    assert only_files(tmp_path) == ["o.bac", "o.png"]


@pytest.mark.parametrize("argv, words", [
    (["compress", "{img}/missing.png", "{tmp}/o.bac"], ["missing.png", "No such file"]),
    (["compress", "{img}/badcrc.png", "{tmp}/o.bac"], ["badcrc.png", "CRC"]),
    (["compress", "{img}/notimage.png", "{tmp}/o.bac"], ["notimage.png"]),
    (["compress", "{img}/rgb.png", "{tmp}/nodir/o.bac"], ["nodir"]),
    (["compress", "{img}/rgb.png", "{tmp}/o.bac", "--lam", "-1"], ["--lam"]),
    (["compress", "{img}/rgb.png", "{tmp}/o.bac", "--lam", "nan"], ["--lam"]),
    (["compress", "{img}/rgb.png", "{tmp}/o.bac", "--lam", "1", "--bpp", "1"], ["not allowed"]),
    (["compress", "{img}/rgb.png", "{tmp}/o.bac", "--max-depth", "17"], ["max_depth"]),
    (["compress", "{img}/rgb.png", "{tmp}/o.bac", "--model", "{tmp}/nope.npz"], ["nope.npz"]),
    (["compress", "{img}/rgb.png"], ["IN OUT"]),
    (["compress", "{img}/rgb.png", "{tmp}/o.bac", "--bogus"], ["--bogus"]),
    (["decompress", "{img}/garbage.bac", "{tmp}/o.png"], ["garbage.bac"]),
    (["decompress", "{img}/rgb.png", "{tmp}/o.png"], ["rgb.png", "not a .bac file"]),
    (["decompress", "{img}/missing.bac", "{tmp}/o.png"], ["missing.bac"]),
    (["info", "{img}/garbage.bac"], ["garbage.bac"]),
    (["info", "{img}/missing.bac"], ["missing.bac"]),
    (["frobnicate"], ["frobnicate"]),
])
def test_bad_input_exit_2(capsys, images, tmp_path, argv, words):
    argv = [a.format(img=images, tmp=tmp_path) for a in argv]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    one_error_line(err, *words)
    assert only_files(tmp_path) == []                      # no partial output, no temp file


def test_truncated_and_wrong_model(capsys, images, tmp_path):
    bac = tmp_path / "t.bac"
    assert run_cli(capsys, "compress", images / "rgb.png", bac)[0] == 0
    cut = tmp_path / "cut.bac"
    cut.write_bytes(bac.read_bytes()[:-4])
    code, _, err = run_cli(capsys, "decompress", cut, tmp_path / "cut.png")
    assert code == 2 and not (tmp_path / "cut.png").exists()
    one_error_line(err, "cut.bac", "CRC")
    wrong = bytearray(bac.read_bytes())
    wrong[8] ^= 1
    import struct
    import zlib
    wrong[28:32] = struct.pack(">I", zlib.crc32(bytes(wrong[32:]), zlib.crc32(bytes(wrong[:28]))))
    (tmp_path / "w.bac").write_bytes(bytes(wrong))
    code, _, err = run_cli(capsys, "decompress", tmp_path / "w.bac", tmp_path / "w.png")
    assert code == 2
    one_error_line(err, "model")


def test_unexpected_error_exit_1(capsys, images, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("something broke\nbadly")
    monkeypatch.setattr(codec, "compress_details", boom)
    monkeypatch.delenv(cli.DEBUG_ENV, raising=False)
    code, out, err = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "o.bac")
    assert code == 1 and out == ""
    one_error_line(err, "internal error", "RuntimeError", "something broke badly",
                   "BAC_REF_DEBUG=1")
    assert only_files(tmp_path) == []
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    code, _, err = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "o.bac")
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith(
        "bac-ref: error: internal error")


def test_progress_only_for_long_work(capsys):
    prog = cli._Progress("compressing x", quiet=False, delay=0.0)
    prog._timer.join()
    prog.step("lambda 1: 0.5 bpp")
    prog.done()
    err = capsys.readouterr().err
    assert err == "compressing x ...\n  lambda 1: 0.5 bpp\n"
    quiet = cli._Progress("compressing x", quiet=True, delay=0.0)
    quiet.step("lambda 1")
    quiet.done()
    assert capsys.readouterr().err == ""


def test_conform_delegation(capsys, monkeypatch):
    name = "bac_ref.conformance.runner"
    real = sys.modules.pop(name, None)
    import importlib.util
    monkeypatch.setattr(importlib.util, "find_spec", lambda n: None)
    code, out, err = run_cli(capsys, "conform", "--x")
    assert code == 2 and err.strip() == "conformance runner not available"
    monkeypatch.undo()
    fake = types.ModuleType(name)
    calls = []
    fake.main = lambda argv: calls.append(argv) or 0
    import importlib.machinery
    fake.__spec__ = importlib.machinery.ModuleSpec(name, None)
    monkeypatch.setitem(sys.modules, name, fake)
    code, _, _ = run_cli(capsys, "conform", "a", "--b")
    assert code == 0 and calls == [["a", "--b"]]
    if real is not None:
        sys.modules[name] = real


# ---------------------------------------------------------------------------
# Batch, demo, the real entry point
# ---------------------------------------------------------------------------
def test_batch_jobs_with_a_bad_file(images, tmp_path):
    out_dir = tmp_path / "out"
    r = run_module("compress", images / "rgb.png", images / "badcrc.png", images / "grey.png",
                   images / "missing.png", "--out-dir", out_dir, "--jobs", "2", "--lam", "5",
                   cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [ln.split(" -> ")[0] for ln in lines] == ["rgb.png", "grey.png"]
    errors = r.stderr.strip().splitlines()
    assert len(errors) == 2 and all(e.startswith("bac-ref: error: ") for e in errors)
    assert "badcrc.png" in errors[0] and "missing.png" in errors[1]
    assert only_files(out_dir) == ["grey.bac", "rgb.bac"]
    assert (out_dir / "rgb.bac").read_bytes() == codec.compress(images / "rgb.png", 5.0)
    r = run_module("compress", images / "rgb.png", "--out-dir", out_dir, cwd=tmp_path)
    assert r.returncode == 2 and "--force" in r.stderr


def test_batch_in_process(capsys, images, tmp_path):
    code, out, err = run_cli(capsys, "compress", images / "rgb.png", images / "grey.png",
                             "--out-dir", tmp_path / "o")
    assert code == 0 and err == "" and len(out.strip().splitlines()) == 2
    code, out, err = run_cli(capsys, "compress", images / "rgb.png", images / "rgb.png",
                             "--out-dir", tmp_path / "p")
    assert code == 2 and len(out.strip().splitlines()) == 1
    one_error_line(err, "same output name")


def test_entry_point_and_help(tmp_path):
    r = run_module("--help", cwd=tmp_path)
    assert r.returncode == 0 and "compress" in r.stdout and "demo" in r.stdout
    r = run_module("compress", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--lam" in r.stdout and "default 3" in r.stdout
    r = run_module("decompress", "nothing.bac", "x.png", cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    one_error_line(r.stderr, "nothing.bac")


def _check_demo(capsys, out, shape):
    code, stdout, err = run_cli(capsys, "demo", "--out", out)
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["lambda", "bytes", "bpp", "PSNR", "dB", "encode", "s",
                                "decode", "s"]
    rows = [ln.split() for ln in lines[1:4]]
    assert [float(r[0]) for r in rows] == list(cli.DEMO_LAMBDAS)
    bpps = [float(r[2]) for r in rows]
    assert bpps[0] < bpps[1] < bpps[2]
    assert len(only_files(out)) == 6
    for lam, r in zip(cli.DEMO_LAMBDAS, rows):
        bac = out / f"kodim23_lam{cli._fmt_lam(lam)}.bac"
        assert bac.stat().st_size == int(r[1])
        assert read_image(out / f"kodim23_lam{cli._fmt_lam(lam)}.png").pixels.shape == shape
    return rows


def test_demo_reruns(capsys, tmp_path, monkeypatch, kodim23):
    """The demo's table and files, on a crop (cheap); a second run replaces its own files."""
    small = tmp_path / "src" / "kodim23.png"
    small.parent.mkdir()
    write_png(small, np.array(kodim23[160:224, 320:416]))
    monkeypatch.setattr(cli, "find_demo_image", lambda: str(small))
    out = tmp_path / "demo"
    (tmp_path / "demo").mkdir()
    (out / "mine.txt").write_text("keep")
    code, _, err = run_cli(capsys, "demo", "--out", out)
    assert code == 0, err
    assert sorted(only_files(out)) == sorted(
        ["mine.txt"] + [f"kodim23_lam{cli._fmt_lam(v)}.{e}" for v in cli.DEMO_LAMBDAS
                        for e in ("bac", "png")])
    before = {f: (out / f).read_bytes() for f in only_files(out)}
    code, stdout, err = run_cli(capsys, "demo", "--out", out)        # reruns, same files
    assert code == 0, err
    assert {f: (out / f).read_bytes() for f in only_files(out)} == before


@pytest.mark.slow
def test_demo(capsys, tmp_path):
    """The real demo: kodim23, three full 768 x 512 encodes (slow)."""
    _check_demo(capsys, tmp_path / "demo", (512, 768, 3))


def test_demo_folder_is_gitignored():
    with open(os.path.join(REPO, ".gitignore")) as fh:
        assert "/bac_ref_demo/" in fh.read().split()


# ---------------------------------------------------------------------------
# Habits of cjpeg / cwebp / avifenc: stdin/stdout, formats, quiet/verbose
# ---------------------------------------------------------------------------
def test_stdin_stdout_both_ways(images, tmp_path):
    png = (images / "rgb.png").read_bytes()
    r = subprocess.run([sys.executable, "-m", "bac_ref", "compress", "-", "-", "--lam", "5"],
                       input=png, capture_output=True, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout == codec.compress(images / "rgb.png", 5.0)          # the bytes, nothing else
    assert b"<stdin> -> <stdout>" in r.stderr                          # the result line
    assert only_files(tmp_path) == []                                  # no file named "-"
    r2 = subprocess.run([sys.executable, "-m", "bac_ref", "decompress", "-", "-"],
                        input=r.stdout, capture_output=True, cwd=tmp_path,
                        env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert r2.returncode == 0, r2.stderr
    from bac_ref.imageio import decode_image
    assert np.array_equal(decode_image(r2.stdout).pixels, codec.decompress(r.stdout))


def test_a_reader_that_goes_away_is_not_an_error(images, tmp_path):
    """`bac-ref info x.bac | head`, `compress - - | head -c 10`: quiet, exit 141 like cat."""
    bac = tmp_path / "x.bac"
    bac.write_bytes(codec.compress(images / "rgb.png", 5.0))
    for argv in (["info", bac], ["decompress", bac, "-"]):
        read_end, write_end = os.pipe()
        os.close(read_end)                                  # the reader is gone before we write
        try:
            r = subprocess.run([sys.executable, "-m", "bac_ref", *map(str, argv)],
                               stdout=write_end, stderr=subprocess.PIPE, cwd=tmp_path,
                               env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
        finally:
            os.close(write_end)
        assert r.returncode == 141, r.stderr
        assert r.stderr.decode().strip() == "", r.stderr    # no "error: Broken pipe"


@pytest.mark.skipif(os.name != "posix", reason="closes fd 1 in the child (POSIX)")
def test_a_closed_stdout_is_one_error_line(images, tmp_path):
    bac = tmp_path / "x.bac"
    bac.write_bytes(codec.compress(images / "rgb.png", 5.0))
    r = subprocess.run([sys.executable, "-m", "bac_ref", "info", str(bac)],
                       stderr=subprocess.PIPE, text=True, cwd=tmp_path, preexec_fn=lambda: os.close(1),
                       env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert r.returncode == 2
    one_error_line(r.stderr, "standard output is closed")


def test_output_is_input_is_refused(capsys, images, tmp_path):
    src = tmp_path / "self.png"
    src.write_bytes((images / "rgb.png").read_bytes())
    before = src.read_bytes()
    for argv in (["compress", src, src, "--force"],
                 ["compress", src, tmp_path / "." / "self.png", "--force"],
                 ["decompress", src, src, "--force"]):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == ""
        one_error_line(err, "self.png", "input")
        assert src.read_bytes() == before


def test_decompress_format_from_extension(capsys, images, tmp_path):
    bac = tmp_path / "x.bac"
    assert run_cli(capsys, "compress", images / "rgb.png", bac, "--quiet")[0] == 0
    pixels = codec.decompress(bac.read_bytes())
    for name, fmt in (("x.ppm", "PNM"), ("x.pnm", "PNM"), ("x.npy", "NPY"), ("x.png", "PNG")):
        code, _, err = run_cli(capsys, "decompress", bac, tmp_path / name, "--quiet")
        assert code == 0, err
        img = read_image(tmp_path / name)
        assert img.format == fmt and np.array_equal(img.pixels, pixels)
    assert (tmp_path / "x.ppm").read_bytes()[:2] == b"P6"
    code, _, err = run_cli(capsys, "decompress", bac, tmp_path / "x.jpg")
    assert code == 2
    line = one_error_line(err, "x.jpg", ".png", ".npy")
    assert "x.bac" not in line                                      # about OUT, not IN
    code, _, err = run_cli(capsys, "decompress", bac, tmp_path / "x.pgm")   # RGB into PGM
    assert code == 2
    one_error_line(err, "grey")
    assert not (tmp_path / "x.jpg").exists() and not (tmp_path / "x.pgm").exists()


def test_16_bit_input_warns_once(capsys, images, tmp_path):
    crop = read_image(images / "rgb.png").pixels.astype(np.uint16) * 257
    write_png(tmp_path / "deep.png", crop)
    code, out, err = run_cli(capsys, "compress", tmp_path / "deep.png", tmp_path / "d.bac")
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "warning" in lines[0] and "16-bit" in lines[0]


def test_quiet_and_verbose(capsys, images, tmp_path):
    code, out, err = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "q.bac",
                             "--quiet")
    assert code == 0 and out == "" and err == ""
    code, out, err = run_cli(capsys, "compress", images / "rgb.png", tmp_path / "v.bac",
                             "--verbose")
    assert code == 0 and out.count("\n") == 1
    for stage in ("g_a", "VBQ", "entropy coding", "PSNR (g_s)", "total"):
        assert f"  {stage}: " in err
    code, out, err = run_cli(capsys, "decompress", tmp_path / "v.bac", tmp_path / "v.png",
                             "--verbose")
    assert code == 0 and "entropy decoding" in err and "g_s" in err
    code, out, err = run_cli(capsys, "decompress", tmp_path / "v.bac", tmp_path / "w.png", "-q")
    assert code == 0 and out == "" and err == ""


@pytest.mark.skipif(os.name != "posix" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="needs a POSIX user for whom permissions apply (not root)")
def test_unwritable_folder_names_the_users_path(capsys, images, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, "compress", images / "rgb.png", locked / "o.bac")
        assert code == 2
        line = one_error_line(err, str(locked / "o.bac"), "Permission denied")
        assert ".tmp" not in line
    finally:
        locked.chmod(0o700)


def test_atomic_write_error_names_the_users_path(tmp_path, monkeypatch):
    """The same check as above, for any user: mkstemp's error is re-raised on our path."""
    import tempfile
    from bac_ref import imageio

    def denied(**kw):
        raise PermissionError(13, "Permission denied", os.path.join(kw["dir"], ".x1y2.tmp"))
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as info:
        imageio.atomic_write(tmp_path / "o.bac", b"x")
    assert info.value.filename == str(tmp_path / "o.bac") and ".tmp" not in str(info.value)


def test_help_texts(tmp_path):
    r = run_module("conform", "--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("usage: bac-ref conform")
    r = run_module("compress", "--help", cwd=tmp_path)
    text = " ".join(r.stdout.split())
    assert "costs about" in text and "1-2x one --lam compress" in text         # --bpp
    assert "2-4 trial decodes" in text                                        # --psnr
    assert "BLAS threads" in text and "--skip-existing" in text


def test_decompress_loads_no_benchmark_module(tmp_path, images):
    """The CLI imports what a command needs (issue 17): none of these for decompress."""
    bac = tmp_path / "x.bac"
    (bac).write_bytes(codec.compress(images / "rgb.png", 3.0))
    code = ("import sys, runpy; sys.argv = ['bac-ref', 'decompress', sys.argv[1], sys.argv[2]];"
            "from bac_ref import cli; rc = cli.main(sys.argv[1:]);"
            "print(sorted(m for m in sys.modules if m.startswith('bac_ref')))")
    r = subprocess.run([sys.executable, "-c", code, str(bac), str(tmp_path / "x.png")],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=REPO),
                       timeout=300)
    assert r.returncode == 0, r.stderr
    loaded = r.stdout.strip().splitlines()[-1]
    for name in ("bench", "baselines", "evaluate", "embeddings", "analogy", "embedding_codec",
                 "conformance", "train", "release", "skipgram", "ratecontrol"):
        assert f"'bac_ref.{name}'" not in loaded, (name, loaded)


# ---------------------------------------------------------------------------
# Batches: resume, progress, Ctrl-C
# ---------------------------------------------------------------------------
def test_batch_skip_existing(capsys, images, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "rgb.bac").write_bytes(b"\x89BAC broken")                  # incomplete: redone
    good = codec.compress(images / "grey.png", 3.0)
    (out / "grey.bac").write_bytes(good)
    stamp = (out / "grey.bac").stat().st_mtime_ns
    code, stdout, err = run_cli(capsys, "compress", images / "rgb.png", images / "grey.png",
                                "--out-dir", out, "--skip-existing", "--force")
    assert code == 0, err
    assert [ln.split(" -> ")[0] for ln in stdout.strip().splitlines()] == ["rgb.png"]
    assert "1 complete output skipped" in err
    assert (out / "grey.bac").stat().st_mtime_ns == stamp
    assert (out / "rgb.bac").read_bytes() == codec.compress(images / "rgb.png", 3.0)


def test_batch_progress_counts_files(capsys, images, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "PROGRESS_DELAY", 0.0)
    seen = []
    monkeypatch.setattr(cli._Progress, "step", lambda self, msg: seen.append(msg))
    code, _, _ = run_cli(capsys, "compress", images / "rgb.png", images / "grey.png",
                         "--out-dir", tmp_path / "o")
    assert code == 0 and seen[-2:] == ["1/2 files done", "2/2 files done"]


@pytest.mark.slow
def test_ctrl_c_stops_a_batch(kodim23, tmp_path):
    """SIGINT to the main process of --jobs 2: exit 130 soon, no partial file, done files stay."""
    import signal
    import time
    src = tmp_path / "in"
    src.mkdir()
    for i in range(12):
        write_png(src / f"p{i:02d}.png", np.array(kodim23[:256, :384]))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "bac_ref", "compress",
                          *sorted(map(str, src.iterdir())), "--out-dir", str(out), "--jobs", "2"],
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out.exists() and any(
            f.endswith(".bac") for f in os.listdir(out))):
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        raise AssertionError("the batch went on after Ctrl-C")
    assert p.returncode == 130 and "interrupted" in err
    names = only_files(out)
    assert all(n.endswith(".bac") for n in names), names                # no temporary files
    assert 1 <= len(names) < 12
    for n in names:
        codec.decompress_details((out / n).read_bytes(), synthesize=False)   # complete
