"""Safe checkpoints: a VGG's weights, its spec and training state in one hashed ``.npz`` (no pickles).

Used by ``vggedu train`` (resuming a run) and ``vggedu transplant``; lessons 05 and 06 use them.

File layout (a plain NumPy ``.npz``, readable with ``np.load(path, allow_pickle=False)``):

``header``   uint8, UTF-8 JSON: format name and version, the model's ``spec()`` (config, width,
             input size, classes, ...), ``meta``, the names of the parameter arrays, ``state``
             with every array replaced by ``{"__array__": "s<i>"}`` (JSON-able leaves kept as they are),
             and, when the model has them, its ``preprocessing`` (mean/std arrays stored like state
             arrays) and ``class_names``: an imported net (``vggedu.pretrained``) keeps the input
             convention of its source through save and load
``sha256``   uint8, the hex SHA-256 of the header bytes and of every other array (name, dtype,
             shape, bytes, in a fixed order); recomputed and compared on load
``p:<name>`` the parameters, ``p:conv1_1.W`` ... ``p:fc8.b``, in the library layout (numpy)
``s<i>``     the arrays inside ``state`` (optimizer velocities, ...)

Saving writes a temporary file beside the target, fsyncs it and renames it over the target
(``os.replace`` is atomic), so a crash mid-save leaves the old checkpoint intact. Loading reads and
checks everything (zip CRCs, the hash, the format, the spec, every parameter's name and shape)
before it builds the model and copies a single weight in: a truncated, altered or foreign file is
refused with a ``ValueError`` naming the file and what is wrong, never half-loaded.

``state`` may nest dicts (string keys) and lists of arrays (NumPy or CuPy; stored as NumPy) and
JSON-able values: None, bools, ints of any size (a NumPy ``bit_generator.state`` fits), floats,
strings. Tuples come back as lists and NumPy scalars as Python numbers. A dict whose only key is
``"__array__"`` is reserved.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vggedu.backend import is_gpu_array, to_numpy

FORMAT = "vggedu-checkpoint"
VERSION = 1
_ARRAY_KINDS = "biufc"  # bool, ints, floats, complex: never object arrays (they would need pickle)


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` returns: the rebuilt ``model`` and everything saved with it."""

    path: Path
    spec: dict
    params: dict  # name -> numpy array
    state: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    model: object = None  # a vggedu.models.VGG with ``params`` loaded


def _is_array(value) -> bool:
    return isinstance(value, np.ndarray) or is_gpu_array(value)


def _check_dtype(where: str, a: np.ndarray) -> np.ndarray:
    if a.dtype.kind not in _ARRAY_KINDS:
        raise TypeError(f"checkpoint: {where} has dtype {a.dtype}, which cannot be stored without pickle")
    return a


