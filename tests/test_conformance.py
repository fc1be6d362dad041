"""Conformance vectors (SPEC.md §11) and their runner, bac_ref.conformance.runner.

* bac_ref passes every vector in-process (decode, compare, re-encode);
* the external-command paths (--decoder, --encoder) work, with a wrapper script
  that calls bac_ref, and catch a decoder that lies, accepts invalid files or hangs;
* a tampered vector fails; a model change is reported with "regenerate";
* regenerating the platform-independent cases gives the stored bytes again;
* every payload is decoded by constriction 0.5.0 as an independent range decoder
  (the steps re-derived from SPEC.md §9 by conformance.walk_symbols).

Goldens are rewritten only by
``BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate`` (which also rewrites
data/golden; no test rewrites any golden file).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bac_ref import bitstream, codec
from bac_ref.conformance import runner as conf, cases
from bac_ref.conformance import generate as gen, spec_walk as spec9
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
    "vbq.tie_rule_2", "input.lambda_negative_zero", "float.no_fma",
}
# Covered only by the cases on the shipped model (every other tag is also covered by the
# conformance model's cases, so that a model release cannot remove coverage).
ONLY_SHIPPED = {"header.lambda.zero"}

WRAPPER = r'''
import os, sys, time
sys.path.insert(0, REPO)                    # bac_ref from this source tree
import numpy as np
from bac_ref import codec
from bac_ref.conformance import runner as conformance
from bac_ref.errors import BitstreamError

mode, src, dst = sys.argv[1:4]
if mode.startswith("decode"):
    data = open(src, "rb").read()
    model = conformance.case_model(os.path.dirname(src))
    if mode == "decode-accept-all":
        try:
            dec = codec.decompress_details(data, model, max_pixels=1 << 26)
        except BitstreamError:
            np.savez(dst, depth=np.zeros(1), index=np.zeros(1), zhat=np.zeros(1))
            sys.exit(0)
    elif mode == "decode-hang":
        time.sleep(60)
    try:
        dec = codec.decompress_details(data, model, max_pixels=1 << 26)
    except BitstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    zhat = dec.zhat
    if mode == "decode-ulp":
        zhat = zhat.copy()
        zhat.flat[-1] = np.nextafter(zhat.flat[-1], np.inf)
    image = dec.pixels
    if mode == "decode-truncate":          # floor instead of round half to even (SPEC.md §10)
        h = dec.header
        x = model.synthesis(dec.zhat.astype(np.float32), size=(h.height, h.width))
        if h.grey:
            x = x.mean(axis=2, dtype=np.float32)
        image = np.floor(np.float32(255) * np.clip(x, 0, 1)).astype(np.uint8)
    np.savez(dst, depth=dec.depth, index=dec.index, zhat=zhat, image=image)
else:
    inp = conformance.read_npz(src)
    model = conformance.case_model(os.path.dirname(src))
    data, enc = conformance.encode_arrays(inp, model)
    if mode.startswith("encode-tie-"):     # always the lower / upper tied point, not rule (2)
        from bac_ref import entropy_model
        from bac_ref.conformance.generate import _TIE_LOWER, _TIE_POSITIONS
        index = enc.index.copy()
        for pos, k in zip(_TIE_POSITIONS, _TIE_LOWER):
            index[(0,) + pos] = k if mode == "encode-tie-lower" else k + 1
        h, _ = codec.bitstream.parse(data)
        data = codec.bitstream.pack(h, entropy_model.encode_symbols(enc.depth, index,
                                                                    h.max_depth))
    if mode == "encode-lambda":             # same symbols, another lambda in the header
        h, payload = codec.bitstream.parse(data)
        h = codec.bitstream.Header(**{**h.__dict__, "lam": h.lam + 1.0})
        data = codec.bitstream.pack(h, payload)
    open(dst, "wb").write(data)
'''


@pytest.fixture(scope="module")
def wrapper(tmp_path_factory):
    path = tmp_path_factory.mktemp("wrapper") / "bac_ref_wrapper.py"
    repo = Path(conf.__file__).resolve().parents[2]
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
    for extra in [INDEX["models"]["conformance"]] + list(INDEX["tables"].values()):
        shutil.copyfile(VECTORS / extra["file"], dest / extra["file"])
    index = dict(INDEX, cases=[CASES[c] for c in ids])
    (dest / "index.json").write_text(json.dumps(index), encoding="utf-8")
    return dest


def _reseal_manifest(mpath: Path, edit):
    """Edit a case's manifest and update its sha256 in index.json."""
    raw = json.dumps(edit(json.loads(mpath.read_text(encoding="utf-8")))).encode()
    mpath.write_bytes(raw)
    ipath = mpath.parent.parent / "index.json"
    index = json.loads(ipath.read_text(encoding="utf-8"))
    for c in index["cases"]:
        if c["id"] == mpath.parent.name:
            c["manifest_sha256"] = cases._sha256(raw)
    ipath.write_text(json.dumps(index), encoding="utf-8")


