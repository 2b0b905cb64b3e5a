"""Benchmark: vggedu on CuPy against PyTorch + cuDNN on the same GPU, in the same run.

A VGG-16 (config D) training step (forward, backward, SGD with momentum and weight decay) at 224x224,
1000 classes, batch 32 and 64, float32: vggedu through CuPy (cuBLAS GEMMs, CuPy's TF32 setting as
the environment leaves it: ``CUPY_TF32`` unset means off), PyTorch with cuDNN with TF32 off and on.
Each framework's repetitions run as a block (``common.block``: PyTorch TF32 off, PyTorch TF32 on,
then vggedu), after an untimed warm-up step, each step ending with a device synchronisation.
Printed per row: ms per step, images/s, % of the device's nominal FP32 peak (SMs x FP32 lanes x 2
x clock; ``--peak-tflops`` to give it) and of the cuBLAS SGEMM rate measured in the same run, and
peak device memory (CuPy's pool / PyTorch's allocator).

    python bench/gpu.py             # batch 32 and 64, 5 repetitions, 2 rounds
    python bench/gpu.py --quick     # batch 32 only, 3 repetitions, 1 round

Without a usable GPU it says why and exits 0. On the CPU stand-in for CuPy (``../shared/fakecupy``,
``PYTHONPATH=../shared/fakecupy:.``) ``--quick`` runs a miniature VGG-16 (32x32, 1/16 width, batch 2)
through the same code, to prove the script wires up; its numbers mean nothing (they are NumPy's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PairTiming, block  # noqa: E402
from vgg import torch_twin  # noqa: E402

from vggedu import backend, build_vgg  # noqa: E402
from vggedu.configs import layer_table  # noqa: E402
from vggedu.distributed import loss_sum_and_grad  # noqa: E402
from vggedu.optim import SGD  # noqa: E402

# FP32 lanes per SM by compute capability (NVIDIA's CUDA C++ Programming Guide, "Arithmetic Instructions")
FP32_LANES = {(6, 0): 64, (7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
              (9, 0): 128, (10, 0): 128, (12, 0): 128}


def device_info(xp, peak_tflops=None):
    """(name, nominal FP32 peak in TFLOP/s or None) of the current device."""
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.runtime.getDevice())
    name = props.get("name", b"?")
    name = name.decode() if isinstance(name, bytes) else str(name)
    if peak_tflops:
        return name, float(peak_tflops)
    lanes = FP32_LANES.get((props.get("major"), props.get("minor")))
    sms, clock_khz = props.get("multiProcessorCount"), props.get("clockRate")
    if not (lanes and sms and clock_khz):
        return name, None
    return name, 2 * sms * lanes * clock_khz * 1e3 / 1e12


def sgemm_tflops(xp, n=8192, repeats=5):
    """cuBLAS float32 GEMM rate measured now (TFLOP/s)."""
    a = xp.ones((n, n), dtype=np.float32)
    b = xp.ones((n, n), dtype=np.float32)
    a @ b
    backend.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        backend.synchronize()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e12


def vggedu_step(xp, config, size, batch, width, seed=0):
    model = build_vgg(config, num_classes=1000, input_size=size, width=width, init="he", seed=seed, device="gpu")
    opt = SGD(model.params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(seed)
    x = xp.asarray(rng.standard_normal((batch, size, size, 3), dtype=np.float32))
    y = xp.asarray(rng.integers(0, 1000, batch))

    def step():
        scores = model.forward(x, train=True)
        _, _, dscores = loss_sum_and_grad(scores, y, 1.0 / batch)
        model.backward(dscores)
        opt.step(model.grads)
        backend.synchronize()

    return step


def torch_step(torch, rows, size, batch, seed=0):
    net = torch_twin(torch, rows).cuda().train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=g).cuda()
    y = torch.randint(0, 1000, (batch,), generator=g).cuda()

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        torch.cuda.synchronize()

    return step


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 32 only, 3 repetitions, 1 round")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default 32 64)")
    parser.add_argument("--repeats", type=int, help="repetitions per block (default 5)")
    parser.add_argument("--rounds", type=int, help="vggedu blocks per measurement (default 2)")
    parser.add_argument("--peak-tflops", type=float, help="the device's FP32 peak, if its properties do not give it")
    args = parser.parse_args(argv)
    reason = backend.gpu_unavailable_reason()
    if reason is not None:
        print(f"bench/gpu.py: {reason}. Not run: no GPU figures.")
        return 0
    xp = backend.xp_for("gpu")
    fake = "fakecupy" in getattr(xp, "__version__", "")
    repeats = args.repeats or (3 if args.quick else 5)
    rounds = args.rounds or (1 if args.quick else 2)
    config, size, width = ("D", 32, 1 / 16) if fake else ("D", 224, 1.0)
    batches = args.batches or ([2] if fake else [32] if args.quick else [32, 64])
    name, peak = device_info(xp, args.peak_tflops)
    gemm = sgemm_tflops(xp, n=256 if fake else 8192, repeats=2 if fake else 5)
    try:
        import torch

        torch_gpu = torch.cuda.is_available()
        torch_note = f"PyTorch {torch.__version__}" + ("" if torch_gpu else " (no CUDA device: its rows not run)")
    except ImportError:
        torch, torch_gpu, torch_note = None, False, "PyTorch not installed (its rows not run)"
    print(f"# bench/gpu.py: {time.strftime('%Y-%m-%d %H:%M')}, {name}, CuPy {xp.__version__}, {torch_note}; "
          f"FP32 peak {f'{peak:.1f} TFLOP/s' if peak else 'unknown (--peak-tflops)'}, cuBLAS SGEMM measured now "
          f"{gemm:.1f} TFLOP/s; CUPY_TF32={os.environ.get('CUPY_TF32', 'unset')}")
    if fake:
        print("(fakecupy: the CPU stand-in for CuPy; a miniature VGG-16 proves the wiring; the numbers mean nothing)")
    print("\n| framework | VGG-16 step, batch | ms | img/s | % FP32 peak | % SGEMM | peak memory MB |")
    print("|---|---|---|---|---|---|---|")
    rows = layer_table(config, num_classes=1000, input_size=size, width=width)
    flops_per_image = 3 * sum(r["flops"] for r in rows)
    pool = xp.get_default_memory_pool()
    for batch in batches:
        results = {}
        pool.free_all_blocks()
        ours = vggedu_step(xp, config, size, batch, width)
        timing = PairTiming()
        theirs = {}
        if torch_gpu:
            for tf32 in (False, True):
                torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
                torch.cuda.reset_peak_memory_stats()
                step = torch_step(torch, rows, size, batch)
                theirs[tf32] = (block(step, repeats), torch.cuda.max_memory_allocated() / 2**20)
                del step
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        for _ in range(rounds):
            timing.ours.append(block(ours, repeats))
        results["vggedu (CuPy, FP32)"] = (statistics.median(sum(timing.ours, [])), pool.total_bytes() / 2**20)
        for tf32, (times, mem) in theirs.items():
            results[f"PyTorch + cuDNN, TF32 {'on' if tf32 else 'off'}"] = (statistics.median(times), mem)
        for label, (sec, mem) in results.items():
            tflops = flops_per_image * batch / sec / 1e12
            print(f"| {label} | {batch} | {sec * 1e3:.1f} | {batch / sec:.0f} "
                  f"| {f'{100 * tflops / peak:.0f}%' if peak else '?'} | {100 * tflops / gemm:.0f}% | {mem:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
