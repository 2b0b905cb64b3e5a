"""The trainer: resume equals an uninterrupted run bit for bit, Ctrl-C, NaN stop, bad output dir, stall warning,
and ``vggedu train`` / ``transplant`` / ``evaluate`` end to end on miniature nets."""

from __future__ import annotations

import json
import math
import os
import signal

import numpy as np
import pytest

from vggedu.cli import main
from vggedu.metrics import read_metrics, topk_correct, topk_error
from vggedu.train import StallWarning, TrainConfig, Trainer, TrainingDiverged

# the miniature run every test starts from: 96 shapes images, batches of 16 -> 6 steps per epoch
SMALL = dict(config="tiny", data="shapes", size=32, train_images=96, val_images=32, batch_size=16, epochs=2,
             init="he", progress=False, verbose=False)
TIMING = ("seconds", "images_per_s")


def small(tmp_path, name="run", **kw) -> TrainConfig:
    return TrainConfig(**{**SMALL, "out": str(tmp_path / name), **kw})


def numbers(history):
    """The history without its timings (which differ between runs)."""
    return [{k: v for k, v in r.items() if k not in TIMING} for r in history]


def stop_at(step, how):
    """A callback that interrupts the run after optimizer step ``step``, by raising or by a real SIGINT."""
    def callback(trainer):
        if trainer.step == step:
            if how == "raise":
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGINT)  # the trainer's handler: finish this step, save, return
    return callback


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig()
    assert (cfg.batch_size, cfg.momentum, cfg.weight_decay, cfg.dropout, cfg.lr, cfg.lr_factor, cfg.epochs) == (
        256, 0.9, 5e-4, 0.5, 1e-2, 0.1, 74)
    assert cfg.init == "paper" and cfg.max_lr_drops == 3 and cfg.size == 224
    quick = TrainConfig.quick(epochs=3)
    assert quick.epochs == 3 and quick.size == 32 and quick.init == "he"


@pytest.mark.parametrize("stops", [[("raise", 3)], [("sigint", 6), ("raise", 9)]], ids=["mid-epoch", "boundaries"])
def test_resume_gives_bitwise_the_same_parameters(tmp_path, stops):
    reference = Trainer(small(tmp_path, "straight")).fit()
    straight = Trainer.from_run(tmp_path / "straight").model.params  # the saved last.npz

    cfg = small(tmp_path, "stopped")
    how, step = stops[0]
    result = Trainer(cfg, callbacks=[stop_at(step, how)]).fit()
    assert result.interrupted and result.step == step and (tmp_path / "stopped" / "last.npz").is_file()
    for how, step in stops[1:]:
        result = Trainer.from_run(cfg.out, callbacks=[stop_at(step, how)]).fit()
        assert result.interrupted and result.step == step
    resumed = Trainer.from_run(cfg.out)
    final = resumed.fit()
    assert not final.interrupted and final.step == reference.step == 12
    for name, value in resumed.model.params.items():
        assert np.array_equal(value, straight[name]), name  # bitwise, not approximately
    assert numbers(final.history) == numbers(reference.history)
    assert numbers(read_metrics(cfg.out)) == numbers(reference.history)  # metrics.jsonl has each epoch once


def test_ctrl_c_saves_and_returns(tmp_path, capsys):
    result = Trainer(small(tmp_path, epochs=1), callbacks=[stop_at(2, "sigint")]).fit()
    assert result.interrupted and result.step == 2
    assert "saved" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # our handler is gone again
    state = Trainer.from_run(tmp_path / "run")
    assert state.step == 2 and state.loader.state_dict()["position"] == 32


def test_nan_loss_stops_naming_step_and_lr(tmp_path):
    def poison(trainer):
        if trainer.step == 2:
            trainer.model.params["fc8.W"][0, 0] = np.nan
    with pytest.raises(TrainingDiverged, match=r"step 3 \(epoch 1, lr 0.01\)"):
        Trainer(small(tmp_path), callbacks=[poison]).fit()