def _reseal(folder: Path, name: str, data: bytes):
    """Replace a file and update its sha256 in the manifest and the manifest's in index.json."""
    (folder / name).write_bytes(data)
    man = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    man["files"][name] = cases._sha256(data)
    raw = json.dumps(man).encode()
    (folder / "manifest.json").write_bytes(raw)
    ipath = folder.parent / "index.json"
    index = json.loads(ipath.read_text(encoding="utf-8"))
    for c in index["cases"]:
        if c["id"] == folder.name:
            c["manifest_sha256"] = cases._sha256(raw)
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
    tags, tags_conformance = set(), set()
    for cid in CASES:
        man = json.loads((VECTORS / cid / "manifest.json").read_text(encoding="utf-8"))
        assert man["id"] == cid and man["description"] and man["tolerance"]
        role = CASES[cid]["model"]
        if man["kind"] == "coder":
            assert role is None
        else:
            assert man["model_id"] == INDEX["models"][role]["model_id"]
        tags |= set(man["exercises"])
        if role != "shipped":
            tags_conformance |= set(man["exercises"])
    missing = REQUIRED - tags
    assert not missing, f"no vector exercises {sorted(missing)}"
    assert REQUIRED - tags_conformance == ONLY_SHIPPED
    total = sum(p.stat().st_size for p in VECTORS.rglob("*") if p.is_file())
    assert total < 3 << 20, f"vectors take {total} bytes"


def test_most_cases_use_the_frozen_conformance_model():
    """A model release changes only the few cases marked "shipped" (SPEC.md §11.2)."""
    info = INDEX["models"]["conformance"]
    path = VECTORS / info["file"]
    assert cases._sha256(path.read_bytes()) == info["sha256"], "the conformance model is frozen"
    assert path.stat().st_size < 300_000
    assert info["model_id"] != INDEX["models"]["shipped"]["model_id"]
    shipped = sorted(c for c in CASES if CASES[c]["model"] == "shipped")
    assert shipped == sorted(cases.SHIPPED_MODEL_CASES)
    assert len(shipped) <= 4 and len(CASES) - len(shipped) >= 60


def test_shipped_cases_use_the_default_model():
    model = codec.get_model()
    assert INDEX["models"]["shipped"]["model_id"] == model.model_id[:16], (
        f"the shipped-model cases were made with model {INDEX['models']['shipped']['model_id']}, "
        f"the current model is {model.model_id[:16]}: regenerate them ({INDEX['regenerate']})")


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
        steps = spec9.coding_steps(sym["depth"], sym["index"], header.max_depth)
        enc = Encoder()
        for start, mass in spec9.steps_to_intervals(steps):
            enc.encode_intervals([start], [mass])
        assert enc.finish() == payload, cid
    steps = json.loads((VECTORS / "coder_entropy_model_steps" / "input.json").read_bytes())
    assert cases.encode_coder_case(steps) == (
        VECTORS / "array_model_prior" / "file.bac").read_bytes()[32:]


def test_doctests():
    import doctest
    result = doctest.testmod(spec9)
    assert result.failed == 0 and result.attempted >= 4


