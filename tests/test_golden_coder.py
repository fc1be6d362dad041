"""Golden vectors of the range coder and the integer models (SPEC.md §2, §3, §11).

data/golden/coder/<case>/input.json holds the tables, model parameters and
the operations to code; payload.bin holds the exact bytes the encoder must
write.  MANIFEST.json lists every case with the sha256 of every file and
what the case exercises.

The default run fails on any mismatch.  Goldens are rewritten only by the one
command that rewrites every pinned file (SPEC.md §11.5),
``BAC_REF_REGENERATE_VECTORS=1 python -m bac_ref.conformance --generate``,
which calls :func:`regenerate` below (every payload is then also checked
against constriction 0.5.0 and the independent held-word reference of
test_rangecoder.py before it is written); no test rewrites them.

input.json format::

    {"tables": [[0, ..., 16777216], ...],
     "models": [{"kind": "adaptive", "n": 17, "init_counts": null,
                 "increment": 32, "limit": 65536},
                {"kind": "binary", "init_counts": [1, 1], ...}],
     "ops": [["table", table_index, symbol],
             ["uniform", bits, value],
             ["model", model_index, symbol]]}
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import random
from pathlib import Path

import pytest

from bac_ref.conformance import cases as cases_mod
from bac_ref import rangecoder as rc
from bac_ref.intmodels import cdf_from_counts, check_cdf

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "data" / "golden" / "coder"
MANIFEST = GOLDEN_DIR / "MANIFEST.json"
TOTAL = 1 << 24


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------
# Replaying a case
# ---------------------------------------------------------------------------

# One definition, in the package (``bac-ref conform --coder`` runs it too).
_make_models = cases_mod._golden_models
encode_case = cases_mod.encode_golden_coder_case
decode_case = cases_mod.decode_golden_coder_case


def op_tables(case):
    """The table each op is coded with (uniform r -> its uniform table), or None for r = 0."""
    tables = [check_cdf(t) for t in case["tables"]]
    models = _make_models(case["models"])
    result = []
    for kind, a, b in case["ops"]:
        if kind == "table":
            result.append(tables[a])
        elif kind == "uniform":
            result.append(None if a == 0 else ("uniform", a))
        else:
            result.append(models[a].cdf())
            models[a].update(b)
    return result


# ---------------------------------------------------------------------------
# Generating the cases (only through python -m bac_ref.conformance --generate)
# ---------------------------------------------------------------------------

def _helpers():
    """tests/test_rangecoder.py, loaded by path (works with any pytest import mode)."""
    path = Path(__file__).resolve().parent / "test_rangecoder.py"
    spec = importlib.util.spec_from_file_location("_bac_ref_rangecoder_test_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table_case(symbols, tables):
    """A case of table ops from parallel lists (tables deduplicated by value)."""
    index, unique, ops = {}, [], []
    for s, t in zip(symbols, tables):
        key = tuple(t)
        if key not in index:
            index[key] = len(unique)
            unique.append(list(t))
        ops.append(["table", index[key], s])
    return {"tables": unique, "models": [], "ops": ops}


def _adversarial(h, seed, plan, accept):
    """First adversarial case from ``seed`` on whose reference stats satisfy ``accept``."""
    rnd = random.Random(seed)
    for _ in range(500):
        symbols, tables = h.adversarial_case(rnd, plan)
        stats = dict.fromkeys(h.HeldWordEncoder().stats, 0)
        h.reference_words(symbols, tables, stats)
        if accept(stats):
            return _table_case(symbols, tables)
    raise RuntimeError(f"no adversarial case for plan {plan}")


def build_cases():
    """(id, description, exercises, case) for every golden case; deterministic."""
    h = _helpers()
    cases = []

    cases.append(("empty", "no symbols: the payload is empty", ["empty"],
                  {"tables": [], "models": [], "ops": []}))

    rnd = random.Random(11)
    table = cdf_from_counts([2, 9, 40, 180, 900, 3000, 900, 180, 40, 9, 2])
    symbols = rnd.choices(range(11), weights=table.masses(), k=3000)
    cases.append(("static_11", "3000 symbols of one static 11-symbol table from counts",
                  ["static table", "renormalisation", "SPEC 3.2 table"],
                  _table_case(symbols, [table] * len(symbols))))

    rnd = random.Random(12)
    symbols, tables = [], []
    for n in (2, 3, 4096):
        for kind in ("heavy_first", "heavy_last"):
            t = h.random_table(rnd, n, kind)
            heavy = 0 if kind == "heavy_first" else n - 1
            run = [heavy] * 400 + [rnd.randrange(n) for _ in range(30)] + [heavy] * 400
            symbols += run
            tables += [t] * len(run)
    cases.append(("extreme_tables",
                  "tables with mass-1 symbols and one symbol of mass 2^24 - n + 1 (n = 2, 3, 4096)",
                  ["mass 1", "mass 2^24 - n + 1", "long runs"], _table_case(symbols, tables)))

    rnd = random.Random(13)
    pool = [h.random_table(rnd, n) for n in (2, 5, 17, 300, 2047)]
    tables = [rnd.choice(pool) for _ in range(1500)]
    symbols = [rnd.randrange(t.n) for t in tables]
    cases.append(("varying_tables", "one table per symbol, alphabets of 2 to 2047 symbols",
                  ["varying tables", "large alphabets"], _table_case(symbols, tables)))

    cases.append(("carry_chain", "a carry propagating through a chain of >= 20 held words, "
                  "then a chain resolved without carry",
                  ["carry", "carry chain", "inverted situation"],
                  _adversarial(h, 21, [("straddle", 45), ("up", 1), ("straddle", 30), ("down", 1),
                                       ("straddle", 2)],
                               lambda s: s["max_held"] >= 20 and s["resolve_carry"] > 0
                               and s["resolve_no_carry"] > 0)))
    cases.append(("seal_inverted", "sealing while words are held back (no carry at sealing)",
                  ["sealing", "inverted situation"],
                  _adversarial(h, 22, [("straddle", 25)],
                               lambda s: s["seal_inverted_no_carry"] > 0)))
    cases.append(("seal_carry_extra_zero",
                  "the rarest sealing branch: point = lower + 2^32 - 1 wraps (carry at sealing) "
                  "and the extra 0 word is written",
                  ["sealing", "carry at sealing", "extra zero word"],
                  _adversarial(h, 23, [("straddle", 12), ("seal_carry", 40)],
                               lambda s: s["seal_inverted_carry"] > 0 and s["seal_extra_zero"] > 0)))
    cases.append(("seal_carry", "carry at sealing without the extra 0 word",
                  ["sealing", "carry at sealing"],
                  _adversarial(h, 24, [("straddle", 12), ("seal_carry", 40)],
                               lambda s: s["seal_inverted_carry"] > 0
                               and s["seal_extra_zero"] == 0)))
    cases.append(("seal_extra_zero", "extra 0 word at sealing without any carry",
                  ["sealing", "extra zero word"],
                  _adversarial(h, 25, [("straddle", 5), ("down", 1), ("seal_zero", 40)],
                               lambda s: s["seal_extra_zero_normal"] > 0)))

    rnd = random.Random(14)
    table = h.random_table(rnd, 7)
    ops = []
    for i in range(600):
        if i % 3:
            bits = rnd.choice([0, 1, 2, 8, 12, 16, 23, 24])
            ops.append(["uniform", bits, rnd.randrange(1 << bits)])
        else:
            ops.append(["table", 0, rnd.randrange(7)])
    cases.append(("uniform_mixed", "uniform r-bit values (r = 0..24) mixed with a 7-symbol table",
                  ["uniform fast path", "r = 0", "r = 24"],
                  {"tables": [list(table)], "models": [], "ops": ops}))

    rnd = random.Random(15)
    ops = []
    for i in range(1500):
        s = min(16, int(rnd.expovariate(0.6)))
        ops.append(["model", 0, s])
        ops.append(["model", 1, int(rnd.random() < 0.07)])
        if i % 50 == 0:
            ops.append(["model", 2, rnd.randrange(3)])
    models = [{"kind": "adaptive", "n": 17, "init_counts": None, "increment": 32,
               "limit": 1 << 16},
              {"kind": "binary", "init_counts": [1, 1], "increment": 32, "limit": 1 << 16},
              {"kind": "adaptive", "n": 3, "init_counts": [0, 5, 1], "increment": 7,
               "limit": 40}]
    cases.append(("adaptive_models",
                  "AdaptiveModel(17), AdaptiveBinaryModel and a tiny-limit AdaptiveModel(3) "
                  "with zero initial counts (SPEC.md §3.2, §3.3)",
                  ["adaptive model", "binary model", "halving", "zero counts"],
                  {"tables": [], "models": models, "ops": ops}))
    return cases


def _constriction_check(h, case, payload):
    """Cross-check a generated payload with constriction where it can code every op."""
    pytest.importorskip("constriction")
    tables = op_tables(case)
    if any(isinstance(t, tuple) and t[0] == "uniform" for t in tables if t is not None):
        return False
    symbols = [b for (_, _, b), t in zip(case["ops"], tables) if t is not None]
    tables = [t for t in tables if t is not None]
    assert rc.words_to_bytes(h.constriction_words(symbols, tables)) == payload
    assert rc.words_to_bytes(h.reference_words(symbols, tables)) == payload
    return True


def regenerate():
    h = _helpers()
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    manifest = {
        "description": "Golden vectors of the bac_ref range coder and integer models. "
                       "payload.bin = the exact bytes Encoder writes for input.json's ops; "
                       "decoding payload.bin gives the ops' symbols and passes check_end().",
        "spec": "SPEC.md §2 (range coder), §3 (integer models)",
        "input_format": "SPEC.md §11.2 (data/golden/coder)",
        "cases": [],
    }
    for case_id, description, exercises, case in build_cases():
        folder = GOLDEN_DIR / case_id
        folder.mkdir(exist_ok=True)
        payload = encode_case(case)
        assert decode_case(case, payload) == [op[2] for op in case["ops"]]
        cross_checked = _constriction_check(h, case, payload)
        (folder / "input.json").write_text(json.dumps(case, separators=(",", ":")) + "\n",
                                           encoding="utf-8")
        (folder / "payload.bin").write_bytes(payload)
        manifest["cases"].append({
            "id": case_id,
            "description": description,
            "exercises": exercises,
            "num_ops": len(case["ops"]),
            "payload_bytes": len(payload),
            "checked_against_constriction_0.5.0": cross_checked,
            "files": {name: sha256(folder / name) for name in ("input.json", "payload.bin")},
        })
    MANIFEST.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    return [c["id"] for c in manifest["cases"]]


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def _manifest():
    assert MANIFEST.exists(), ("golden vectors missing: BAC_REF_REGENERATE_VECTORS=1 "
                               "python -m bac_ref.conformance --generate")
    return json.loads(MANIFEST.read_text(encoding="utf-8"))


def _case_ids():
    return [c["id"] for c in _manifest()["cases"]] if MANIFEST.exists() else []


def test_manifest_covers_every_file():
    manifest = _manifest()
    listed = {f"{c['id']}/{name}" for c in manifest["cases"] for name in c["files"]}
    present = {str(p.relative_to(GOLDEN_DIR)) for p in GOLDEN_DIR.rglob("*")
               if p.is_file() and p.name != "MANIFEST.json"}
    assert listed == present
    assert len(manifest["cases"]) >= 10


@pytest.mark.parametrize("case_id", _case_ids())
def test_golden_case(case_id):
    entry = next(c for c in _manifest()["cases"] if c["id"] == case_id)
    folder = GOLDEN_DIR / case_id
    for name, digest in entry["files"].items():
        assert sha256(folder / name) == digest, f"{case_id}/{name}: sha256 mismatch"
    case = json.loads((folder / "input.json").read_text(encoding="utf-8"))
    payload = (folder / "payload.bin").read_bytes()
    assert len(payload) == entry["payload_bytes"]
    assert encode_case(case) == payload, f"{case_id}: encoder output changed"
    assert decode_case(case, payload) == [op[2] for op in case["ops"]]


def test_conform_runs_the_coder_goldens(capsys):
    from bac_ref.conformance import runner as conformance
    assert conformance.main(["--coder", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith(f"{len(_case_ids())} passed, 0 failed")


def test_coder_golden_runner_catches_an_edited_payload(tmp_path):
    import shutil
    dest = tmp_path / "coder"
    shutil.copytree(GOLDEN_DIR, dest)
    cid = "static_11"
    pay = bytearray((dest / cid / "payload.bin").read_bytes())
    pay[5] ^= 1
    (dest / cid / "payload.bin").write_bytes(bytes(pay))
    manifest = json.loads((dest / "MANIFEST.json").read_text())
    for c in manifest["cases"]:
        if c["id"] == cid:
            c["files"]["payload.bin"] = sha256(dest / cid / "payload.bin")
    (dest / "MANIFEST.json").write_text(json.dumps(manifest))
    lines = []
    res = cases_mod.check_golden_coder(dest, report=lines.append)
    assert res["failed"] == 1 and f"FAIL {cid}: encoder output differs" in "\n".join(lines)
