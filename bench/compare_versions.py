"""Benchmark: the VGG-A 32x32 batch-64 training step of two vggedu checkouts, timed in the same run.

Two versions of one package cannot share a process, so each block of repetitions runs in a fresh
process with ``PYTHONPATH`` pointing at one checkout: version 1's block, version 2's block, and again,
``--alternations`` times, so that a slow minute of a shared machine hits both. Each block builds the
net (He init, seed 0), takes 2 untimed warm-up steps, then times ``--repeats`` steps (forward,
backward, SGD update with momentum 0.9 and weight decay 5e-4, as ``bench/vgg.py``'s workload
"A-train-32"). Reported: the median step of each version over all its repetitions, the median of
each block, and the ratio of the medians (second / first).

    git worktree add --detach /tmp/old 0831b83
    python bench/compare_versions.py /tmp/old .                 # 4 alternations of 10 steps
    env -u OPENBLAS_CORETYPE python bench/compare_versions.py /tmp/old .
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import blas_kernel, describe_machine  # noqa: E402

BLOCK = """
import json, time, numpy as np
import vggedu
from vggedu import build_vgg
from vggedu.optim import SGD
model = build_vgg("A", num_classes=10, input_size=32, init="he", seed=0)
opt = SGD(model.params, lr=1e-3, momentum=0.9, weight_decay=5e-4)
rng = np.random.default_rng(0)
x = rng.standard_normal((64, 32, 32, 3), dtype=np.float32)
y = rng.integers(0, 10, 64)
def step():
    _, grads = model.loss(x, y)
    opt.step(grads)
for _ in range(2):
    step()
times = []
for _ in range({repeats}):
    t0 = time.perf_counter(); step(); times.append(time.perf_counter() - t0)
print(json.dumps({{"file": vggedu.__file__, "times": times}}))
"""


def block(root: Path, repeats: int) -> list:
    env = {**os.environ, "PYTHONPATH": str(root.resolve())}
    # run in the checkout: ``python -c`` puts the working directory first on sys.path, ahead of PYTHONPATH
    out = subprocess.run([sys.executable, "-c", BLOCK.format(repeats=repeats)], env=env, capture_output=True,
                         text=True, check=True, cwd=root.resolve())
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(result["file"]).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"{root}: the block imported {result['file']}, not this checkout")
    return result["times"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first", type=Path, help="checkout of the first version (e.g. the old one)")
    p.add_argument("second", type=Path, help="checkout of the second version")
    p.add_argument("--alternations", type=int, default=4)
    p.add_argument("--repeats", type=int, default=10, help="timed steps per block")
    args = p.parse_args(argv)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}; {describe_machine()}; BLAS {blas_kernel()}")
    roots = {"first": args.first, "second": args.second}
    times = {name: [] for name in roots}
    for a in range(args.alternations):
        for name, root in roots.items():
            t = block(root, args.repeats)
            times[name].extend(t)
            print(f"alternation {a + 1}: {name:6s} ({root}) block median {1e3 * statistics.median(t):.1f} ms")
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, root in roots.items():
        t = times[name]
        print(f"{name:6s} {root}: median {1e3 * med[name]:.1f} ms over {len(t)} steps "
              f"(min {1e3 * min(t):.1f}, max {1e3 * max(t):.1f})")
    print(f"second / first: {med['second'] / med['first']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