def test_walk_refuses_an_active_channel_without_depth():
    with pytest.raises(ValueError, match="active"):
        spec9.walk_symbols((1, 1, 2), 4, lambda kind, *a: 1 if kind == "active" else 0)


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
    _reseal(root / "array_model_prior", "symbols.npz", cases.npz_bytes(sym))
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
    root = _copy(tmp_path, ["image_48x64_lam0", "image_1x1_rgb", "coder_seal_carry"])
    index = json.loads((root / "index.json").read_text())
    index["models"]["shipped"]["model_id"] = "0123456789abcdef"
    (root / "index.json").write_text(json.dumps(index))
    root_man = root / "image_48x64_lam0" / "manifest.json"
    _reseal_manifest(root_man, lambda m: {**m, "model_id": "0123456789abcdef"})
    res, lines = _run(vectors=root)
    current = codec.get_model().model_id[:16]
    assert lines[0].startswith("ERROR: the shipped-model cases were made with model "
                               "0123456789abcdef")
    assert f"the current model is {current}" in lines[0] and "regenerate" in lines[0]
    # the conformance-model and coder cases do not depend on the shipped model
    assert res["failed"] == 1 and res["passed"] == 2
    assert "FAIL image_48x64_lam0: made with model 0123456789abcdef" in "\n".join(lines)


def test_an_edited_standard_normal_table_fails(tmp_path):
    root = _copy(tmp_path, ["coder_seal_carry"])
    raw = bytearray((root / cases.STD_NORMAL_FILE).read_bytes())
    raw[8 * 2047] ^= 1
    (root / cases.STD_NORMAL_FILE).write_bytes(bytes(raw))
    res, lines = _run(vectors=root)
    assert res["failed"] == 1 and lines[0].startswith("FAIL std_normal_k12: ")


def test_an_edited_conformance_model_is_refused(tmp_path):
    root = _copy(tmp_path, ["image_1x1_rgb"])
    name = INDEX["models"]["conformance"]["file"]
    raw = bytearray((VECTORS / name).read_bytes())
    raw[-200] ^= 1                                   # inside the central directory's comment-free tail
    (root / name).write_bytes(bytes(raw))
    res, lines = _run(vectors=root)
    assert res["failed"] == 1 and lines[0].startswith("FAIL index:")


