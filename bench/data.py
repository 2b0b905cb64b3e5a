"""Benchmark: augmented images per second at 224x224, the paper's pipeline, on this machine's cores.

The pipeline is Sect. 3.1's: isotropic rescale (S = 256, or S jittered in [256, 512]), one random
224x224 crop, random flip, PCA colour shift, mean subtraction, batched to float32 NHWC. Inputs are
the 109 real ImageNet photos of ../shared/data (median 500x375; generated 500x375 ``shapes`` images
when that folder is absent). Four settings:

  * one thread, images already decoded in memory (the transform alone);
  * the DataLoader with ``workers`` threads (default: every core), images in memory;
  * the same, but decoding each JPEG every time (what an ImageNet-sized folder costs);
  * the 32x32 ``shapes`` training input (crop 32 from S in [32, 48], flip, colour, mean), for the demo.

Prints a markdown table (median of ``--repeats`` passes; images/s). The VGG training step's
images/s come from ``bench/vgg.py``.

    python bench/data.py              # 3 repetitions
    python bench/data.py --quick      # 1 repetition
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
from common import describe_machine  # noqa: E402

from vggedu.data import DataLoader, colour_stats, load_dataset, train_transform  # noqa: E402
from vggedu.data.download import data_root  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def photos():
    """(decoded dataset, lazily decoded dataset or None, description)."""
    root = data_root()
    if not (root / "imagenet" / "samples.tsv").is_file() and (SHARED / "imagenet").is_dir():
        root = SHARED
    try:
        lazy = load_dataset("imagenet-samples", root=root)
    except FileNotFoundError:
        from vggedu.data.datasets import Dataset
        from vggedu.data.shapes import generate

        images, labels, _ = generate(100, 500, split="val")
        images = images[:, :375]  # a 500x375 landscape frame like the median photo
        return Dataset("shapes", "val", images, labels, []), None, "100 generated shapes images, 375x500"
    decoded = [lazy.images[i] for i in range(len(lazy))]
    sizes = np.array([img.shape[:2] for img in decoded])
    eager = type(lazy)(lazy.name, lazy.split, decoded, lazy.labels, lazy.classes)
    desc = f"{len(lazy)} ImageNet photos, median {int(np.median(sizes[:, 1]))}x{int(np.median(sizes[:, 0]))}"
    return eager, lazy, desc


def rate(fn, n, repeats):
    """Median images/s over ``repeats`` timed calls of ``fn`` (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


def through_loader(dataset, transform, workers, batch):
    def run():
        for _ in DataLoader(dataset, batch, seed=0, transform=transform, workers=workers):
            pass

    return run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repetition")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="loader threads (default: cores)")
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args(argv)
    repeats = 1 if args.quick else args.repeats

    eager, lazy, desc = photos()
    stats = colour_stats(eager.images)
    print(f"# data loading throughput\n\nmachine: {describe_machine()}\ninput: {desc}\n")
    print("| pipeline | setting | images/s |\n|---|---|---|")
    for label, S in (("S = 256", 256), ("S in [256, 512]", (256, 512))):
        t = train_transform(224, S=S, stats=stats)
        rng = np.random.default_rng(0)

        def one_thread(t=t, rng=rng):
            for img in eager.images:
                t(img, rng)

        print(f"| 224 crop, {label} | 1 thread, decoded | {rate(one_thread, len(eager), repeats):.0f} |", flush=True)
        r = rate(through_loader(eager, t, args.workers, args.batch), len(eager), repeats)
        print(f"| 224 crop, {label} | DataLoader, {args.workers} threads, decoded | {r:.0f} |", flush=True)
        if lazy is not None:
            r = rate(through_loader(lazy, t, args.workers, args.batch), len(lazy), repeats)
            print(f"| 224 crop, {label} | DataLoader, {args.workers} threads, JPEG decode included | {r:.0f} |",
                  flush=True)

    shapes = load_dataset("shapes", "train", n=5000)
    t32 = train_transform(32, S=(32, 48), stats=colour_stats(shapes.images))
    r = rate(through_loader(shapes, t32, args.workers, 64), len(shapes), repeats)
    print(f"| 32 crop, S in [32, 48], shapes | DataLoader, {args.workers} threads | {r:.0f} |")
    r = rate(lambda: load_dataset("shapes", "train", n=5000), 5000, repeats)
    print(f"| generating shapes 32x32 | 1 thread | {r:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
