"""Shared pytest configuration.

Tests marked ``@pytest.mark.slow`` are skipped unless they are asked for,
with ``-m slow`` (any marker expression that selects ``slow``) or with the
environment variable BAC_REF_SLOW=1 (which runs them together with the
rest, as CI does: see .ci/run).  Helpers shared by several test modules live
in tests/helpers.py.
"""
from __future__ import annotations

import os
import sys

import pytest

SLOW_ENV = "BAC_REF_SLOW"


def slow_requested(config) -> bool:
    """True when ``-m`` selects slow tests or BAC_REF_SLOW=1."""
    if os.environ.get(SLOW_ENV) == "1":
        return True
    expr = config.getoption("markexpr") or ""
    return "slow" in expr and "not slow" not in expr


def pytest_collection_modifyitems(config, items):
    if slow_requested(config):
        return
    skip = pytest.mark.skip(reason=f"slow test: run with -m slow or {SLOW_ENV}=1")
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(skip)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KODIM23 = os.path.join(REPO, "data", "kodim23.png")


@pytest.fixture(scope="session")
def kodim23():
    """The sample photo, (512, 768, 3) uint8 (read-only: crop and copy it)."""
    from bac_ref.imageio import read_image
    pixels = read_image(KODIM23).pixels
    pixels.setflags(write=False)
    return pixels


@pytest.fixture(autouse=True)
def _ieee_floats_after_each_test():
    """Every test starts with IEEE-754 subnormals on.

    ``bac_ref.training.train`` turns on torch's flush-denormal mode (a process-wide CPU flag)
    when it runs in-process, as test_train does; later tests (VBQ with sigma = 5e-324,
    hypothesis's float strategies) would then see subnormals flushed to zero.
    """
    yield
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_flush_denormal(False)


@pytest.fixture(scope="session")
def fitted_priors():
    """Two-channel samples and the priors fitted to them (KDE, Balle 2018), fitted once."""
    import numpy as np
    from bac_ref.training import prior_fit
    rng = np.random.default_rng(11)
    x = np.stack([rng.standard_normal(4000) * 0.5 + 2, rng.exponential(size=4000) - 1])
    return {
        "kde": prior_fit.fit_empirical_prior(x, axis=0, method="kde", table_bits=9),
        "balle": prior_fit.fit_empirical_prior(x, axis=0, method="balle2018", table_bits=9,
                                               maxiter=100, max_samples=1500),
        "x": x,
    }
