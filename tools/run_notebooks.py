"""Execute lessons in place (quick mode by default) and save them with outputs and clean metadata.

    .venv/bin/python tools/run_notebooks.py notebooks/02_layers_from_scratch.ipynb [...]
    .venv/bin/python tools/run_notebooks.py --full notebooks/05_training_vgg_a.ipynb

Quick mode (VGGEDU_QUICK=1) is what CI runs under nbval, so the stored outputs are those.
Cleaning drops per-cell execution timestamps and editor state, so re-running a lesson only
changes its diff where its outputs change.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

KEEP_NB_METADATA = {"kernelspec", "language_info"}


def clean(nb):
    nb.metadata = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    for cell in nb.cells:
        cell.metadata = {k: v for k, v in cell.metadata.items() if k in {"tags"}}
    return nb


def run(path: Path, full: bool, timeout: int) -> None:
    nb = nbformat.read(path, as_version=4)
    env_backup = dict(os.environ)
    if full:
        os.environ.pop("VGGEDU_QUICK", None)
        os.environ.pop("CI", None)
    else:
        os.environ["VGGEDU_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_backup)
    nbformat.write(clean(nb), path)
    print(f"executed and saved {path} ({'full' if full else 'quick'} mode)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("notebooks", nargs="+", type=Path)
    p.add_argument("--full", action="store_true", help="run without QUICK (slow)")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = p.parse_args(argv)
    for path in args.notebooks:
        run(path, args.full, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
