"""Real datasets (Fashion-MNIST, CIFAR-10 format, image folders, ImageNet samples), bad files, and the loader."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vggedu.data import Compose, DataLoader, RandomCrop, RandomFlip, load_dataset, read_idx
from vggedu.data import download as dl
from vggedu.data.datasets import CIFAR_MD5, FASHION_CLASSES, FASHION_MD5

# --- Fashion-MNIST from ../shared/data ----------------------------------------------------------

@pytest.fixture(scope="module")
def fashion(shared_data):
    if not (shared_data / "fashion-mnist").is_dir():
        pytest.skip("no fashion-mnist/ in the shared data folder")
    return {split: load_dataset("fashion-mnist", split, root=shared_data) for split in ("train", "test")}


def test_fashion_mnist_has_the_published_counts(fashion):
    train, test = fashion["train"], fashion["test"]
    assert train.images.shape == (60000, 28, 28, 1) and test.images.shape == (10000, 28, 28, 1)
    assert train.images.dtype == np.uint8 and train.labels.dtype == np.int64
    assert np.bincount(train.labels).tolist() == [6000] * 10 and np.bincount(test.labels).tolist() == [1000] * 10
    assert train.classes == FASHION_CLASSES and train.classes[9] == "Ankle boot"
    assert train.images.max() == 255 and train.images.min() == 0


def test_fashion_mnist_resizes_to_32_by_padding(fashion, shared_data):
    padded = load_dataset("fashion-mnist", "test", root=shared_data, size=32, rgb=True)
    assert padded.images.shape == (10000, 32, 32, 3)
    assert np.array_equal(padded.images[:, 2:30, 2:30, :1], fashion["test"].images)
    assert padded.images[:, :2].max() == 0 and padded.images[:, :, -2:].max() == 0
    small = load_dataset("fashion-mnist", "test", root=shared_data, size=20).subset(slice(0, 5))
    assert small.images.shape == (5, 20, 20, 1) and len(small) == 5


def test_val_is_test_unless_a_holdout_is_asked_for(fashion, shared_data):
    val = load_dataset("fashion-mnist", "val", root=shared_data)
    assert np.array_equal(val.labels, fashion["test"].labels)
    held = load_dataset("fashion-mnist", "val", root=shared_data, holdout=5000)
    rest = load_dataset("fashion-mnist", "train", root=shared_data, holdout=5000)
    assert len(held) == 5000 and len(rest) == 55000
    both = np.concatenate([held.images, rest.images]).reshape(60000, -1)
    assert len({row.tobytes() for row in both}) == len({row.tobytes() for row in fashion["train"].images})


def test_the_shared_files_match_the_published_md5s(shared_data):
    for name, md5 in FASHION_MD5.items():
        path = shared_data / "fashion-mnist" / name
        if path.exists():
            assert dl.md5sum(path) == md5


# --- bad Fashion-MNIST files, checksums, downloads ----------------------------------------------

def write_idx(path, array, truncate=None):
    raw = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    blob = gzip.compress(raw)
    path.write_bytes(blob[:truncate] if truncate else blob)
    return path


def test_read_idx_round_trip_and_truncated_or_corrupt_gz_names_the_file(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    assert np.array_equal(read_idx(write_idx(tmp_path / "ok.gz", images)), images)
    bad = write_idx(tmp_path / "cut.gz", images, truncate=30)
    with pytest.raises(ValueError, match="cut.gz"):
        read_idx(bad)
    (tmp_path / "junk.gz").write_bytes(b"this is not gzip at all")
    with pytest.raises(ValueError, match="junk.gz"):
        read_idx(tmp_path / "junk.gz")
    (tmp_path / "short.gz").write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"abc"))
    with pytest.raises(ValueError, match="short.gz.*promises"):
        read_idx(tmp_path / "short.gz")


def test_checksum_mismatch_names_both_digests(tmp_path):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    fake = write_idx(folder / "t10k-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    with pytest.raises(ValueError) as err:
        load_dataset("fashion-mnist", "test", root=tmp_path)
    assert dl.md5sum(fake) in str(err.value) and "bef4ecab320f06d8554ea6380940ec79" in str(err.value)
    assert "t10k-images-idx3-ubyte.gz" in str(err.value)
    mine = load_dataset("fashion-mnist", "test", root=tmp_path, verify=False)  # a copy you made yourself
    assert mine.images.shape == (2, 28, 28, 1)


def test_missing_while_offline_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VGGEDU_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("fashion-mnist", "train", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz") in msg and "VGGEDU_DATA" in msg
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="samples.tsv"):
        load_dataset("imagenet-samples", root=tmp_path)


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_is_checked_and_atomic(tmp_path, monkeypatch):
    payload = b"published bytes" * 1000
    monkeypatch.delenv("VGGEDU_OFFLINE", raising=False)
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout: FakeResponse(payload))
    good = hashlib.md5(payload).hexdigest()
    path = dl.ensure_file(tmp_path / "ds", "file.bin", "http://example.invalid/file.bin", good, "Test")
    assert path.read_bytes() == payload and os.listdir(tmp_path / "ds") == ["file.bin"]
    with pytest.raises(ValueError) as err:
        dl.ensure_file(tmp_path / "ds2", "file.bin", "http://example.invalid/file.bin", "0" * 32, "Test")
    assert good in str(err.value) and "0" * 32 in str(err.value)
    assert os.listdir(tmp_path / "ds2") == []  # nothing partial left behind

    def offline(url, timeout):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(dl.urllib.request, "urlopen", offline)
    with pytest.raises(FileNotFoundError, match="no network.*Put the file"):
        load_dataset("fashion-mnist", "test", root=tmp_path)
    assert os.listdir(tmp_path / "fashion-mnist") == []


def test_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("VGGEDU_DATA", str(tmp_path))
    assert dl.data_root() == tmp_path
    monkeypatch.delenv("VGGEDU_DATA")
    assert dl.data_root() == Path.home() / ".cache" / "vggedu"


# --- CIFAR-10: a small tarball in the official python format ------------------------------------

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_cifar(root, per_batch=4, truncate=None, evil=False):
    """root/cifar10/cifar-10-python.tar.gz with data_batch_1..5, test_batch, batches.meta (pickles)."""
    rng = np.random.default_rng(0)
    folder = root / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    path, expected = folder / "cifar-10-python.tar.gz", {}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        def add(name, obj):
            raw = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))

        add("batches.meta", {b"label_names": [c.encode() for c in CIFAR_CLASSES]})
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            images = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            labels = rng.integers(0, 10, per_batch).tolist()
            data = images.transpose(0, 3, 1, 2).reshape(per_batch, 3072)  # R plane, G plane, B plane
            add(name, {b"data": os.system if evil else data, b"labels": labels, b"batch_label": name.encode()})
            expected[name] = (images, labels)
    blob = buf.getvalue()
    path.write_bytes(blob[:truncate] if truncate else blob)
    return path, expected


def test_cifar10_tarball_loads_in_the_published_layout(tmp_path):
    _, expected = write_cifar(tmp_path)
    train = load_dataset("cifar10", "train", root=tmp_path, verify=False)
    test = load_dataset("cifar10", "test", root=tmp_path, verify=False)
    want = np.concatenate([expected[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert train.images.shape == (20, 32, 32, 3) and np.array_equal(train.images, want)
    assert test.labels.tolist() == expected["test_batch"][1] and train.classes == CIFAR_CLASSES
    assert load_dataset("cifar10", "test", root=tmp_path, verify=False, size=40).images.shape == (4, 40, 40, 3)


def test_cifar10_checksum_truncation_and_unsafe_pickles(tmp_path):
    path, _ = write_cifar(tmp_path / "a")
    with pytest.raises(ValueError) as err:
        load_dataset("cifar10", root=tmp_path / "a")
    assert dl.md5sum(path) in str(err.value) and CIFAR_MD5 in str(err.value)
    write_cifar(tmp_path / "b", truncate=3000)
    with pytest.raises(ValueError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", root=tmp_path / "b", verify=False)
    write_cifar(tmp_path / "c", evil=True)
    with pytest.raises(ValueError, match="data_batch_1.*refusing to load .*system"):
        load_dataset("cifar10", root=tmp_path / "c", verify=False)


# --- image folders and the 109 ImageNet samples -------------------------------------------------

@pytest.fixture(scope="module")
def samples(shared_data):
    if not (shared_data / "imagenet" / "samples.tsv").is_file():
        pytest.skip("no imagenet/ in the shared data folder")
    return load_dataset("imagenet-samples", root=shared_data)


def manifest(shared_data):
    lines = (shared_data / "imagenet" / "samples.tsv").read_text().splitlines()[1:]
    return [dict(zip(["file", "wnid", "index", "name", "w", "h", "mode"], line.split("\t"))) for line in lines]


def test_imagenet_samples_have_their_labels_and_are_rgb(samples, shared_data):
    rows = manifest(shared_data)
    assert len(samples) == 109 and len(samples.classes) == 1000 and len(rows) == 109
    assert samples.labels.tolist() == [int(r["index"]) for r in rows]
    assert samples.classes[0] == "tench" and samples.classes[504] == "coffee mug" and samples.wnids[0] == "n01440764"
    grey = [i for i, r in enumerate(rows) if r["mode"] == "L"]
    assert len(grey) == 2
    for i in grey + [0]:
        img = samples.images[i]
        assert img.dtype == np.uint8 and img.shape == (int(rows[i]["h"]), int(rows[i]["w"]), 3)
    g = samples.images[grey[0]]
    assert np.array_equal(g[..., 0], g[..., 1]) and np.array_equal(g[..., 1], g[..., 2])
    fixed = load_dataset("imagenet-samples", root=shared_data, size=64).subset(slice(0, 3))
    assert fixed.images.shape == (3, 64, 64, 3)


def test_image_folder_with_synsets_and_without(tmp_path, shared_data, samples):
    rows = manifest(shared_data)[:4]
    for r in rows:  # one subfolder per class, as ILSVRC is distributed
        (tmp_path / r["wnid"]).mkdir()
        (tmp_path / r["wnid"] / r["file"]).symlink_to(shared_data / "imagenet" / "samples" / r["file"])
    Image.new("RGB", (40, 30), (10, 200, 30)).save(tmp_path / rows[0]["wnid"] / "extra.png")
    synsets = shared_data / "imagenet" / "synset_words.txt"
    ds = load_dataset(f"folder:{tmp_path}", synsets=synsets)
    assert len(ds) == 5 and len(ds.classes) == 1000
    assert sorted(ds.labels.tolist()) == sorted([int(rows[0]["index"])] + [int(r["index"]) for r in rows])
    png = ds.images[ds.files.index(tmp_path / rows[0]["wnid"] / "extra.png")]
    assert png.shape == (30, 40, 3) and png[0, 0].tolist() == [10, 200, 30]
    plain = load_dataset(f"folder:{tmp_path}")
    assert plain.classes == sorted(r["wnid"] for r in rows) and plain.labels.max() == 3
    assert load_dataset(f"folder:{tmp_path}", size=24).images.shape == (5, 24, 24, 3)


def test_broken_images_and_folders_are_named(tmp_path):
    (tmp_path / "cls").mkdir()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    good = buf.getvalue()
    (tmp_path / "cls" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "cls" / "junk.png").write_bytes(b"not a png")
    ds = load_dataset(f"folder:{tmp_path}")
    for i in range(2):
        with pytest.raises(ValueError, match=ds.files[i].name):
            ds.images[i]
    with pytest.raises(ValueError, match="cut.jpg"):
        load_dataset(f"folder:{tmp_path}", size=16)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "synsets.txt").write_text("n01440764 tench, Tinca tinca\n")
    with pytest.raises(ValueError, match="not in the synset file"):
        load_dataset(f"folder:{tmp_path}", synsets=tmp_path / "synsets.txt")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")


# --- DataLoader ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small():
    return load_dataset("shapes", "train", n=50, size=20)


def batches(loader, epochs=1):
    return [(x.copy(), y.copy()) for _ in range(epochs) for x, y in loader]


def same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


def augment():
    return Compose([RandomCrop(16), RandomFlip()])


def test_batches_are_float32_nhwc_and_cover_the_epoch(small):
    loader = DataLoader(small, batch_size=16, seed=3)
    out = batches(loader)
    assert len(loader) == len(out) == 4 and [len(y) for _, y in out] == [16, 16, 16, 2]
    assert out[0][0].dtype == np.float32 and out[0][0].shape == (16, 20, 20, 3) and out[0][1].dtype == np.int64
    assert sorted(np.concatenate([y for _, y in out]).tolist()) == sorted(small.labels.tolist())
    first = loader.order(0)[:16]
    assert np.array_equal(out[0][0], small.images[first].astype(np.float32))
    assert len(DataLoader(small, 16, drop_last=True)) == 3 and len(batches(DataLoader(small, 16, drop_last=True))) == 3
    plain = batches(DataLoader(small, 50, shuffle=False))
    assert np.array_equal(plain[0][1], small.labels)


def test_same_seed_same_batches_whatever_the_prefetching(small):
    ref = batches(DataLoader(small, 8, seed=1, transform=augment(), prefetch=0), epochs=2)
    assert same(ref, batches(DataLoader(small, 8, seed=1, transform=augment(), prefetch=3), epochs=2))
    assert same(ref, batches(DataLoader(small, 8, seed=1, transform=augment(), workers=3), epochs=2))
    assert not same(ref, batches(DataLoader(small, 8, seed=2, transform=augment()), epochs=2))
    assert not np.array_equal(ref[0][1], ref[7][1])  # epoch 2 is reshuffled


def test_resuming_from_state_equals_an_uninterrupted_run(small):
    ref = batches(DataLoader(small, 8, seed=5, transform=augment()), epochs=3)  # 7 batches per epoch
    first = DataLoader(small, 8, seed=5, transform=augment())
    got = []
    for epoch in range(2):
        for k, (x, y) in enumerate(first):
            got.append((x.copy(), y.copy()))
            if epoch == 1 and k == 2:
                break  # the run stops in the middle of epoch 1
        state = json.loads(json.dumps(first.state_dict()))  # JSON round trip, as a checkpoint would store it
    assert state == {"epoch": 1, "position": 24, "seed": 5}
    resumed = DataLoader(small, 8, seed=0, transform=augment())
    resumed.load_state_dict(state)
    got += batches(resumed, epochs=2)
    assert same(ref, got)


def test_loader_errors(small):
    def boom(img, rng):
        raise RuntimeError("transform failed")

    with pytest.raises(RuntimeError, match="transform failed"):
        batches(DataLoader(small, 8, transform=boom))
    with pytest.raises(ValueError, match="different shapes"):
        batches(DataLoader([(np.zeros((2, 2, 3)), 0), (np.zeros((3, 3, 3)), 1)], 2))
    with pytest.raises(ValueError, match="state lacks"):
        DataLoader(small, 8).load_state_dict({"epoch": 1})
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(small, 0)
