"""The headline CPU table of README and bench/RESULTS.md, re-measured in one command (``make bench``).

Runs ``bench/layers.py`` and ``bench/vgg.py`` (each framework's repetitions as blocks, see
``bench/common.py``) once with OpenBLAS's Haswell kernel forced (``OPENBLAS_CORETYPE=Haswell``, what
this workplace's machines set) and once with the kernel OpenBLAS detects by itself (the variable
removed: what a user's NumPy gets), each in fresh processes, then prints the table ready to paste:
median of the rounds' ratios (vggedu / PyTorch), both medians in ms, % of the GEMM peak of that
run, and PyTorch's time before vggedu ran and after (the check that the blocks do not interfere).

    python bench/run_all.py                    # the whole table (about 15 minutes on 2 cores)
    python bench/run_all.py --quick            # 32x32 rows only, 3 repetitions (a few minutes)
    python bench/run_all.py --runs 3           # three runs of everything: each run's ratio, and the median

On a shared machine, run it under a lock that keeps other heavy jobs away (here:
``flock /work/.heavy.lock make bench``) and say in the results that it was shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import describe_machine, load_average  # noqa: E402

KERNELS = {"Haswell (forced)": {"OPENBLAS_CORETYPE": "Haswell"}, "self-detected": {"OPENBLAS_CORETYPE": None}}


def run_script(script, kernel_env, args, log):
    env = dict(os.environ)
    for key, value in kernel_env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(HERE / script), *args, "--json", str(out)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        log.write(f"$ {' '.join(cmd)}  ({', '.join(f'{k}={v}' for k, v in kernel_env.items())})\n{proc.stdout}\n")
        log.flush()
        if proc.returncode:
            raise SystemExit(f"{script} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        return json.loads(out.read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32 rows only, 3 repetitions")
    parser.add_argument("--repeats", type=int, help="repetitions per block (default 5; 3 with --quick)")
    parser.add_argument("--rounds", type=int, default=2, help="vggedu blocks per measurement (default 2)")
    parser.add_argument("--runs", type=int, default=1, help="run everything this many times (default 1)")
    parser.add_argument("--log", default="runs/bench/run_all.log", help="every script's full output goes here")
    args = parser.parse_args(argv)
    extra = ["--rounds", str(args.rounds)] + (["--repeats", str(args.repeats)] if args.repeats else [])
    layers_args = extra + (["--quick"] if args.quick else [])
    vgg_args = extra + (["--quick"] if args.quick else [])
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    rows = {}  # (work, kernel) -> list of per-run results
    peaks = {k: [] for k in KERNELS}
    names = {}
    started = time.strftime("%Y-%m-%d %H:%M")
    with open(args.log, "w") as log:
        for run in range(args.runs):
            for kernel, env in KERNELS.items():
                print(f"run {run + 1}/{args.runs}, {kernel} kernel ...", file=sys.stderr, flush=True)
                for script, sargs in (("layers.py", layers_args), ("vgg.py", vgg_args)):
                    for r in run_script(script, env, sargs, log):
                        rows.setdefault((r["work"], kernel), []).append(r)
                        names[kernel] = r["kernel"]
                        peaks[kernel].append(r["peak"])
    works = list(dict.fromkeys(w for w, _ in rows))
    print(f"# bench/run_all.py{' --quick' if args.quick else ''}: started {started}, {describe_machine()}, "
          f"load average at the end {load_average()}; {args.runs} run(s), {args.rounds} rounds of "
          f"{args.repeats or (3 if args.quick else 5)} repetitions per measurement\n")
    print("Ratio = vggedu's time / PyTorch 2.13's (below 1: vggedu faster), median of the rounds' ratios"
          + (", then the median over runs (each run's in brackets)" if args.runs > 1 else "") + ".\n")
    heads = [f"OpenBLAS {names.get(k, '?')}" for k in KERNELS]
    print("| work | " + " | ".join(heads) + " |")
    print("|---|" + "---|" * len(heads))
    for work in works:
        cells = []
        for kernel in KERNELS:
            rs = rows.get((work, kernel), [])
            if not rs:
                cells.append("not run")
                continue
            med = statistics.median(r["ratio"] for r in rs)
            each = " (" + ", ".join(f"{r['ratio']:.2f}" for r in rs) + ")" if len(rs) > 1 else ""
            cells.append(f"{med:.2f}x{each}")
        print(f"| {work} | " + " | ".join(cells) + " |")
    print("\nDetails (per run): ms vggedu / PyTorch, % of that run's GEMM peak, "
          "PyTorch ms before / after vggedu ran.\n")
    print("| work | kernel (GEMM peak GFLOP/s) | ms (vggedu / torch) | ratio | rounds' ratios "
          "| % peak (vggedu / torch) | torch ms before / after vggedu |")
    print("|---|---|---|---|---|---|---|")
    for work in works:
        for kernel in KERNELS:
            for r in rows.get((work, kernel), []):
                print(f"| {work} | {r['kernel']} ({r['peak']:.0f}) | {r['ours_ms']:.0f} / {r['torch_ms']:.0f} "
                      f"| {r['ratio']:.2f}x | {', '.join(f'{x:.2f}' for x in r['round_ratios'])} "
                      f"| {r['ours_pct_peak']:.0f}% / {r['torch_pct_peak']:.0f}% "
                      f"| {r['torch_before_ms']:.0f} / {r['torch_after_ms']:.0f} |")
    print(f"\nFull output of every script: {args.log}")


if __name__ == "__main__":
    main()
