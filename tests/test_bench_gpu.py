"""bench/gpu.py is ready for the first GPU: without one it says why and exits 0; on the CPU stand-in for CuPy
(../shared/fakecupy) its quick path runs a miniature VGG-16 through the same code."""

from __future__ import annotations

import runpy
from pathlib import Path

from vggedu import backend

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_bench_gpu_quick_runs_or_says_why_not_cupy(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    gpu = runpy.run_path(str(BENCH / "gpu.py"))  # defines main without running it (not __main__)
    assert gpu["main"](["--quick", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    if backend.gpu_unavailable_reason() is not None:
        assert "no usable GPU" in out and "Not run: no GPU figures" in out
    else:
        assert "| vggedu (CuPy, FP32) |" in out
