"""The model file read without NumPy (SPEC.md §6.0): what a C or Rust decoder needs.

Two readers written from SPEC.md §6.0 alone find M, N and the coding prior in every
model file bac_ref ships or makes (the shipped model, the conformance model of the
vectors, a model with a Gaussian prior), and must agree with numpy.load:

* ``read_model_stdlib`` below: Python's struct module only (no zipfile, no NumPy);
* tests/modelfile_reader.c: C99 without any library, under 150 lines, compiled with
  the system's C compiler (the test skips cleanly where there is none).
"""
from __future__ import annotations

import ast
import io
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bac_ref.conformance import runner as conformance, cases as conformance_cases
from bac_ref import model as model_mod

HERE = Path(__file__).resolve().parent
C_READER = HERE / "modelfile_reader.c"
MASK64 = (1 << 64) - 1


def read_model_stdlib(data: bytes) -> dict:
    """name -> (descr, shape, raw little-endian bytes) of every entry (SPEC.md §6.0)."""
    out, off = {}, 0
    while off + 30 <= len(data) and struct.unpack_from("<I", data, off)[0] == 0x04034B50:
        flags, method = struct.unpack_from("<HH", data, off + 6)
        csize, usize, nlen, elen = struct.unpack_from("<IIHH", data, off + 18)
        assert method == 0 and not flags & 8, "entries are stored, without data descriptor"
        name = data[off + 30:off + 30 + nlen].decode("ascii")
        extra = off + 30 + nlen
        e = extra
        while e + 4 <= extra + elen:                  # zip64 extra field (id 1)
            fid, size = struct.unpack_from("<HH", data, e)
            p = e + 4
            if fid == 1:
                if usize == 0xFFFFFFFF:
                    usize = struct.unpack_from("<Q", data, p)[0]
                    p += 8
                if csize == 0xFFFFFFFF:
                    csize = struct.unpack_from("<Q", data, p)[0]
            e += 4 + size
        npy = data[extra + elen:extra + elen + csize]
        assert npy[:6] == b"\x93NUMPY"
        hlen, start = ((struct.unpack_from("<H", npy, 8)[0], 10) if npy[6] == 1
                       else (struct.unpack_from("<I", npy, 8)[0], 12))
        header = ast.literal_eval(npy[start:start + hlen].decode("latin-1"))
        assert header["fortran_order"] is False
        out[name[:-4]] = (header["descr"], tuple(header["shape"]), npy[start + hlen:])
        off = extra + elen + csize
    return out


def _text(entry) -> str:
    descr, shape, raw = entry
    assert descr.startswith("<U") and shape == ()
    return raw.decode("utf-32-le").rstrip("\x00")


def _models(tmp_path):
    folder = conformance_cases.DEFAULT_VECTORS
    paths = [folder / conformance_cases.CONFORMANCE_MODEL]
    shipped = Path(model_mod.resolve_model_path())
    paths.append(shipped)
    tiny = tmp_path / "tiny-gaussian.npz"
    tiny.write_bytes(conformance.tiny_model_bytes())
    paths.append(tiny)
    return paths


def _expected(path):
    m = model_mod.load_model(str(path))
    with np.load(path, allow_pickle=False) as z:
        kind = str(z["prior.kind"])
        table = z["prior.table"] if "prior.table" in z.files else None
    return m, kind, table


def _fold(table) -> int:
    bits = np.ascontiguousarray(table, dtype="<f8").view("<u8").ravel().tolist()
    x = 0
    for i, b in enumerate(bits):
        x ^= (b * (2 * i + 1)) & MASK64
    return x


def test_stdlib_reader_finds_m_and_the_prior(tmp_path):
    for path in _models(tmp_path):
        m, kind, table = _expected(path)
        entries = read_model_stdlib(path.read_bytes())
        descr, shape, _ = entries["g_s.deconv0.weight"]
        assert descr == "<f4" and shape[0] == m.M
        assert entries["g_a.conv0.weight"][1][0] == m.N
        assert _text(entries["prior.kind"]) == kind
        meta = _text(entries["meta_json"])
        assert meta.isascii() and '"M": %d' % m.M in meta
        if table is not None:
            descr, shape, raw = entries["prior.table"]
            assert descr == "<f8" and shape == table.shape
            assert raw == np.ascontiguousarray(table, dtype="<f8").tobytes()


@pytest.fixture(scope="module")
def c_reader(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler")
    exe = tmp_path_factory.mktemp("c") / "reader"
    subprocess.run([cc, "-std=c99", "-O1", "-Wall", "-Werror", "-o", str(exe), str(C_READER)],
                   check=True, capture_output=True, timeout=120)
    return exe


def test_c_reader_is_short():
    assert len(C_READER.read_text().splitlines()) < 150, "the point: a C reader under 150 lines"


def test_c_reader_finds_m_and_the_prior(tmp_path, c_reader):
    for path in _models(tmp_path):
        m, kind, table = _expected(path)
        out = subprocess.run([str(c_reader), str(path)], capture_output=True, text=True,
                             timeout=60, check=True).stdout.splitlines()
        want = [f"M {m.M}", f"N {m.N}", f"kind {kind}"]
        if table is not None:
            bits = np.ascontiguousarray(table, dtype="<f8").view("<u8").ravel()
            want += [f"table {table.shape[0]} {table.shape[1]}",
                     f"bits {_fold(table):016x} {int(bits[0]):016x} {int(bits[-1]):016x}"]
        assert out == want, path.name


def test_a_compressed_archive_is_not_a_model_file(tmp_path):
    """SPEC.md §6.0: entries are stored; bac_ref's loader refuses a deflated archive too."""
    import zipfile
    path = tmp_path / "deflated.npz"
    with zipfile.ZipFile(io.BytesIO(conformance.tiny_model_bytes())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    with pytest.raises(AssertionError, match="stored"):
        read_model_stdlib(path.read_bytes())
    with pytest.raises(model_mod.ModelFileError, match="stored"):
        model_mod.load_model(str(path))


def test_c_reader_refuses_a_compressed_archive(tmp_path, c_reader):
    import zipfile
    path = tmp_path / "deflated.npz"
    with zipfile.ZipFile(io.BytesIO(conformance.tiny_model_bytes())) as src, \
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst:
        for name in src.namelist():
            dst.writestr(name, src.read(name))
    proc = subprocess.run([str(c_reader), str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not stored" in proc.stderr
