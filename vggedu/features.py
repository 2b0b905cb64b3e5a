"""Very deep features (Appendix B): a trained VGG without fc8 as a fixed image descriptor for a linear SVM (lesson 09).

The paper's recipe, which ``extract`` follows step by step:

    image --rescale (smaller side Q)--> preprocess --> conv1_1 ... pool5 --> fc6, fc7 as convs (dense)
          --> relu7 map (h, w, 4096) --> global average --> 4096-d
          --> averaged with the horizontally flipped image's
          --> over the scales Q in ``scales``: averaged ("average") or concatenated ("stack")
          --> L2-normalised                      ==> one descriptor per image, (4096,) or (4096 * S,)

The last FC layer (fc8, the ImageNet classifier) is dropped; the net is applied densely to the
whole rescaled image through ``vggedu.evaluate.to_fully_convolutional`` (lesson 07: fc6 a KxK conv,
fc7 a 1x1 conv), stopping after ``relu7``. No fine-tuning: a linear SVM on the descriptors
(``svm_accuracy``, scikit-learn from the ``features`` extra) does the rest. The paper reached
89.7 mAP on VOC-2007 and 86.2% on Caltech-256 this way with the released D and E.
"""

from __future__ import annotations

import warnings

import numpy as np

from vggedu.backend import to_device, to_numpy
from vggedu.data.transforms import rescale

COMBINE = ("average", "stack")
LAST_LAYER = "relu7"  # the penultimate FC layer's activations (fc8 removed)


def feature_net(model, layer: str = LAST_LAYER):
    """The layers of ``model``'s fully convolutional form (lesson 07's conversion) up to and including ``layer``
    (relu7: Appendix B's; an earlier one, e.g. relu6 or pool5, for comparison)."""
    from vggedu.evaluate import to_fully_convolutional

    layers = []
    for module in to_fully_convolutional(model).layers:
        layers.append(module)
        if module.name == layer:
            return layers
    raise ValueError(f"{model!r} has no layer {layer!r}; use one of relu7, relu6, pool5, ...")


def _forward(layers, x):
    for layer in layers:
        layer.eval()
        x = layer.forward(x)
    return x


def _descriptor_at(model, layers, batch, Q: int, flip: bool, chunk: int) -> np.ndarray:
    """(N, D) globally averaged relu7 descriptors of same-size uint8 images ``batch`` at scale Q."""
    scaled = np.stack([rescale(img, Q) for img in batch])  # (N, H', W', C)
    out = []
    for i in range(0, len(scaled), chunk):
        x = model.preprocess(scaled[i:i + chunk])
        if flip:
            x = np.concatenate([x, x[:, :, ::-1]])  # (2n, H', W', C): the images, then their mirror images
        fmap = _forward(layers, to_device(np.ascontiguousarray(x), model.device))  # (2n, h, w, D)
        d = to_numpy(fmap.mean(axis=(1, 2)))  # global average pooling: (2n, D)
        if flip:
            n = len(d) // 2
            d = (d[:n] + d[n:]) / 2
        out.append(d.astype(np.float32))
    return np.concatenate(out)


