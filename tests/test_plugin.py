"""The plugin API end to end, with the example plugin in examples/plugin.

Registered from Python, its two primitives pass the registry's conformance test (every
back end, diagnostics, stats, diagrams); installed as a package (pip into a temporary
folder), resdsl finds them through the ``resdsl.primitives`` entry point with no code,
from the CLI and from Python.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from test_registry import conform  # noqa: E402

import resdsl  # noqa: E402
from conftest import ROOT  # noqa: E402
from resdsl.primitives import PRIMITIVES  # noqa: E402

PLUGIN = ROOT / "examples" / "plugin"
SPEC = PLUGIN / "scaled.res"


@pytest.fixture
def registered():
    """The example's primitives registered for one test, then removed again."""
    sys.path.insert(0, str(PLUGIN))
    try:
        import resdsl_scale

        prims = [resdsl.register_primitive(p) for p in resdsl_scale.primitives()]
        yield prims
    finally:
        for kind in ("channel_scale", "hardtanh"):
            if kind in PRIMITIVES._prims:
                PRIMITIVES.remove(kind)
        sys.path.remove(str(PLUGIN))
        sys.modules.pop("resdsl_scale", None)


def test_plugin_primitives_work_in_every_back_end(registered, tmp_path):
    assert [p.origin for p in registered] == ["register_primitive"] * 2
    text = SPEC.read_text()
    net = conform(text, tmp_path, "channel_scale")
    assert "hardtanh" in {op.kind for op in net.ops}
    assert net.params == 16 * 3 * 9 + 2 * 16 + 16 + 16 * 10 + 10  # conv, BN, gamma, fc


def test_plugin_shape_rule_and_naming_give_diagnostics(registered):
    bad = "network n {\n    input [3, 8, 8]\n    c: conv(4, 3)\n    hardtanh(min_val = 1.0, max_val = 0.0)\n}\n"
    with pytest.raises(resdsl.SpecError) as err:
        resdsl.loads(bad)
    assert [d.code for d in err.value.diagnostics] == ["E015"]
    assert "empty range" in err.value.diagnostics[0].message
    unnamed = "network n {\n    input [3, 8, 8]\n    c: conv(4, 3)\n    channel_scale()\n}\n"
    with pytest.raises(resdsl.SpecError) as err:
        resdsl.loads(unnamed)
    assert [d.code for d in err.value.diagnostics] == ["E052"]


def test_plugin_primitives_are_gone_once_removed(registered):
    PRIMITIVES.remove("channel_scale")
    with pytest.raises(resdsl.SpecError) as err:
        resdsl.load(SPEC)
    assert err.value.diagnostics[0].code == "E010"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example plugin pip-installed (offline, no dependencies) into a folder of its own."""
    work = tmp_path_factory.mktemp("plugin")
    source = work / "src"
    shutil.copytree(PLUGIN, source)  # the build writes into the source folder
    target = work / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                             "--no-build-isolation", "--target", str(target), str(source)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot build the example plugin here: {result.stderr.strip()[-300:]}")
    return target


def _run(installed: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_installed_plugin_is_found_through_its_entry_point(installed, tmp_path):
    check = _run(installed, "-m", "resdsl.cli", "check", str(SPEC))
    assert check.returncode == 0, check.stderr
    stats = _run(installed, "-m", "resdsl.cli", "stats", str(SPEC))
    assert stats.returncode == 0 and "650" in stats.stdout, stats.stderr  # 432 + 32 + 16 + 170
    onnx_file, py_file = tmp_path / "scaled.onnx", tmp_path / "scaled.py"
    for target, out in (("onnx", onnx_file), ("torch", py_file)):
        result = _run(installed, "-m", "resdsl.cli", "compile", str(SPEC), "--target", target, "-o", str(out))
        assert result.returncode == 0, result.stderr
    program = (
        "import numpy as np, onnxruntime as ort, torch, resdsl, runpy\n"
        f"net = resdsl.load({str(SPEC)!r})\n"
        "print(resdsl.PRIMITIVES['channel_scale'].origin)\n"
        "model = resdsl.build(net, seed=0).eval()\n"
        f"generated = runpy.run_path({str(py_file)!r})['scaled'](seed=0).eval()\n"
        "x = torch.randn(2, 3, 32, 32)\n"
        "with torch.no_grad():\n"
        "    want = model(x)\n"
        "    assert torch.allclose(generated(x), want, atol=1e-5)\n"
        f"session = ort.InferenceSession({str(onnx_file)!r}, providers=['CPUExecutionProvider'])\n"
        "got = session.run(None, {'input': x.numpy()})[0]\n"
        "assert np.allclose(got, want.numpy(), atol=1e-4)\n"
        "print(sorted(k for k in model.state_dict() if 'ls' in k))\n")
    result = _run(installed, "-c", program)
    assert result.returncode == 0, result.stderr
    assert "entry point resdsl_scale:primitives" in result.stdout
    assert "['ls.gamma']" in result.stdout


def test_the_docs_plugin_example_runs(tmp_path):
    """The ``python`` example of docs/language.md's "Your own primitives", in a process of its own
    (it registers `clamp` for good), then through every back end."""
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    section = text[text.index("## Your own primitives"):]
    code = section[section.index("```python\n") + len("```python\n"):section.index("\n```\n", section.index("```python"))]
    check = ("\nfrom resdsl.backends import onnx_graph, torch_source\n"
             "assert [op.kind for op in net.ops] == ['conv', 'clamp']\n"
             "resdsl.build(net)(__import__('torch').randn(1, 3, 8, 8))\n"
             "compile(torch_source.emit(net), 'generated', 'exec')\n"
             "onnx_graph.build_model(net)\n")
    script = tmp_path / "example.py"
    script.write_text(code + check)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr


def test_a_broken_plugin_is_a_warning_not_an_error(tmp_path):
    """An installed plugin whose entry point cannot load leaves every spec working."""
    dist = tmp_path / "broken_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[resdsl.primitives]\nbroken = no_such_module_anywhere:primitives\n")
    program = ("import resdsl\n"
               f"net = resdsl.load({str(ROOT / 'specs' / 'resnet18.res')!r})\n"
               "print(net.params)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "11689512"
    assert "plugin `broken`" in result.stderr and "was not loaded" in result.stderr
