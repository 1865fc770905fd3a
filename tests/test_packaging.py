"""What `pip install .` (not only `-e`) installs: every package of `resdsl/` is listed in
`pyproject.toml`, so an installed resdsl is the whole of it (an editable install finds
unlisted packages in the checkout and hides the omission)."""

from __future__ import annotations

import tomllib

from conftest import ROOT


def test_every_package_is_installed():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "resdsl").rglob("__init__.py")}
    assert found - listed == set(), f"packages missing from pyproject.toml's list: {sorted(found - listed)}"
    data = {name for name in listed if name not in found}
    assert data == {"resdsl.grammars", "resdsl.templates", "resdsl.specs", "resdsl.specs.std"}, data
    dirs = config["tool"]["setuptools"]["package-dir"]
    assert all((ROOT / dirs[name]).is_dir() for name in data)
