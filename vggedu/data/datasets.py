"""Datasets behind one call, ``load_dataset(name, split, ...)``: shapes, Fashion-MNIST, CIFAR-10, image folders.

    load_dataset("shapes", "train", size=32, n=5000)     generated, no files (vggedu/data/shapes.py)
    load_dataset("fashion-mnist", "test")                the four IDX .gz files, MD5-checked
    load_dataset("cifar10", "train")                     the official python-version tarball
    load_dataset("folder:/data/ilsvrc/train")            one subfolder per class (JPEG/PNG)
    load_dataset("imagenet-samples")                     109 labelled ImageNet photos

Files are found in ``data_root()`` ($VGGEDU_DATA, default ~/.cache/vggedu) and downloaded when
missing (see vggedu/data/download.py). Every dataset has ``.images`` (uint8, (N, H, W, C) array;
for folders of photos of different sizes a lazy sequence of HWC arrays), ``.labels`` (int64),
``.classes`` (names, indexed by label) and ``len()``; ``shapes`` also has ``.boxes``.

Splits: shapes has train/val/test. Fashion-MNIST and CIFAR-10 publish only train and test; "val"
is the test set (as in the paper, whose numbers are on the ILSVRC validation set) unless
``holdout=K`` is given: then "train" leaves out K training images (a seeded choice) and "val" is
exactly those. Taught in ``notebooks/04_data_and_augmentation.ipynb``.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from . import shapes as _shapes
from .download import data_root, ensure_file

SPLITS = ("train", "val", "test")
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_FILES = {  # split -> (images, labels); MD5 of the published .gz files
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
FASHION_MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot"]
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR_FILE, CIFAR_MD5 = "cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"
CIFAR_MEMBERS = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


@dataclass
class Dataset:
    """Images with labels. ``dataset[i]`` is (image HWC uint8, label int)."""

    name: str
    split: str
    images: object  # (N, H, W, C) uint8 array, or an ImageFiles sequence
    labels: np.ndarray  # (N,) int64
    classes: list
    boxes: np.ndarray | None = None  # (N, 4) x0, y0, x1, y1 (shapes only)
    wnids: list | None = None  # WordNet ids of the classes (ImageNet-style datasets)
    files: list | None = field(default=None, repr=False)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])

    def subset(self, index) -> Dataset:
        """The images at ``index`` (a slice or an integer array), as a new Dataset."""
        index = np.arange(len(self))[index]  # slices, boolean masks and integer arrays alike
        return Dataset(self.name, self.split, self.images[index], self.labels[index], self.classes,
                       None if self.boxes is None else self.boxes[index], self.wnids,
                       None if self.files is None else [self.files[i] for i in index])

    def __repr__(self):
        shape = self.images.shape[1:] if isinstance(self.images, np.ndarray) else "(varying)"
        return (f"Dataset({self.name!r}, split={self.split!r}, n={len(self)}, image shape {shape}, "
                f"{len(self.classes)} classes)")


class ImageFiles:
    """A lazy sequence of image files: ``files[i]`` decodes file i to an (H, W, 3) uint8 array."""

    def __init__(self, files):
        self.files = [Path(f) for f in files]

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        if isinstance(i, (slice, np.ndarray, list)):
            index = range(len(self))[i] if isinstance(i, slice) else i
            return ImageFiles([self.files[j] for j in index])
        return read_image(self.files[i])


def read_image(path: Path) -> np.ndarray:
    """Decode a JPEG/PNG to (H, W, 3) uint8 (greyscale and palette images converted to RGB)."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as err:  # PIL: unidentified, truncated, broken
        raise ValueError(f"cannot decode image {path}: {err}") from err


