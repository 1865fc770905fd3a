"""The back-end registry: options declared beside each ``emit``, one module and one line per
back end, errors worded for Python and spelled as flags by the CLI, cheap declarations."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys

import pytest
from extra_backends import summary

import resdsl
from conftest import ROOT
from resdsl.backends import TARGETS, BackendError, OptionError, Target, register, target_options
from resdsl.cli import cli_spelling, main

R18 = "resnet18"


@pytest.fixture
def with_summary():
    """The test back end, registered with its one line (undone after the test)."""
    register(Target("summary", "extra_backends.summary", "emit", ".txt", False, "a text summary (a back end of the tests)"))
    yield
    del TARGETS["summary"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------- one module, one line

def test_a_new_back_end_is_one_module_and_one_line(with_summary, capsys):
    code, out, err = run(capsys, "compile", R18, "--target", "summary", "--units", "millions", "--depth", "2",
                         "--title", "ResNet-18")
    assert code == 0 and err == ""
    assert out == summary.emit(resdsl.load(ROOT / "specs" / "resnet18.res"), units="millions", depth=2,
                               title="ResNet-18")
    assert out.startswith("ResNet-18\nlayer1: 0.15M\n  layer1.0: 0.07M\n")
    code, out, _ = run(capsys, "compile", R18, "--target", "summary", "--totals")
    assert code == 0 and out.endswith("total: 11,689,512\n")


def test_its_flags_are_in_the_help(with_summary, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compile", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "summary: a text summary" in out
    section = out[out.index("options for --target summary:"):]
    for text in ("--units {plain,millions}", "--depth N", "--title TEXT", "--totals",
                 "end with the totals (needs --units plain)"):
        assert text in " ".join(section.split()), text


@pytest.mark.parametrize("args, message", [
    (["--units", "kilo"], "resdsl: error: --units: unknown units `kilo`\n  = help: choose one of: plain, millions"),
    (["--units", "milions"], "= help: did you mean `millions`?"),
    (["--depth", "9"], "resdsl: error: --depth: a depth lies between 0 and 3, not 9"),
    (["--depth", "one"], "resdsl: error: --depth: not a whole number: 'one'"),
])
def test_its_checks_are_usage_errors(with_summary, capsys, args, message):
    code, out, err = run(capsys, "compile", R18, "--target", "summary", *args)
    assert code == 2 and out == "" and message in err


def test_an_option_that_does_not_apply_is_said_so_before_its_value_is_checked(with_summary, capsys):
    code, _, err = run(capsys, "compile", R18, "--target", "torch", "--opset", "12")
    assert code == 2 and "`--opset` does not apply to --target torch" in err and "not supported" not in err
    code, _, err = run(capsys, "compile", R18, "--target", "onnx", "--units", "kilo", "-o", "x.onnx")
    assert code == 2 and "`--units` does not apply to --target onnx" in err


def test_the_api_runs_the_same_checks(capsys):
    net = resdsl.load(ROOT / "specs" / "resnet18.res")
    with pytest.raises(OptionError, match="unknown units `kilo`") as err:
        summary.emit(net, units="kilo")
    assert err.value.option == "units" and isinstance(err.value, ValueError)
    with pytest.raises(OptionError, match="a depth lies between 0 and 3, not 9"):
        summary.emit(net, depth=9)
    with pytest.raises(OptionError, match="`depth` must be a whole number, got '2'"):
        summary.emit(net, depth="2")


def test_options_apply_to_their_targets_only(with_summary, capsys):
    code, _, err = run(capsys, "compile", R18, "--target", "summary", "--opset", "17")
    assert code == 2 and "`--opset` does not apply to --target summary" in err and "it applies to: onnx" in err
    code, _, err = run(capsys, "compile", R18, "--target", "torch", "--units", "plain")
    assert code == 2 and "`--units` does not apply to --target torch" in err and "it applies to: summary" in err


def test_a_back_end_error_names_python_keywords_and_the_cli_flags(with_summary, capsys):
    net = resdsl.load(ROOT / "specs" / "resnet18.res")
    with pytest.raises(BackendError) as err:
        summary.emit(net, totals=True, units="millions")
    assert str(err.value) == "`totals` counts in plain numbers"
    assert err.value.hint == 'leave `totals` out, or give `units="plain"`'
    code, out, err = run(capsys, "compile", R18, "--target", "summary", "--totals", "--units", "millions")
    assert code == 2 and out == ""
    assert err == "resdsl: error: --totals counts in plain numbers\n  = help: leave --totals out, or give --units plain\n"


# ---------------------------------------------------------------------------------- every back end

def test_declarations_match_the_emit_signatures():
    """Each declared option is a keyword of the function, with the declared default."""
    for target in TARGETS.values():
        function = target.load()
        assert target.options, target.name
        params = inspect.signature(function).parameters  # of the undecorated function
        if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # emit_svg(net, **options): as emit's
            continue
        keywords = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
        assert list(keywords) == [o.name for o in target.options], target.name
        for option in target.options:
            assert keywords[option.name] == option.default, (target.name, option.name)


def test_the_cli_flags_are_the_declarations():
    options = target_options()
    assert {n: t for n, (_, t) in options.items()} == {
        "seed": ("torch", "onnx"), "weights": ("onnx",), "opset": ("onnx",), "static_batch": ("onnx",),
        "dynamic_size": ("onnx",), "fold_bn": ("onnx",), "reparam": ("torch", "onnx"), "external_data": ("onnx",),
        "allow_nonfinite": ("onnx",),
        **{n: ("dot", "svg", "pdf", "png") for n in ("detail", "annotate", "style", "rankdir", "scope", "fit", "panels")}}
    assert [o.flag for o, _ in options.values()][:4] == ["--seed", "--reparam", "--weights", "--opset"]


def test_shared_option_names_must_share_a_declaration(monkeypatch):
    monkeypatch.setitem(TARGETS, "other", Target("other", "extra_backends.other", "emit", ".txt", False, ""))
    monkeypatch.setitem(sys.modules, "extra_backends.other", type(sys)("extra_backends.other"))
    from resdsl.backends import Option, declare

    sys.modules["extra_backends.other"].emit = declare(Option("seed", "another seed", type=int))(lambda net: "")
    with pytest.raises(TypeError, match="declare option `seed` differently"):
        target_options()


def test_back_ends_word_their_errors_for_python():
    """No string in a back end or an op's lowering names a command-line flag (docstrings
    aside): the CLI spells options as flags, from the errors' templates."""
    found = []
    for path in sorted([*(ROOT / "resdsl" / "backends").glob("*.py"), *(ROOT / "resdsl" / "ops").glob("*.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        found += [f"{path.name}:{n.lineno}: {n.value}" for n in ast.walk(tree)
                  if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs
                  and re.search(r"(?<![\w-])--[a-z]", n.value)]
    assert found == []


def test_error_templates():
    err = BackendError("`{name}` and {fold_bn} and {detail=layer}; {x} {y=2} {not a name}", hint="{opset=18}",
                       name="a{fold_bn}b")
    assert str(err) == '`a{fold_bn}b` and `fold_bn` and `detail="layer"`; `x` `y=2` {not a name}'
    assert err.hint == "`opset=18`"
    assert err.words(cli_spelling) == ("`a{fold_bn}b` and --fold-bn and --detail layer; --x --y 2 {not a name}",
                                       "--opset 18")


# ---------------------------------------------------------------------------------- cheap to read

_LOADED = """
import sys
from resdsl.cli import main
try:
    main(sys.argv[1:])
except SystemExit:  # --help
    pass
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "onnx", "onnxruntime", "numpy", "graphviz"})
backends = sorted(m for m in sys.modules if m.startswith("resdsl.backends."))
print("loaded:", heavy, backends)
"""


@pytest.mark.parametrize("args", [["check", R18], ["compile", "--help"], ["diagram", "--help"]])
def test_reading_the_declarations_imports_no_heavy_package(args):
    """`check` imports no back end at all; the help of `compile`, which reads every back
    end's declarations, imports neither torch, onnx nor numpy (nor Graphviz)."""
    result = subprocess.run([sys.executable, "-c", _LOADED, *args], capture_output=True, text=True, cwd=ROOT,
                            timeout=120)
    assert "loaded: [] [" in result.stdout, result.stdout + result.stderr
    if args[0] == "check":
        assert "loaded: [] []" in result.stdout


def test_none_is_an_option_not_given():
    """``emit(net, style=None)`` is ``emit(net)``, as an absent flag is: never a TypeError
    or KeyError from inside the back end."""
    from resdsl.backends import dot, onnx_graph

    net = resdsl.load(ROOT / "specs" / "resnet20_cifar.res")
    assert dot.emit(net, detail=None, style=None, rankdir=None, annotate=None, scope=None) == dot.emit(net)
    with pytest.raises(OptionError, match="opset 12 is not supported"):  # checked, so no weights are made
        onnx_graph.emit(net, opset=12, static_batch=None)


def test_an_integer_option_takes_any_integer_type():
    np = pytest.importorskip("numpy")
    from resdsl.backends import torch_source

    net = resdsl.load(ROOT / "specs" / "resnet20_cifar.res")
    assert torch_source.emit(net, seed=np.int64(7)) == torch_source.emit(net, seed=7)
    for bad in (True, 7.0, "7"):
        with pytest.raises(OptionError, match="`seed` must be a whole number"):
            torch_source.emit(net, seed=bad)


def test_diagram_and_compile_check_an_option_alike(capsys):
    for command in (["diagram", R18], ["compile", R18, "--target", "dot"]):
        code, out, err = run(capsys, *command, "--detail", "lyer")
        assert (code, out) == (2, "")
        assert err == "resdsl: error: --detail: unknown detail `lyer`\n  = help: did you mean `layer`?\n", command
