"""The lessons as CI sees them: every check nbval is asked to make is one it really makes.

nbval (``--nbval-lax``) compares a cell's output only when ``# NBVAL_CHECK_OUTPUT`` stands on a
comment line of its own (nbval's ``find_comment_markers`` strips each line and requires it to start
with ``#``); a marker at the end of a code line is silently ignored, and the cell is then only run.
These tests read the saved notebooks (no kernel is started) and fail when:

- a marker is not on a comment line of its own;
- a lesson has fewer than ``MIN_CHECKED`` checked cells, or a checked cell has no saved output
  (nbval would compare nothing);
- a saved output holds a temporary path (``/tmp/``, ``ipykernel``), a traceback or a StallWarning;
- a lesson was not saved from its full run (the first code cell prints "full mode" or "quick mode");
- the first code cell lacks the QUICK switch (on when ``CI`` or ``VGGEDU_QUICK`` is set);
- a markdown link to a lesson ``NN_*.ipynb`` points at a file that does not exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
MARKER = "NBVAL_CHECK_OUTPUT"
MIN_CHECKED = 5
TEMP_PATH = re.compile(r"/tmp/|ipykernel")
LESSON_LINK = re.compile(r"\]\(\s*<?([^)\s>]*?\d\d_[^)\s>]*?\.ipynb)(?:#[^)\s>]*)?>?(?:\s+\"[^\"]*\")?\s*\)")


def _source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _load(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _code_cells(nb: dict) -> list:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _own_line_marker(src: str) -> bool:
    """nbval's rule: a stripped line starting with '#' whose comment text is exactly the marker."""
    return any(line.strip().startswith("#") and line.strip().lstrip("#").strip() == MARKER
               for line in src.splitlines())


def _output_text(output: dict) -> str:
    parts = []
    if "text" in output:
        parts.append(output["text"] if isinstance(output["text"], str) else "".join(output["text"]))
    for mime, value in output.get("data", {}).items():
        if mime.startswith("text/") or mime == "application/json":
            parts.append(value if isinstance(value, str) else "".join(value)
                         if isinstance(value, list) else json.dumps(value))
    if output.get("output_type") == "error":
        parts.append("\n".join(output.get("traceback", [])))
    return "\n".join(parts)


def _checked(nb: dict) -> list:
    return [c for c in _code_cells(nb) if _own_line_marker(_source(c))]


def test_there_are_lessons():
    assert len(LESSONS) >= 8, f"expected the lessons under {NOTEBOOKS}, found {[p.name for p in LESSONS]}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_markers_stand_on_their_own_line(path):
    bad = []
    for i, cell in enumerate(_code_cells(_load(path))):
        for n, line in enumerate(_source(cell).splitlines(), 1):
            if MARKER in line and not (line.strip().startswith("#")
                                       and line.strip().lstrip("#").strip() == MARKER):
                bad.append(f"code cell {i}, line {n}: {line.strip()!r}")
    assert not bad, (f"{path.name}: nbval ignores {MARKER} unless it is a comment line of its own, "
                     f"so these cells are never compared:\n  " + "\n  ".join(bad))


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_enough_checked_cells_with_saved_output(path):
    nb = _load(path)
    checked = _checked(nb)
    assert len(checked) >= MIN_CHECKED, (
        f"{path.name}: {len(checked)} cells carry # {MARKER} on a line of their own; "
        f"every lesson needs at least {MIN_CHECKED}")
    empty = [_source(c).splitlines()[:2] for c in checked if not c.get("outputs")]
    assert not empty, (f"{path.name}: checked cells without saved output compare nothing "
                       f"(saved without outputs, or the cell prints nothing): {empty}")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_saved_outputs_are_clean(path):
    problems = []
    for i, cell in enumerate(_code_cells(_load(path))):
        for out in cell.get("outputs", []):
            text = _output_text(out)
            if TEMP_PATH.search(text):
                line = next(ln for ln in text.splitlines() if TEMP_PATH.search(ln))
                problems.append(f"code cell {i}: temporary path in {line.strip()[:120]!r}")
            if out.get("output_type") == "error":
                problems.append(f"code cell {i}: saved with an error ({out.get('ename')})")
            if "StallWarning" in text:
                problems.append(f"code cell {i}: a StallWarning (a net stuck at chance) in the saved run")
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_first_cell_has_the_quick_switch_and_the_lesson_was_saved_from_the_full_run(path):
    first = _code_cells(_load(path))[0]
    src = _source(first)
    assert re.search(r"^QUICK\s*=", src, re.M) and "VGGEDU_QUICK" in src and '"CI"' in src, (
        f"{path.name}: the first code cell must set QUICK from the CI and VGGEDU_QUICK variables")
    printed = "".join(_output_text(o) for o in first.get("outputs", []))
    assert "quick mode" in printed or "full mode" in printed, (
        f"{path.name}: the first code cell should print 'quick mode' or 'full mode' "
        f"(saved output: {printed!r}); save it with tools/run_notebooks.py --full")
    assert "full mode" in printed, (
        f"{path.name}: saved from a quick-mode run; re-save it with tools/run_notebooks.py --full")


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_links_to_lessons_point_at_files_that_exist(path):
    missing = []
    for cell in _load(path)["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for target in LESSON_LINK.findall(_source(cell)):
            if target.startswith(("http://", "https://")):
                continue
            if not (path.parent / target).resolve().is_file():
                missing.append(target)
    assert not missing, f"{path.name} links to lessons that do not exist: {missing}"


def test_the_rules_catch_what_nbval_ignores():
    """The marker rule agrees with nbval on the cases that matter."""
    assert _own_line_marker("# NBVAL_CHECK_OUTPUT\nprint(1)")
    assert _own_line_marker("x = 1\n    #  NBVAL_CHECK_OUTPUT  \nprint(x)")
    assert not _own_line_marker("print(1)  # NBVAL_CHECK_OUTPUT")
    assert not _own_line_marker("# NBVAL_CHECK_OUTPUT: shapes\nprint(1)")
    assert LESSON_LINK.findall("see [lesson 3](03_vgg_family.ipynb#x) and [08](./08_gpu.ipynb)") == [
        "03_vgg_family.ipynb", "./08_gpu.ipynb"]
    try:
        from nbval.plugin import find_comment_markers
    except ImportError:  # nbval is a test extra; the rule above is written down without it
        return
    for src in ["# NBVAL_CHECK_OUTPUT\nprint(1)", "print(1)  # NBVAL_CHECK_OUTPUT",
                "x = 1\n    #  NBVAL_CHECK_OUTPUT  \nprint(x)"]:
        assert _own_line_marker(src) == (dict(find_comment_markers(src)).get("check") is True), src
