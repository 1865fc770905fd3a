"""The benchmarks import what exists: every ``from resdsl… import name`` in ``benchmarks/``
(function-local ones included, which run only when a benchmark part runs) resolves, so a
refactoring that moves a name breaks this test, not the next measurement."""

from __future__ import annotations

import ast
import importlib

import pytest

from conftest import ROOT

SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def _imports(path):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "resdsl":
            for alias in node.names:
                yield node.module, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "resdsl":
                    yield alias.name, None


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_benchmark_imports_resolve(script):
    pytest.importorskip("torch")
    for module, name in _imports(script):
        imported = importlib.import_module(module)
        if name is not None:
            assert hasattr(imported, name) or importlib.util.find_spec(f"{module}.{name}") is not None, \
                f"{script.name}: `from {module} import {name}`: no such name"
