"""Where the sample photo lives (``data/kodim23.png``): used by ``bac-ref demo``, the tour
and the benchmarks.  A low module: it imports nothing from bac_ref."""
from __future__ import annotations

import os
import sys

__all__ = ["DEMO_IMAGE", "demo_image_candidates", "find_demo_image"]

DEMO_IMAGE = "kodim23.png"


def demo_image_candidates() -> list[str]:
    """Where ``demo`` looks for kodim23.png: the source tree's data/, then the install prefix."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [os.path.join(package_parent, "data", DEMO_IMAGE),
            os.path.join(sys.prefix, "share", "bac_ref", "data", DEMO_IMAGE)]


def find_demo_image() -> str:
    """The first existing candidate; FileNotFoundError naming every place looked in."""
    candidates = demo_image_candidates()
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(2, f"demo image {DEMO_IMAGE} not found; looked in "
                               f"{', '.join(candidates)}")
