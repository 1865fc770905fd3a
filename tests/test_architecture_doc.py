"""docs/architecture.md stays true: its layers are the import-linter contract's, and its
two walk-throughs (add a primitive, add a back end) run as written."""

from __future__ import annotations

import re
import sys
import tomllib
import types

import pytest

from conftest import ROOT

DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC, re.S)


def test_the_layers_are_the_contracts():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    layers = next(c for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers")["layers"]
    assert _blocks("text")[0].splitlines() == layers


@pytest.fixture
def _module():
    """Run a block of the page as a module of its own, and forget what it registered."""
    from resdsl.backends import TARGETS
    from resdsl.primitives import PRIMITIVES

    made: list[str] = []

    def run(code: str) -> types.ModuleType:
        name = f"architecture_doc.block{len(made)}"  # dotted: a Target names it as it is
        module = types.ModuleType(name)
        sys.modules[name] = module
        made.append(name)
        exec(compile(code, f"docs/architecture.md:{name}", "exec"), module.__dict__)
        return module

    yield run
    for name in made:
        del sys.modules[name]
    if "softsign" in PRIMITIVES:
        PRIMITIVES.remove("softsign")
    TARGETS.pop("params", None)


def test_add_a_primitive(_module, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from resdsl.backends import dot
    from resdsl.cli import main

    block = next(b for b in _blocks("python") if "softsign" in b)
    doc = _module(block)
    model, net = doc.model, doc.net
    assert isinstance(model.act, torch.nn.Softsign)
    assert '"act" [label=<softsign<BR/>' in dot.emit(net, detail="layer")  # the default look: its kind
    spec = tmp_path / "soft.res"
    spec.write_text(re.search(r'loads\("""(.*?)"""\)', block, re.S).group(1))
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(tmp_path / "soft.onnx")]) == 2
    assert "no ONNX lowering for `softsign` (a primitive registered by register_primitive)" in capsys.readouterr().err
    assert not (tmp_path / "soft.onnx").exists()


def test_add_a_back_end(_module, capsys):
    from resdsl.cli import main

    _module(next(b for b in _blocks("python") if "Target(" in b))
    assert main(["compile", str(ROOT / "specs" / "resnet18.res"), "--target", "params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "conv1: 9,408" and lines[-1] == "total: 11,689,512"
