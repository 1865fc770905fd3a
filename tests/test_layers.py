"""The package's layers and the absence of import cycles (issue 21): `lint-imports` with
the contracts in pyproject.toml (function-local imports included, nothing ignored). A
missing import-linter fails with the reason instead of passing unchecked."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_the_layers_hold():
    tool = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert tool is not None, "lint-imports is missing: pip install -e '.[test]' installs import-linter"
    run = subprocess.run([tool, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout
