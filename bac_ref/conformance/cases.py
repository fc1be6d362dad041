r"""What a conformance case is made of; shared by the runner and the generator.

The layout of ``data/vectors`` is described in :mod:`bac_ref.conformance.runner`.
This module holds what both sides of it need, the runner
(:mod:`bac_ref.conformance.runner`) and the generator
(:mod:`bac_ref.conformance.generate`):

* the layout's constants: its ``FORMAT`` version, the default folder, the
  regeneration switch ``BAC_REF_REGENERATE_VECTORS`` and the ``TOLERANCE``
  each kind of case records in its manifest;
* deterministic files: :func:`npz_bytes` (an .npz whose bytes depend only on
  its arrays), :func:`read_npz`, sha256 and JSON helpers;
* the encoder of an *array* case, :func:`encode_arrays`: bac_ref's encoder
  after g_a (VBQ, then the entropy model, then the header), exact on every
  platform;
* the encoder and decoder of a *coder* case, :func:`encode_coder_case` and
  :func:`decode_coder_case` (SPEC.md §2).
"""
from __future__ import annotations

import hashlib
import io
import json
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

from .. import bitstream, codec, priors
from ..rangecoder import Decoder, Encoder

REGENERATE_ENV = "BAC_REF_REGENERATE_VECTORS"


def data_dir(*parts) -> Path:
    """A folder of the repository's data/: beside the package in a source tree (or an
    editable install), else where ``pip install .`` put it, <sys.prefix>/share/bac_ref/data."""
    source = Path(__file__).resolve().parents[2] / "data"
    if source.joinpath(*parts).exists():
        return source.joinpath(*parts)
    return Path(sys.prefix, "share", "bac_ref", "data").joinpath(*parts)


DEFAULT_VECTORS = data_dir("vectors")
FORMAT = 2                       # version of the vector layout (see bac_ref.conformance.runner)
PIXEL_TOLERANCE = 1
# At most this share of a case's 8-bit samples (or 1 sample, if more) may differ from
# recon.png (by 1), SPEC.md §10: g_s in float32 with another summation order moves a
# sample only when 255 x_hat lies within ~1e-3 of a rounding boundary (measured: g_s in
# float64 changes 1 of the 49,152 samples of image_128x128_kodim, none elsewhere); a
# decoder that truncates instead of rounding moves 47-100 % of them in every case.
PIXEL_OFF_BY_ONE_SHARE = 0.01
REGENERATE_CMD = f"{REGENERATE_ENV}=1 python -m bac_ref.conformance --generate"
# The conformance model (SPEC.md §11.2): small, frozen, kept beside the vectors, so that
# a release of the shipped model changes no vector but the few made with it on purpose.
CONFORMANCE_MODEL = "conformance-model-n16m12.npz"
STD_NORMAL_FILE = "std_normal_k12.f64le"      # SPEC.md §4.4's table, raw (index.json "tables")
SHIPPED_MODEL_CASES = ("image_128x128_kodim", "image_48x64_lam0", "image_64x64_second_pass")

TOLERANCE = {
    "image": {"bac": "exact bytes", "depth": "exact", "index": "exact", "zhat": "bit-exact float64",
              "pixels": {"max_abs_diff": PIXEL_TOLERANCE,
                         "max_share_off_by_one": PIXEL_OFF_BY_ONE_SHARE},
              "reencode": "platform-dependent (g_a is float32 BLAS): a byte difference is a WARN"},
    "array": {"bac": "exact bytes, on every platform", "depth": "exact", "index": "exact",
              "zhat": "bit-exact float64", "vbq_zhat": "bit-exact float64",
              "pixels": {"max_abs_diff": PIXEL_TOLERANCE,
                         "max_share_off_by_one": PIXEL_OFF_BY_ONE_SHARE}},
    "coder": {"payload": "exact bytes", "symbols": "exact"},
    "reject": {"decoder": "must refuse the file "
                          "(bac_ref: BitstreamError; a command: non-zero exit)"},
}