def test_exploding_loss_stops(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at step \d+ .*lr 1000"):
        Trainer(small(tmp_path, lr=1e3, init="glorot")).fit()


def test_unwritable_output_dir_fails_before_training(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    import vggedu.train

    def no_data(*args, **kw):
        raise AssertionError("data was loaded before the output directory was checked")

    monkeypatch.setattr(vggedu.train, "load_run_data", no_data)
    with pytest.raises(ValueError, match="cannot be written"):
        Trainer(small(tmp_path, "a-file/run"))
    assert main(["train", "--config", "tiny", "--out", str(blocker), "--no-progress"]) == 1
    assert "cannot be written" in capsys.readouterr().err


def test_stall_warning_names_the_causes(tmp_path):
    # N(0, 0.01) through the tiny net: the scores are ~0, the loss sits at ln(10) (lesson 06)
    with pytest.warns(StallWarning, match=r"initialisation.*learning rate with momentum"):
        result = Trainer(small(tmp_path, init="paper", epochs=1)).fit()
    assert result.history[0]["stalled"]
    assert abs(result.history[0]["train_loss"] - math.log(10)) < 0.05


def test_run_directory_contents(tmp_path):
    result = Trainer(small(tmp_path)).fit()
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["best.npz", "curves.png", "last.npz", "metrics.jsonl"]
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2] and records == result.history
    for key in ("train_loss", "val_top1_err", "val_top5_err", "lr", "images_per_s"):
        assert all(math.isfinite(r[key]) for r in records), key
    assert all(0 <= r["val_top5_err"] <= r["val_top1_err"] <= 1 for r in records)


def test_topk_against_a_hand_count():
    scores = np.array([[0.1, 0.5, 0.2, 0.0, 0.0, 0.0, 0.3],   # label 1: top-1
                       [0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6],   # label 1: last of 7 -> in neither
                       [0.1, 0.2, 0.9, 0.8, 0.7, 0.6, 0.0]])  # label 5: 4th highest -> top-5 only
    y = np.array([1, 1, 5])
    assert topk_correct(scores, y, 1) == 1 and topk_correct(scores, y, 5) == 2
    assert topk_error(scores, y, 5) == pytest.approx(1 / 3)


def cli(*args):
    return main([str(a) for a in args])


@pytest.mark.filterwarnings("ignore::vggedu.train.StallWarning")  # two-step runs of miniature nets sit at chance
def test_train_transplant_evaluate_end_to_end(tmp_path, capsys):
    # VGG-A at width 1/16 (channels 4..32) with FC-32: the real configs, small enough for a test
    common = ["--data", "shapes", "--size", 32, "--train-images", 64, "--val-images", 32, "--batch", 16,
              "--no-progress"]
    assert cli("train", "--config", "A", "--width", 0.0625, "--fc-width", 32, "--epochs", 1, "--init", "he",
               "--out", tmp_path / "A", *common) == 0
    assert cli("transplant", "--from", tmp_path / "A" / "best.npz", "--to", "D", "--init", "he",
               "--out", tmp_path / "D-init.npz") == 0
    assert "copied  conv3_2" in capsys.readouterr().out
    assert cli("train", "--config", "D", "--init-from", tmp_path / "D-init.npz", "--epochs", 1,
               "--out", tmp_path / "D", "--test", *common) == 0
    out = capsys.readouterr().out
    assert "VGG-D width 0.0625 FC 32" in out and "test: top-1 error" in out
    assert cli("evaluate", "--checkpoint", tmp_path / "D" / "best.npz", "--images", 50, "--json") == 0
    report = json.loads(capsys.readouterr().out)
    assert report["config"] == "D" and report["n"] == 50 and 0 <= report["top5_err"] <= report["top1_err"] <= 1


@pytest.mark.filterwarnings("ignore::vggedu.train.StallWarning")
def test_tiny_config_resume_and_conflicts_on_the_command_line(tmp_path, capsys):
    run = tmp_path / "tiny"
    base = ["train", "--config", "tiny", "--data", "shapes", "--train-images", 32, "--val-images", 16,
            "--batch", 16, "--init", "he", "--no-progress", "--out", run]
    assert cli(*base, "--epochs", 1) == 0
    assert cli("train", "--out", run, "--resume", "--epochs", 2, "--no-progress") == 0
    assert "resuming" in capsys.readouterr().out
    assert [r["epoch"] for r in read_metrics(run)] == [1, 2]
    assert cli("train", "--out", run, "--resume", "--epochs", 3, "--lr", 0.5) == 1
    assert "lr: saved 0.01, asked 0.5" in capsys.readouterr().err
    assert cli("train", "--out", tmp_path / "nothing-here", "--resume") == 1


def test_init_from_must_fit(tmp_path):
    from vggedu import build_vgg, save_checkpoint

    save_checkpoint(tmp_path / "w.npz", build_vgg("tiny", num_classes=10, input_size=32, width=2.0))
    with pytest.raises(ValueError, match="width 2.0 in the file vs 1.0 here"):
        Trainer(small(tmp_path, init_from=str(tmp_path / "w.npz")))


@pytest.mark.filterwarnings("ignore::vggedu.train.StallWarning")
def test_demo_runs_all_three_stages(tmp_path, capsys):
    # --quick: the demo's code path on miniature nets (the real one is `make demo`, ~5 minutes)
    assert cli("demo", "--quick", "--no-progress", "--out", tmp_path / "demo") == 0
    out = capsys.readouterr().out
    assert "[1/3]" in out and "[2/3]" in out and "[3/3]" in out and "copied  fc8" in out
    assert "VGG-A " in out and "VGG-D " in out and "top-1" in out
    for path in ("A/curves.png", "D/curves.png", "curves.png", "D-init.npz", "D/best.npz"):
        assert (tmp_path / "demo" / path).is_file(), path


def test_second_ctrl_c_aborts_without_saving(tmp_path, capsys):
    def press_twice(trainer):
        if trainer.step == 2:
            os.kill(os.getpid(), signal.SIGINT)  # first: stop after this step ...
            os.kill(os.getpid(), signal.SIGINT)  # ... second: abort now
    result = Trainer(small(tmp_path, epochs=1), callbacks=[press_twice]).fit()
    assert result.interrupted and not (tmp_path / "run" / "last.npz").exists()
    assert "aborted at step 2" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::vggedu.train.StallWarning")
def test_image_folder_without_splits_holds_out_validation_images(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("cats", "dogs"):
        (tmp_path / "pics" / label).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(0, 256, (40 + i, 48, 3), dtype=np.uint8)  # sizes vary: rescaled and centre-cropped
            Image.fromarray(pixels).save(tmp_path / "pics" / label / f"{i}.png")
    trainer = Trainer(small(tmp_path, data=f"folder:{tmp_path / 'pics'}", train_images=None, val_images=None,
                            epochs=1, batch_size=8))
    assert trainer.data.classes == ["cats", "dogs"]
    assert (len(trainer.data.train), len(trainer.data.val)) == (36, 4)  # 10 % held out
    assert trainer.fit().history[0]["epoch"] == 1


def test_a_training_step_reads_the_device_once_cupy(xp, tmp_path):
    """On the GPU a host read stalls until every queued kernel has run: a step makes one (the summed loss and
    the correct count together), a whole validation pass one. Counted on ../shared/fakecupy, which counts them."""
    from vggedu import backend

    if xp is np:
        pytest.skip("host reads are a GPU matter")
    if backend.host_reads() is None:
        pytest.skip("real CuPy does not count host reads; the stand-in ../shared/fakecupy does")
    trainer = Trainer(small(tmp_path, device="gpu"))
    batches = iter(trainer.loader)
    for _ in range(3):  # the first step too: nothing read while buffers are made
        x, y = next(batches)
        before = backend.host_reads()
        trainer.train_step(x, y)
        assert backend.host_reads() - before <= 1
    before = backend.host_reads()
    result = trainer.evaluate()
    assert backend.host_reads() - before <= 1 and result["n"] == 32


def test_labels_are_checked_on_the_host(tmp_path):
    trainer = Trainer(small(tmp_path))
    x, y = next(iter(trainer.loader))
    with pytest.raises(ValueError, match=r"labels out of range: expected 0 <= y < 10, got min 0, max 10"):
        trainer.train_step(x, np.where(y == y[0], 10, 0))
    with pytest.raises(ValueError, match="1-D integer array"):
        trainer.train_step(x, y.astype(np.float32))
    assert trainer.step == 0
