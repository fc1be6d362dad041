r"""Conformance vectors and their runner (SPEC.md §11); hostile-input fuzzing.

A conformance vector is one folder ``data/vectors/<id>/`` with its input, the
exact bytes, the decoded symbols and the reconstruction, and a
``manifest.json`` that names every file with its sha256, says what the case
exercises and which tolerance applies.  ``data/vectors/index.json`` lists the
cases and the model each was made with: the frozen conformance model kept in
the folder (``conformance-model-n16m12.npz``), or, for three image cases, the
shipped model (SPEC.md §11.2; :func:`case_model`).  Four kinds::

    kind    input                       pinned (exact)                      tolerance
    ------  --------------------------  ----------------------------------  ------------------
    image   input.png + lam/N/pass      file.bac, symbols.npz (depth,       recon.png: 1 per
                                        index, zhat)                        8-bit sample, at
                                                                            most 1 % of them
    array   input.npz: mu, sigma, lam,  file.bac (re-encoding is exact on   recon.png (if any):
            N, pass, H, W, prior        every platform), symbols.npz        1 per sample
    coder   input.json: 24-bit tables   payload.bin                         none
            and the symbol of each step
    reject  file.bac (invalid)          a decoder must refuse it            none

Why two encoder-side kinds: g_a runs in float32 BLAS and is not bit-exact
across platforms (SPEC.md §7.3), so re-encoding an *image* elsewhere may pick
other symbols (the runner reports that as WARN, never FAIL); everything after
(mu, sigma) is exact (VBQ uses IEEE-754 basic operations, SPEC.md §5; the
entropy model and the coder are integers, SPEC.md §2-§3, §9), so an *array*
case pins the encoder's bytes on every platform::

    image:  x --g_a (float32, ~1e-6)--> mu, sigma --VBQ--> (depth, index) --§9--> .bac
    array:                             mu, sigma --VBQ--> (depth, index) --§9--> .bac   (exact)
    every .bac:  .bac --§8, §9--> (depth, index) --§4.2--> zhat (exact) --g_s--> pixels (+-1)

Running (exit status 0 only when every case passes)::

    python -m bac_ref.conformance --vectors data/vectors                   # bac_ref itself
    python -m bac_ref.conformance --decoder 'mydec {in} {out}'             # another decoder
    python -m bac_ref.conformance --encoder 'myenc {in} {out}'             # another encoder
    BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate
    python -m bac_ref.conformance --fuzz 10000                             # hostile input
    python -m bac_ref.conformance --bacw [--decoder/--encoder CMD]         # .bacw (SPEC §13)
    python -m bac_ref.conformance --coder                                  # coder goldens
    python -m bac_ref.conformance --all                                    # all three sets

``{in}``/``{out}``: a decoder gets the .bac path and writes an .npz with
``depth``, ``index``, ``zhat`` (float64) and optionally ``image`` (uint8,
(H, W, 3) or (H, W) for grey); it must exit non-zero on an invalid file.  An
encoder gets an array case's input.npz and writes the .bac.  Commands are
split with :func:`shlex.split` (no shell) and run with a timeout per case.

The conformance code is split into five modules:

* :mod:`bac_ref.conformance.runner` (this one): the runner, :func:`check`, which
  checks bac_ref itself or a ``--decoder``/``--encoder`` command against the
  vectors; hostile-input fuzzing, :func:`fuzz`; and the command line,
  :func:`main` (also ``bac-ref conform``).
* :mod:`bac_ref.conformance.cases`: what runners and generator share (the
  layout's constants, deterministic .npz/JSON files, the encoders of array and
  coder cases, :class:`CaseFailure` and running an external command).
* :mod:`bac_ref.conformance.generate`: :func:`generate`, which writes the
  vectors (only with ``BAC_REF_REGENERATE_VECTORS=1``).
* :mod:`bac_ref.conformance.bacw`: the golden vectors of the .bacw container
  (SPEC.md §13), their generator and their runner (``--bacw``).
* :mod:`bac_ref.conformance.spec_walk`: :func:`walk_symbols` / :func:`coding_steps`
  re-derive, from the text of SPEC.md §9 alone, every coding step (the 24-bit
  table and the symbol) of a payload: the tests use them to decode every vector
  with constriction as an independent range decoder, and generation uses them
  to steer symbols into long carry chains.
"""
from __future__ import annotations

