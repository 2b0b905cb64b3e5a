"""The data cache: where datasets live, MD5 checks, and downloads that never leave a partial file.

Datasets are looked up under ``data_root()``: ``$VGGEDU_DATA`` when set, else ``~/.cache/vggedu``.
Each dataset has its own folder there (``fashion-mnist/``, ``cifar10/``, ``imagenet/``), holding the
files exactly as published. A file that is missing is downloaded from its canonical address when
the machine is online (and ``$VGGEDU_OFFLINE`` is unset), into a temporary file in the same folder
that is renamed into place only once its MD5 matches the published one, so an interrupted or
corrupted download never leaves anything that looks like a dataset. Taught in
``notebooks/04_data_and_augmentation.ipynb``.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

CHUNK = 1 << 20


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``root`` if given, else ``$VGGEDU_DATA``, else ``~/.cache/vggedu``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("VGGEDU_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vggedu"


def md5sum(path: str | os.PathLike) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_md5(path: Path, expected: str) -> None:
    """Raise ValueError naming the file and both digests when its MD5 is not ``expected``."""
    got = md5sum(path)
    if got != expected:
        raise ValueError(
            f"checksum mismatch for {path}: MD5 is {got}, the published file has {expected}; "
            "the file is corrupt, truncated or a different version; delete it to download it again "
            "(or pass verify=False if you made it yourself)"
        )


def download(url: str, dest: Path, md5: str | None = None, timeout: float = 30.0) -> Path:
    """Download ``url`` to ``dest`` atomically: temp file in the same folder, MD5 check, rename.

    On any failure the temporary file is removed and ``dest`` is left as it was (absent).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                h.update(block)
        if md5 is not None and h.hexdigest() != md5:
            raise ValueError(
                f"checksum mismatch for {dest.name} downloaded from {url}: MD5 is {h.hexdigest()}, "
                f"the published file has {md5}; nothing was saved"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def offline() -> bool:
    """True when ``$VGGEDU_OFFLINE`` is set to anything but '' or '0': never try to download."""
    return os.environ.get("VGGEDU_OFFLINE", "") not in ("", "0")


def ensure_file(folder: Path, name: str, url: str | None, md5: str | None, dataset: str,
                download_ok: bool = True, verify: bool = True) -> Path:
    """Path of ``folder/name``, downloading it when missing; its MD5 checked when ``verify``.

    A file that is missing and cannot be downloaded raises FileNotFoundError saying where to put it.
    """
    path = folder / name
    if not path.exists():
        if url is None or not download_ok or offline():
            why = "downloads are off" if url is not None else "there is no download address for it"
            raise FileNotFoundError(_missing(dataset, path, url, why))
        try:
            download(url, path, md5 if verify else None)
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            raise FileNotFoundError(_missing(dataset, path, url, f"downloading failed: {err}")) from err
        return path
    if verify and md5 is not None:
        check_md5(path, md5)
    return path


def _missing(dataset: str, path: Path, url: str | None, why: str) -> str:
    where = f" (published at {url})" if url else ""
    return (
        f"{dataset}: {path} is missing and {why}. Put the file{where} at {path}, "
        f"or set VGGEDU_DATA to a folder that has {path.parent.name}/{path.name}"
    )
