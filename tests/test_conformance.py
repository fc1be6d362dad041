"""Conformance vectors (SPEC.md §11) and their runner, bac_ref.conformance.

* bac_ref passes every vector in-process (decode, compare, re-encode);
* the external-command paths (--decoder, --encoder) work, with a wrapper script
  that calls bac_ref, and catch a decoder that lies, accepts invalid files or hangs;
* a tampered vector fails; a model change is reported with "regenerate";
* regenerating the platform-independent cases gives the stored bytes again;
* every payload is decoded by constriction 0.5.0 as an independent range decoder
  (the steps re-derived from SPEC.md §9 by conformance.walk_symbols).

Goldens are rewritten only by
``BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate data/vectors``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bac_ref import bitstream, codec, conformance as conf
from bac_ref.rangecoder import Encoder

VECTORS = conf.DEFAULT_VECTORS
INDEX = json.loads((VECTORS / "index.json").read_text(encoding="utf-8"))
CASES = {c["id"]: c for c in INDEX["cases"]}
BY_KIND = {k: [c for c in CASES if CASES[c]["kind"] == k] for k in ("image", "array", "coder",
                                                                     "reject")}
TOTAL = 1 << 24

# What the vectors must exercise together (the tags are computed at generation from the
# symbols, SPEC.md §9, and from the coder's branches, SPEC.md §2; header tags by hand).
REQUIRED = {
    "header.magic", "header.version", "header.entropy_model", "header.max_depth",
    "header.max_depth.1", "header.max_depth.16", "header.flags.grey", "header.flags.lambda_map",
    "header.flags.second_pass", "header.flags.all", "header.flags.unknown", "header.model_id",
    "header.height", "header.width", "header.width.max", "header.limits", "header.lambda",
    "header.lambda.zero", "header.lambda.huge", "header.crc32", "header.length",
    "payload.length", "payload.trailing", "payload.empty", "payload.quantile", "payload.sealing",
    "payload.active_without_depth",
    "input.grey", "input.rgba", "input.16bit", "input.arrays", "input.sigma_inf",
    "input.mu_on_grid", "input.extreme_mu", "prior.model", "prior.std_normal",
    "em.active_0", "em.active_1", "em.ctx_first", "em.ctx_row0", "em.ctx_col0", "em.ctx_inner",
    "em.depth_0", "em.depth_mid", "em.depth_max", "em.depth_refresh", "em.depth_halving",
    "em.ctx_c_capped",
    "em.vote_0", "em.vote_1", "em.vote_2", "em.tree_halving", "em.uniform",
    "coder.carry", "coder.long_carry_chain", "coder.seal_carry", "coder.seal_extra_zero",
    "coder.uniform", "coder.mass1", "coder.entropy_model_steps",
}

WRAPPER = r'''
import sys, time
sys.path.insert(0, REPO)                    # bac_ref from this source tree
import numpy as np
from bac_ref import codec, conformance
from bac_ref.errors import BitstreamError

mode, src, dst = sys.argv[1:4]
if mode.startswith("decode"):
    data = open(src, "rb").read()
    if mode == "decode-accept-all":
        try:
            dec = codec.decompress_details(data)
        except BitstreamError:
            np.savez(dst, depth=np.zeros(1), index=np.zeros(1), zhat=np.zeros(1))
            sys.exit(0)
    elif mode == "decode-hang":
        time.sleep(60)
    try:
        dec = codec.decompress_details(data)
    except BitstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    zhat = dec.zhat
    if mode == "decode-ulp":
        zhat = zhat.copy()
        zhat.flat[-1] = np.nextafter(zhat.flat[-1], np.inf)
    np.savez(dst, depth=dec.depth, index=dec.index, zhat=zhat, image=dec.pixels)
else:
    inp = conformance.read_npz(src)
    data, _ = conformance.encode_arrays(inp)
    if mode == "encode-lambda":             # same symbols, another lambda in the header
        h, payload = codec.bitstream.parse(data)
        h = codec.bitstream.Header(**{**h.__dict__, "lam": h.lam + 1.0})
        data = codec.bitstream.pack(h, payload)
    open(dst, "wb").write(data)
'''


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory):
    path = tmp_path_factory.mktemp("wrapper") / "bac_ref_wrapper.py"
    repo = Path(conf.__file__).resolve().parent.parent
    path.write_text(f"REPO = {str(repo)!r}\n" + WRAPPER, encoding="utf-8")
    return path


def _cmd(wrapper, mode):
    return f"{sys.executable} {wrapper} {mode} {{in}} {{out}}"


def _run(**kw):
    lines = []
    res = conf.check(report=lines.append, **kw)
    return res, lines


def _copy(tmp_path, ids):
    """A vector folder holding only ``ids`` (index.json rewritten to list them)."""
    dest = tmp_path / "vectors"
    dest.mkdir()
    for cid in ids:
        shutil.copytree(VECTORS / cid, dest / cid)
    index = dict(INDEX, cases=[CASES[c] for c in ids])
    (dest / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return dest


def _reseal(folder: Path, name: str, data: bytes):
    """Replace a file and update its sha256 in the manifest and the manifest's in index.json."""
    (folder / name).write_bytes(data)
    man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    man["files"][name] = conf._sha256(data)
    raw = json.dumps(man).encode()
    (folder / "manifest.json").write_bytes(raw)
    ipath = folder.parent / "index.json"
    index = json.loads(ipath.read_text(encoding="utf-8"))
    for c in index["cases"]:
        if c["id"] == folder.name:
            c["manifest_sha256"] = conf._sha256(raw)
    ipath.write_text(json.dumps(index), encoding="utf-8")