import argparse
import collections
import io
import json
import os
import random
import struct
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .. import bitstream, codec, entropy_model, priors
from . import bacw as conformance_bacw
from .cases import (
    DEFAULT_VECTORS, FORMAT, PIXEL_OFF_BY_ONE_SHARE, PIXEL_TOLERANCE, REGENERATE_CMD,
    REGENERATE_ENV, CaseFailure, _header_dict, _run_command, _sha256, _tail, check_golden_coder,
    decode_coder_case, encode_arrays, encode_coder_case, read_npz)
from .generate import _synthetic, generate, generate_all
from ..errors import BitstreamError, ModelFileError
from ..imageio import decode_png

__all__ = ["DEFAULT_VECTORS", "REGENERATE_ENV", "FORMAT", "check", "case_model", "generate",
           "generate_all", "encode_arrays", "read_npz", "fuzz", "main"]

DEFAULT_TIMEOUT = 120.0


# ---------------------------------------------------------------------------
# Checking
# ---------------------------------------------------------------------------
def _diff_arrays(name, expected, got, bitwise=False):
    expected = np.asarray(expected)
    got = np.asarray(got)
    if got.shape != expected.shape:
        raise CaseFailure(f"{name} has shape {got.shape}, expected {expected.shape}")
    if bitwise:
        if got.dtype != np.float64:
            raise CaseFailure(f"{name} has dtype {got.dtype}, expected float64")
        neq = expected.astype(np.float64).view(np.uint64) != got.view(np.uint64)
    else:
        if got.dtype.kind not in "iub":
            raise CaseFailure(f"{name} has dtype {got.dtype}, expected integers")
        neq = expected.astype(np.int64) != got.astype(np.int64)
    if neq.any():
        pos = tuple(int(i) for i in np.argwhere(neq)[0])
        e, g = expected[pos], got[pos]
        if bitwise:
            e, g = f"{float(e)!r} ({float(e).hex()})", f"{float(g)!r} ({float(g).hex()})"
        raise CaseFailure(f"{name}{list(pos)} = {g}, expected {e} "
                          f"({int(neq.sum())} of {neq.size} differ)")


def _diff_pixels(expected, got, tol=PIXEL_TOLERANCE, share=PIXEL_OFF_BY_ONE_SHARE):
    expected = np.asarray(expected)
    got = np.asarray(got)
    if expected.ndim == 3 and expected.shape[2] == 1:
        expected = expected[:, :, 0]
    if got.ndim == 3 and got.shape[2] == 1:
        got = got[:, :, 0]
    if got.shape != expected.shape:
        raise CaseFailure(f"image has shape {got.shape}, expected {expected.shape}")
    if got.dtype != np.uint8:
        raise CaseFailure(f"image has dtype {got.dtype}, expected uint8")
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    if diff.max() > tol:
        pos = tuple(int(i) for i in np.argwhere(diff > tol)[0])
        raise CaseFailure(f"pixel {list(pos)} = {got[pos]}, expected {expected[pos]} +- {tol} "
                          f"({int((diff > tol).sum())} samples off by more than {tol})")
    off = int((diff > 0).sum())
    if off > max(1, share * diff.size):
        pos = tuple(int(i) for i in np.argwhere(diff > 0)[0])
        raise CaseFailure(f"pixel {list(pos)} = {got[pos]}, expected {expected[pos]}: {off} of "
                          f"{diff.size} samples differ, more than {share:.0%} (SPEC.md §10: "
                          "round half to even, not truncation)")
    return int(diff.max())


def _first_byte_diff(a: bytes, b: bytes) -> str:
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    where = ("header" if n < 32 else "payload")
    return f"bytes differ from offset {n} ({where}; {len(b)} bytes, expected {len(a)})"


def _load_case(folder: Path, entry_sha=None):
    mpath = folder / "manifest.json"
    if not mpath.exists():
        raise CaseFailure("manifest.json missing")
    raw = mpath.read_bytes()
    if entry_sha is not None and _sha256(raw) != entry_sha:
        raise CaseFailure("manifest.json: sha256 differs from index.json")
    man = json.loads(raw)
    present = {p.name for p in folder.iterdir() if p.is_file() and p.name != "manifest.json"}
    listed = set(man.get("files", {}))
    if present != listed:
        extra, missing = sorted(present - listed), sorted(listed - present)
        raise CaseFailure(f"files not as listed (unlisted: {extra}, missing: {missing})")
    files = {}
    for name, digest in man["files"].items():
        data = (folder / name).read_bytes()
        if _sha256(data) != digest:
            raise CaseFailure(f"{name}: sha256 mismatch (vector corrupted or edited)")
        files[name] = data
    return man, files


