"""The ``vggedu`` command line: every sub-command is registered and has --help."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vggedu import __version__
from vggedu.cli import COMMANDS, build_parser, main


def test_every_command_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: vggedu {command}" in capsys.readouterr().out


def test_no_command_prints_help_and_fails(capsys):
    assert main([]) == 2
    assert "usage: vggedu" in capsys.readouterr().out


def test_version_and_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "vggedu", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"vggedu {__version__}"
