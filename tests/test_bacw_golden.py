"""Golden .bacw vectors (SPEC.md §13): pinned bytes, decoded matrices, refused files.

The cases live in data/golden/bacw (see :mod:`bac_ref.conformance.bacw`): five valid cases,
whose encoder bytes and decoded zhat bits are both pinned (the encoder is exact too: SPEC §5
uses integer search and basic float operations only, §13 fixes the default scale's rounding),
and reject cases that every decoder must refuse.

Regenerate (only after a deliberate format change, with a SPEC_VERSION bump), with the one
command that rewrites every pinned file (SPEC.md §11.5; no test rewrites them):
    BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate
"""
from __future__ import annotations

import json
import math
import sys
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from bac_ref.conformance import runner as conformance, bacw as conformance_bacw
from bac_ref.embeddings import bacw as embedding_codec

FOLDER = conformance_bacw.DEFAULT_FOLDER


def _index():
    return json.loads((FOLDER / "index.json").read_text())


def test_every_case_is_present():
    random_bytes = b"\x89BAW" + bytes(32)      # the reject list's names do not depend on the bytes
    want = sorted(list(conformance_bacw.valid_cases())
                  + list(conformance_bacw.reject_cases(random_bytes)))
    assert sorted(_index()["cases"]) == want, "data/golden/bacw does not match the case list"


def test_runner_passes_on_bac_ref_itself():
    lines = []
    res = conformance_bacw.check(FOLDER, report=lines.append)
    assert res["failed"] == 0 and res["passed"] == len(_index()["cases"]), lines


def test_every_reject_case_is_refused_for_its_own_reason():
    # each file must fail in parse_header, not by accident somewhere later
    for name, entry in _index()["cases"].items():
        if entry["kind"] == "reject":
            with pytest.raises(embedding_codec.BitstreamError):
                embedding_codec.parse_header((FOLDER / name / "file.bacw").read_bytes())


@pytest.mark.parametrize("slow", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_runner_catches_a_wrong_decoder_and_encoder(tmp_path, monkeypatch, slow):
    # an external "decoder" that adds one ulp to zhat, an "encoder" that flips one bit:
    # both must FAIL; a correct decoder command must PASS and refuse every reject case
    script = tmp_path / "tool.py"
    script.write_text(
        "import sys, numpy as np\n"
        "from bac_ref.embeddings import bacw as e\n"
        "mode, inp, out = sys.argv[1:]\n"
        "if mode in ('dec', 'baddec'):\n"
        "    try:\n"
        "        z = e.decompress_embeddings(open(inp, 'rb').read())\n"
        "    except e.BitstreamError:\n"
        "        sys.exit(1)\n"
        "    np.savez(out, zhat=np.nextafter(z, np.inf) if mode == 'baddec' else z)\n"
        "else:\n"
        "    a = np.load(inp)\n"
        "    s = None if np.isnan(a['scale']) else float(a['scale'])\n"
        "    b = bytearray(e.compress_embeddings(a['mu'], a['sigma'], a['lam'], scale=s,\n"
        "                                        max_depth=int(a['max_depth'])))\n"
        "    if mode == 'badenc':\n"
        "        b[-1] ^= 1\n"
        "    open(out, 'wb').write(bytes(b))\n")
    monkeypatch.setenv("PYTHONPATH", str(FOLDER.parents[2]))    # the tool imports bac_ref

    def cmd(mode):
        return f"{sys.executable} {script} {mode} {{in}} {{out}}"

    quiet = [].append
    # a few cases by default (one process per case and command); all of them under -m slow
    names = None if slow else {"lambda-map-30x4", "random-40x5", "reject-crc",
                               "reject-scale-tiny"}
    count = len(_index()["cases"]) if names is None else len(names)
    valid = sum(e["kind"] == "valid" for n, e in _index()["cases"].items()
                if names is None or n in names)
    good = conformance_bacw.check(FOLDER, decoder=cmd("dec"), report=quiet, cases=names)
    assert good["failed"] == 0 and good["passed"] == count
    bad = conformance_bacw.check(FOLDER, decoder=cmd("baddec"), report=quiet, cases=names)
    assert bad["failed"] == valid
    enc = conformance_bacw.check(FOLDER, encoder=cmd("enc"), report=quiet, cases=names)
    assert enc["failed"] == 0 and enc["skipped"] > 0
    badenc = conformance_bacw.check(FOLDER, encoder=cmd("badenc"), report=quiet, cases=names)
    assert badenc["failed"] == enc["passed"] == valid


def test_conform_command_line_runs_the_bacw_cases(capsys):
    assert conformance.main(["--bacw", str(FOLDER), "-q"]) == 0
    assert "0 failed" in capsys.readouterr().out


def _exact_rms(mu) -> float:
    # the §13 rule from exact rationals: squares rounded to binary64, their exact sum rounded
    # once, then an IEEE division and square root
    total = float(sum((Fraction(float(x) * float(x)) for x in mu.ravel()), Fraction(0)))
    return math.sqrt(total / mu.size)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 12), st.integers(1, 6)),
              elements=st.floats(-1e150, 1e150, allow_nan=False)))
def test_default_scale_is_exactly_rounded_and_order_free(mu):
    want = _exact_rms(mu)
    if want == 0:                                     # all zero, or every square underflows
        with pytest.raises(ValueError):
            embedding_codec.rms_scale(mu)
        return
    s = embedding_codec.rms_scale(mu)
    assert s == want
    assert s == embedding_codec.rms_scale(mu[::-1, ::-1].T)      # any order, same bits
