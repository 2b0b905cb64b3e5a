"""The NumPy/CuPy switch: the only module in vggedu that imports CuPy.

Every array function asks for its module with ``xp = get_array_module(x)`` and then writes
``xp.zeros``, ``xp.matmul``, ... so the same code runs on the CPU (NumPy) and on an NVIDIA GPU
(CuPy). Arrays move between the two only at the edges: ``to_device`` when data or parameters go
in, ``to_numpy`` when results come out for plotting, printing or saving.

The default device comes from the environment variable ``VGGEDU_DEVICE`` (``cpu`` or ``gpu``;
``cpu`` when unset). Taught in ``notebooks/08_gpu_and_data_parallel.ipynb``.
"""

from __future__ import annotations

import os

import numpy as np

try:  # CuPy is an optional extra: `pip install 'vggedu[gpu]'`
    import cupy as _cupy
except Exception:  # ImportError, or a CuPy that fails to find its CUDA libraries
    _cupy = None

DEVICES = ("cpu", "gpu")

_INSTALL_HINT = (
    "install CuPy for your CUDA version, e.g. `pip install 'vggedu[gpu]'` (cupy-cuda12x) "
    "or `pip install cupy-cuda13x`"
)


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no driver, no device
        return False


def _require_gpu() -> None:
    if _cupy is None:
        raise RuntimeError(f"device 'gpu' needs CuPy, which is not installed: {_INSTALL_HINT}")
    if not gpu_available():
        raise RuntimeError(
            "device 'gpu' needs a CUDA device, but CuPy found none "
            "(check `nvidia-smi` and the NVIDIA driver), or use VGGEDU_DEVICE=cpu"
        )


def _check_device(device: str) -> str:
    device = str(device).lower()
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}: expected one of {DEVICES}")
    return device


def default_device() -> str:
    """The device named by ``VGGEDU_DEVICE`` (``cpu`` when unset)."""
    device = os.environ.get("VGGEDU_DEVICE", "cpu").strip() or "cpu"
    try:
        return _check_device(device)
    except ValueError as err:
        raise ValueError(f"VGGEDU_DEVICE={device!r}: {err}") from None


def xp_for(device: str | None = None):
    """The array module for ``device`` (``None``: the default device)."""
    device = _check_device(device or default_device())
    if device == "gpu":
        _require_gpu()
        return _cupy
    return np


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (like ``cupy.get_array_module``)."""
    if _cupy is not None:
        for a in arrays:
            if isinstance(a, _cupy.ndarray):
                return _cupy
    return np


def is_gpu_array(a) -> bool:
    return _cupy is not None and isinstance(a, _cupy.ndarray)


def to_numpy(a):
    """A NumPy copy of ``a`` (a no-op view for NumPy arrays and Python scalars)."""
    if is_gpu_array(a):
        return _cupy.asnumpy(a)
    return np.asarray(a)


def to_device(a, device: str | None = None):
    """``a`` as an array on ``device`` (``None``: the default device); no copy if already there."""
    xp = xp_for(device)
    if xp is np:
        return to_numpy(a)
    return _cupy.asarray(a)


def device_of(a) -> str:
    """``'gpu'`` for a CuPy array, ``'cpu'`` otherwise."""
    return "gpu" if is_gpu_array(a) else "cpu"


def synchronize(a=None) -> None:
    """Wait for the GPU to finish queued work (a no-op on the CPU); use before reading a timer."""
    if _cupy is not None and (a is None or is_gpu_array(a)) and gpu_available():
        _cupy.cuda.get_current_stream().synchronize()
