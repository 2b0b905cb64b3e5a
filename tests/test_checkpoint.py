"""Checkpoints: round trip with nested state, no pickles, atomic writes, refusal of damaged or foreign files."""

from __future__ import annotations

import json
import os
import stat
import zipfile

import numpy as np
import pytest

from vggedu import build_vgg, load_checkpoint, save_checkpoint
from vggedu import checkpoint as ckpt


def _model(**kw):
    kw = dict(dict(input_size=32, num_classes=10, init="he", seed=0), **kw)
    return build_vgg("tiny", **kw)


def _same_params(a, b):
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


def test_round_trip_with_nested_state_and_meta(tmp_path):
    model = _model()
    rng = np.random.default_rng(123)
    rng.random(5)
    state = {
        "optimizer": {"lr": 0.01, "velocity": {k: np.full_like(v, 0.5) for k, v in model.params.items()}},
        "schedule": {"best": 0.75, "bad_epochs": 1, "max_drops": None},
        "loader": {"epoch": 3, "position": 128, "seed": 0},
        "rng": rng.bit_generator.state,  # 128-bit integers inside
        "history": [np.arange(3), (1, "two"), np.float32(0.5), np.int64(7), True],
    }
    meta = {"run": "test", "epoch": 3, "val_error": [0.5, 0.4]}
    path = save_checkpoint(tmp_path / "last.npz", model, state=state, meta=meta)
    assert path == tmp_path / "last.npz"

    loaded = load_checkpoint(path)
    assert loaded.spec == model.spec() and loaded.meta == meta and loaded.path == path
    assert _same_params(loaded.params, model.params) and _same_params(loaded.model.params, model.params)
    assert loaded.model.config == "tiny" and loaded.model.num_classes == 10
    x = np.random.default_rng(1).standard_normal((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_array_equal(loaded.model.forward(x), model.forward(x))

    s = loaded.state
    assert _same_params(s["optimizer"]["velocity"], state["optimizer"]["velocity"])
    assert s["optimizer"]["lr"] == 0.01 and s["schedule"] == state["schedule"] and s["loader"] == state["loader"]
    resumed = np.random.default_rng()
    resumed.bit_generator.state = s["rng"]
    assert resumed.random() == rng.random()
    assert np.array_equal(s["history"][0], np.arange(3))
    assert s["history"][1:] == [[1, "two"], 0.5, 7, True]  # tuples come back as lists, numpy scalars as numbers


def test_plain_npz_without_pickles(tmp_path):
    path = save_checkpoint(tmp_path / "a.npz", _model(), state={"v": np.ones(3)})
    with np.load(path, allow_pickle=False) as npz:
        assert all(npz[name].dtype != object for name in npz.files)
        assert "p:conv1_1.W" in npz.files and "header" in npz.files and "sha256" in npz.files
        header = json.loads(npz["header"].tobytes())
    assert header["format"] == "vggedu-checkpoint" and header["spec"]["config"] == "tiny"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "last.npz"
    old = _model(seed=1)
    save_checkpoint(path, old)
    before = path.read_bytes()

    def crash(f, **arrays):  # a crash half-way through writing
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _model(seed=2))
    assert path.read_bytes() == before  # the old checkpoint is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.npz"]  # and no temporary file is left
    monkeypatch.undo()
    assert _same_params(load_checkpoint(path).params, old.params)


def test_truncated_file_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "a.npz", _model())
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=r"a\.npz is corrupt, truncated or not a vggedu checkpoint"):
            load_checkpoint(path)


def test_flipped_byte_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "a.npz", _model())
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="a.npz"):
        load_checkpoint(path)


def _rewrite(path, change):
    """Re-save the npz with ``change(arrays)`` applied and the stored hash left as it was."""
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_altered_weights_fail_the_sha256_check(tmp_path):
    path = save_checkpoint(tmp_path / "a.npz", _model())
    _rewrite(path, lambda a: a["p:fc8.b"].__setitem__(0, 1.0))
    with pytest.raises(ValueError, match="failed its SHA-256 check.*refusing to load"):
        load_checkpoint(path)