def extract(model, images, scales=(256, 384, 512), flip: bool = True, combine: str = "average",
            chunk: int = 64, layer: str = LAST_LAYER) -> np.ndarray:
    """L2-normalised very deep features of ``images``: (N, D) with ``combine="average"``, (N, D * S) "stack".

    ``images``: uint8 (N, H, W, C) or a sequence of (H, W, C) arrays of any sizes (e.g. a Dataset's
    ``images``), RGB as ``model.preprocess`` takes them. ``scales``: the smaller side Q each image is
    rescaled to (each >= the net's input size); D is the FC width (4096 for the paper's nets), or the
    channels of ``layer`` when another layer than relu7 is asked for. ``chunk`` images of one size go
    through the net at once."""
    if combine not in COMBINE:
        raise ValueError(f"unknown combine {combine!r}: use one of {COMBINE}")
    scales = [int(q) for q in np.atleast_1d(scales)]
    if not scales or min(scales) < model.input_size:
        raise ValueError(f"scales {scales}: each must be at least the net's input size {model.input_size}")
    if model.preprocessing is None:
        model.preprocess(None)  # raises the explanation
    model.eval()
    layers = feature_net(model, layer)
    N = len(images)
    if N == 0:
        raise ValueError("extract: no images")
    groups: dict = {}  # images of one shape are rescaled and run as batches
    for i in range(N):
        groups.setdefault(tuple(np.shape(images[i])), []).append(i)
    per_scale = None
    for index in groups.values():
        batch = [np.asarray(images[i]) for i in index]
        for s, Q in enumerate(scales):
            d = _descriptor_at(model, layers, batch, Q, flip, chunk)
            if per_scale is None:
                per_scale = np.zeros((len(scales), N, d.shape[1]), np.float32)
            per_scale[s, index] = d
    if combine == "average":
        feats = per_scale.mean(axis=0)
    else:
        feats = per_scale.transpose(1, 0, 2).reshape(N, -1)  # scale after scale
    return l2_normalise(feats)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Each row divided by its Euclidean norm (rows of zeros stay zero)."""
    x = np.asarray(x, np.float32).reshape(len(x), -1)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def pixel_features(images) -> np.ndarray:
    """The baseline: raw pixels, flattened and L2-normalised, (N, H * W * C)."""
    return l2_normalise(np.asarray(images, np.float32))


SVM_CS = (0.1, 1.0, 10.0, 100.0)  # the grid cross-validation picks the SVM's C from


def svm_accuracy(train_x, train_y, test_x, test_y, C: float | None = None, seed: int = 0) -> float:
    """Test accuracy of a linear SVM (scikit-learn's ``LinearSVC``, one-vs-rest) trained on the train features.

    ``C``: the regularisation constant; None picks it from ``SVM_CS`` by 3-fold cross-validation on the
    training features alone (the test set never chooses anything)."""
    try:
        from sklearn.model_selection import GridSearchCV, StratifiedKFold
        from sklearn.svm import LinearSVC
    except ImportError:
        raise ImportError("the linear SVM needs scikit-learn: pip install 'vggedu[features]'") from None
    train_y = np.asarray(train_y)
    svm = LinearSVC(C=1.0 if C is None else C, random_state=seed, max_iter=10000)
    if C is None:
        folds = int(min(3, np.unique(train_y, return_counts=True)[1].min()))  # the smallest class limits the folds
        if folds >= 2:
            cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
            svm = GridSearchCV(svm, {"C": list(SVM_CS)}, cv=cv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)  # liblinear's "did not converge" on tiny sets
        svm.fit(train_x, train_y)
    return float((svm.predict(test_x) == np.asarray(test_y)).mean())


def class_split(dataset, classes):
    """The images of ``dataset`` whose label is in ``classes``, relabelled 0..len(classes)-1 in that order
    (a transfer experiment: a net trained on some classes, its features tested on the others)."""
    from vggedu.data.datasets import Dataset

    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes) or not all(0 <= c < len(dataset.classes) for c in classes):
        raise ValueError(f"classes {classes}: need distinct indices of {dataset.name}'s {len(dataset.classes)} classes")
    relabel = np.full(len(dataset.classes), -1, np.int64)
    relabel[classes] = np.arange(len(classes))
    index = np.flatnonzero(relabel[dataset.labels] >= 0)
    sub = dataset.subset(index)
    return Dataset(sub.name, sub.split, sub.images, relabel[sub.labels], [dataset.classes[c] for c in classes],
                   sub.boxes, None if dataset.wnids is None else [dataset.wnids[c] for c in classes], sub.files)


def per_class(labels, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` images of every class in ``labels`` (a seeded draw; all of a class when it has fewer)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    picks = [rng.permutation(np.flatnonzero(labels == c))[:n] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))
