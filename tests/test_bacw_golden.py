"""Golden .bacw vectors (SPEC.md §13): pinned bytes and decoded matrices.

data/golden/bacw/<case>/ holds mu.npy and sigma.npy (float64 inputs), expected.bacw (the
encoder's exact bytes) and zhat.npy (the decoder's exact output); index.json lists each case's
lambda, max_depth, scale and the sha256 of every file.  The encoder is exact too (SPEC §5 uses
integer search and basic float operations only), so both directions are checked byte for byte.

Regenerate (only after a deliberate format change, with a SPEC_VERSION bump):
    BAC_REF_REGENERATE_VECTORS=1 python -m pytest tests/test_bacw_golden.py
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from bac_ref import embedding_codec

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = os.path.join(REPO, "data", "golden", "bacw")
REGENERATE = os.environ.get("BAC_REF_REGENERATE_VECTORS") == "1"


def _cases():
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
    return out


def _sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _generate():
    index = {"spec_section": "13", "cases": {}}
    for name, (mu, sigma, lam, depth, scale) in _cases().items():
        folder = os.path.join(FOLDER, name)
        os.makedirs(folder, exist_ok=True)
        data, zhat = embedding_codec.compress_embeddings(mu, sigma, lam, scale=scale, max_depth=depth,
                                                         return_zhat=True)
        np.save(os.path.join(folder, "mu.npy"), mu)
        np.save(os.path.join(folder, "sigma.npy"), sigma)
        np.save(os.path.join(folder, "zhat.npy"), zhat)
        with open(os.path.join(folder, "expected.bacw"), "wb") as f:
            f.write(data)
        index["cases"][name] = {
            "lambda": lam, "max_depth": depth, "scale": scale,
            "sha256": {f: _sha(os.path.join(folder, f))
                       for f in ("mu.npy", "sigma.npy", "zhat.npy", "expected.bacw")}}
    with open(os.path.join(FOLDER, "index.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)


if REGENERATE:
    _generate()


def _index():
    with open(os.path.join(FOLDER, "index.json")) as f:
        return json.load(f)


CASES = sorted(_index()["cases"]) if os.path.exists(os.path.join(FOLDER, "index.json")) else []


def test_every_case_is_present():
    assert CASES == sorted(_cases()), "data/golden/bacw does not match the case list"


@pytest.mark.parametrize("name", CASES)
def test_golden_case(name):
    case = _index()["cases"][name]
    folder = os.path.join(FOLDER, name)
    for f, digest in case["sha256"].items():
        assert _sha(os.path.join(folder, f)) == digest, f"{name}/{f} changed on disk"
    mu, sigma = np.load(os.path.join(folder, "mu.npy")), np.load(os.path.join(folder, "sigma.npy"))
    with open(os.path.join(folder, "expected.bacw"), "rb") as f:
        expected = f.read()
    want_zhat = np.load(os.path.join(folder, "zhat.npy"))
    got = embedding_codec.compress_embeddings(mu, sigma, case["lambda"], scale=case["scale"],
                                              max_depth=case["max_depth"])
    assert got == expected, "encoder bytes differ from the pinned file"
    zhat = embedding_codec.decompress_embeddings(expected)
    assert zhat.dtype == np.float64 and np.array_equal(zhat.view(np.int64), want_zhat.view(np.int64))