def test_altered_header_fails_the_sha256_check(tmp_path):
    path = save_checkpoint(tmp_path / "a.npz", _model())

    def relabel(arrays):
        header = json.loads(arrays["header"].tobytes())
        header["spec"]["num_classes"] = 11
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    _rewrite(path, relabel)
    with pytest.raises(ValueError, match="SHA-256"):
        load_checkpoint(path)


def test_wrong_config_is_refused_and_nothing_is_loaded(tmp_path):
    path = save_checkpoint(tmp_path / "tiny.npz", _model())
    with pytest.raises(ValueError, match="holds a VGG-tiny .*not the VGG-D asked for"):
        load_checkpoint(path, config="D")
    other = _model(num_classes=5)
    before = {k: v.copy() for k, v in other.params.items()}
    with pytest.raises(ValueError, match="saved for another net.*num_classes: file 10 vs model 5.*nothing was loaded"):
        load_checkpoint(path, model=other)
    assert _same_params(other.params, before)
    same = _model(seed=9)
    assert load_checkpoint(path, model=same, config="TINY").model is same
    assert _same_params(same.params, _model().params)


class _Liar:
    """A model whose spec says 10 classes while its fc8 has 5: a consistent-looking but wrong file."""

    def __init__(self):
        self._real = _model(num_classes=5)
        self.params = self._real.params

    def spec(self):
        return dict(self._real.spec(), num_classes=10)


def test_a_file_whose_arrays_do_not_fit_its_spec_is_refused_before_copying(tmp_path):
    path = save_checkpoint(tmp_path / "liar.npz", _Liar())
    target = _model(num_classes=10, seed=4)
    before = {k: v.copy() for k, v in target.params.items()}
    with pytest.raises(ValueError, match="does not fit VGG-tiny.*fc8"):
        load_checkpoint(path, model=target)
    assert _same_params(target.params, before)  # conv1_1 would have fitted: it was not copied either
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(path)


def test_other_files_are_refused(tmp_path):
    np.savez(tmp_path / "plain.npz", w=np.ones(3))
    with pytest.raises(ValueError, match="not a vggedu checkpoint"):
        load_checkpoint(tmp_path / "plain.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="corrupt, truncated or not a vggedu checkpoint"):
        load_checkpoint(tmp_path / "text.npz")
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(ValueError, match="not a vggedu checkpoint"):
        load_checkpoint(tmp_path / "empty.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz does not exist"):
        load_checkpoint(tmp_path / "missing.npz")


def test_unstorable_state_is_refused_before_writing(tmp_path):
    model = _model()
    with pytest.raises(TypeError, match=r"state\['opt'\] has type object"):
        save_checkpoint(tmp_path / "a.npz", model, state={"opt": object()})
    with pytest.raises(TypeError, match="non-string key 3"):
        save_checkpoint(tmp_path / "a.npz", model, state={3: 1})
    with pytest.raises(TypeError, match="cannot be stored without pickle"):
        save_checkpoint(tmp_path / "a.npz", model, state={"o": np.array([None, 1])})
    with pytest.raises(TypeError, match="meta must be JSON-able"):
        save_checkpoint(tmp_path / "a.npz", model, meta={"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_device_arrays_are_saved_as_numpy(xp, tmp_path):
    model = _model()
    expected = {k: v.copy() for k, v in model.params.items()}
    velocity = {"fc8.W": xp.ones((32, 10), dtype=xp.float32)}
    if xp is not np:
        model.to("gpu")
    path = save_checkpoint(tmp_path / "a.npz", model, state={"velocity": velocity})
    loaded = load_checkpoint(path)
    assert _same_params(loaded.params, expected)
    assert isinstance(loaded.state["velocity"]["fc8.W"], np.ndarray)
    assert isinstance(loaded.model.params["fc8.W"], np.ndarray)
