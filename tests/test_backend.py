"""The NumPy/CuPy switch."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

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
    with pytest.raises(RuntimeError, match="no usable GPU: .*(CuPy is not installed|no CUDA device|cannot run a kernel)"):
        backend.xp_for("gpu")
    if backend._cupy is None:
        with pytest.raises(RuntimeError, match=r"pip install 'vggedu\[gpu\]'"):
            backend.to_device(np.zeros(1), "gpu")


class _Runtime:
    def __init__(self, count):
        self.count = count

    def getDeviceCount(self):
        if isinstance(self.count, Exception):
            raise self.count
        return self.count


def _fake_cupy(count=1, kernel_error=None):
    """A module that looks like a CuPy install to backend's probe: devices counted, a kernel that may fail."""
    def arange(*args, **kwargs):
        if kernel_error is not None:
            raise kernel_error
        return np.arange(*args, **kwargs)
    return SimpleNamespace(cuda=SimpleNamespace(runtime=_Runtime(count)), arange=arange, float32=np.float32,
                           ndarray=type("never", (), {}))


@pytest.mark.parametrize("fake, why", [
    (None, "CuPy is not installed: install CuPy .*vggedu\\[gpu\\]"),
    (_fake_cupy(RuntimeError("cudaErrorNoDevice")), "CuPy found no CUDA device .*cudaErrorNoDevice.*nvidia-smi"),
    (_fake_cupy(0), "CuPy found no CUDA device"),
    # cupy-cuda12x without [ctk] on a driver-only machine: imports, counts a device, fails at the first kernel
    (_fake_cupy(1, OSError("libnvrtc.so.12: cannot open shared object file")),
     "sees 1 CUDA device.*cannot run a kernel .*libnvrtc.*cupy-cuda12x\\[ctk\\]"),
])
def test_gpu_available_runs_a_kernel_and_says_why_not(monkeypatch, fake, why):
    monkeypatch.setattr(backend, "_cupy", fake)
    monkeypatch.setattr(backend, "_IMPORT_ERROR", ModuleNotFoundError("No module named 'cupy'") if fake is None else None)
    monkeypatch.setattr(backend, "_probed", [])
    assert backend.gpu_available() is False
    reason = backend.gpu_unavailable_reason()
    assert reason.startswith("no usable GPU: ") and re.search(why, reason), reason
    with pytest.raises(RuntimeError, match="no usable GPU"):
        backend.xp_for("gpu")
    monkeypatch.setattr(backend, "_cupy", _fake_cupy(2))  # probed once per process, unless asked again
    assert not backend.gpu_available() and backend.gpu_available(refresh=True)
    assert backend.gpu_unavailable_reason() is None


def test_gpu_tests_skip_with_the_reason(monkeypatch):
    from tests import conftest

    monkeypatch.setattr(backend, "_probed", ["CuPy is not installed: ..."])
    with pytest.raises(pytest.skip.Exception, match="no usable GPU: CuPy is not installed"):
        conftest._cupy_or_skip()


def test_model_and_input_on_different_devices_cupy(xp):
    """One clear message naming both devices and how to move the input (not 'Unsupported type' deep in a layer)."""
    from vggedu import build_vgg

    if xp is np:
        pytest.skip("needs a second device")
    model = build_vgg("tiny", num_classes=3, input_size=32, fc_width=8, init="he")
    x = np.zeros((2, 32, 32, 3), np.float32)
    with pytest.raises(ValueError, match=r"on the GPU but the input is a numpy array on the CPU.*to_device\(x, 'gpu'\)"):
        model.to("gpu").forward(x)
    with pytest.raises(ValueError, match=r"on the CPU but the input is a CuPy array on the GPU.*to_device\(x, 'cpu'\)"):
        model.to("cpu").forward(xp.asarray(x))


@pytest.mark.gpu
def test_round_trip_on_gpu():
    if not backend.gpu_available():
        pytest.skip(backend.gpu_unavailable_reason())
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
