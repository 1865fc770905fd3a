"""Fuzzing the front end: whatever a user types, resdsl answers with a network or with
diagnostics whose positions lie inside the file — never a traceback, never a hang.

Three sources of input, all seeded so CI is reproducible:

* specs generated from the grammar's constructs (definitions, layers, stages, imports,
  conditions, loops, arithmetic), mostly well-formed, with wrong values mixed in;
* mutations of the shipped specs and the standard library: tokens deleted, duplicated or
  swapped, numbers changed to 0, -1, huge values or floats, names changed;
* random bytes, including invalid UTF-8 and NUL bytes.

The default run tries a little over 2,000 inputs (about a minute). The long campaign is
behind an option: ``pytest --fuzz-long -m fuzz_long tests/test_fuzz.py`` (set ``RESDSL_FUZZ_EXAMPLES``
to choose its size per source).
"""

from __future__ import annotations

import os
import random
import re
import time

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import resdsl
from conftest import SPECS
from resdsl.diagnostics import SpecError
from resdsl.loader import Loader, decode

# Each input must finish within this many seconds of CPU time: a hang detector, not a
# benchmark (the largest network the limits admit, 30,000 ops, elaborates in about 1.5 s).
# CPU, not wall time: on a loaded machine wall time measures the neighbours.
TIME_LIMIT = 10.0

SOURCES = {p.stem: p.read_text(encoding="utf-8") for p in sorted(SPECS.glob("*.res"))}
SOURCES["std"] = (SPECS / "std" / "resnet.res").read_text(encoding="utf-8")
TOKEN = re.compile(r"\s+|#[^\n]*|\"(?:[^\"\\\n]|\\.)*\"|[A-Za-z_][A-Za-z0-9_]*|\d[\d_]*(?:\.\d+)?|\*\*|//|[=!<>]=|.")


def check_input(text: str, path: str) -> None:
    """The property: a network, or diagnostics inside the file; in bounded time."""
    lines = text.splitlines() or [""]
    start = time.process_time()
    try:
        Loader().load(path, text=text)
    except SpecError as err:
        assert err.diagnostics, "a SpecError must carry diagnostics"
        for d in err.diagnostics:
            if d.span.path != path:  # an imported file's problem, reported in that file
                continue
            assert 1 <= d.span.line <= len(lines) + 1, (d, len(lines))
            assert d.span.column >= 1, d
            assert re.fullmatch(r"E\d{3}", d.code), d
        rendered = err.render()
        assert "Traceback" not in rendered
    assert time.process_time() - start < TIME_LIMIT, "too slow: limits must stop this sooner"


def check_bytes(data: bytes, tmp_path) -> None:
    path = tmp_path / "fuzz.res"
    path.write_bytes(data)
    try:
        text = decode(data, str(path))
    except SpecError as err:
        assert all(d.code == "E003" and d.span.line >= 1 for d in err.diagnostics)
        return
    check_input(text, str(path))


# ----------------------------------------------------------------- generated specs

NUMBERS = st.sampled_from(["0", "1", "2", "3", "7", "16", "64", "-1", "0.5", "1e9", "10 ** 8",
                           "1 / 0", "2 // 3", "65537", "99999999999999999999", "3.0", "true"])
NAMES = st.sampled_from(["x", "planes", "stride", "relu", "conv", "bn1", "input", "index", "in_channels",
                         "bottleneck", "basic", "option_a", "option_b", "stage", "nope", "depths",
                         "range", "len", "class", "layer1", "downsample", "add"])
LAYERS = st.sampled_from([
    "conv({n}, {n}, stride = {n})", "conv({n}, 3, groups = {n}, padding = {n})", "batchnorm()",
    "batchnorm(eps = {n})", "relu()", "maxpool({n}, stride = {n}, padding = {n})",
    "avgpool({n}, ceil_mode = true)", "global_avgpool()", "flatten()", "linear({n})",
    "dropout({n})", "drop_path({n})", "identity()", "zeropad({n}, stride = {n})",
    "sigmoid()", "leaky_relu({n})", "add({v})", "multiply({v})", "{v}({n})",
    "stage(basic, {n}, planes = {n}, stride = {n})", "stage(bottleneck, {n}, planes = {n})",
    "option_b({n}, stride = {n})", "squeeze_excite({n})",
    # tensor ops of any rank (issue 22)
    "reshape([{n}, -1])", "reshape([0, {n}, {n}])", "reshape({v})", "permute([{n}, 0, 1])", "permute({v})",
    "transpose({n}, {n})", "matmul({v})", "matmul({v}, {v})", "softmax()", "softmax(axis = {n})",
    "slice({n}, {n}, {n})", "slice({n}, {n}, {n}, step = {n})", "pad_axis({n}, {n}, {n})",
    "pad_axis({n}, after = {n}, value = {n})",
    "mean([{n}, {n}], keepdim = true)", "reduce_sum({v})", "var([{n}], correction = {n})",
    "std([0, 1, 2], groups = {n}, keepdim = true, eps = {n})", "sqrt()", "rsqrt()", "reciprocal()",
    "standardize([{n}, {n}], eps = {n})", "standardize({v}, correction = {n})",
    "divide({v}, {n})", "divide({n}, {v})", "add({v}, {n})", "multiply({n})",
    "param([{n}, 1, 1])", 'param({v}, init = "{v}")', "conv_with({v}, stride = {n})",
])


