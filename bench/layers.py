"""Benchmark: vggedu's im2col convolution against PyTorch CPU on every conv layer shape of VGG-A.

For each conv layer of VGG-A (shapes read off the model built from the config table) at 32x32
batch 64 and at 224x224 batch 8, times the forward and the forward+backward of vggedu (NHWC) and
of PyTorch (NCHW, its default, same thread count), interleaved in one run, and prints medians,
GFLOP/s, % of the float32 GEMM peak measured in the same run, and the median of the per-repetition
time ratios (vggedu / PyTorch; below 1 means vggedu is faster).

The first layer's input gradient is not computed by either side (a training step never needs it).

    python bench/layers.py                 # both settings, 5 repetitions
    python bench/layers.py --quick         # 32x32 only, 3 repetitions
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/common.py beside this file
from common import gemm_peak, interleaved, median_ratio, start  # noqa: E402

from vggedu import build_vgg, layers, nn  # noqa: E402


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


def bench_layer(torch, N, H, W, C, F, K, first, repeats):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, H, W, C), dtype=np.float32)
    w = rng.standard_normal((K, K, C, F), dtype=np.float32) * 0.01
    b = np.zeros(F, np.float32)
    pad = K // 2
    out0, _ = layers.conv_forward(x, w, b, 1, pad)
    dout = rng.standard_normal(out0.shape, dtype=np.float32)

    def ours_fwd():
        layers.conv_forward(x, w, b, 1, pad)

    def ours_fb():
        _, cache = layers.conv_forward(x, w, b, 1, pad)
        layers.conv_backward(dout, cache, need_dx=not first)

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(not first)
    wt = torch.from_numpy(w.transpose(3, 2, 0, 1).copy()).requires_grad_()
    bt = torch.zeros(F, requires_grad=True)
    dt = torch.from_numpy(dout.transpose(0, 3, 1, 2).copy())

    def torch_fwd():
        with torch.no_grad():
            torch.nn.functional.conv2d(xt, wt, bt, padding=pad)

    def torch_fb():
        torch.nn.functional.conv2d(xt, wt, bt, padding=pad).backward(dt)

    t = interleaved({"ours_fwd": ours_fwd, "torch_fwd": torch_fwd, "ours_fb": ours_fb, "torch_fb": torch_fb}, repeats)
    flops_fwd = 2 * N * H * W * F * K * K * C  # stride 1, 'same' padding: OH = H
    flops_fb = flops_fwd * (2 if first else 3)  # backward: dW (+ dX) GEMMs of the same size
    return t, flops_fwd, flops_fb


def run(setting, torch, repeats, peak):
    size, batch = setting
    print(f"\n## VGG-A conv layers at {size}x{size}, batch {batch}\n")
    print("| layer | C->F | fwd ms (ours / torch) | fwd ratio | fwd+bwd ms (ours / torch) | fwd+bwd ratio "
          "| ours GFLOP/s (% peak) | torch GFLOP/s (% peak) |")
    print("|---|---|---|---|---|---|---|---|")
    tot = {"ours_fwd": 0.0, "torch_fwd": 0.0, "ours_fb": 0.0, "torch_fb": 0.0}
    ratios_fb, ratios_fwd, flops_total = [], [], 0.0
    per_rep_ours, per_rep_torch = np.zeros(repeats), np.zeros(repeats)
    for i, (name, N, H, W, C, F, K) in enumerate(conv_shapes("A", size, batch)):
        t, ffwd, ffb = bench_layer(torch, N, H, W, C, F, K, first=i == 0, repeats=repeats)
        med = {k: statistics.median(v) for k, v in t.items()}
        for k in tot:
            tot[k] += med[k]
        per_rep_ours += np.array(t["ours_fb"])
        per_rep_torch += np.array(t["torch_fb"])
        flops_total += ffb
        r_fwd, r_fb = median_ratio(t["ours_fwd"], t["torch_fwd"]), median_ratio(t["ours_fb"], t["torch_fb"])
        ratios_fwd.append(r_fwd)
        ratios_fb.append(r_fb)
        g_ours, g_torch = ffb / med["ours_fb"] / 1e9, ffb / med["torch_fb"] / 1e9
        print(f"| {name} | {C}->{F} | {med['ours_fwd'] * 1e3:.1f} / {med['torch_fwd'] * 1e3:.1f} | {r_fwd:.2f}x "
              f"| {med['ours_fb'] * 1e3:.1f} / {med['torch_fb'] * 1e3:.1f} | {r_fb:.2f}x "
              f"| {g_ours:.0f} ({100 * g_ours / peak:.0f}%) | {g_torch:.0f} ({100 * g_torch / peak:.0f}%) |")
    whole = float(np.median(per_rep_ours / per_rep_torch))
    g_ours = flops_total / tot["ours_fb"] / 1e9
    g_torch = flops_total / tot["torch_fb"] / 1e9
    print(f"| **all layers** | | {tot['ours_fwd'] * 1e3:.0f} / {tot['torch_fwd'] * 1e3:.0f} "
          f"| {tot['ours_fwd'] / tot['torch_fwd']:.2f}x | {tot['ours_fb'] * 1e3:.0f} / {tot['torch_fb'] * 1e3:.0f} "
          f"| **{whole:.2f}x** | {g_ours:.0f} ({100 * g_ours / peak:.0f}%) "
          f"| {g_torch:.0f} ({100 * g_torch / peak:.0f}%) |")
    return whole


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32x32 only, 3 repetitions")
    parser.add_argument("--repeats", type=int, default=None, help="repetitions per measurement (default 5)")
    args = parser.parse_args(argv)
    torch, repeats, peak = start("bench/layers.py", args.repeats, args.quick)
    settings = [(32, 64)] if args.quick else [(32, 64), (224, 8)]
    results = {s: run(s, torch, repeats, peak) for s in settings}
    print(f"\nGEMM peak after the run: {gemm_peak():.0f} GFLOP/s")
    for (size, batch), r in results.items():
        print(f"conv forward+backward over VGG-A's layers at {size}x{size} batch {batch}: {r:.2f}x PyTorch's time "
              "(median of per-repetition ratios)")


if __name__ == "__main__":
    main()
