"""Benchmark: reading a full-size VGG-16 in each released format, and what one photo costs afterwards.

No weight file can be downloaded here, so random full-size VGG-16 files are written in each layout by
the test suite's writers (``tests/weightwriters.py``); reading them costs what reading the real ones
costs (same sizes, same layouts). Then, with the imported net: one centre-crop prediction, one dense
prediction at Q = 256 (image and flip), and Appendix B's features at Q = 256, 384, 512.

    python bench/pretrained_load.py            # about 528 MB per file, one file on disk at a time
    python bench/pretrained_load.py --smoke    # a small net: checks the script only
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))
SHARED_DATA = ROOT.parent / "shared" / "data"
if "VGGEDU_DATA" not in os.environ and SHARED_DATA.is_dir():
    os.environ["VGGEDU_DATA"] = str(SHARED_DATA)
import weightwriters as ww  # noqa: E402
from common import blas_kernel, describe_machine  # noqa: E402

from vggedu import pretrained  # noqa: E402
from vggedu.features import extract  # noqa: E402

WRITERS = {
    "caffe": (None, lambda net, d: ww.write_caffe(net, d / "VGG_ILSVRC_16_layers.caffemodel")),
    "matconvnet": ("scipy", lambda net, d: ww.write_matconvnet(net, d / "imagenet-vgg-verydeep-16.mat")[0]),
    "keras": ("h5py", lambda net, d: ww.write_keras(net, d / "vgg16_weights_tf_dim_ordering_tf_kernels.h5")),
    "torchvision": ("torch", lambda net, d: ww.write_pth(net, d / "vgg16-397923af.pth")),
    "safetensors": ("safetensors", lambda net, d: ww.write_safetensors(net, d / "vgg16.safetensors")),
}


def main():
    small = "--smoke" in sys.argv  # a 1/16-width net: checks the script, measures nothing
    net = ww.TorchLayout("D", width=1 / 16, fc_width=16, seed=0) if small else ww.TorchLayout("D", seed=0)
    photo = np.random.default_rng(0).integers(0, 256, (375, 500, 3), dtype=np.uint8)  # the samples' median size
    rows = {}
    with tempfile.TemporaryDirectory(dir=ROOT / "runs" if (ROOT / "runs").is_dir() else None) as tmp:
        for fmt, (module, write) in WRITERS.items():
            if module and importlib.util.find_spec(module) is None:
                print(f"{fmt}: {module} not installed, skipped")
                continue
            path = write(net, Path(tmp))
            t0 = time.perf_counter()
            model = pretrained.load(path)
            rows[fmt] = {"MB": round(path.stat().st_size / 2**20), "load_s": round(time.perf_counter() - t0, 2)}
            path.unlink()
            print(fmt, rows[fmt], flush=True)
        for method in ("center", "dense"):
            t0 = time.perf_counter()
            pretrained.classify(model, photo, method, [256])
            rows[f"classify {method}, Q = 256"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        extract(model, [photo], (256, 384, 512))
        rows["features, Q = 256, 384, 512, flip"] = round(time.perf_counter() - t0, 2)
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": describe_machine(), "blas_kernel": blas_kernel(),
              "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"), "rows": rows}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
