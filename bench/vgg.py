"""Benchmark: whole VGG nets, vggedu against PyTorch CPU, side by side in one run.

Three workloads:
  * a VGG-A training step (forward, backward, SGD update with momentum and weight decay)
    at 32x32, batch 64, 10 classes;
  * the same at 224x224, batch 8, 1000 classes (the paper's net, 133M parameters);
  * a VGG-16 (config D) forward pass at 224x224, batch 4, 1000 classes.

The PyTorch net is generated from the same config table (layer by layer, NCHW, PyTorch's default
layout), so both run the same architecture. Each framework's repetitions run as a block
(``common.blocks``: PyTorch, vggedu, PyTorch, ...); the median of the rounds' ratios is reported
(vggedu / PyTorch; below 1 means vggedu is faster), with GFLOP/s and % of the float32 GEMM peak
measured in the same run, and PyTorch's time before vggedu ran and after (they should agree). Peak memory is
measured in a fresh process per framework and workload (resident-set growth over the process's
size before the model was built, its peak mark reset there).

    python bench/vgg.py            # all three, 5 repetitions
    python bench/vgg.py --quick    # 32x32 training step only, 3 repetitions
    python bench/vgg.py --json out.json   # also write the rows as JSON (bench/run_all.py)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import blas_kernel, blocks, fmt_torch, gemm_peak, start  # noqa: E402

from vggedu import build_vgg  # noqa: E402
from vggedu.configs import layer_table  # noqa: E402
from vggedu.optim import SGD  # noqa: E402

WORKLOADS = {
    "A-train-32": dict(config="A", size=32, batch=64, classes=10, train=True),
    "A-train-224": dict(config="A", size=224, batch=8, classes=1000, train=True),
    "D-forward-224": dict(config="D", size=224, batch=4, classes=1000, train=False),
}


def torch_twin(torch, rows):
    """The same layer sequence as a vggedu model, as a PyTorch nn.Sequential (NCHW).

    Built from the config table's rows (``vggedu.configs.layer_table``), not from a vggedu model, so
    that PyTorch's memory measurement does not also hold a vggedu copy of the weights."""
    tnn = torch.nn
    mods, shape = [], None
    for r in rows:
        kind = r["kind"]
        if kind == "conv":
            mods.append(tnn.Conv2d(r["in_channels"], r["out_channels"], r["kernel"], stride=r["stride"],
                                   padding=r["pad"]))
        elif kind == "maxpool":
            mods.append(tnn.MaxPool2d(r["kernel"], r["stride"]))
        elif kind == "relu":
            mods.append(tnn.ReLU())
        elif kind == "lrn":
            mods.append(tnn.LocalResponseNorm(5, 1e-4, 0.75, 2.0))  # vggedu's lrn_forward defaults
        elif kind == "flatten":
            mods.append(tnn.Flatten())
        elif kind == "fc":
            mods.append(tnn.Linear(int(np.prod(shape)), r["out_channels"]))
        elif kind == "dropout":
            mods.append(tnn.Dropout(0.5))
        else:
            raise TypeError(f"no PyTorch twin for layer {r['name']} ({kind})")
        shape = r["output_shape"]
    return tnn.Sequential(*mods)


