"""One-line errors of the python -m bac_ref.<script> entry points (bac_ref/entry.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bac_ref import entry

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_turns_expected_errors_into_one_line(capsys, tmp_path):
    def main(argv):
        entry.require_file(tmp_path / "corpus.txt.gz", "corpus (--corpus)")
    assert entry.run(main, "python -m x") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m x: error: ")
    assert "corpus.txt.gz" in err[0] and "corpus (--corpus) not found" in err[0]

    def bug(argv):
        raise RuntimeError("a bug is not hidden")
    with pytest.raises(RuntimeError):
        entry.run(bug, "python -m x")


@pytest.mark.parametrize("module, argv, words", [
    ("bac_ref.training.release", ["--weights", "{tmp}/none.npz"], ["none.npz", "--weights"]),
    ("bac_ref.training.release", ["--weights", "{model}", "--data", "{tmp}/nodata"], ["nodata", "--data"]),
    pytest.param("bac_ref.embeddings.skipgram", ["--corpus", "{tmp}/none.txt.gz"],
                 ["none.txt.gz", "--corpus"], marks=pytest.mark.slow),      # imports torch: slow
    pytest.param("bac_ref.training.train", ["--data", "{tmp}/nodata", "--out", "{tmp}/run"],
                 ["nodata", "--data"], marks=pytest.mark.slow),
])
def test_scripts_give_one_line_errors(tmp_path, module, argv, words):
    if module != "bac_ref.training.release":
        pytest.importorskip("torch")
    model = os.path.join(REPO, "pretrained_npz", "bmshj2017-vae-n128.npz")
    argv = [a.format(tmp=tmp_path, model=model) for a in argv]
    r = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True,
                       cwd=tmp_path, env=dict(os.environ, PYTHONPATH=REPO), timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"python -m {module}: error: "), r.stderr
    for w in words:
        assert w in lines[0]