def test_cli_subprocess():
    out = subprocess.run([sys.executable, "-m", "bac_ref.conformance", "--vectors", str(VECTORS),
                          "--case", "image_1x1_rgb", "--case", "reject_lambda_inf"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines() == ["PASS image_1x1_rgb", "PASS reject_lambda_inf",
                                       "2 passed, 0 failed"]


# ---------------------------------------------------------------------------
# The cases issue 16 added: each catches the bug it names
# ---------------------------------------------------------------------------
def test_a_truncating_decoder_fails_the_pixel_check(wrapper):
    """floor instead of round half to even: every pixel within 1, but half of them off."""
    ids = {"image_17x33_rgb", "image_40x24_grey", "array_model_prior"}
    res, lines = _run(decoder=_cmd(wrapper, "decode-truncate"), cases=ids)
    assert res["failed"] == 3, lines
    assert all("samples differ, more than 1%" in l for l in lines[:3]), lines


def test_pixel_check_allows_a_few_samples_off_by_one():
    exp = np.full((40, 40, 3), 100, np.uint8)
    got = exp.copy()
    got[0, :4, 0] += 1                               # 4 of 4800 samples: allowed (1 %: 48)
    assert conf._diff_pixels(exp, got) == 1
    got[1:20, :, :] -= 1
    with pytest.raises(cases.CaseFailure, match="samples differ"):
        conf._diff_pixels(exp, got)


@pytest.mark.parametrize("mode", ["encode-tie-lower", "encode-tie-upper"])
def test_an_encoder_that_breaks_ties_one_way_fails(wrapper, mode):
    """SPEC.md §5.3 rule (2): always taking the lower (or upper) tied point is caught."""
    res, lines = _run(encoder=_cmd(wrapper, mode), cases={"array_tie_nearest_rank"})
    assert res["failed"] == 1 and "index[0, " in lines[0], lines


def test_lambda_negative_zero_is_zero_for_encoders_and_invalid_in_headers():
    folder = VECTORS / "array_lambda_negative_zero"
    inp = conf.read_npz(folder / "input.npz")
    assert inp["lam"].item() == 0.0 and np.signbit(inp["lam"])
    data = (folder / "file.bac").read_bytes()
    assert data[20:28] == bytes(8)                   # header lambda +0.0
    assert conf.encode_arrays(inp, conf.case_model(folder))[0] == data
    with pytest.raises(codec.BitstreamError, match="lambda"):
        bitstream.parse((VECTORS / "reject_lambda_negative_zero" / "file.bac").read_bytes())


def test_pixel_limits():
    """2^25 < H W <= 2^26: valid (bac_ref's default limit refuses it, the format's accepts);
    H W > 2^26: invalid."""
    folder = VECTORS / "array_pixels_over_2p25"
    data = (folder / "file.bac").read_bytes()
    header, _ = bitstream.parse(data)
    assert 1 << 25 < header.height * header.width <= 1 << 26
    model = conf.case_model(folder)
    with pytest.raises(codec.BitstreamError, match="limit"):
        codec.decode_symbols(data, model)
    codec.decode_symbols(data, model, max_pixels=bitstream.MAX_PIXELS)
    header = bitstream._LAYOUT.unpack_from(
        (VECTORS / "reject_pixels_over_2p26" / "file.bac").read_bytes())
    assert (header[6] + 1) * (header[7] + 1) > 1 << 26


def test_conformance_model_is_a_valid_model_file():
    model = conf.case_model(VECTORS / "array_model_prior")
    assert (model.N, model.M) == (16, 12)
    assert codec.model_prior(model).kind == "table"


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
    depth, index = spec9.walk_symbols((sym["depth"].shape[0], h, w), header.max_depth,
                                     lambda kind, table, *pos: int(dec.decode(model(table))))
    np.testing.assert_array_equal(depth, sym["depth"])
    np.testing.assert_array_equal(index, sym["index"])
    enc = cs.stream.queue.RangeEncoder()
    for table, s in spec9.coding_steps(depth, index, header.max_depth):
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
            table, want = spec9.uniform_table(a), b
        else:
            c, m = b << (24 - a), 1 << (24 - a)
            table = tuple(sorted({0, c, c + m, TOTAL}))
            want = table.index(c)
        assert int(dec.decode(model(table))) == want, f"{cid}: step {i}"


def test_setup_installs_every_vector_and_golden_file():
    """bac-ref conform after a non-editable ``pip install .``: setup.py's data_files list
    every file of data/vectors and data/golden under share/bac_ref/ (where
    conformance_cases.data_dir looks when the source tree is absent)."""
    import runpy
    import setuptools
    repo = VECTORS.parent.parent
    captured = {}
    real = setuptools.setup
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        import os
        cwd = os.getcwd()
        os.chdir(repo)
        try:
            runpy.run_path(str(repo / "setup.py"))
        finally:
            os.chdir(cwd)
    finally:
        setuptools.setup = real
    installed = {f for _, files in captured["data_files"] for f in files}
    for sub in ("data/vectors", "data/golden"):
        for p in (repo / sub).rglob("*"):
            if p.is_file():
                assert str(p.relative_to(repo)) in installed, p
    for target, files in captured["data_files"]:
        assert all(target == "share/bac_ref/" + str(Path(f).parent) or "pretrained" in f
                   or f == "data/kodim23.png" for f in files)


@pytest.mark.slow
def test_conform_after_a_non_editable_install(tmp_path):
    """pip install . into a fresh venv (system site-packages for numpy/scipy), then
    ``bac-ref conform --all`` from another directory."""
    import os
    import venv
    repo = VECTORS.parent.parent
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    src = tmp_path / "src"
    shutil.copytree(repo, src, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build"))
    pip = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "-q", str(src)],
                         capture_output=True, text=True, timeout=600)
    if pip.returncode != 0:
        pytest.skip(f"cannot build here: {pip.stderr[-300:]}")
    out = subprocess.run([str(env_dir / "bin" / "bac-ref"), "conform", "--all", "-q"],
                         capture_output=True, text=True, timeout=600, cwd=str(tmp_path),
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(" passed, 0 failed") == 3


def test_versions_follow_the_rule():
    """SPEC.md "Versions": the package version is SPEC_VERSION plus a patch number, SPEC.md
    states the same SPEC_VERSION, and the vectors were made for it."""
    import re

    import bac_ref
    spec = (VECTORS.parent.parent / "SPEC.md").read_text(encoding="utf-8")
    stated = re.search(r"\*\*SPEC_VERSION (\d+\.\d+)\*\*", spec).group(1)
    assert stated == bac_ref.SPEC_VERSION
    major_minor, patch = bac_ref.__version__.rsplit(".", 1)
    assert major_minor == bac_ref.SPEC_VERSION and patch.isdigit()
    assert INDEX["spec_version"] == bac_ref.SPEC_VERSION