def make_work(framework, name, torch=None, seed=0):
    """(callable running one step, the config table's rows) for one framework and workload."""
    w = WORKLOADS[name]
    rng = np.random.default_rng(seed)
    rows = layer_table(w["config"], num_classes=w["classes"], input_size=w["size"])
    x = rng.standard_normal((w["batch"], w["size"], w["size"], 3), dtype=np.float32)
    y = rng.integers(0, w["classes"], w["batch"])
    if framework == "vggedu":
        model = build_vgg(w["config"], num_classes=w["classes"], input_size=w["size"], init="he", seed=seed)
        if w["train"]:
            opt = SGD(model.params, lr=1e-3, momentum=0.9, weight_decay=5e-4)

            def step():
                _, grads = model.loss(x, y)
                opt.step(grads)
        else:
            def step():
                model.forward(x, train=False)
        return step, rows
    net = torch_twin(torch, rows)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y)
    if w["train"]:
        net.train()
        opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(net(xt), yt).backward()
            opt.step()
    else:
        net.eval()

        def step():
            with torch.no_grad():
                net(xt)
    return step, rows


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def reset_peak_rss() -> int:
    """Reset this process's peak-RSS mark to its current RSS (Linux ``clear_refs``); returns the RSS in kB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kb("VmRSS")


def measure_memory(framework: str, name: str) -> float:
    """Peak RSS growth (MB) of a fresh process that builds the workload and runs 2 steps.

    The baseline is taken after the imports (NumPy, vggedu, and PyTorch for PyTorch), with the
    peak mark reset there, so an import's own transient peak does not hide the workload's."""
    bench_dir = str(Path(__file__).resolve().parent)
    code = "\n".join([
        "import sys, json",
        f"sys.path.insert(0, {bench_dir!r})",
        "import torch" if framework == "torch" else "torch = None",
        "import vgg as B",
        "base = B.reset_peak_rss()",
        f"step, _ = B.make_work({framework!r}, {name!r}, torch)",
        "step(); step()",
        "print(json.dumps((B._status_kb('VmHWM') - base) / 1024))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(name, torch, repeats, rounds, peak, memory=True):
    w = WORKLOADS[name]
    ours, rows = make_work("vggedu", name)
    theirs, _ = make_work("torch", name, torch)
    t = blocks(ours, theirs, repeats, rounds)
    flops = sum(r["flops"] for r in rows) * w["batch"] * (3 if w["train"] else 1)
    med = {"vggedu": t.ours_median(), "torch": t.torch_median()}
    g = {k: flops / v / 1e9 for k, v in med.items()}
    del ours, theirs
    mem = {k: measure_memory(k, name) for k in ("vggedu", "torch")} if memory else {}
    what = "training step" if w["train"] else "forward"
    work = f"VGG-{w['config']} {what}, {w['size']}x{w['size']} batch {w['batch']}"
    print(f"| {work} | {med['vggedu'] * 1e3:.0f} / {med['torch'] * 1e3:.0f} | **{t.ratio:.2f}x** "
          f"| {', '.join(f'{x:.2f}' for x in t.round_ratios())} | {fmt_torch(t)} "
          f"| {g['vggedu']:.0f} ({100 * g['vggedu'] / peak:.0f}%) | {g['torch']:.0f} ({100 * g['torch'] / peak:.0f}%) "
          + (f"| {mem['vggedu']:.0f} / {mem['torch']:.0f} ({mem['vggedu'] / mem['torch']:.2f}x) |" if mem else "| - |"),
          flush=True)
    return {"work": work, "ratio": t.ratio, "round_ratios": t.round_ratios(), "ours_ms": med["vggedu"] * 1e3,
            "torch_ms": med["torch"] * 1e3, "torch_before_ms": t.torch_before * 1e3,
            "torch_after_ms": t.torch_after * 1e3, "ours_pct_peak": 100 * g["vggedu"] / peak,
            "torch_pct_peak": 100 * g["torch"] / peak, "memory_mb": mem or None}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32 training step only, 3 repetitions")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per block (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="vggedu blocks per workload (default 2)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process memory measurement")
    parser.add_argument("--only", choices=sorted(WORKLOADS), action="append", help="run only these workloads")
    parser.add_argument("--json", metavar="PATH", help="write the rows here")
    args = parser.parse_args(argv)
    torch, repeats, peak = start("bench/vgg.py", args.repeats, args.quick)
    print()
    print("| workload | ms (vggedu / torch) | ratio | rounds' ratios | torch ms before / after vggedu "
          "| vggedu GFLOP/s (% peak) | torch GFLOP/s (% peak) | peak MB (vggedu / torch) |")
    print("|---|---|---|---|---|---|---|---|")
    names = args.only or (["A-train-32"] if args.quick else list(WORKLOADS))
    results = [run(name, torch, repeats, args.rounds, peak, memory=not args.no_memory) for name in names]
    peak_after = gemm_peak()
    print(f"\nGEMM peak after the run: {peak_after:.0f} GFLOP/s")
    if args.json:
        kernel = blas_kernel()
        for r in results:
            r.update(kernel=kernel, peak=peak, peak_after=peak_after, repeats=repeats, rounds=args.rounds)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