@st.composite
def expressions(draw, depth: int = 0) -> str:
    if depth > 2 or draw(st.booleans()):
        return draw(st.one_of(NUMBERS, NAMES))
    a, b = draw(expressions(depth + 1)), draw(expressions(depth + 1))
    form = draw(st.sampled_from(["{a} + {b}", "{a} * {b}", "{a} // {b}", "[{a}, {b}]", "{a}[{b}]",
                                 "{a} if {b} else {a}", "max({a}, {b})", "-{a}", "{a} ** {b}",
                                 "{a} == {b}", "not {a}", "{a} and {b}", "range({a})",
                                 "{a} with (x = {b})", "len({a})", "{a}({b})", "{a} < {b}"]))
    # operands in parentheses: the grammar is Python's, where `1 + not x` is a syntax error
    return form.format(a=f"({a})", b=f"({b})")


@st.composite
def statements(draw, depth: int = 0) -> list[str]:
    out = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["layer", "layer", "layer", "named", "assign", "if", "for",
                                     "require", "reuse", "from"]))
        layer = draw(LAYERS).format(n=draw(expressions()), v=draw(NAMES))
        label = draw(st.sampled_from(["a", "b", "conv1", "0", "1", "layer{i + 1}", "relu", "x{1}",
                                      "fc", "class", "x{-1}"]))
        if kind == "layer":
            out.append(layer)
        elif kind == "named":
            out.append(f"{label}: {layer}")
        elif kind == "from":
            out.append(f"{label}: {layer} from {draw(NAMES)}")
        elif kind == "assign":
            out.append(f"{draw(NAMES.filter(lambda n: n != 'input'))} = {draw(expressions())}")
        elif kind == "reuse":
            out.append(draw(NAMES.filter(lambda n: n != "input")))
        elif kind == "require":
            out.append(f'require {draw(expressions())}, "fuzz"')
        elif depth < 2 and kind == "if":
            body = "\n".join(draw(statements(depth + 1)))
            out.append(f"if {draw(expressions())} {{\n{body}\n}} else {{ relu() }}")
        elif depth < 2 and kind == "for":
            body = "\n".join(draw(statements(depth + 1)))
            out.append(f"for i in {draw(expressions())} {{\n{body}\n}}")
    return out


@st.composite
def specs(draw) -> str:
    parts = []
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["import std.resnet", "import std.nope", 'import "x.res"',
                                           'import "/etc/passwd"', "import std"])))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["block", "module", "shortcut", "stem", "network"]))
        params = draw(st.sampled_from(["", "()", "(planes, stride = 1)", "(x = 1, x = 2)", "(a, b = a * 2)"]))
        body = "\n    ".join(draw(statements()))
        name = draw(st.sampled_from(["blk", "net", "relu", "resnet", "m"]))
        parts.append(f"{kind} {name}{params} {{\n    {body}\n}}")
    net_body = "\n    ".join(draw(statements()))
    shape = draw(st.sampled_from(["[3, 32, 32]", "[3, 224, 224]", "[3, 1, 1]", "[0, 8, 8]", "[3, 32]",
                                  "[3, 100000, 100000]", "3"]))
    parts.append(f"network main {{\n    input {shape}\n    {net_body}\n}}")
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from([
            "network v = main with (x = 1)", "network r = resnet(depths = [1, 1], widths = [8, 8])",
            "network r = resnet(block = basic, depths = [2, 2], widths = [16, 32], image_size = 32)",
            "block b2 = basic with (stride = 2)", "network w = nope"])))
    return "\n".join(parts) + "\n"


