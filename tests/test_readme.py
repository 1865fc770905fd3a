"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re

from conftest import ROOT


def _commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.+?)\n```", readme)


def test_readme_opens_with_two_commands_and_ci_runs_the_test_one():
    setup_and_run, setup_and_test = _commands()[:2]
    assert "resdsl " in setup_and_run and "pytest" in setup_and_test
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert setup_and_test in ci.splitlines()