def load_dataset(name: str, split: str = "train", root=None, size: int | None = None, seed: int = 0,
                 **kw) -> Dataset:
    """Load dataset ``name`` (see the module docstring); ``size`` resizes (see each loader)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {SPLITS}")
    key = name.lower()
    if key == "shapes":
        return load_shapes(split, size=size or 32, seed=seed, **kw)
    if key in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return load_fashion_mnist(split, root, size, seed=seed, **kw)
    if key in ("cifar10", "cifar-10"):
        return load_cifar10(split, root, size, seed=seed, **kw)
    if key == "imagenet-samples":
        return load_imagenet_samples(root, size, split=split, **kw)
    if key.startswith("folder:"):
        return load_folder(name[len("folder:"):], split, size, **kw)
    raise ValueError(f"unknown dataset {name!r}; use shapes, fashion-mnist, cifar10, imagenet-samples or folder:PATH")


def load_shapes(split="train", size=32, seed=0, n=None) -> Dataset:
    """The generated dataset; ``n`` images (default 5000 train, 1000 val, 1000 test)."""
    images, labels, boxes = _shapes.generate(_shapes.DEFAULT_N[split] if n is None else n, size, seed, split)
    return Dataset("shapes", split, images, labels, list(_shapes.CLASSES), boxes)


# --- Fashion-MNIST ------------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip-compressed, big-endian header) as a uint8 array; errors name the file."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} is not a readable gzip file (truncated or corrupt?): {err}") from err
    if len(data) < 8 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (header {data[:4].hex()})")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    offset, count = 4 + 4 * ndim, int(np.prod(dims))
    if len(data) - offset != count:
        raise ValueError(f"{path}: header promises {dims} = {count} bytes, file holds {len(data) - offset}")
    return np.frombuffer(data, np.uint8, offset=offset).reshape(dims)


def load_fashion_mnist(split="train", root=None, size=None, seed=0, holdout=0, rgb=False, download=True,
                       verify=True) -> Dataset:
    """Fashion-MNIST, (N, 28, 28, 1) uint8. ``size=32`` pads 2 black pixels on every side (the
    digits-style 28 -> 32 that keeps every pixel as drawn); other sizes resize with PIL (bilinear).
    ``rgb=True`` repeats the grey channel three times."""
    folder = data_root(root) / "fashion-mnist"
    src = "test" if split == "test" or (split == "val" and not holdout) else "train"
    img_file, lab_file = FASHION_FILES[src]
    paths = [ensure_file(folder, f, FASHION_URL + f, FASHION_MD5[f], "Fashion-MNIST", download, verify)
             for f in (img_file, lab_file)]
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{paths[0]} and {paths[1]} disagree: images {images.shape}, labels {labels.shape}")
    images, labels = _holdout(images[..., None], labels.astype(np.int64), split, src, holdout, seed)
    if size is not None and size != 28:
        images = pad_to(images, 32) if size == 32 else resize_all(images, size)
    if rgb:
        images = np.repeat(images, 3, axis=3)
    return Dataset("fashion-mnist", split, images, labels, list(FASHION_CLASSES))


def holdout_split(n: int, holdout: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold ``holdout`` of ``n`` training images out for validation, a seeded choice:
    ``(train_index, val_index)``, each sorted. The one rule for every dataset without a validation
    split (Fashion-MNIST, CIFAR-10, image folders; ``vggedu.rundata``)."""
    if not 0 < holdout < n:
        raise ValueError(f"holdout must be between 1 and {n - 1}, got {holdout}")
    perm = np.random.default_rng([seed, 9001]).permutation(n)
    return np.sort(perm[holdout:]), np.sort(perm[:holdout])


def _holdout(images, labels, split, src, holdout, seed):
    """Carve ``holdout`` images out of the official training set: 'train' gets the rest, 'val' those."""
    if src == "test" or not holdout:
        return images, labels
    train, val = holdout_split(len(labels), holdout, seed)
    index = val if split == "val" else train
    return images[index], labels[index]


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (N, H, W, C) images equally on every side to size x size."""
    p = (size - images.shape[1]) // 2
    return np.pad(images, ((0, 0), (p, size - images.shape[1] - p), (p, size - images.shape[2] - p), (0, 0)))


def resize_all(images: np.ndarray, size: int) -> np.ndarray:
    """Resize every (H, W, C) uint8 image to size x size (bilinear, PIL)."""
    N, H, W, C = images.shape
    out = np.empty((N, size, size, C), np.uint8)
    for i in range(N):
        im = Image.fromarray(images[i, ..., 0] if C == 1 else images[i])
        out[i] = np.asarray(im.resize((size, size), Image.BILINEAR)).reshape(size, size, C)
    return out


# --- CIFAR-10 -----------------------------------------------------------------------------------

class _SafeUnpickler(pickle.Unpickler):
    """The CIFAR batches are pickles: allow only what they need to rebuild numpy arrays, nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # encode: bytes in protocol 2

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_cifar_tarball(path: Path, members: list) -> tuple[np.ndarray, np.ndarray, list]:
    """Images (N, 32, 32, 3) uint8, labels and class names from the python-version tarball."""
    out_x, out_y = [], []
    try:
        with tarfile.open(path, "r:gz") as tar:
            names = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for want in [*members, "batches.meta"]:
                if want not in names:
                    raise ValueError(f"{path} has no member {want} (is it cifar-10-python.tar.gz?)")
            meta = _unpickle(tar.extractfile(names["batches.meta"]).read(), path, "batches.meta")
            for m in members:
                batch = _unpickle(tar.extractfile(names[m]).read(), path, m)
                data = np.asarray(batch[b"data"], np.uint8)
                out_x.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # rows are R, G, B planes
                out_y.append(np.asarray(batch[b"labels"], np.int64))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise ValueError(f"{path} is not a readable .tar.gz (truncated or corrupt?): {err}") from err
    classes = [c.decode() if isinstance(c, bytes) else c for c in meta[b"label_names"]]
    return np.concatenate(out_x), np.concatenate(out_y), classes


def _unpickle(raw: bytes, path, member):
    try:
        return _SafeUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # any damage inside the pickle
        raise ValueError(f"{path}: member {member} is not a CIFAR batch: {err}") from err


