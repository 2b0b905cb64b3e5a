"""Benchmark: vggedu's convolution against PyTorch CPU on every conv layer shape of VGG-A.

vggedu's side is ``vggedu.kernels.conv_forward`` / ``conv_backward``, the dispatchers its nets run.

For each conv layer of VGG-A (shapes read off the model built from the config table) at 32x32
batch 64 and at 224x224 batch 8, times the forward and the forward+backward of vggedu (NHWC) and
of PyTorch (NCHW, its default, same thread count), each framework's repetitions as a block
(``common.blocks``: PyTorch, vggedu, PyTorch, ...), and prints medians, GFLOP/s, % of the float32
GEMM peak measured in the same run, the median of the rounds' time ratios (vggedu / PyTorch; below
1 means vggedu is faster), and PyTorch's time before and after vggedu's blocks (they should agree).

The first layer's input gradient is not computed by either side (a training step never needs it).

    python bench/layers.py                 # both settings, 5 repetitions, 2 rounds
    python bench/layers.py --quick         # 32x32 only, 3 repetitions
    python bench/layers.py --json out.json # also write the summary rows as JSON (bench/run_all.py)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py beside this file
from common import blas_kernel, blocks, fmt_torch, gemm_peak, start, summed  # noqa: E402

from vggedu import build_vgg, kernels, nn  # noqa: E402


def conv_shapes(config: str, size: int, batch: int):
    """(name, N, H, W, C, F, K) for each conv layer, read off the built model's layers in order."""
    model = build_vgg(config, num_classes=10, input_size=size, fc_width=16)
    shapes, h = [], size
    for module in model.net:
        if isinstance(module, nn.Conv2d):
            KH, KW, C, F = module.params["W"].shape
            shapes.append((module.name, batch, h, h, C, F, KH))
        elif isinstance(module, nn.MaxPool2d):
            h //= 2
    return shapes


def bench_layer(torch, N, H, W, C, F, K, first, repeats, rounds):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C), dtype=np.float32)
    w = rng.standard_normal((K, K, C, F), dtype=np.float32) * 0.01
    b = np.zeros(F, np.float32)
    pad = K // 2
    out0, _ = kernels.conv_forward(x, w, b, 1, pad)
    dout = rng.standard_normal(out0.shape, dtype=np.float32)

    def ours_fwd():
        kernels.conv_forward(x, w, b, 1, pad)

    def ours_fb():
        _, cache = kernels.conv_forward(x, w, b, 1, pad)
        kernels.conv_backward(dout, cache, need_dx=not first)

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(not first)
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()
    bt = torch.zeros(F, requires_grad=True)
    dt = torch.from_numpy(dout.transpose(0, 3, 1, 2).copy())

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, bt, padding=pad)

    def torch_fb():
        torch.nn.functional.conv2d(xt, wt, bt, padding=pad).backward(dt)

    fwd = blocks(ours_fwd, torch_fwd, repeats, rounds)
    fb = blocks(ours_fb, torch_fb, repeats, rounds)
    flops_fwd = 2 * N * H * W * F * K * K * C  # stride 1, 'same' padding: OH = H
    flops_fb = flops_fwd * (2 if first else 3)  # backward: dW (+ dX) GEMMs of the same size
    return fwd, fb, flops_fwd, flops_fb


def pct(gflops, peak):
    return f"{gflops:.0f} ({100 * gflops / peak:.0f}%)"


def run(setting, torch, repeats, rounds, peak):
    size, batch = setting
    print(f"\n## VGG-A conv layers at {size}x{size}, batch {batch}\n")
    print("| layer | C->F | fwd ms (ours / torch) | fwd ratio | fwd+bwd ms (ours / torch) | fwd+bwd ratio "
          "| torch fwd+bwd ms before / after vggedu | ours GFLOP/s (% peak) | torch GFLOP/s (% peak) |")
    print("|---|---|---|---|---|---|---|---|---|")
    fwds, fbs, flops_total = [], [], 0.0
    for i, (name, N, H, W, C, F, K) in enumerate(conv_shapes("A", size, batch)):
        fwd, fb, _, ffb = bench_layer(torch, N, H, W, C, F, K, first=i == 0, repeats=repeats, rounds=rounds)
        fwds.append(fwd)
        fbs.append(fb)
        flops_total += ffb
        g_ours, g_torch = ffb / fb.ours_median() / 1e9, ffb / fb.torch_median() / 1e9
        print(f"| {name} | {C}->{F} | {fwd.ours_median() * 1e3:.1f} / {fwd.torch_median() * 1e3:.1f} "
              f"| {fwd.ratio:.2f}x | {fb.ours_median() * 1e3:.1f} / {fb.torch_median() * 1e3:.1f} | {fb.ratio:.2f}x "
              f"| {fmt_torch(fb)} | {pct(g_ours, peak)} | {pct(g_torch, peak)} |", flush=True)
    fwd, fb = summed(fwds), summed(fbs)
    g_ours, g_torch = flops_total / fb.ours_median() / 1e9, flops_total / fb.torch_median() / 1e9
    print(f"| **all layers** | | {fwd.ours_median() * 1e3:.0f} / {fwd.torch_median() * 1e3:.0f} | {fwd.ratio:.2f}x "
          f"| {fb.ours_median() * 1e3:.0f} / {fb.torch_median() * 1e3:.0f} | **{fb.ratio:.2f}x** | {fmt_torch(fb)} "
          f"| {pct(g_ours, peak)} | {pct(g_torch, peak)} |")
    return {"work": f"conv fwd+bwd, VGG-A's layers, {size}x{size} batch {batch}", "ratio": fb.ratio,
            "round_ratios": fb.round_ratios(), "ours_ms": fb.ours_median() * 1e3, "torch_ms": fb.torch_median() * 1e3,
            "torch_before_ms": fb.torch_before * 1e3, "torch_after_ms": fb.torch_after * 1e3,
            "ours_pct_peak": 100 * g_ours / peak, "torch_pct_peak": 100 * g_torch / peak}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32 only, 3 repetitions")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per block (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="vggedu blocks per measurement (default 2)")
    parser.add_argument("--json", metavar="PATH", help="write the summary rows here")
    args = parser.parse_args(argv)
    torch, repeats, peak = start("bench/layers.py", args.repeats, args.quick)
    settings = [(32, 64)] if args.quick else [(32, 64), (224, 8)]
    results = [run(s, torch, repeats, args.rounds, peak) for s in settings]
    peak_after = gemm_peak()
    print(f"\nGEMM peak after the run: {peak_after:.0f} GFLOP/s")
    for r in results:
        print(f"{r['work']}: {r['ratio']:.2f}x PyTorch's time (median of the rounds' ratios "
              f"{', '.join(f'{x:.2f}' for x in r['round_ratios'])}); PyTorch {r['torch_before_ms']:.0f} ms before "
              f"vggedu ran, {r['torch_after_ms']:.0f} ms after")
    if args.json:
        kernel = blas_kernel()
        for r in results:
            r.update(kernel=kernel, peak=peak, peak_after=peak_after, repeats=repeats, rounds=args.rounds)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