def _encode_state(value, arrays: dict, where: str = "state"):
    """``value`` with arrays moved into ``arrays`` (as numpy) and replaced by references."""
    if _is_array(value):
        key = f"s{len(arrays)}"
        arrays[key] = _check_dtype(where, np.ascontiguousarray(to_numpy(value)))
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint: {where} has a non-string key {k!r}; state dict keys must be strings")
            out[k] = _encode_state(v, arrays, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_encode_state(v, arrays, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"checkpoint: {where} has type {type(value).__name__}; state holds arrays, dicts, lists and "
                    "JSON values (None, bool, int, float, str)")


def _decode_state(value, arrays: dict):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _decode_state(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_state(v, arrays) for v in value]
    return value


def _digest(header: bytes, arrays: dict) -> str:
    h = hashlib.sha256()
    h.update(b"header\0" + header)
    for name in sorted(arrays):
        a = arrays[name]
        h.update(f"\0{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(np.ascontiguousarray(a).view(np.uint8).reshape(-1).data)
    return h.hexdigest()


def _bytes_array(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def save_checkpoint(path, model, state: dict | None = None, meta: dict | None = None) -> Path:
    """Write ``model``'s spec and parameters, plus ``state`` and ``meta``, to ``path`` atomically.

    ``path`` is used as given (``.npz`` is the convention). ``meta`` must be JSON-able (run name,
    epoch, metrics, ...). Returns the path written.
    """
    path = Path(path)
    arrays = {f"p:{name}": _check_dtype(name, np.ascontiguousarray(to_numpy(p))) for name, p in model.params.items()}
    state_arrays: dict = {}
    header = {
        "format": FORMAT,
        "version": VERSION,
        "spec": model.spec(),
        "params": list(model.params),
        "state": _encode_state(state or {}, state_arrays),
        "meta": meta or {},
    }
    preprocessing = getattr(model, "preprocessing", None)
    if preprocessing is not None:
        header["preprocessing"] = _encode_state(preprocessing.to_dict(), state_arrays, "preprocessing")
    class_names = getattr(model, "class_names", None)
    if class_names is not None:
        header["class_names"] = [str(c) for c in class_names]
    try:
        header_text = json.dumps(header)
    except TypeError as err:
        raise TypeError(f"checkpoint {path}: meta must be JSON-able: {err}") from None
    arrays.update(state_arrays)
    header_bytes = header_text.encode("utf-8")
    arrays["header"] = _bytes_array(header_text)
    arrays["sha256"] = _bytes_array(_digest(header_bytes, {k: v for k, v in arrays.items() if k != "header"}))

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            # mkstemp makes the file private (0600); give it an existing target's mode, or rw-r--r--
            os.fchmod(f.fileno(), path.stat().st_mode & 0o777 if path.exists() else 0o644)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return path
    try:
        os.fsync(dir_fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(dir_fd)
    return path


def read_checkpoint(path) -> tuple[dict, dict]:
    """``(header, arrays)`` of a checkpoint file, after every integrity check; no model is built."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    bad = f"checkpoint {path} is corrupt, truncated or not a vggedu checkpoint"
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}  # reading checks every member's CRC
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise ValueError(f"{bad}: {err}") from None
    if "header" not in arrays or "sha256" not in arrays:
        raise ValueError(f"{bad}: no header/sha256 entries (found {sorted(arrays)[:5]}...)")
    header_bytes = arrays.pop("header").tobytes()
    try:
        stored = arrays.pop("sha256").tobytes().decode("ascii")
    except UnicodeDecodeError:
        raise ValueError(f"{bad}: unreadable sha256 entry") from None
    actual = _digest(header_bytes, arrays)
    if actual != stored:
        raise ValueError(f"checkpoint {path} failed its SHA-256 check (stored {stored[:12]}..., computed "
                         f"{actual[:12]}...): the file was altered or damaged; refusing to load it")
    try:
        header = json.loads(header_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{bad}: unreadable header: {err}") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{bad}: format {header.get('format')!r}, expected {FORMAT!r}")
    if header.get("version") != VERSION:
        raise ValueError(f"checkpoint {path} has format version {header.get('version')!r}; this vggedu reads "
                         f"version {VERSION}")
    return header, arrays


def _describe(spec: dict) -> str:
    return (f"config {spec.get('config')}, width {spec.get('width')}, input {spec.get('input_size')}, "
            f"{spec.get('num_classes')} classes, fc_width {spec.get('fc_width')}")


def _restore_inputs(model, header: dict, arrays: dict, path) -> None:
    """Give ``model`` the preprocessing and class names saved with it. Checkpoints written by
    ``vggedu train`` before these were stored describe their input in ``meta``: (pixel - mean) * scale."""
    from vggedu.models import Preprocessing

    meta = header.get("meta") or {}
    try:
        if "preprocessing" in header:
            model.preprocessing = Preprocessing.from_dict(_decode_state(header["preprocessing"], arrays))
        elif isinstance(meta.get("input"), dict) and "mean" in meta["input"]:
            scale = float(meta["input"].get("scale", 1.0))
            mean = np.asarray(meta["input"]["mean"], np.float32) * np.float32(scale)
            model.preprocessing = Preprocessing("RGB", scale, mean, np.ones_like(mean), "vggedu")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"checkpoint {path} has an unusable preprocessing entry: {err}") from None
    names = header.get("class_names", meta.get("classes"))
    if names is not None:
        if len(names) != model.num_classes:
            raise ValueError(f"checkpoint {path} names {len(names)} classes for a net with {model.num_classes} "
                             "outputs")
        model.class_names = [str(c) for c in names]


def load_checkpoint(path, model=None, config: str | None = None, device: str | None = None) -> Checkpoint:
    """Read ``path``, check it, and return a ``Checkpoint`` whose ``.model`` holds the saved weights.

    ``model``: load into this existing model instead of building one; refused (ValueError) when
    its spec differs from the file's. ``config``: refuse a file saved for another config.
    ``device``: where a newly built model's parameters go (None: the CPU).
    """
    from vggedu.configs import canonical
    from vggedu.models import build_vgg  # imported here so `import vggedu.checkpoint` stays light

    header, arrays = read_checkpoint(path)
    spec = dict(header["spec"])
    names = header["params"]
    params = {name: arrays[f"p:{name}"] for name in names if f"p:{name}" in arrays}
    if len(params) != len(names):
        missing = [n for n in names if n not in params]
        raise ValueError(f"checkpoint {path} lacks the arrays of {missing[:3]}")
    if config is not None and canonical(config) != spec.get("config"):
        raise ValueError(f"checkpoint {path} holds a VGG-{spec.get('config')} ({_describe(spec)}), "
                         f"not the VGG-{canonical(config)} asked for")
    if model is not None:
        want = model.spec()
        if want != spec:
            diff = ", ".join(f"{k}: file {spec.get(k)!r} vs model {want.get(k)!r}"
                             for k in sorted(set(want) | set(spec)) if want.get(k) != spec.get(k))
            raise ValueError(f"checkpoint {path} was saved for another net ({diff}); nothing was loaded")
    else:
        try:
            model = build_vgg(**spec, init="zeros")  # every weight is overwritten below
        except TypeError as err:
            raise ValueError(f"checkpoint {path} has an unusable spec {spec}: {err}") from None
    try:
        model.load_params(params)  # every name and shape is checked before anything is copied
    except ValueError as err:
        raise ValueError(f"checkpoint {path} does not fit VGG-{spec.get('config')}: {err}") from None
    _restore_inputs(model, header, arrays, path)
    if device is not None:
        model.to(device)
    state = _decode_state(header.get("state", {}), arrays)
    return Checkpoint(path=Path(path), spec=spec, params=params, state=state, meta=header.get("meta", {}),
                      model=model)
