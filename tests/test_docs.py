"""The docs stay true: the API page matches the docstrings, the notebook runs, the guide's commands exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"
GUIDES = (ROOT / "README.md", DOCS / "user-guide.md")


def test_api_page_is_regenerated_from_the_docstrings():
    sys.path.insert(0, str(DOCS))
    try:
        import make_api
    finally:
        sys.path.remove(str(DOCS))
    assert (DOCS / "api.md").read_text() == make_api.render(), "docs/api.md is stale: run python docs/make_api.py"


def test_example_notebook_runs_cell_by_cell(monkeypatch):
    """Every code cell of docs/example.py, read as a notebook by jupytext, runs in order in one namespace."""
    jupytext = pytest.importorskip("jupytext", reason="jupytext not installed (pip install -e '.[test]')")
    import matplotlib

    matplotlib.use("Agg")
    notebook = jupytext.read(DOCS / "example.py")
    cells = [c.source for c in notebook.cells if c.cell_type == "code"]
    assert len(cells) >= 6 and sum(c.cell_type == "markdown" for c in notebook.cells) >= 5
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "__main__"}
    for k, source in enumerate(cells):
        exec(compile(source, f"docs/example.py cell {k}", "exec"), namespace)  # noqa: S102
    assert set(namespace["comparison"].names) == {"cll1_standard", "cll1_cd16_icar"}
    assert 0.0 <= namespace["share"] <= 1.0 and len(namespace["table"]) > namespace["N_PATIENTS"]


def _commands(text: str) -> list[str]:
    """Every ``cart-sim COMMAND ...`` line of the fenced shell blocks."""
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("#")[0].strip() for b in blocks for line in b.splitlines() if line.strip().startswith("cart-sim ")]


@pytest.mark.parametrize("guide", GUIDES, ids=[g.name for g in GUIDES])
def test_every_command_and_option_in_the_guides_exists(guide):
    lines = _commands(guide.read_text())
    assert len(lines) >= 5
    helps: dict[str, str] = {}
    env = {**os.environ, "COLUMNS": "200"}
    for line in lines:
        words = line.split()
        command = words[1]
        if command not in helps:
            r = subprocess.run([sys.executable, "-m", "sim.cli", command, "--help"], capture_output=True, text=True, env=env)
            assert r.returncode == 0, f"{guide.name}: `{line}`: no command {command!r}"
            helps[command] = r.stdout
        for option in (w.split("=")[0] for w in words[2:] if w.startswith("--")):
            assert option in helps[command], f"{guide.name}: `{line}`: {command} has no {option}"
        for path in (w for w in words[2:] if w.startswith("scenarios/")):
            assert (ROOT / path).is_file(), f"{guide.name}: `{line}`: no file {path}"
