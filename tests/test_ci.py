"""CI runs what README.md says it runs (issue 17): the full-suite command, verbatim."""
from __future__ import annotations

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARK = "# --- the README's full-suite test command, verbatim ---"


def test_ci_runs_the_readme_full_suite_command():
    with open(os.path.join(REPO, ".ci", "run"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    command = lines[lines.index(MARK) + 1]
    assert "BAC_REF_SLOW=1" in command and "pytest" in command
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as fh:
        readme = fh.read().splitlines()
    assert command in readme, f".ci/run runs {command!r}, which README.md does not show"
