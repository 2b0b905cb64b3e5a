"""--device reaches every step of a command: training, ``--test``, the demo's evaluations (run on the GPU,
or on ../shared/fakecupy, the CPU stand-in for CuPy; skipped cleanly without either)."""

from __future__ import annotations

import pytest

from vggedu import backend, metrics
from vggedu.cli import main


def _gpu_or_skip():
    reason = backend.gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture
def evaluations(monkeypatch):
    """The ``device`` of every evaluate_checkpoint call, and the device its model ran on."""
    seen, original = [], metrics.evaluate_checkpoint

    def spy(path, *args, device=None, **kwargs):
        seen.append(device)
        return original(path, *args, device=device, **kwargs)

    monkeypatch.setattr(metrics, "evaluate_checkpoint", spy)
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