# ---------------------------------------------------------------------------
# The vectors themselves
# ---------------------------------------------------------------------------
def test_index_and_coverage():
    assert INDEX["format"] == conf.FORMAT
    assert len(CASES) >= 30
    assert all(BY_KIND[k] for k in BY_KIND)
    on_disk = {p.name for p in VECTORS.iterdir() if p.is_dir()}
    assert on_disk == set(CASES)
    tags = set()
    for cid in CASES:
        man = json.loads((VECTORS / cid / "manifest.json").read_text(encoding="utf-8"))
        assert man["id"] == cid and man["description"] and man["tolerance"]
        if man["kind"] != "coder":
            assert man["model_id"] == INDEX["model_id"]
        tags |= set(man["exercises"])
    missing = REQUIRED - tags
    assert not missing, f"no vector exercises {sorted(missing)}"
    total = sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file())
    assert total < 3 << 20, f"vectors take {total} bytes"


def test_index_model_is_the_default_model():
    model = codec.get_model()
    assert INDEX["model_id"] == model.model_id[:16], (
        f"vectors were made with model {INDEX['model_id']}, the current model is "
        f"{model.model_id[:16]}: regenerate them ({INDEX['regenerate']})")


def test_bac_ref_passes_every_vector():
    res, lines = _run()
    assert res["failed"] == 0, "\n".join(l for l in lines if not l.startswith("PASS"))
    assert res["passed"] == len(CASES)
    assert lines[-1].startswith(f"{len(CASES)} passed, 0 failed")
    assert all(l.split()[0] in ("PASS", "WARN") for l in lines[:-1])


def test_replay_of_spec_9_matches_entropy_model():
    """conformance.coding_steps (from SPEC.md §9's text) -> the same payload as bac_ref."""
    for cid in BY_KIND["image"] + BY_KIND["array"]:
        data = (VECTORS / cid / "file.bac").read_bytes()
        header, payload = bitstream.parse(data)
        sym = conf.read_npz(VECTORS / cid / "symbols.npz")
        steps = conf.coding_steps(sym["depth"], sym["index"], header.max_depth)
        enc = Encoder()
        for start, mass in conf.steps_to_intervals(steps):
            enc.encode_intervals([start], [mass])
        assert enc.finish() == payload, cid
    steps = json.loads((VECTORS / "coder_entropy_model_steps" / "input.json").read_bytes())
    assert conf.encode_coder_case(steps) == (
        VECTORS / "array_model_prior" / "file.bac").read_bytes()[32:]


def test_doctests():
    import doctest
    result = doctest.testmod(conf)
    assert result.failed == 0 and result.attempted >= 4


def test_walk_refuses_an_active_channel_without_depth():
    with pytest.raises(ValueError, match="active"):
        conf.walk_symbols((1, 1, 2), 4, lambda kind, *a: 1 if kind == "active" else 0)


PLATFORM_INDEPENDENT = BY_KIND["array"] + BY_KIND["coder"] + BY_KIND["reject"]


def test_regenerating_gives_the_same_bytes(tmp_path):
    """Array, coder and reject cases do not depend on float32 BLAS: regenerate and compare."""
    ids = conf.generate(tmp_path, only=PLATFORM_INDEPENDENT, report=None)
    assert sorted(ids) == sorted(PLATFORM_INDEPENDENT)
    for cid in ids:
        for path in sorted((tmp_path / cid).iterdir()):
            assert path.read_bytes() == (VECTORS / cid / path.name).read_bytes(), (
                f"{cid}/{path.name} changed: regenerate the vectors deliberately "
                f"({INDEX['regenerate']}) if the format or the model changed")


