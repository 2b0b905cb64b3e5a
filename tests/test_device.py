"""--device reaches every step of a command: training, ``--test``, the demo's evaluations (run on the GPU,
or on ../shared/fakecupy, the CPU stand-in for CuPy; skipped cleanly without either)."""

from __future__ import annotations

import pytest

from vggedu import backend, evaluate
from vggedu.cli import main


def _gpu_or_skip():
    reason = backend.gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def evaluations(monkeypatch):
    """The ``device`` of every evaluate_checkpoint call, and the device its model ran on."""
    seen, original = [], evaluate.evaluate_checkpoint

    def spy(path, *args, device=None, **kwargs):
        seen.append(device)
        return original(path, *args, device=device, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", spy)
    return seen


def test_train_device_gpu_also_tests_on_the_gpu_cupy(tmp_path, evaluations, monkeypatch, capsys):
    _gpu_or_skip()
    monkeypatch.delenv("VGGEDU_DEVICE", raising=False)  # the flag alone must carry the device
    assert main(["train", "--config", "tiny", "--data", "shapes", "--size", "32", "--train-images", "32",
                 "--val-images", "16", "--batch", "16", "--epochs", "1", "--init", "he", "--no-progress",
                 "--device", "gpu", "--test", "--out", str(tmp_path / "run")]) == 0
    assert evaluations == ["gpu"] and "test: top-1 error" in capsys.readouterr().out


def test_demo_device_gpu_cupy(tmp_path, evaluations, monkeypatch):
    _gpu_or_skip()
    monkeypatch.delenv("VGGEDU_DEVICE", raising=False)
    from vggedu import train

    devices, original = [], train.Trainer.__init__

    def spy(self, cfg, *args, **kwargs):
        original(self, cfg, *args, **kwargs)
        devices.append(self.model.device)

    monkeypatch.setattr(train.Trainer, "__init__", spy)
    assert main(["demo", "--quick", "--no-progress", "--device", "gpu", "--out", str(tmp_path / "demo")]) == 0
    assert devices == ["gpu", "gpu"] and evaluations == ["gpu", "gpu"]


def test_cpu_tuned_conv_paths_are_off_on_the_gpu_cupy(xp):
    """Inside taps, blocks and the per-tap dx were measured on a CPU only: a GPU takes im2col + one GEMM and the
    reference dx, with the same results (float64 here)."""
    import numpy as np

    from vggedu import kernels as K
    from vggedu import layers as L

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 4, 64))  # a 4x4 map, C*F = 64*64: the CPU's "inside" path
    w, b = rng.standard_normal((3, 3, 64, 64)) * 0.05, rng.standard_normal(64)
    dout = rng.standard_normal((2, 4, 4, 64))
    _, cpu_cache = K.conv_forward(x, w, b, 1, 1)
    big = rng.standard_normal((1, 64, 64, 64))  # im2col 9.4 MB: blocked on the CPU (4 MB blocks)
    _, cpu_big = K.conv_forward(big, w, b, 1, 1)
    assert (cpu_cache.path, cpu_big.path) == ("inside", "blocks")
    out, cache = K.conv_forward(xp.asarray(x), xp.asarray(w), xp.asarray(b), 1, 1)
    _, big_cache = K.conv_forward(xp.asarray(big), xp.asarray(w), xp.asarray(b), 1, 1)
    expect = ("inside", "blocks") if xp is np else ("cols", "cols")
    assert (cache.path, big_cache.path) == expect
    dx, dw, db = K.conv_backward(xp.asarray(dout), cache)
    ref_out, ref_cache = L.conv_forward(x, w, b, 1, 1)
    rdx, rdw, rdb = L.conv_backward(dout, ref_cache)
    get = (lambda a: a.get()) if xp is not np else (lambda a: a)
    for mine, ref in ((out, ref_out), (dx, rdx), (dw, rdw), (db, rdb)):
        assert np.abs(get(mine) - ref).max() < 1e-10


def test_evaluate_device_gpu_gives_the_cpus_table_cupy(tmp_path, monkeypatch, capsys):
    """``vggedu evaluate --device gpu``: dense and multi-crop run on the device, the table is the CPU's."""
    _gpu_or_skip()
    monkeypatch.delenv("VGGEDU_DEVICE", raising=False)
    import json

    from vggedu import build_vgg, save_checkpoint

    model = build_vgg("tiny", num_classes=10, input_size=32, fc_width=16, init="he", seed=1)
    path = save_checkpoint(tmp_path / "a.npz", model, meta={"input": {"mean": [120.0, 115.0, 110.0], "scale": 1 / 255},
                                                            "train_config": {"data": "shapes"}})
    args = ["evaluate", "--checkpoint", str(path), "--images", "8", "--method", "center,dense+multicrop",
            "--scales", "32,40", "--json"]
    tables = {}
    for device in ("cpu", "gpu"):
        assert main([*args, "--device", device]) == 0
        tables[device] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for cpu, gpu in zip(tables["cpu"], tables["gpu"]):
        assert (cpu["top1_err"], cpu["top5_err"]) == (gpu["top1_err"], gpu["top5_err"])
        assert abs(cpu["loss"] - gpu["loss"]) < 1e-5