def mutate(text: str, rnd: random.Random) -> str:
    tokens = TOKEN.findall(text)
    for _ in range(rnd.randint(1, 4)):
        if not tokens:
            break
        i = rnd.randrange(len(tokens))
        op = rnd.randrange(6)
        if op == 0:
            del tokens[i]
        elif op == 1:
            tokens.insert(i, tokens[i])
        elif op == 2:
            j = rnd.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == 3 and tokens[i][:1].isdigit():
            tokens[i] = rnd.choice(["0", "-1", "1000000", "99999999999", "2.5", "1e300", "3"])
        elif op == 4 and tokens[i][:1].isalpha():
            tokens[i] = rnd.choice(["relu", "x", "input", "stage", "bottleneck", "conv", tokens[i] + "_",
                                    tokens[i][:-1] or "y", "true", "import", "network", "for"])
        else:
            tokens.insert(i, rnd.choice(["(", ")", "[", "]", "{", "}", ",", "=", ":", "\n", "from",
                                         "with", "-", "*", '"', "#", "if", "else", "0"]))
    return "".join(tokens)


# ----------------------------------------------------------------- the default run

FAST = settings(max_examples=700, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


@FAST
@given(specs())
def test_generated_specs(text):
    check_input(text, str(SPECS / "fuzz_generated.res"))


@FAST
@given(st.sampled_from(sorted(SOURCES)), st.randoms(use_true_random=False))
def test_mutated_specs(name, rnd):
    check_input(mutate(SOURCES[name], rnd), str(SPECS / f"fuzz_{name}.res"))


@settings(max_examples=700, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=300),
                 st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),
                 st.sampled_from([b"\xff\xfe", b"network n {\n input [3, 8, 8]\n\x00}", b"\xc3(",
                                  b"import std.resnet\n\xe2\x82", "é".encode("latin-1")])))
def test_random_bytes(tmp_path, data):
    check_bytes(data, tmp_path)


# Inputs that once crashed or hung resdsl, found by this harness or by hand.
REGRESSIONS = [
    # OverflowError from len(range(huge)) (long campaign, generated)
    "network main {\n    input [3, 32, 32]\n    conv((range((99999999999999999999))) + (0), 3)\n}\n",
    # KeyError 'input': a layer after an input declaration that failed (default run, generated)
    "network main {\n    input [0, 8, 8]\n    relu()\n}\n",
    # a layer before any input declaration (by hand)
    "network n {\n conv1: conv(16, 3)\n}\n",
    # 50,000 nested brackets took a minute in the LALR parser (by hand)
    "network n(x = " + "(" * 50_000 + "1" + ")" * 50_000 + ") {\n    input [3, 8, 8]\n}\n",
    # a 4,400-digit literal: Python refuses to convert it, lark wrapped that in VisitError (review)
    "network n(x = " + "9" * 4_400 + ") {\n    input [3, 8, 8]\n}\n",
    # an import name longer than the file system allows: OSError (review)
    'import "' + "a" * 300 + '.res"\nnetwork n {\n    input [3, 8, 8]\n}\n',
    # a depth that makes the network far too large (long campaign, mutated: too slow)
    "import std.resnet\nnetwork n = resnet(block = basic, depths = [3, 9999, 3], widths = [16, 32, 64])\n",
]


@pytest.mark.parametrize("text", REGRESSIONS, ids=range(len(REGRESSIONS)))
def test_regressions(text):
    check_input(text, str(SPECS / "fuzz_regression.res"))


def test_shipped_specs_still_compile():
    """The mutation source is valid: the property is about *bad* input, not a broken corpus."""
    for name, text in SOURCES.items():
        if name != "std":
            resdsl.loads(text, str(SPECS / f"{name}.res"))


# ----------------------------------------------------------------- the long campaign

LONG = int(os.environ.get("RESDSL_FUZZ_EXAMPLES", "20000"))


@pytest.mark.fuzz_long
@seed(20261129)
@settings(max_examples=LONG, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(specs())
def test_generated_specs_long(text):
    check_input(text, str(SPECS / "fuzz_generated.res"))


@pytest.mark.fuzz_long
@seed(20261129)
@settings(max_examples=LONG, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(sorted(SOURCES)), st.randoms(use_true_random=False))
def test_mutated_specs_long(name, rnd):
    check_input(mutate(SOURCES[name], rnd), str(SPECS / f"fuzz_{name}.res"))
