"""Shared fixtures: the array-module fixture ``xp`` (NumPy always, CuPy when a GPU is present)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from vggedu import backend

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Real datasets: point the cache at ../shared/data when it exists and nothing else was chosen.
if "VGGEDU_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["VGGEDU_DATA"] = str(SHARED_DATA)


def _cupy_or_skip():
    reason = backend.gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)  # e.g. "no usable GPU: CuPy is not installed: ..."
    return backend.xp_for("gpu")


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module under test: every test using it runs on NumPy, and on CuPy with a GPU."""
    return np if request.param == "numpy" else _cupy_or_skip()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data, or skip when this checkout has none beside it."""
    path = Path(os.environ.get("VGGEDU_DATA", SHARED_DATA))
    if not (path / "fashion-mnist").is_dir() and not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return path if (path / "fashion-mnist").is_dir() else SHARED_DATA
