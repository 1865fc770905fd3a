"""Reliability across every target: atomic outputs, determinism, injection-safe names.

Each test runs over every registered target (``resdsl.backends.TARGETS``), so a new back
end is covered as soon as it is registered.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, SPECS
from resdsl import output
from resdsl.backends import TARGETS
from resdsl.cli import main

NEEDS_DOT = {"svg", "pdf", "png"}
HAVE_DOT = shutil.which("dot") is not None


def usable(target: str) -> bool:
    return target not in NEEDS_DOT or HAVE_DOT


TARGET_NAMES = sorted(TARGETS)
# Subprocesses find this checkout's resdsl whether or not it is installed.
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


# ----------------------------------------------------------------- atomic writes

def test_write_atomic_replaces_whole_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    output.write_atomic(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_old_file_and_no_debris(tmp_path, monkeypatch, failure):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"precious")

    def broken_fsync(fd):
        raise failure

    monkeypatch.setattr(output.os, "fsync", broken_fsync)
    with pytest.raises(type(failure)):
        output.write_atomic(target, b"x" * 10_000)
    assert target.read_bytes() == b"precious"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_new_file_gets_ordinary_permissions(tmp_path):
    target = tmp_path / "fresh.txt"
    output.write_atomic(target, "text")
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_spec_error_writes_nothing_for_any_target(capsys, tmp_path, target):
    bad = tmp_path / "bad.res"
    bad.write_text("import std.resnet\nnetwork n = resnet(depths = [1, 1], widths = [8, 8], nope = 1)\n")
    out = tmp_path / f"out.{target}"
    out.write_bytes(b"precious")
    assert main(["compile", str(bad), "--target", target, "-o", str(out)]) == 1
    assert "E020" in capsys.readouterr().err
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.res", out.name]


# ----------------------------------------------------------------- determinism

@pytest.mark.parametrize("target", TARGET_NAMES)
def test_outputs_are_byte_identical_across_hash_seeds(tmp_path, target):
    if not usable(target):
        pytest.skip("Graphviz `dot` is not installed")
    results = []
    for hash_seed in ("0", "12345"):
        out = tmp_path / f"{hash_seed}.out"
        env = dict(ENV, PYTHONHASHSEED=hash_seed)
        proc = subprocess.run([sys.executable, "-m", "resdsl.cli", "compile", str(SPECS / "resnet20_cifar.res"),
                               "--target", target, "-o", str(out)], cwd=ROOT, env=env,
                              capture_output=True, timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()
        results.append(out.read_bytes())
    assert results[0] == results[1]


# ----------------------------------------------------------------- hostile names

HOSTILE_SPEC = """\
module class(width) {
    print: conv(width, 3)
    import_: batchnorm()
    init_: relu()
    0: conv(width, 1)
    isinstance: identity()
    self: relu()
}
network forward {
    input [3, 16, 16]
    super: class(8)
    F: conv(8, 3)
    x: global_avgpool()
    flatten()
    torch: linear(4)
}
"""


def test_builtin_and_module_names_compile(tmp_path):
    """Builtins and the names generated code uses (`torch`, `F`, `self`) are legal layer
    names; back ends must emit them harmlessly. (Python keywords are refused, E054: torch.fx
    writes module paths into Python code.)"""
    import resdsl

    net = resdsl.loads(HOSTILE_SPEC, str(tmp_path / "hostile.res"))
    assert {op.module for op in net.ops} >= {"super.print", "super.0", "F", "torch"}


@pytest.mark.parametrize("smuggled", [
    "__init__: relu()",
    "forward: relu()",
    "_hidden: relu()",
    "__import__('os').system('touch PWNED'): relu()",
    'a..b: relu()',  # a dotted path is a name (issue 10); an empty part is not
    '"; rankdir=LR": relu()',
    "../../x: relu()",
    "x{\"'; import os\"}: relu()",
])
def test_smuggled_names_are_diagnostics(tmp_path, smuggled):
    import resdsl
    from resdsl.diagnostics import SpecError

    text = f"network n {{\n    input [3, 8, 8]\n    {smuggled}\n}}\n"
    with pytest.raises(SpecError) as exc:
        resdsl.loads(text, str(tmp_path / "s.res"))
    assert all(d.span.line == 3 for d in exc.value.diagnostics)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("target", TARGET_NAMES)
def test_every_target_emits_hostile_names_harmlessly(tmp_path, target):
    if not usable(target):
        pytest.skip("Graphviz `dot` is not installed")
    spec = tmp_path / "hostile.res"
    spec.write_text(HOSTILE_SPEC)
    out = tmp_path / f"hostile.{target}"
    proc = subprocess.run([sys.executable, "-m", "resdsl.cli", "compile", str(spec), "--target", target,
                           "-o", str(out)], cwd=tmp_path, env=ENV, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.stat().st_size > 0
    if target == "torch":  # the generated module imports and runs with those names
        module = tmp_path / "hostile_model.py"
        module.write_bytes(out.read_bytes())
        code = ("import torch, hostile_model\n"
                "model = hostile_model.forward(seed=0).eval()\n"  # the constructor is named after the network
                "assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 4)\n")
        proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("hostile")) == []


def test_one_atomic_writer():
    """Every file the package writes goes through resdsl.output: no other module makes
    temporary files or renames over a target."""
    pattern = re.compile(r"mkstemp|mkdtemp|os\.replace|os\.rename|NamedTemporaryFile|\.rename\(")
    offenders = [p.relative_to(ROOT) for p in (ROOT / "resdsl").rglob("*.py")
                 if p.name != "output.py" and pattern.search(p.read_text())]
    assert offenders == []
