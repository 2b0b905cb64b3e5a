"""``vggedu train`` refuses numbers that make no sense before it writes anything; so does ``TrainConfig``."""

from __future__ import annotations

import pytest

from vggedu.cli import main
from vggedu.train import TrainConfig

BAD_OPTIONS = [
    (["--epochs", "-3"], "--epochs must be a positive integer, got -3"),
    (["--epochs", "0"], "--epochs must be a positive integer, got 0"),
    (["--batch", "0"], "--batch must be a positive integer, got 0"),
    (["--batch", "-8"], "--batch must be a positive integer"),
    (["--lr", "-0.1"], "--lr must be a positive number, got -0.1"),
    (["--lr", "0"], "--lr must be a positive number, got 0.0"),
    (["--lr", "nan"], "--lr must be a positive number, got nan"),
    (["--size", "0"], "--size must be a positive integer, got 0"),
    (["--width", "-1"], "--width must be a positive number"),
    (["--fc-width", "0"], "--fc-width must be a positive integer"),
    (["--train-images", "0"], "--train-images must be a positive integer"),
    (["--val-images", "-5"], "--val-images must be a positive integer"),
    (["--holdout", "0"], "--holdout must be a positive integer"),
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    (["--weight-decay=-1e-4"], "--weight-decay must be a non-negative number"),
    (["--dropout", "1"], "--dropout must be in [0, 1)"),
    (["--patience", "-1"], "--patience must be a non-negative integer"),
    (["--seed", "-1"], "--seed must be a non-negative integer"),
    (["--size", "16"], "input_size 16 is too small for config A"),  # positive, but five pools need 32
]


@pytest.mark.parametrize("extra,message", BAD_OPTIONS, ids=[" ".join(e) for e, _ in BAD_OPTIONS])
def test_bad_numbers_fail_with_a_message_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code = main(["train", "--config", "A", "--data", "shapes", "--no-progress", "--out", str(out), *extra])
    assert code != 0
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_bad_numbers_on_resume_fail_before_touching_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--resume", "--epochs", "-3"]) == 1
    assert "--epochs must be a positive integer, got -3" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("field,value", [("epochs", -3), ("epochs", 0), ("batch_size", 0), ("lr", -1e-2),
                                         ("lr", 0.0), ("size", 0), ("width", 0.0), ("fc_width", 0),
                                         ("train_images", 0), ("val_images", 0), ("holdout", -1), ("workers", 0),
                                         ("epochs", 2.5), ("batch_size", True), ("lr_factor", 1.0)])
def test_train_config_refuses_them_too(field, value):
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} must be"):
        TrainConfig(**{field: value})


def test_good_configs_pass():
    TrainConfig()
    TrainConfig.quick()
    TrainConfig(fc_width=None, train_images=None, val_images=None, max_lr_drops=None, lr_patience=0, lr=1)
