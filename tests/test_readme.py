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


def _layout() -> list[str]:
    """The paths in the first column of the README's layout table."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("\n## Layout\n"):]
    rows = [line for line in section.splitlines()[1:] if line.startswith("| `")]
    return [path for row in rows for path in re.findall(r"`([^`]+)`", row.split(" | ")[0])]


def test_the_layout_table_is_the_package_tree():
    """Every path the layout table names exists, and every package and top-level module of
    resdsl is in it."""
    listed = _layout()
    assert listed and not [p for p in listed if not (ROOT / p).exists()], listed
    package = ROOT / "resdsl"
    wanted = {f"resdsl/{p.parent.relative_to(package).as_posix()}/" for p in package.rglob("__init__.py")
              if p.parent != package}
    wanted |= {f"resdsl/{p.name}" for p in package.glob("*.py") if p.name != "__main__.py"}
    missing = sorted(wanted - set(listed))
    assert not missing, f"add them to the README's layout table: {missing}"