def _png_pixels(data: bytes):
    return decode_png(data).pixels


def _check_symbols(exp, depth, index, zhat):
    _diff_arrays("depth", exp["depth"], depth)
    _diff_arrays("index", exp["index"], index)
    _diff_arrays("zhat", exp["zhat"], zhat, bitwise=True)


def _check_self(man, files, model, folder):
    """bac_ref in-process; returns a WARN message or None; raises CaseFailure."""
    kind = man["kind"]
    if kind == "coder":
        case = json.loads(files["input.json"])
        got = encode_coder_case(case)
        if got != files["payload.bin"]:
            raise CaseFailure("encoder: " + _first_byte_diff(files["payload.bin"], got))
        syms = decode_coder_case(case, files["payload.bin"])
        want = [s[2] for s in case["steps"]]
        if syms != want:
            i = next(i for i, (a, b) in enumerate(zip(syms, want)) if a != b)
            raise CaseFailure(f"decoder: step {i} gave {syms[i]}, expected {want[i]}")
        return None
    if kind == "reject":
        try:
            codec.decompress_details(files["file.bac"], model, max_pixels=bitstream.MAX_PIXELS)
        except BitstreamError as exc:
            msg = man["expect"]["bac_ref_message"]
            if msg not in str(exc):
                raise CaseFailure(f"refused for another reason: {exc} (expected {msg!r})") from None
            return None
        raise CaseFailure("an invalid file was accepted")
    exp = read_npz(io.BytesIO(files["symbols.npz"]))
    try:
        dec = codec.decompress_details(files["file.bac"], model,
                                       synthesize="recon.png" in files,
                                       max_pixels=bitstream.MAX_PIXELS)
    except BitstreamError as exc:
        raise CaseFailure(f"decoder refused the file: {exc}") from None
    _check_header(man, dec.header)
    _check_symbols(exp, dec.depth, dec.index, dec.zhat)
    if "recon.png" in files:
        _diff_pixels(_png_pixels(files["recon.png"]), dec.pixels)
    if kind == "array":
        inp = read_npz(io.BytesIO(files["input.npz"]))
        data, q = encode_arrays(inp, model)
        _diff_arrays("vbq_zhat", exp["vbq_zhat"], q.zhat, bitwise=True)
        if data != files["file.bac"]:
            raise CaseFailure("re-encode: " + _first_byte_diff(files["file.bac"], data))
        return None
    # image: re-encoding may differ across platforms (float32 g_a)
    p = man["params"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.png"
        path.write_bytes(files["input.png"])
        enc = codec.compress_details(str(path), lam=np.asarray(p["lam"], dtype=np.float64)
                                     if isinstance(p["lam"], list) else p["lam"], model=model,
                                     max_depth=p["max_depth"], second_pass=p["second_pass"],
                                     context_pass=p.get("context_pass", False))
    _, d2, k2, _ = codec.decode_symbols(enc.data, model)
    if not (np.array_equal(d2, enc.depth) and np.array_equal(k2, enc.index)):
        raise CaseFailure("re-encode: its own stream does not decode to its symbols")
    if enc.data != files["file.bac"]:
        differ = int(((enc.depth != exp["depth"]) | (enc.index != exp["index"])).sum())
        return (f"re-encode: {_first_byte_diff(files['file.bac'], enc.data)}; {differ} latents "
                "quantized differently (g_a is float32 BLAS, SPEC.md §7.3: allowed)")
    return None


def case_model(case_folder, model=None):
    """The model a case of a vector folder was made with (SPEC.md §11.2): the
    conformance model kept in the folder, or the shipped one (``model``, default:
    bac_ref's default model) for a case that index.json marks "shipped"."""
    folder = Path(case_folder)
    index = json.loads((folder.parent / "index.json").read_text(encoding="utf-8"))
    entry = next((c for c in index["cases"] if c["id"] == folder.name), {})
    if entry.get("model") == "shipped":
        return codec.get_model(model)
    return codec.get_model(str(folder.parent / index["models"]["conformance"]["file"]))


DECODING_FIELDS = ("height", "width", "max_depth", "grey", "model_id")   # SPEC.md §8


def _check_header(man, header, fields=None):
    """Header fields against the manifest (all, or only ``fields``)."""
    want = man.get("header")
    if not want:
        return
    got = _header_dict(header)
    for key, value in want.items():
        if fields is not None and key not in fields:
            continue
        g = got[key]
        same = (struct.pack(">d", g) == struct.pack(">d", value)) if key == "lambda" else g == value
        if not same:
            raise CaseFailure(f"header {key} = {g!r}, expected {value!r}")


def _check_decoder_cmd(man, files, folder, template, timeout):
    kind = man["kind"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.npz")
        proc = _run_command(template, str((folder / "file.bac").resolve()), out, timeout)
        if kind == "reject":
            if proc.returncode == 0:
                raise CaseFailure("the decoder accepted an invalid file (exit status 0)")
            return None
        if proc.returncode != 0:
            raise CaseFailure(f"decoder exited with {proc.returncode}: {_tail(proc.stderr)}")
        if not os.path.exists(out):
            raise CaseFailure("decoder wrote no output file")
        try:
            got = read_npz(out)
        except Exception as exc:                                  # noqa: BLE001 (report it)
            raise CaseFailure(f"output is not a readable .npz: {exc}") from None
    missing = [k for k in ("depth", "index", "zhat") if k not in got]
    if missing:
        raise CaseFailure(f"output lacks {', '.join(missing)}")
    exp = read_npz(io.BytesIO(files["symbols.npz"]))
    _check_symbols(exp, got["depth"], got["index"], got["zhat"])
    if "image" in got and "recon.png" in files:
        _diff_pixels(_png_pixels(files["recon.png"]), got["image"])
    return None


def _check_encoder_cmd(man, files, folder, template, timeout, model):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.bac")
        proc = _run_command(template, str((folder / "input.npz").resolve()), out, timeout)
        if proc.returncode != 0:
            raise CaseFailure(f"encoder exited with {proc.returncode}: {_tail(proc.stderr)}")
        if not os.path.exists(out):
            raise CaseFailure("encoder wrote no output file")
        data = Path(out).read_bytes()
    try:
        header, depth, index, zhat = codec.decode_symbols(data, model,
                                                          max_pixels=bitstream.MAX_PIXELS)
    except BitstreamError as exc:
        raise CaseFailure(f"bac_ref cannot decode the stream: {exc}") from None
    exp = read_npz(io.BytesIO(files["symbols.npz"]))
    _check_symbols(exp, depth, index, zhat)
    _check_header(man, header, DECODING_FIELDS)
    if data != files["file.bac"]:
        try:
            _check_header(man, header)
            note = ""
        except CaseFailure as exc:
            note = f" (informational {exc})"
        return ("stream decodes to the expected symbols but "
                + _first_byte_diff(files["file.bac"], data) + note)
    return None


def check(vectors=None, decoder=None, encoder=None, cases=None, timeout=DEFAULT_TIMEOUT,
          model=None, report=print) -> dict:
    """Run every case; returns {"passed", "failed", "warned", "skipped", "results"}.

    Without commands, bac_ref itself is checked (decode, compare, re-encode).
    ``decoder``/``encoder`` are command templates with {in} and {out}.
    """
    root = Path(vectors) if vectors is not None else DEFAULT_VECTORS
    results = []
    ipath = root / "index.json"
    if not ipath.exists():
        report(f"FAIL index: {ipath} not found")
        return {"passed": 0, "failed": 1, "warned": 0, "skipped": 0, "results": [("index", "FAIL")]}
    index = json.loads(ipath.read_text(encoding="utf-8"))
    if index.get("format") != FORMAT:
        report(f"FAIL index: vector format {index.get('format')!r}, this runner reads {FORMAT}")
        return {"passed": 0, "failed": 1, "warned": 0, "skipped": 0, "results": [("index", "FAIL")]}
    models = index.get("models", {})
    try:
        conf_info = models["conformance"]
        cmodel = codec.get_model(str(root / conf_info["file"]))
    except (KeyError, TypeError, ModelFileError) as exc:
        report(f"FAIL index: cannot load the conformance model: {exc}")
        return {"passed": 0, "failed": 1, "warned": 0, "skipped": 0, "results": [("index", "FAIL")]}
    if cmodel.model_id[:16] != conf_info.get("model_id"):
        report(f"FAIL index: {conf_info['file']} has model id {cmodel.model_id[:16]}, "
               f"index.json says {conf_info.get('model_id')}")
        return {"passed": 0, "failed": 1, "warned": 0, "skipped": 0, "results": [("index", "FAIL")]}
    for name, info in index.get("tables", {}).items():
        tpath = root / info["file"]
        if not tpath.exists() or _sha256(tpath.read_bytes()) != info["sha256"]:
            results.append((name, "FAIL"))
            report(f"FAIL {name}: {info['file']} missing or its sha256 differs from index.json")
    shipped = codec.get_model(model)
    current = shipped.model_id[:16]
    recorded = models.get("shipped", {})
    mismatch = recorded.get("model_id") != current
    if mismatch and any(c.get("model") == "shipped" for c in index["cases"]):
        report(f"ERROR: the shipped-model cases were made with model {recorded.get('model_id')} "
               f"({recorded.get('file')}), the current model is {current} "
               f"({os.path.basename(str(shipped.path))}): regenerate them with "
               + REGENERATE_CMD)
    listed = {c["id"] for c in index["cases"]}
    on_disk = {p.name for p in root.iterdir() if p.is_dir()}
    for extra in sorted(on_disk - listed):
        results.append((extra, "FAIL"))
        report(f"FAIL {extra}: folder not listed in index.json")
    for entry in index["cases"]:
        cid = entry["id"]
        if cases is not None and cid not in cases:
            continue
        folder = root / cid
        try:
            man, files = _load_case(folder, entry.get("manifest_sha256"))
            if man["id"] != cid or man["kind"] != entry["kind"]:
                raise CaseFailure("manifest id/kind differ from index.json")
            role = entry.get("model")
            model = shipped if role == "shipped" else cmodel
            if man["kind"] != "coder" and man.get("model_id") != model.model_id[:16]:
                raise CaseFailure(f"made with model {man.get('model_id')}, the current "
                                  f"{role or 'conformance'} model is {model.model_id[:16]}: "
                                  "regenerate the vectors")
            warn = None
            if decoder is None and encoder is None:
                warn = _check_self(man, files, model, folder)
            else:
                ran = False
                if decoder is not None and man["kind"] in ("image", "array", "reject"):
                    warn = _check_decoder_cmd(man, files, folder, decoder, timeout)
                    ran = True
                if encoder is not None and man["kind"] == "array":
                    w2 = _check_encoder_cmd(man, files, folder, encoder, timeout, model)
                    warn = "; ".join(w for w in (warn, w2) if w) or None
                    ran = True
                if not ran:
                    results.append((cid, "SKIP"))
                    report(f"SKIP {cid}: no {'decoder' if encoder is None else 'encoder'} "
                           f"check applies to a {man['kind']} case")
                    continue
        except CaseFailure as exc:
            results.append((cid, "FAIL"))
            report(f"FAIL {cid}: {exc}")
            continue
        except Exception as exc:                                  # noqa: BLE001 (a bug: report)
            results.append((cid, "FAIL"))
            report(f"FAIL {cid}: unexpected {type(exc).__name__}: {exc}")
            continue
        if warn:
            results.append((cid, "WARN"))
            report(f"WARN {cid}: {warn}")
        else:
            results.append((cid, "PASS"))
            report(f"PASS {cid}")
    counts = collections.Counter(r for _, r in results)
    passed = counts["PASS"] + counts["WARN"]
    line = f"{passed} passed, {counts['FAIL']} failed"
    extras = [f"{counts['WARN']} with warnings"] if counts["WARN"] else []
    extras += [f"{counts['SKIP']} skipped"] if counts["SKIP"] else []
    report(line + (f" ({', '.join(extras)})" if extras else ""))
    return {"passed": passed, "failed": counts["FAIL"], "warned": counts["WARN"],
            "skipped": counts["SKIP"], "results": results}


# ---------------------------------------------------------------------------
# Fuzzing hostile input
# ---------------------------------------------------------------------------
FUZZ_SLOW_S = 5.0


def fuzz_seeds(model=None) -> list:
    """Small valid .bac files (made now with the current model) to mutate."""
    model = codec.get_model(model)
    img = _synthetic(20, 37, 9)
    return [codec.compress(img[:1, :1], lam=0.1, model=model),
            codec.compress(img, lam=0.05, model=model, max_depth=12),
            codec.compress(img[:16, :16, :1], lam=0.0, model=model, max_depth=16)]


def _pack_raw(fields: bytes, payload: bytes) -> bytes:
    return fields + struct.pack(">I", zlib.crc32(payload, zlib.crc32(fields))) + payload


def fuzz_one(rnd: random.Random, seeds, model, category=None):
    """One hostile input: (category, outcome); outcome 'BUG ...' means a non-clean failure."""
    cats = ["random_bytes", "truncation", "bit_flip", "byte_edit", "header_fields",
            "payload_valid_crc", "entropy_decode", "splice", "model_file"]
    cat = category or rnd.choice(cats)
    seed = rnd.choice(seeds)
    if cat == "entropy_decode":
        return cat, _fuzz_entropy_decode(rnd)
    if cat == "model_file":
        return cat, _fuzz_model_file(rnd)
    if cat == "random_bytes":
        data = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 120)))
        if rnd.random() < 0.5:
            data = bitstream.MAGIC + data
    elif cat == "truncation":
        data = seed[:rnd.randrange(len(seed))]
    elif cat == "bit_flip":
        b = bytearray(seed)
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
        data = bytes(b)
    elif cat == "byte_edit":
        b = bytearray(seed)
        for _ in range(rnd.randint(1, 4)):
            b[rnd.randrange(len(b))] = rnd.getrandbits(8)
        data = bytes(b)
    elif cat == "header_fields":
        h = bytearray(seed[:28])
        for _ in range(rnd.randint(1, 3)):
            what = rnd.choice(["version", "variant", "depth", "flags", "model", "size", "bigsize",
                               "lam"])
            if what == "version":
                h[4] = rnd.getrandbits(8)
            elif what == "variant":
                h[5] = rnd.getrandbits(8)
            elif what == "depth":
                h[6] = rnd.randint(0, 20)
            elif what == "flags":
                h[7] = rnd.getrandbits(8)
            elif what == "model":
                h[8 + rnd.randrange(8)] = rnd.getrandbits(8)
            elif what == "size":
                struct.pack_into(">HH", h, 16, rnd.randrange(64), rnd.randrange(64))
            elif what == "bigsize":          # above the pixel limit: refused before allocating
                struct.pack_into(">HH", h, 16, rnd.randint(1024, 0xFFFF), 0xFFFF)
            else:
                struct.pack_into(">Q", h, 20, rnd.getrandbits(64))
        data = _pack_raw(bytes(h), seed[32:])
    elif cat == "payload_valid_crc":
        words = rnd.choice([0, 1, 2, 3, 8, 32, len(seed[32:]) // 4])
        payload = bytes(rnd.getrandbits(8) for _ in range(4 * words))
        if rnd.random() < 0.3 and len(seed) > 32:             # a valid payload, one word changed
            p = bytearray(seed[32:])
            p[rnd.randrange(len(p))] = rnd.getrandbits(8)
            payload = bytes(p)
        data = _pack_raw(seed[:28], payload)
    else:                                       # splice: header of one, payload of another
        other = rnd.choice(seeds)
        data = _pack_raw(seed[:28], other[32:])
    t0 = time.perf_counter()
    try:
        dec = codec.decompress_details(data, model)
    except BitstreamError:
        outcome = "rejected"
    except ModelFileError:
        outcome = "model error"
    except Exception as exc:                                      # noqa: BLE001
        outcome = f"BUG {type(exc).__name__}: {exc}"
    else:
        outcome = "decoded"
        if dec.pixels is None or dec.pixels.shape[:2] != (dec.header.height, dec.header.width):
            outcome = "BUG decoded to a wrong image size"
    if time.perf_counter() - t0 > FUZZ_SLOW_S:
        outcome = "BUG slow"
    return cat, outcome


def _fuzz_entropy_decode(rnd: random.Random) -> str:
    """entropy_model.decode_symbols on a random payload, or on a real one, maybe mutated.

    Decoding must end in BitstreamError or in symbols that re-encode to exactly the
    payload (SPEC.md §2.8 check 3 makes every accepted payload the unique encoding).
    """
    shape = (rnd.randint(1, 6), rnd.randint(1, 4), rnd.randint(1, 4))
    n = rnd.randint(1, 16)
    original = None
    if rnd.random() < 0.4:
        payload = bytes(rnd.getrandbits(8) for _ in range(4 * rnd.randint(0, 24)))
    else:
        p0 = rnd.random()
        d = np.array([0 if rnd.random() < p0 else rnd.randint(1, n)
                      for _ in range(int(np.prod(shape)))], dtype=np.int64).reshape(shape)
        k = np.array([rnd.getrandbits(int(r)) for r in d.ravel()], dtype=np.int64).reshape(shape)
        payload = entropy_model.encode_symbols(d, k, n)
        how = rnd.choice(["none", "flip", "drop", "append", "word"])
        b = bytearray(payload)
        if how == "none":
            original = (d, k)
        elif how == "flip" and b:
            i = rnd.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
        elif how == "drop":
            b = b[:-4]
        elif how == "append":
            b += bytes(rnd.getrandbits(8) for _ in range(4))
        elif b:
            i = 4 * rnd.randrange(len(b) // 4)
            b[i:i + 4] = bytes(rnd.getrandbits(8) for _ in range(4))
        payload = bytes(b)
    t0 = time.perf_counter()
    try:
        d2, k2 = entropy_model.decode_symbols(payload, shape, n)
    except BitstreamError:
        outcome = "rejected"
    except Exception as exc:                                      # noqa: BLE001
        outcome = f"BUG {type(exc).__name__}: {exc}"
    else:
        if entropy_model.encode_symbols(d2, k2, n) != payload:
            outcome = "BUG decoded, but re-encodes differently"
        elif original is not None and not (np.array_equal(d2, original[0])
                                           and np.array_equal(k2, original[1])):
            outcome = "BUG round trip changed the symbols"
        else:
            outcome = "decoded"
    if time.perf_counter() - t0 > FUZZ_SLOW_S:
        outcome = "BUG slow"
    return outcome


def tiny_model_bytes(n: int = 4, m: int = 2, seed: int = 0) -> bytes:
    """A small valid model file (SPEC.md §6) with a Gaussian coding prior, as .npz bytes."""
    from ..weights import PARAM_LAYOUT
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, shape_of in PARAM_LAYOUT.items():
        shape = shape_of(n, m)
        if name.endswith(".beta"):
            a = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(".gamma"):
            a = rng.uniform(0.0, 0.2, shape)
        else:
            a = 0.1 * rng.standard_normal(shape)
        arrays[name] = a.astype(np.float32)
    arrays["meta_json"] = np.array(json.dumps(
        {"architecture": "bmshj2017-gaussian-vae", "N": n, "M": m}))
    arrays.update(priors.gaussian(np.zeros(m), np.ones(m)).to_arrays("prior."))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


_TINY_MODEL = []


def _fuzz_model_file(rnd: random.Random) -> str:
    """A mutated model file: ModelFileError, or a model whose prior also loads cleanly."""
    from ..model import load_model
    if not _TINY_MODEL:
        _TINY_MODEL.append(tiny_model_bytes())
    b = bytearray(_TINY_MODEL[0])
    how = rnd.choice(["flip", "byte", "truncate", "npy_header"])
    if how == "flip":
        for _ in range(rnd.randint(1, 3)):
            i = rnd.randrange(8 * len(b))
            b[i // 8] ^= 1 << (i % 8)
    elif how == "byte":
        b[rnd.randrange(len(b))] = rnd.getrandbits(8)
    elif how == "truncate":
        b = b[:rnd.randrange(len(b))]
    else:                                   # one .npy member edited, zip CRCs recomputed
        with zipfile.ZipFile(io.BytesIO(bytes(b))) as zf:
            members = {name: zf.read(name) for name in zf.namelist()}
        name = rnd.choice(sorted(members))
        npy = bytearray(members[name])
        for _ in range(rnd.randint(1, 2)):
            if rnd.random() < 0.6:          # the header: shape, dtype, order
                i = rnd.randrange(10, min(len(npy), 100))
                npy[i] = rnd.choice(b"0123456789(), '<>fiuUOb|:TF")
            else:                           # the data
                i = rnd.randrange(8 * len(npy))
                npy[i // 8] ^= 1 << (i % 8)
        members[name] = bytes(npy)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as zf:
            for key, value in members.items():
                zf.writestr(key, value)
        b = bytearray(out.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.npz")
        with open(path, "wb") as fh:
            fh.write(bytes(b))
        try:
            mdl = load_model(path)
            codec.model_prior(mdl)
        except ModelFileError:
            return "rejected"
        except Exception as exc:                                  # noqa: BLE001
            return f"BUG {type(exc).__name__}: {exc}"
    return "loaded"


def fuzz(n: int, seed: int = 0, model=None, report=print) -> collections.Counter:
    """Run ``n`` hostile inputs; returns a Counter of (category, outcome)."""
    model = codec.get_model(model)
    seeds = fuzz_seeds(model)
    rnd = random.Random(seed)
    counts = collections.Counter()
    t0 = time.time()
    for i in range(n):
        counts[fuzz_one(rnd, seeds, model)] += 1
        if report and (i + 1) % 1000 == 0:
            report(f"  {i + 1}/{n} inputs, {time.time() - t0:.0f} s")
    return counts


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------
def main(argv=None, prog=None) -> int:
    p = argparse.ArgumentParser(
        prog=prog, description="Check a decoder/encoder against the bac_ref conformance vectors "
        "(SPEC.md §11), regenerate them, or fuzz the decoder with hostile input.")
    p.add_argument("--vectors", default=str(DEFAULT_VECTORS),
                   help="vector folder (default: %(default)s)")
    p.add_argument("--decoder", metavar="CMD",
                   help="decoder command with {in} (.bac) and {out} (.npz)")
    p.add_argument("--encoder", metavar="CMD",
                   help="encoder command with {in} (input .npz) and {out} (.bac)")
    p.add_argument("--bacw", metavar="DIR", nargs="?", const=str(conformance_bacw.DEFAULT_FOLDER),
                   help="check the .bacw golden vectors (SPEC.md §13) instead of the .bac ones "
                   "(default folder: %(const)s); --decoder/--encoder apply to them")
    p.add_argument("--coder", metavar="DIR", nargs="?", const="",
                   help="check the range-coder golden vectors (SPEC.md §11.2; default folder: "
                   "data/golden/coder) instead of the .bac ones")
    p.add_argument("--all", action="store_true",
                   help="check all three sets: .bac vectors, .bacw and coder goldens")
    p.add_argument("--case", action="append", metavar="ID", help="only this case (repeatable)")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per command")
    p.add_argument("--model", help="model file (default: the default model)")
    p.add_argument("--generate", metavar="DIR", nargs="?", const="",
                   help=f"rewrite data/vectors, data/golden/coder and data/golden/bacw (needs "
                   f"{REGENERATE_ENV}=1; with DIR: only the .bac vectors, into DIR)")
    p.add_argument("--fuzz", type=int, metavar="N",
                   help="run N hostile inputs and print the outcomes")
    p.add_argument("--seed", type=int, default=0, help="fuzz seed")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the total")
    args = p.parse_args(argv)
    try:
        if args.generate is not None:
            if os.environ.get(REGENERATE_ENV) != "1":
                print(f"refusing to rewrite vectors: set {REGENERATE_ENV}=1 to regenerate",
                      file=sys.stderr)
                return 2
            if args.generate:
                ids = generate(args.generate, model=args.model)
                print(f"wrote {len(ids)} cases to {args.generate}")
            else:
                for folder, ids in generate_all(model=args.model).items():
                    print(f"wrote {len(ids)} cases to {folder}")
            return 0
        if args.fuzz is not None:
            t0 = time.time()
            counts = fuzz(args.fuzz, args.seed, model=args.model)
            bugs = 0
            for (cat, outcome), k in sorted(counts.items()):
                print(f"{k:8d}  {cat:18s} {outcome}")
                bugs += k if outcome.startswith("BUG") else 0
            by_outcome = collections.Counter()
            for (_, outcome), k in counts.items():
                by_outcome[outcome.split(":")[0]] += k
            print(f"{sum(counts.values())} inputs in {time.time() - t0:.0f} s: "
                  + ", ".join(f"{k} {o}" for o, k in sorted(by_outcome.items())))
            return 1 if bugs else 0

        def report(line):
            if not args.quiet or not line.startswith(("PASS", "SKIP")):
                print(line, flush=True)

        if args.all:
            if args.decoder or args.encoder:
                print("--all checks bac_ref itself; use --decoder/--encoder with one set",
                      file=sys.stderr)
                return 2
            ok = True
            for name, run in (
                    (".bac vectors", lambda: check(args.vectors, model=args.model, report=report)),
                    (".bacw goldens", lambda: conformance_bacw.check(report=report)),
                    ("coder goldens", lambda: check_golden_coder(report=report))):
                print(f"== {name}", flush=True)
                res = run()
                ok = ok and res["failed"] == 0 and res["passed"] > 0
            return 0 if ok else 1
        if args.coder is not None:
            res = check_golden_coder(args.coder or None, report=report,
                                     cases=set(args.case) if args.case else None)
            return 0 if res["failed"] == 0 and res["passed"] > 0 else 1
        if args.bacw:
            res = conformance_bacw.check(args.bacw, decoder=args.decoder, encoder=args.encoder,
                                         timeout=args.timeout, report=report,
                                         cases=set(args.case) if args.case else None)
            return 0 if res["failed"] == 0 and res["passed"] > 0 else 1
        res = check(args.vectors, decoder=args.decoder, encoder=args.encoder,
                    cases=set(args.case) if args.case else None, timeout=args.timeout,
                    model=args.model, report=report)
        return 0 if res["failed"] == 0 and res["passed"] > 0 else 1
    except (ModelFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
