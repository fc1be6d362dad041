"""docs/tour.md must be exactly what ``python -m bac_ref.tour`` prints (issue 9).

The tour is generated from the shipped model; any change to the model, the codec or
bac_ref/tour.py changes it.  Regenerate with

    python -m bac_ref.tour --write docs/tour.md
"""
from __future__ import annotations

import difflib
import os

from bac_ref import tour

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "tour.md")
MAX_DIFF_LINES = 60


def _float_only(old: list[str], new: list[str], float_lines: set[int]) -> bool:
    """True when every difference replaces lines one for one, all of them float lines."""
    ops = difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
    for tag, i1, i2, j1, j2 in ops:
        if tag == "equal":
            continue
        if tag != "replace" or i2 - i1 != j2 - j1:
            return False
        if not all(j in float_lines for j in range(j1, j2)):
            return False
    return True


def test_tour_is_up_to_date():
    text, float_lines = tour.generate()
    assert os.path.isfile(DOC), f"docs/tour.md is missing: run `{tour.COMMAND}`"
    with open(DOC, encoding="utf-8") as f:
        committed = f.read()
    if text == committed:
        return
    old, new = committed.splitlines(), text.splitlines()
    diff = list(difflib.unified_diff(old, new, "docs/tour.md (committed)",
                                     "python -m bac_ref.tour (now)", lineterm="", n=1))
    shown = "\n".join(diff[:MAX_DIFF_LINES])
    if len(diff) > MAX_DIFF_LINES:
        shown += f"\n... ({len(diff) - MAX_DIFF_LINES} more diff lines)"
    message = (f"docs/tour.md is out of date: run `{tour.COMMAND}` and commit the result.\n")
    if _float_only(old, new, float_lines):
        message += ("HINT: only lines showing floats computed by g_a / g_s differ. These "
                    "transforms run in float32 and are not bit-exact across platforms or BLAS "
                    "libraries (SPEC.md §7.3), so this can be a platform difference, not a code "
                    "change; regenerate on the reference platform, or check that your change "
                    "was meant to move these values.\n")
    raise AssertionError(message + shown)


def test_float_only_detection():
    old = ["a", "mu = 0.1234", "b"]
    assert _float_only(old, ["a", "mu = 0.1235", "b"], {1})
    assert not _float_only(old, ["a", "mu = 0.1235", "c"], {1})
    assert not _float_only(old, ["a", "mu = 0.1235", "extra", "b"], {1, 2})