def load_cifar10(split="train", root=None, size=None, seed=0, holdout=0, download=True, verify=True) -> Dataset:
    """CIFAR-10 (N, 32, 32, 3) uint8 from root/cifar10/cifar-10-python.tar.gz; other sizes via PIL."""
    src = "test" if split == "test" or (split == "val" and not holdout) else "train"
    path = ensure_file(data_root(root) / "cifar10", CIFAR_FILE, CIFAR_URL, CIFAR_MD5, "CIFAR-10", download, verify)
    images, labels, classes = read_cifar_tarball(path, CIFAR_MEMBERS[src])
    images, labels = _holdout(images, labels, split, src, holdout, seed)
    if size is not None and size != 32:
        images = resize_all(images, size)
    return Dataset("cifar10", split, images, labels, classes)


# --- image folders and the ImageNet samples -----------------------------------------------------

def read_synsets(path: Path) -> tuple[list, list]:
    """(wnids, names) from a synset file: one ``<wnid> <name>, <other names>`` per line."""
    wnids, names = [], []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(" ", 1)
        if len(parts) != 2:
            raise ValueError(f"{path}, line {n}: expected '<wnid> <names>', got {line!r}")
        wnids.append(parts[0])
        names.append(parts[1].split(",")[0].strip())
    return wnids, names


def _eager(files, size):
    """Decode files, rescale the smaller side to ``size`` and keep the central size x size square."""
    from .transforms import CenterCrop, rescale

    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(files):
        out[i] = CenterCrop(size)(rescale(read_image(f), size))
    return out


def load_folder(path, split="train", size=None, synsets=None) -> Dataset:
    """Images in one subfolder per class (``PATH/<class>/*.JPEG``; ``PATH/<split>/<class>/`` if present).

    With a synset file (``synsets=``, or ``synset_words.txt`` in PATH or its parent) the subfolders
    are WordNet ids and labels are line numbers in that file (the 1000-class ImageNet order);
    otherwise the sorted subfolder names are the classes. Images decode lazily; ``size=S`` instead
    loads them all, rescaled (smaller side S) and centre-cropped to S x S.
    """
    root = Path(path).expanduser()
    if (root / split).is_dir():
        root = root / split
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not subdirs:
        raise ValueError(f"image folder {root} has no class subfolders")
    if synsets is None:
        synsets = next((p for p in (root / "synset_words.txt", root.parent / "synset_words.txt") if p.is_file()), None)
    if synsets is not None:
        wnids, classes = read_synsets(synsets)
        index = {w: i for i, w in enumerate(wnids)}
        unknown = [d.name for d in subdirs if d.name not in index]
        if unknown:
            raise ValueError(f"{root}: subfolders {unknown[:5]} are not in the synset file {synsets}")
    else:
        wnids, classes = None, [d.name for d in subdirs]
        index = {d.name: i for i, d in enumerate(subdirs)}
    files, labels = [], []
    for d in subdirs:
        for f in sorted(d.iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(index[d.name])
    if not files:
        raise ValueError(f"image folder {root} has no .jpg/.jpeg/.png files in its subfolders")
    images = ImageFiles(files) if size is None else _eager(files, size)
    return Dataset(f"folder:{path}", split, images, np.asarray(labels, np.int64), classes, wnids=wnids, files=files)


def load_imagenet_samples(root=None, size=None, split="val", verify=True) -> Dataset:
    """The 109 labelled ImageNet photos listed in root/imagenet/samples.tsv (one split: any name
    gives the same images). Labels are ImageNet class indices (0..999); greyscale photos come as RGB."""
    folder = data_root(root) / "imagenet"
    manifest, synset_file = folder / "samples.tsv", folder / "synset_words.txt"
    for p in (manifest, synset_file):
        if not p.is_file():
            raise FileNotFoundError(
                f"imagenet-samples: {p} is missing. Put samples.tsv, synset_words.txt and the samples/ folder "
                f"(photos from github.com/EliSchwartz/imagenet-sample-images) in {folder}, "
                "or set VGGEDU_DATA to a folder that has imagenet/")
    wnids, classes = read_synsets(synset_file)
    rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:] if line.strip()]
    files, labels = [], []
    for row in rows:
        name, wnid, idx, digest = row[0], row[1], int(row[2]), row[8]
        if wnids[idx] != wnid:
            raise ValueError(f"{manifest}: {name} says class {idx} is {wnid}, {synset_file} says {wnids[idx]}")
        f = folder / "samples" / name
        if not f.is_file():
            raise FileNotFoundError(f"imagenet-samples: {f} (listed in {manifest}) is missing")
        if verify:
            _check_sha256(f, digest)
        files.append(f)
        labels.append(idx)
    images = ImageFiles(files) if size is None else _eager(files, size)
    return Dataset("imagenet-samples", split, images, np.asarray(labels, np.int64), classes, wnids=wnids, files=files)


def _check_sha256(path: Path, expected: str) -> None:
    import hashlib

    got = hashlib.sha256(path.read_bytes()).hexdigest()
    if got != expected:
        raise ValueError(f"checksum mismatch for {path}: SHA-256 is {got}, the manifest has {expected}")
