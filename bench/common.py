"""Shared helpers for the benchmarks: block timing, GEMM peak, BLAS kernel, machine description.

How a comparison is timed (``blocks``). Each framework's repetitions run as a block, never one call
of vggedu then one of PyTorch: after a call, OpenBLAS's worker threads busy-wait and PyTorch's
OpenMP threads spin-wait, and on 2 cores either steals the CPU from the other framework's next call
(an earlier version of these scripts alternated single calls; that made PyTorch's convolutions up
to 2x slower than alone and vggedu look 1.35x faster than it is, see bench/RESULTS.md). The order is

    PyTorch block 0, vggedu block 1, PyTorch block 1, vggedu block 2, PyTorch block 2, ...

with an untimed warm-up call and a short pause at the start of every block. Round k's ratio is
median(vggedu block k) / median(PyTorch blocks k-1 and k), both taken minutes apart at most, and
the reported ratio is the median of the rounds' ratios. The proof that the blocks do not disturb
each other: PyTorch's median in block 0 (before vggedu ran in this measurement) is printed beside
its median in the later blocks (after vggedu ran); they must agree within the machine's noise.

Machines are noisy (shared hosts, turbo, other processes), so every table also carries the float32
GEMM peak NumPy reached in the same run, and "% peak" is measured against it.
"""

from __future__ import annotations

import ctypes
import os
import platform
import re
import statistics
import time
from dataclasses import dataclass, field

import numpy as np

PAUSE = float(os.environ.get("VGGEDU_BENCH_PAUSE", 0.2))  # seconds between blocks (untimed)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def block(fn, repeats: int, warmup: int = 1, pause: float = PAUSE) -> list:
    """Seconds of ``repeats`` back-to-back calls of ``fn``, after a pause and ``warmup`` untimed calls."""
    if pause:
        time.sleep(pause)
    for _ in range(warmup):
        fn()
    return [timed(fn) for _ in range(repeats)]


@dataclass
class PairTiming:
    """The blocks of one vggedu/PyTorch comparison (seconds): ``torch[0]`` ran before any vggedu block."""

    ours: list = field(default_factory=list)  # rounds of repetitions
    torch: list = field(default_factory=list)  # rounds + 1 blocks

    @property
    def rounds(self) -> int:
        return len(self.ours)

    def ours_median(self, k=None) -> float:
        return statistics.median(self.ours[k] if k is not None else sum(self.ours, []))

    def torch_median(self, k=None) -> float:
        """Median of PyTorch around vggedu round k (blocks k and k+1), or of all its blocks."""
        return statistics.median(self.torch[k] + self.torch[k + 1] if k is not None else sum(self.torch, []))

    @property
    def torch_before(self) -> float:
        """PyTorch's median before vggedu ran (block 0)."""
        return statistics.median(self.torch[0])

    @property
    def torch_after(self) -> float:
        """PyTorch's median in the blocks after a vggedu block."""
        return statistics.median(sum(self.torch[1:], []))

    def round_ratios(self) -> list:
        return [self.ours_median(k) / self.torch_median(k) for k in range(self.rounds)]

    @property
    def ratio(self) -> float:
        """Median of the rounds' ratios (vggedu / PyTorch; below 1: vggedu is faster)."""
        return statistics.median(self.round_ratios())


def blocks(ours, theirs, repeats: int = 5, rounds: int = 2, warmup: int = 1, pause: float = PAUSE) -> PairTiming:
    """Time vggedu's ``ours`` and PyTorch's ``theirs`` as blocks: theirs, ours, theirs, ours, ..., theirs."""
    t = PairTiming(torch=[block(theirs, repeats, warmup, pause)])
    for _ in range(rounds):
        t.ours.append(block(ours, repeats, warmup, pause))
        t.torch.append(block(theirs, repeats, warmup, pause))
    return t


def summed(timings: list) -> PairTiming:
    """One PairTiming for several measured one after the other (e.g. all conv layers of a net): each block is
    the sum, repetition by repetition, of the same block of every measurement."""
    def add(lists):
        return [sum(col) for col in zip(*lists)]

    first = timings[0]
    return PairTiming(ours=[add([t.ours[k] for t in timings]) for k in range(first.rounds)],
                      torch=[add([t.torch[k] for t in timings]) for k in range(first.rounds + 1)])


def gemm_peak(n: int = 2048, repeats: int = 5) -> float:
    """Float32 GEMM throughput of NumPy's BLAS in GFLOP/s (median of ``repeats``), measured now."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    t = statistics.median(timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / t / 1e9


def openblas_corename() -> str:
    """The kernel set NumPy's OpenBLAS runs (``Haswell``, ``SkylakeX``, ...), asked from the library itself."""
    try:
        from threadpoolctl import threadpool_info

        archs = {i.get("architecture") for i in threadpool_info() if i.get("internal_api") == "openblas"}
        archs.discard(None)
        if archs:
            return ",".join(sorted(archs))
    except ImportError:
        pass
    try:  # without threadpoolctl: the loaded OpenBLAS's own get_corename (NumPy's wheels prefix its symbols)
        with open("/proc/self/maps") as f:
            libs = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", f.read())))
        for path in libs:
            lib = ctypes.CDLL(path)
            for sym in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename", "openblas_get_corename",
                        "openblas_get_corename64_"):
                fn = getattr(lib, sym, None)
                if fn is not None:
                    fn.restype = ctypes.c_char_p
                    return fn().decode()
    except OSError:
        pass
    return "unknown"


def blas_kernel() -> str:
    """Which OpenBLAS kernel NumPy uses and why: ``Haswell (forced: OPENBLAS_CORETYPE=Haswell)`` or
    ``SkylakeX (self-detected)``."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    how = f"forced: OPENBLAS_CORETYPE={forced}" if forced else "self-detected"
    return f"{openblas_corename()} ({how})"


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


def load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


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
    print(f"# {script}: {time.strftime('%Y-%m-%d %H:%M')}, {describe_machine()}; PyTorch {torch.__version__} "
          f"with {threads} threads; load average {load_average()}")
    print(f"NumPy BLAS kernel: {blas_kernel()}; float32 GEMM peak measured now: {peak:.0f} GFLOP/s")
    print("Timing: each framework's repetitions as a block (PyTorch, vggedu, PyTorch, ...); ratio = median over "
          "rounds of median(vggedu) / median(PyTorch around it)")
    return torch, repeats, peak


def fmt_torch(t: PairTiming, scale=1e3) -> str:
    """PyTorch's median before / after vggedu ran, e.g. ``238 / 241``."""
    return f"{t.torch_before * scale:.0f} / {t.torch_after * scale:.0f}"
