"""The NumPy/CuPy switch."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from vggedu import backend

PACKAGE = Path(backend.__file__).parent


def test_numpy_arrays_use_numpy():
    assert backend.get_array_module(np.zeros(2), 3.0) is np
    assert backend.xp_for("cpu") is np
    assert backend.to_device(np.ones(2), "cpu").tolist() == [1.0, 1.0]
    assert isinstance(backend.to_numpy([1, 2]), np.ndarray)


def test_default_device_from_environment(monkeypatch):
    monkeypatch.delenv("VGGEDU_DEVICE", raising=False)
    assert backend.default_device() == "cpu"
    monkeypatch.setenv("VGGEDU_DEVICE", "tpu")
    with pytest.raises(ValueError, match="VGGEDU_DEVICE='tpu'.*cpu.*gpu"):
        backend.default_device()


def test_gpu_request_without_gpu_says_what_is_missing(monkeypatch):
    if backend.gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="(CuPy, which is not installed|needs a CUDA device).*"):
        backend.xp_for("gpu")
    if backend._cupy is None:
        with pytest.raises(RuntimeError, match=r"pip install 'vggedu\[gpu\]'"):
            backend.to_device(np.zeros(1), "gpu")


@pytest.mark.gpu
def test_round_trip_on_gpu():
    if not backend.gpu_available():
        pytest.skip("needs CuPy and a CUDA device")
    a = backend.to_device(np.arange(3.0), "gpu")
    assert backend.get_array_module(a) is not np and backend.device_of(a) == "gpu"
    assert backend.to_numpy(a).tolist() == [0.0, 1.0, 2.0]


def test_only_backend_imports_cupy():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "backend.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            if any(n.split(".")[0] == "cupy" for n in names):
                offenders.append(str(path.relative_to(PACKAGE)))
    assert not offenders, f"only vggedu/backend.py may import cupy: {offenders}"


def test_vggedu_does_not_import_torch():
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                assert not any(n.split(".")[0] == "torch" for n in names), path
