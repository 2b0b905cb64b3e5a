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

    _IMPORT_ERROR = None
except Exception as err:  # ImportError, or a CuPy that fails to find its CUDA libraries
    _cupy, _IMPORT_ERROR = None, err

DEVICES = ("cpu", "gpu")

_INSTALL_HINT = (
    "install CuPy with the CUDA libraries it needs, e.g. `pip install 'vggedu[gpu]'` "
    "(cupy-cuda12x[ctk]; or `pip install 'cupy-cuda13x[ctk]'` for CUDA 13)"
)
_probed: list = []  # [reason or None] once the GPU has been probed in this process


def _probe() -> str | None:
    """Why no GPU is usable (None when one is): CuPy imports, counts a device, and runs a kernel.

    The kernel matters: a CuPy wheel installed without its CUDA libraries (``cupy-cuda12x`` without
    ``[ctk]`` and no CUDA toolkit) imports and counts the devices, then fails at the first kernel."""
    if _cupy is None:
        if _IMPORT_ERROR is not None and not isinstance(_IMPORT_ERROR, ModuleNotFoundError):
            return f"CuPy failed to import ({type(_IMPORT_ERROR).__name__}: {_IMPORT_ERROR}); {_INSTALL_HINT}"
        return f"CuPy is not installed: {_INSTALL_HINT}"
    try:
        count = _cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # no driver, no device
        return f"CuPy found no CUDA device ({type(err).__name__}: {err}); check `nvidia-smi` and the NVIDIA driver"
    if count < 1:
        return "CuPy found no CUDA device; check `nvidia-smi` and the NVIDIA driver"
    try:
        total = float((_cupy.arange(4, dtype=_cupy.float32) * 2).sum())  # compiles and runs one kernel
    except Exception as err:  # CUDA libraries missing (NVRTC, cuBLAS...), driver too old, device busy
        return (f"CuPy sees {count} CUDA device(s) but cannot run a kernel ({type(err).__name__}: {err}); "
                f"{_INSTALL_HINT}")
    if total != 12.0:
        return f"CuPy ran a test kernel on the GPU and got a wrong result ({total} instead of 12.0)"
    return None


def gpu_unavailable_reason(refresh: bool = False) -> str | None:
    """``"no usable GPU: <reason>"``, or None when CuPy imports, sees a device and runs a kernel on it.

    Probed once per process (``refresh=True`` probes again)."""
    if refresh or not _probed:
        _probed[:] = [_probe()]
    reason = _probed[0]
    return None if reason is None else f"no usable GPU: {reason}"


def gpu_available(refresh: bool = False) -> bool:
    """True when CuPy imports, sees at least one CUDA device and runs a tiny kernel on it
    (``gpu_unavailable_reason()`` says why not)."""
    return gpu_unavailable_reason(refresh) is None


def _require_gpu() -> None:
    reason = gpu_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"device 'gpu' asked for, but {reason}; or use the CPU (VGGEDU_DEVICE=cpu, --device cpu)")


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


def check_same_device(x, device: str, what: str = "the model") -> None:
    """Raise one clear ValueError when array ``x`` is not on ``device`` (where ``what`` lives), naming both
    devices and how to move the input; e.g. a NumPy batch given to a model on the GPU."""
    have = device_of(x)
    if have != device:
        kind = "a CuPy array on the GPU" if have == "gpu" else f"a {type(x).__module__.split('.')[0]} array on the CPU"
        raise ValueError(f"{what} is on the {device.upper()} but the input is {kind}: move the input first, "
                         f"x = vggedu.backend.to_device(x, {device!r}) (or the model: .to({have!r}))")


def synchronize(a=None) -> None:
    """Wait for the GPU to finish queued work (a no-op on the CPU); use before reading a timer."""
    if _cupy is not None and (a is None or is_gpu_array(a)) and gpu_available():
        _cupy.cuda.get_current_stream().synchronize()


def host_reads() -> int | None:
    """Device->host reads counted so far in this process, where the array module counts them (the
    CPU stand-in for CuPy in ``../shared/fakecupy`` does; real CuPy does not: None)."""
    stats = getattr(_cupy, "stats", None) if _cupy is not None else None
    return int(stats["d2h"]) if isinstance(stats, dict) and "d2h" in stats else None


def select_gpu(index: int) -> int:
    """Make GPU ``index % devices`` this process's current device (one GPU per data-parallel rank); returns it."""
    _require_gpu()
    n = _cupy.cuda.runtime.getDeviceCount()
    _cupy.cuda.Device(int(index) % n).use()
    return int(index) % n


def elementwise_kernel(in_params: str, out_params: str, body: str, name: str):
    """A ``cupy.ElementwiseKernel`` (one fused CUDA kernel), or None where none can be made (no CuPy, or a
    CuPy stand-in that does not compile kernels): callers keep an array-code path beside it."""
    if _cupy is None:
        return None
    try:
        return _cupy.ElementwiseKernel(in_params, out_params, body, name)
    except NotImplementedError:
        return None


class _NcclAllreduce:
    """Sum a flat CuPy buffer over the ranks with NCCL, on the current stream."""

    def __init__(self, comm, rank, size):
        from cupy.cuda import nccl

        self._nccl = nccl
        uid = comm.bcast(nccl.get_unique_id() if rank == 0 else None, root=0)
        self._comm = nccl.NcclCommunicator(size, uid, rank)
        self._types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}

    def allreduce_(self, buf):
        stream = _cupy.cuda.get_current_stream()
        self._comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._types[np.dtype(buf.dtype)],
                             self._nccl.NCCL_SUM, stream.ptr)


def gpu_collectives(comm, rank: int, size: int):
    """An object with ``allreduce_(buf)`` summing a CuPy buffer over the ranks with NCCL (``cupy.cuda.nccl``),
    or None when CuPy has no NCCL (then vggedu.distributed goes through the host). Not yet run on a GPU."""
    if _cupy is None or os.environ.get("VGGEDU_NO_NCCL"):
        return None
    try:
        from cupy.cuda import nccl

        if not getattr(nccl, "available", True):
            return None
        return _NcclAllreduce(comm, rank, size)
    except Exception:  # no NCCL in this CuPy build, or the stand-in
        return None
