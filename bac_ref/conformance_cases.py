r"""What a conformance case is made of; shared by the runner and the generator.

The layout of ``data/vectors`` is described in :mod:`bac_ref.conformance`.
This module holds what both sides of it need, the runner
(:mod:`bac_ref.conformance`) and the generator
(:mod:`bac_ref.conformance_generate`):

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
import zipfile
from pathlib import Path

import numpy as np

from . import bitstream, codec, entropy_model, priors, vbq
from .rangecoder import Decoder, Encoder

REGENERATE_ENV = "BAC_REF_REGENERATE_VECTORS"
DEFAULT_VECTORS = Path(__file__).resolve().parent.parent / "data" / "vectors"
FORMAT = 1                       # version of the vector layout (see bac_ref.conformance)
PIXEL_TOLERANCE = 1
REGENERATE_CMD = f"{REGENERATE_ENV}=1 python -m bac_ref.conformance --generate {{dir}}"

TOLERANCE = {
    "image": {"bac": "exact bytes", "depth": "exact", "index": "exact", "zhat": "bit-exact float64",
              "pixels": {"max_abs_diff": PIXEL_TOLERANCE},
              "reencode": "platform-dependent (g_a is float32 BLAS): a byte difference is a WARN"},
    "array": {"bac": "exact bytes, on every platform", "depth": "exact", "index": "exact",
              "zhat": "bit-exact float64", "vbq_zhat": "bit-exact float64",
              "pixels": {"max_abs_diff": PIXEL_TOLERANCE}},
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
    """Encode an array case (its input.npz as a dict): (bac bytes, vbq.Quantized).

    The codec's encoder after g_a (bac_ref.codec, SPEC.md §5, §8, §9): VBQ with
    lam (scalar or map) and max_depth, optionally the second pass (SPEC.md §5.4),
    then the entropy model; header fields from ``height``, ``width``, ``grey``.
    """
    model = codec.get_model(model)
    mu = np.asarray(inp["mu"], dtype=np.float64)
    sigma = np.asarray(inp["sigma"], dtype=np.float64)
    lam = np.asarray(inp["lam"], dtype=np.float64)
    n = int(_scalar(inp["max_depth"], "iu", "max_depth"))
    second = bool(_scalar(inp["second_pass"], "biu", "second_pass"))
    height = int(_scalar(inp["height"], "iu", "height"))
    width = int(_scalar(inp["width"], "iu", "width"))
    grey = bool(_scalar(inp["grey"], "biu", "grey"))
    if mu.ndim != 3 or mu.shape[0] != model.M:
        raise ValueError(f"mu must be (M, h, w) with M = {model.M}, got {mu.shape}")
    if mu.shape[1:] != (-(-height // 16), -(-width // 16)):
        raise ValueError(f"mu {mu.shape} does not match an image of {height}x{width}")
    prior = case_prior(inp, model)
    q = vbq.quantize(mu, sigma, lam, prior, n, axis=0)
    if second:
        q = vbq.second_pass(q, mu, sigma, lam, prior, n, model.M, axis=0)
    payload = entropy_model.encode_symbols(q.depth, q.index, n)
    header = bitstream.Header(height=height, width=width,
                              lam=float(lam.max()) if lam.size else 0.0, max_depth=n,
                              model_id=codec.model_id_bytes(model), grey=grey,
                              lambda_map=lam.ndim > 0, second_pass=second)
    return bitstream.pack(header, payload), q


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