def test_generate_refuses_without_the_flag(monkeypatch, tmp_path):
    monkeypatch.delenv(conf.REGENERATE_ENV, raising=False)
    assert conf.main(["--generate", str(tmp_path)]) == 2
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------
# External commands
# ---------------------------------------------------------------------------
DECODER_SUBSET = ["image_1x1_rgb", "image_17x33_rgb", "image_40x24_grey", "image_128x128_kodim",
                  "array_model_prior", "array_width_65536", "reject_bad_magic",
                  "reject_trailing_word", "reject_too_many_pixels", "coder_seal_carry"]


def test_external_decoder(wrapper):
    res, lines = _run(decoder=_cmd(wrapper, "decode"), cases=set(DECODER_SUBSET))
    assert res["failed"] == 0, lines
    assert res["skipped"] == 1 and res["passed"] == len(DECODER_SUBSET) - 1
    assert any(l.startswith("SKIP coder_") for l in lines)


def test_external_encoder(wrapper):
    ids = ["array_model_prior", "array_lambda_map", "array_second_pass",
           "array_carry_chains_depth16"]
    res, lines = _run(encoder=_cmd(wrapper, "encode"), cases=set(ids + ["image_1x1_rgb"]))
    assert res["failed"] == 0 and res["warned"] == 0, lines
    assert res["passed"] == len(ids) and res["skipped"] == 1


def test_external_encoder_with_other_header_bytes_warns(wrapper):
    """Same symbols, another (informational) lambda in the header: WARN, naming the field."""
    res, lines = _run(encoder=_cmd(wrapper, "encode-lambda"), cases={"array_model_prior"})
    assert res["failed"] == 0 and res["warned"] == 1, lines
    assert lines[0].startswith("WARN array_model_prior: stream decodes to the expected symbols "
                               "but bytes differ from offset 2")           # bytes 20..27: lambda
    assert "(header;" in lines[0] and "header lambda = 1.1" in lines[0]


def test_external_decoder_that_is_one_ulp_off_fails(wrapper):
    res, lines = _run(decoder=_cmd(wrapper, "decode-ulp"), cases={"image_17x33_rgb"})
    assert res["failed"] == 1
    assert lines[0].startswith("FAIL image_17x33_rgb: zhat[") and "differ" in lines[0]


def test_external_decoder_that_accepts_invalid_files_fails(wrapper):
    res, lines = _run(decoder=_cmd(wrapper, "decode-accept-all"),
                      cases={"reject_crc_mismatch", "reject_lambda_nan"})
    assert res["failed"] == 2
    assert all("accepted an invalid file" in l for l in lines[:2])


def test_external_decoder_timeout(wrapper):
    res, lines = _run(decoder=_cmd(wrapper, "decode-hang"), cases={"image_1x1_rgb"}, timeout=2)
    assert res["failed"] == 1 and "timed out" in lines[0]


def test_missing_command_fails(tmp_path):
    res, lines = _run(decoder=f"{tmp_path}/no-such-decoder {{in}} {{out}}", cases={"image_1x1_rgb"})
    assert res["failed"] == 1 and "cannot run" in lines[0]


# ---------------------------------------------------------------------------
# Tampering and model changes
# ---------------------------------------------------------------------------
def test_tampered_vectors_fail(tmp_path):
    ids = ["image_17x33_rgb", "array_model_prior", "coder_seal_carry", "reject_version_2",
           "array_sigma_inf", "image_1x1_rgb"]
    root = _copy(tmp_path, ids)
    # 1. a flipped byte, manifest untouched: the sha256 check
    bac = bytearray((root / "image_17x33_rgb" / "file.bac").read_bytes())
    bac[40] ^= 1
    (root / "image_17x33_rgb" / "file.bac").write_bytes(bytes(bac))
    # 2. a consistent edit (sha256 updated): the content check catches it
    sym = conf.read_npz(root / "array_model_prior" / "symbols.npz")
    sym["index"] = sym["index"].copy()
    sym["index"].flat[np.argmax(sym["depth"])] ^= 1
    _reseal(root / "array_model_prior", "symbols.npz", conf.npz_bytes(sym))
    # 3. an edited coder payload, resealed
    pay = bytearray((root / "coder_seal_carry" / "payload.bin").read_bytes())
    pay[0] ^= 0x80
    _reseal(root / "coder_seal_carry", "payload.bin", bytes(pay))
    # 4. a reject case made valid again (its original file), resealed
    _reseal(root / "reject_version_2", "file.bac",
            (VECTORS / "array_model_prior" / "file.bac").read_bytes())
    # 5. an unlisted file
    (root / "array_sigma_inf" / "notes.txt").write_text("hello")
    res, lines = _run(vectors=root)
    text = "\n".join(lines)
    assert res["failed"] == 5 and res["passed"] == 1, text
    assert "FAIL image_17x33_rgb: file.bac: sha256 mismatch" in text
    assert "FAIL array_model_prior: index[" in text
    assert "FAIL coder_seal_carry: encoder: bytes differ from offset 0" in text
    assert "FAIL reject_version_2: an invalid file was accepted" in text
    assert "FAIL array_sigma_inf: files not as listed" in text
    assert conf.main(["--vectors", str(root), "-q"]) == 1


