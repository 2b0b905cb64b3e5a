"""Shared helpers for the benchmarks: interleaved timing, GEMM peak, machine description.

Machines are noisy (shared hosts, turbo, other processes), so every comparison is measured side
by side: each repetition times vggedu and then PyTorch on the same work, the ratio is taken per
repetition, and the median of those ratios is reported, together with the median times and the
float32 GEMM peak measured in the same run.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

import numpy as np


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict, repeats: int = 5, warmup: int = 1, pause: float | None = None) -> dict:
    """Time each callable ``repeats`` times, alternating between them; returns lists of seconds.

    ``pause`` seconds of sleep (untimed) before each call let the previous framework's idle worker
    threads stop spinning (OpenBLAS's busy-wait after a GEMM, OpenMP's spin-wait) so they do not
    steal the cores from the next one; default ``$VGGEDU_BENCH_PAUSE`` or 0.
    """
    pause = float(os.environ.get("VGGEDU_BENCH_PAUSE", 0)) if pause is None else pause
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if pause:
                time.sleep(pause)
            times[name].append(timed(fn))
    return times


def median_ratio(a: list, b: list) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """Float32 GEMM throughput of NumPy's BLAS in GFLOP/s (median of ``repeats``), measured now."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    t = statistics.median(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / t / 1e9


def blas_kernel() -> str:
    """Which OpenBLAS kernel set NumPy uses (OPENBLAS_CORETYPE forces one; unset means autodetect)."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    try:
        from threadpoolctl import threadpool_info

        archs = {i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"}
        arch = ",".join(sorted(a for a in archs if a)) or "unknown"
    except ImportError:
        arch = "unknown (pip install threadpoolctl to see)"
    return f"{arch} (OPENBLAS_CORETYPE={'unset' if forced is None else forced})"


def describe_machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, NumPy {np.__version__}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux ru_maxrss is in kB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def set_torch_threads(torch, threads: int | None = None) -> int:
    """Give PyTorch the same thread count NumPy's BLAS uses (the number of cores by default)."""
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(threads)
    return threads


def start(script: str, repeats: int | None, quick: bool):
    """The set-up every PyTorch comparison shares: import torch (or exit with how to get it), match its
    thread count to NumPy's, measure the GEMM peak and print the machine line.

    Returns ``(torch, repeats, peak_gflops)``.
    """
    try:
        import torch
    except ImportError:
        raise SystemExit(f"{script} compares with PyTorch: pip install 'vggedu[bench]' (torch==2.13.0)") from None
    repeats = repeats or (3 if quick else 5)
    threads = set_torch_threads(torch)
    peak = gemm_peak()
    print(f"# {script}: {time.strftime('%Y-%m-%d')}, {describe_machine()}; PyTorch {torch.__version__} "
          f"with {threads} threads")
    print(f"NumPy BLAS kernel: {blas_kernel()}; float32 GEMM peak measured now: {peak:.0f} GFLOP/s")
    return torch, repeats, peak