# ---------------------------------------------------------------------------
# Deterministic files
# ---------------------------------------------------------------------------
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npz_bytes(arrays: dict) -> bytes:
    """An .npz (deflated, fixed timestamps) whose bytes depend only on ``arrays``.

    ``numpy.savez`` stamps the current time into the zip, so regenerating
    would change every sha256; this writer does not.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, value in arrays.items():
            a = np.asarray(value)
            if a.dtype.kind == "O":
                raise ValueError(f"{name}: object arrays are not allowed")
            npy = io.BytesIO()
            if not a.flags.c_contiguous:
                a = a.copy(order="C")                 # (ascontiguousarray would make 0-d 1-d)
            np.lib.format.write_array(npy, a, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, npy.getvalue(), compresslevel=9)
    return buf.getvalue()


def read_npz(path) -> dict:
    """All arrays of an .npz, loaded with allow_pickle=False."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _json_bytes(obj) -> bytes:
    return (json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


# ---------------------------------------------------------------------------
# The encoder of an array case
# ---------------------------------------------------------------------------
def _scalar(a, kind, name):
    a = np.asarray(a)
    if a.shape != () or a.dtype.kind not in kind:
        raise ValueError(f"input {name} must be a scalar of kind {kind!r}, got {a.dtype} {a.shape}")
    return a.item()


def case_prior(inp: dict, model):
    """The prior an array case quantizes with: the model's, or the ``prior.*`` arrays."""
    source = str(inp.get("prior_source", "model"))
    if source == "model":
        return codec.model_prior(model)
    if source == "arrays":
        return priors.from_arrays(inp, prefix="prior.")
    raise ValueError(f"unknown prior_source {source!r}")


def encode_arrays(inp: dict, model=None):
    """Encode an array case (its input.npz as a dict): (bac bytes, codec.Encoded).

    The codec's own encoder after g_a (:func:`bac_ref.codec.encode_latents`,
    SPEC.md §5, §8, §9): VBQ with lam (scalar or map) and max_depth, optionally
    the second pass (SPEC.md §5.4) and the context pass (SPEC.md §5.6; only when the
    input has ``context_pass`` = true), then the entropy model; header fields from
    ``height``, ``width``, ``grey``; the prior from ``prior_source``.  The
    result has ``depth``, ``index`` and ``zhat`` (VBQ's reconstruction).
    """
    model = codec.get_model(model)
    enc = codec.encode_latents(
        np.asarray(inp["mu"], dtype=np.float64), np.asarray(inp["sigma"], dtype=np.float64),
        np.asarray(inp["lam"], dtype=np.float64),
        height=int(_scalar(inp["height"], "iu", "height")),
        width=int(_scalar(inp["width"], "iu", "width")),
        grey=bool(_scalar(inp["grey"], "biu", "grey")), model=model,
        max_depth=int(_scalar(inp["max_depth"], "iu", "max_depth")),
        second_pass=bool(_scalar(inp["second_pass"], "biu", "second_pass")),
        context_pass=bool(_scalar(inp["context_pass"], "biu", "context_pass"))
        if "context_pass" in inp else False,                  # absent: no context pass
        prior=case_prior(inp, model))
    return enc.data, enc


def _header_dict(h: bitstream.Header) -> dict:
    return {"height": h.height, "width": h.width, "max_depth": h.max_depth, "grey": h.grey,
            "lambda_map": h.lambda_map, "second_pass": h.second_pass, "lambda": h.lam,
            "flags": h.flags, "model_id": h.model_id.hex()}


# ---------------------------------------------------------------------------
# Coder cases (SPEC.md §2): 24-bit tables and the symbol of each step
# ---------------------------------------------------------------------------
def encode_coder_case(case: dict) -> bytes:
    """Payload of a coder case (SPEC.md §2): each step codes its symbol with its table."""
    enc = Encoder(checked=True)
    tables = case["tables"]
    for kind, a, b in case["steps"]:
        if kind == "table":
            enc.encode(b, tables[a])
        else:
            enc.encode_uniform(b, a)
    return enc.finish()


def decode_coder_case(case: dict, payload: bytes) -> list:
    """The symbol of each step of a coder case, decoded from ``payload`` (SPEC.md §2)."""
    dec = Decoder(payload)
    out = []
    for kind, a, _ in case["steps"]:
        out.append(dec.decode(case["tables"][a]) if kind == "table" else dec.decode_uniform(a))
    dec.check_end()
    return out


# ---------------------------------------------------------------------------
# data/golden/coder (SPEC.md §11.2): the range coder and the integer models of §3
# ---------------------------------------------------------------------------
def _golden_models(specs):
    from ..intmodels import AdaptiveBinaryModel, AdaptiveModel
    models = []
    for spec in specs:
        if spec["kind"] == "adaptive":
            models.append(AdaptiveModel(spec["n"], spec["init_counts"],
                                        increment=spec["increment"], limit=spec["limit"]))
        elif spec["kind"] == "binary":
            models.append(AdaptiveBinaryModel(spec["init_counts"], increment=spec["increment"],
                                              limit=spec["limit"]))
        else:
            raise ValueError(f"unknown model kind {spec['kind']!r}")
    return models


def encode_golden_coder_case(case: dict) -> bytes:
    """payload.bin of a data/golden/coder case: its ops coded in order (SPEC.md §11.2)."""
    from ..intmodels import check_cdf
    tables = [check_cdf(t) for t in case["tables"]]
    models = _golden_models(case["models"])
    enc = Encoder()
    for kind, a, b in case["ops"]:
        if kind == "table":
            enc.encode(b, tables[a])
        elif kind == "uniform":
            enc.encode_uniform(b, a)
        else:
            models[a].encode(enc, b)
    return enc.finish()


def decode_golden_coder_case(case: dict, payload: bytes) -> list:
    """The symbol of every op of a data/golden/coder case, decoded; check_end() included."""
    from ..intmodels import check_cdf
    tables = [check_cdf(t) for t in case["tables"]]
    models = _golden_models(case["models"])
    dec = Decoder(payload)
    out = []
    for kind, a, _ in case["ops"]:
        if kind == "table":
            out.append(dec.decode(tables[a]))
        elif kind == "uniform":
            out.append(dec.decode_uniform(a))
        else:
            out.append(models[a].decode(dec))
    dec.check_end()
    return out


def check_golden_coder(folder=None, report=print, cases=None) -> dict:
    """Run data/golden/coder with bac_ref: sha256 of every file, exact payload, symbols."""
    folder = Path(folder) if folder is not None else data_dir("golden", "coder")
    mpath = folder / "MANIFEST.json"
    if not mpath.exists():
        report(f"FAIL index: {mpath} not found")
        return {"passed": 0, "failed": 1, "skipped": 0, "results": [("index", "FAIL")]}
    results = []
    for entry in json.loads(mpath.read_text(encoding="utf-8"))["cases"]:
        cid = entry["id"]
        if cases is not None and cid not in cases:
            continue
        try:
            for name, digest in entry["files"].items():
                if _sha256((folder / cid / name).read_bytes()) != digest:
                    raise CaseFailure(f"{name}: sha256 mismatch")
            case = json.loads((folder / cid / "input.json").read_bytes())
            payload = (folder / cid / "payload.bin").read_bytes()
            if encode_golden_coder_case(case) != payload:
                raise CaseFailure("encoder output differs from payload.bin")
            if decode_golden_coder_case(case, payload) != [op[2] for op in case["ops"]]:
                raise CaseFailure("decoded symbols differ")
            results.append((cid, "PASS"))
            report(f"PASS {cid}")
        except (CaseFailure, OSError, ValueError) as exc:
            results.append((cid, "FAIL"))
            report(f"FAIL {cid}: {exc}")
    failed = sum(r == "FAIL" for _, r in results)
    report(f"{len(results) - failed} passed, {failed} failed")
    return {"passed": len(results) - failed, "failed": failed, "skipped": 0, "results": results}


# ---------------------------------------------------------------------------
# What the two runners (.bac: conformance, .bacw: conformance_bacw) share
# ---------------------------------------------------------------------------
class CaseFailure(Exception):
    """The first difference found in a case."""


def _run_command(template: str, inp: str, out: str, timeout: float):
    argv = [a.replace("{in}", inp).replace("{out}", out) for a in shlex.split(template)]
    if not argv:
        raise CaseFailure("empty command")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CaseFailure(f"command timed out after {timeout:g} s") from None
    except OSError as exc:
        raise CaseFailure(f"cannot run {argv[0]!r}: {exc}") from None
    return proc


def _tail(b: bytes) -> str:
    text = b.decode("utf-8", "replace").strip().splitlines()
    return text[-1][:200] if text else ""