def test_edited_manifest_fails(tmp_path):
    root = _copy(tmp_path, ["image_1x1_rgb"])
    mpath = root / "image_1x1_rgb" / "manifest.json"
    mpath.write_text(mpath.read_text().replace('"lam": 0.05', '"lam": 0.06'))
    res, lines = _run(vectors=root)
    assert res["failed"] == 1 and "manifest.json: sha256 differs from index.json" in lines[0]


def test_model_change_says_regenerate(tmp_path):
    root = _copy(tmp_path, ["image_1x1_rgb", "coder_seal_carry"])
    index = json.loads((root / "index.json").read_text())
    index["model_id"] = "0123456789abcdef"
    (root / "index.json").write_text(json.dumps(index))
    res, lines = _run(vectors=root)
    current = codec.get_model().model_id[:16]
    assert lines[0].startswith("ERROR: vectors were made with model 0123456789abcdef")
    assert f"the current model is {current}" in lines[0] and "regenerate" in lines[0]
    assert res["failed"] == 1 and res["passed"] == 1          # coder cases need no model
    assert "FAIL image_1x1_rgb: made with model" in "\n".join(lines)


def test_cli_subprocess():
    out = subprocess.run([sys.executable, "-m", "bac_ref.conformance", "--vectors", str(VECTORS),
                          "--case", "image_1x1_rgb", "--case", "reject_lambda_inf"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["PASS image_1x1_rgb", "PASS reject_lambda_inf",
                                       "2 passed, 0 failed"]


# ---------------------------------------------------------------------------
# constriction as an independent range decoder
# ---------------------------------------------------------------------------
def _categorical_cache():
    cs = pytest.importorskip("constriction")
    cache = {}

    def model(table):
        m = cache.get(table)
        if m is None:
            probs = np.diff(np.asarray(table, dtype=np.float64)) / TOTAL   # exact: m / 2^24
            m = cache[table] = cs.stream.model.Categorical(probs, perfect=True)
        return m
    return cs, model


def _words(payload: bytes) -> np.ndarray:
    return np.frombuffer(payload, dtype=">u4").astype(np.uint32)


@pytest.mark.parametrize("cid", BY_KIND["image"] + BY_KIND["array"])
def test_constriction_decodes_every_bac(cid):
    """constriction's RangeDecoder, fed each step's 24-bit table by the SPEC.md §9 walk,
    decodes the vector's symbols; its RangeEncoder writes the same words."""
    cs, model = _categorical_cache()
    header, payload = bitstream.parse((VECTORS / cid / "file.bac").read_bytes())
    sym = conf.read_npz(VECTORS / cid / "symbols.npz")
    dec = cs.stream.queue.RangeDecoder(_words(payload))
    h, w = header.latent_shape
    depth, index = conf.walk_symbols((sym["depth"].shape[0], h, w), header.max_depth,
                                     lambda kind, table, *pos: int(dec.decode(model(table))))
    np.testing.assert_array_equal(depth, sym["depth"])
    np.testing.assert_array_equal(index, sym["index"])
    enc = cs.stream.queue.RangeEncoder()
    for table, s in conf.coding_steps(depth, index, header.max_depth):
        enc.encode(np.array([s], dtype=np.int32), model(table))
    assert enc.get_compressed().astype(">u4").tobytes() == payload


@pytest.mark.parametrize("cid", BY_KIND["coder"])
def test_constriction_decodes_every_coder_case(cid):
    """Each step decoded by constriction with its table (a uniform r-bit step: its
    uniform table for r <= 12, else the equivalent table [0, c, c + m, 2^24])."""
    cs, model = _categorical_cache()
    case = json.loads((VECTORS / cid / "input.json").read_bytes())
    payload = (VECTORS / cid / "payload.bin").read_bytes()
    dec = cs.stream.queue.RangeDecoder(_words(payload))
    for i, (kind, a, b) in enumerate(case["steps"]):
        if kind == "table":
            table, want = tuple(case["tables"][a]), b
        elif a == 0:
            continue                                   # r = 0 codes nothing (SPEC.md §2.9)
        elif a <= 12:
            table, want = conf.uniform_table(a), b
        else:
            c, m = b << (24 - a), 1 << (24 - a)
            table = tuple(sorted({0, c, c + m, TOTAL}))
            want = table.index(c)
        assert int(dec.decode(model(table))) == want, f"{cid}: step {i}"
