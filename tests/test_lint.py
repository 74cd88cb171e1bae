"""The code stays ruff-clean (format and lint), so CI catches style drift."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

RUFF = shutil.which("ruff") or next((str(p) for p in [Path(sys.executable).with_name("ruff")] if p.exists()), None)


@pytest.mark.skipif(RUFF is None, reason="ruff not installed (pip install -e '.[test]')")
@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]])
def test_ruff(args):
    r = subprocess.run([RUFF, *args], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
