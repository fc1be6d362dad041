r"""Golden vectors for the .bacw container (SPEC.md §13) and their runner.

``data/golden/bacw/<case>/`` holds, for a *valid* case, the inputs ``mu.npy``
and ``sigma.npy`` (float64), the encoder's exact bytes ``expected.bacw`` and
the decoder's exact output ``zhat.npy`` (float64, compared bit for bit); for a
*reject* case only ``file.bacw``, which every decoder must refuse.
``index.json`` lists each case's kind, lambda, max_depth and scale (null: the
encoder's default, SPEC.md §13's exactly rounded RMS of mu) and the sha256 of
every file.  Both directions are exact on every IEEE-754 platform: the
encoder's search uses integers and basic float operations (SPEC.md §5), the
prior is the gaussian(0, s) quantile table (SPEC.md §4.4).

Running (exit status 0 only when every case passes)::

    python -m bac_ref.conformance --bacw data/golden/bacw                      # bac_ref itself
    python -m bac_ref.conformance --bacw data/golden/bacw --decoder 'dec {in} {out}'
    python -m bac_ref.conformance --bacw data/golden/bacw --encoder 'enc {in} {out}'

A decoder gets the .bacw path and writes an .npz with ``zhat`` (V, D)
float64; it must exit non-zero on an invalid file.  An encoder gets an input
.npz with ``mu``, ``sigma`` (V, D) float64, ``lam``, ``max_depth`` and
``scale`` (float64 scalars, except ``lam``, which may be a (V, D) map; scale NaN =
the §13 default) and writes the .bacw.  The index format is SPEC.md §13.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ..embeddings import bacw as embedding_codec
from .cases import CaseFailure, _run_command, _tail, data_dir
from ..errors import BitstreamError

__all__ = ["DEFAULT_FOLDER", "valid_cases", "reject_cases", "generate", "check"]

DEFAULT_FOLDER = data_dir("golden", "bacw")
DEFAULT_TIMEOUT = 60.0


def valid_cases() -> dict:
    """name -> (mu, sigma, lambda, max_depth, scale or None): the inputs of the valid cases."""
    rng = np.random.default_rng(20261125)
    out = {}
    out["tiny-lambda0"] = (rng.standard_normal((3, 2)), np.full((3, 2), 0.1), 0.0, 4, None)
    out["random-40x5"] = (rng.standard_normal((40, 5)) * 0.4,
                          np.exp(rng.uniform(-4, 0, (40, 5))), 0.01, 10, None)
    out["all-inactive"] = (rng.standard_normal((64, 3)), np.full((64, 3), 1e6), 1.0, 10, None)
    mu = rng.standard_normal((30, 4)) * 3
    mu[0, 0], mu[1, 1], mu[2, 2] = 1e300, -1e300, 0.0
    out["extremes-depth16"] = (mu, np.exp(rng.uniform(-12, 1, (30, 4))), 1e-4, 16, 2.0)
    rank = np.arange(1, 201)[:, None]
    sigma = np.minimum(0.01 * np.sqrt(rank) * np.exp(0.3 * rng.standard_normal((200, 8))), 1.0)
    out["frequency-sorted-200x8"] = (rng.standard_normal((200, 8)) * 0.3, sigma, 0.1, 10, 0.25)
    lam = rng.choice([0.0, 1e-3, 0.05, 1.0, 1e300], size=(30, 4))
    lam[0, 0] = -0.0                                        # a -0.0 entry is lambda 0
    out["lambda-map-30x4"] = (rng.standard_normal((30, 4)) * 0.5,
                              np.exp(rng.uniform(-5, 0, (30, 4))), lam, 8, None)
    return out


def _with_crc(head32: bytes, payload: bytes) -> bytes:
    return head32 + struct.pack(">I", zlib.crc32(head32 + payload)) + payload


def reject_cases(valid: bytes) -> dict:
    """name -> invalid .bacw bytes, each derived from the valid file ``valid`` (SPEC.md §13)."""
    head, crc, payload = valid[:32], valid[32:36], valid[36:]
    fields = list(struct.unpack(">4sBBBBIIdd", head))

    def header(**change):
        f = dict(zip(("magic", "version", "model", "depth", "flags", "rows", "dims", "scale", "lam"),
                     fields))
        f.update(change)
        return struct.pack(">4sBBBBIIdd", *f.values())

    return {
        "reject-crc": head + bytes([crc[0] ^ 1]) + crc[1:] + payload,
        "reject-partial-word": _with_crc(head, payload + b"\x00\x00"),
        "reject-version": _with_crc(header(version=2), payload),
        "reject-scale-zero": _with_crc(header(scale=0.0), payload),
        # finite and > 0, but the table s * Q_std breaks SPEC.md §4.2 (gaps below 2^-900,
        # entries beyond 2^1000): refused from the header, before decoding
        "reject-scale-tiny": _with_crc(header(scale=1e-300), payload),
        "reject-scale-huge": _with_crc(header(scale=1e301), payload),
        "reject-negative-zero-lambda": _with_crc(header(lam=-0.0), payload),
        "reject-too-many-entries": _with_crc(header(rows=1 << 24, dims=16), payload),
        "reject-truncated-header": valid[:35],
    }


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def generate(folder=DEFAULT_FOLDER) -> list:
    """Write every case and index.json under ``folder``; returns the case names."""
    folder = Path(folder)
    index = {"spec_section": "13", "cases": {}}
    random_bytes = None
    for name, (mu, sigma, lam, depth, scale) in valid_cases().items():
        case = folder / name
        case.mkdir(parents=True, exist_ok=True)
        data, zhat = embedding_codec.compress_embeddings(mu, sigma, lam, scale=scale, max_depth=depth,
                                                         return_zhat=True)
        random_bytes = data if name == "random-40x5" else random_bytes
        np.save(case / "mu.npy", mu)
        np.save(case / "sigma.npy", sigma)
        np.save(case / "zhat.npy", zhat)
        (case / "expected.bacw").write_bytes(data)
        files = ["mu.npy", "sigma.npy", "zhat.npy", "expected.bacw"]
        if np.ndim(lam):
            np.save(case / "lam.npy", np.asarray(lam, dtype=np.float64))
            files.append("lam.npy")
        index["cases"][name] = {
            "kind": "valid", "lambda": "map" if np.ndim(lam) else lam, "max_depth": depth,
            "scale": scale, "sha256": {f: _sha(case / f) for f in files}}
    for name, data in reject_cases(random_bytes).items():
        case = folder / name
        case.mkdir(parents=True, exist_ok=True)
        (case / "file.bacw").write_bytes(data)
        index["cases"][name] = {"kind": "reject", "sha256": {"file.bacw": _sha(case / "file.bacw")}}
    (folder / "index.json").write_text(json.dumps(index, indent=1, sort_keys=True) + "\n")
    return sorted(index["cases"])


def _same_bits(want: np.ndarray, got) -> None:
    got = np.asarray(got)
    if got.shape != want.shape:
        raise CaseFailure(f"zhat has shape {got.shape}, expected {want.shape}")
    if got.dtype != np.float64:
        raise CaseFailure(f"zhat has dtype {got.dtype}, expected float64")
    bad = np.flatnonzero(want.view(np.int64).ravel() != got.view(np.int64).ravel())
    if bad.size:
        v, d = np.unravel_index(bad[0], want.shape)
        raise CaseFailure(f"zhat differs in {bad.size} entries, first [{v}, {d}]: "
                          f"{got[v, d]!r} != {want[v, d]!r}")


def _run(template, inp, out, timeout):
    proc = _run_command(template, inp, out, timeout)
    return proc.returncode, _tail(proc.stderr)


def _check_case(name, entry, case: Path, decoder, encoder, timeout):
    """None when the case passes, "SKIP" when no check applies; raises CaseFailure."""
    for f, digest in entry["sha256"].items():
        if _sha(case / f) != digest:
            raise CaseFailure(f"{f} changed on disk (sha256 differs from index.json)")
    if entry["kind"] == "reject":
        data = (case / "file.bacw").read_bytes()
        if decoder is None and encoder is None:
            try:
                embedding_codec.decompress_embeddings(data)
            except BitstreamError:
                return None
            raise CaseFailure("bac_ref accepted an invalid file")
        if decoder is None:
            return "SKIP"
        with tempfile.TemporaryDirectory() as tmp:
            rc, _ = _run(decoder, str(case / "file.bacw"), os.path.join(tmp, "out.npz"), timeout)
        if rc == 0:
            raise CaseFailure("the decoder accepted an invalid file (exit status 0)")
        return None
    expected = (case / "expected.bacw").read_bytes()
    want = np.load(case / "zhat.npy")
    mu, sigma = np.load(case / "mu.npy"), np.load(case / "sigma.npy")
    lam = np.load(case / "lam.npy") if entry["lambda"] == "map" else entry["lambda"]
    if decoder is None and encoder is None:
        got = embedding_codec.compress_embeddings(mu, sigma, lam, scale=entry["scale"],
                                                  max_depth=entry["max_depth"])
        if got != expected:
            raise CaseFailure("encoder bytes differ from expected.bacw")
        _same_bits(want, embedding_codec.decompress_embeddings(expected))
        return None
    with tempfile.TemporaryDirectory() as tmp:
        if decoder is not None:
            out = os.path.join(tmp, "out.npz")
            rc, err = _run(decoder, str(case / "expected.bacw"), out, timeout)
            if rc != 0:
                raise CaseFailure(f"decoder exited with {rc}: {err}")
            try:
                with np.load(out, allow_pickle=False) as z:
                    got = z["zhat"]
            except Exception as exc:                              # noqa: BLE001 (report it)
                raise CaseFailure(f"decoder output has no readable zhat: {exc}") from None
            _same_bits(want, got)
        if encoder is not None:
            inp, out = os.path.join(tmp, "input.npz"), os.path.join(tmp, "out.bacw")
            scale = np.nan if entry["scale"] is None else entry["scale"]
            np.savez(inp, mu=mu, sigma=sigma, lam=np.asarray(lam, dtype=np.float64),
                     max_depth=np.int64(entry["max_depth"]), scale=np.float64(scale))
            rc, err = _run(encoder, inp, out, timeout)
            if rc != 0:
                raise CaseFailure(f"encoder exited with {rc}: {err}")
            if not os.path.exists(out):
                raise CaseFailure("encoder wrote no output file")
            got = Path(out).read_bytes()
            if got != expected:
                at = next((i for i, (a, b) in enumerate(zip(expected, got)) if a != b),
                          min(len(expected), len(got)))
                raise CaseFailure(f"encoder bytes differ from expected.bacw at byte {at} "
                                  f"(sizes {len(got)} / {len(expected)})")
    return None


def check(folder=DEFAULT_FOLDER, decoder=None, encoder=None, timeout=DEFAULT_TIMEOUT,
          report=print, cases=None) -> dict:
    """Run every .bacw case; returns {"passed", "failed", "skipped", "results"} like
    :func:`bac_ref.conformance.runner.check`.  Without commands, bac_ref itself is checked;
    ``cases``: only these case names."""
    folder = Path(folder)
    ipath = folder / "index.json"
    if not ipath.exists():
        report(f"FAIL index: {ipath} not found")
        return {"passed": 0, "failed": 1, "skipped": 0, "results": [("index", "FAIL")]}
    index = json.loads(ipath.read_text(encoding="utf-8"))
    results = []
    for name in sorted(index["cases"]):
        if cases is not None and name not in cases:
            continue
        try:
            outcome = _check_case(name, index["cases"][name], folder / name, decoder, encoder,
                                  timeout) or "PASS"
            report(f"{outcome} {name}" + (": no check applies to a reject case without --decoder"
                                          if outcome == "SKIP" else ""))
        except CaseFailure as exc:
            outcome = "FAIL"
            report(f"FAIL {name}: {exc}")
        except Exception as exc:                                  # noqa: BLE001 (a bug: report)
            outcome = "FAIL"
            report(f"FAIL {name}: unexpected {type(exc).__name__}: {exc}")
        results.append((name, outcome))
    counts = collections.Counter(r for _, r in results)
    report(f"{counts['PASS']} passed, {counts['FAIL']} failed"
           + (f" ({counts['SKIP']} skipped)" if counts["SKIP"] else ""))
    return {"passed": counts["PASS"], "failed": counts["FAIL"], "skipped": counts["SKIP"],
            "results": results}
