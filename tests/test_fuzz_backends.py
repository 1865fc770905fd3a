"""Differential and hostile-name fuzzing of the back ends.

Two generators, seeded so every run is the same:

* **differential**: random, mostly valid networks built from the language's constructs
  (definitions with parameters, conditions, loops, stages, named and inlined instances,
  re-applied layers, shortcuts read ``from`` another tensor, `with` variants), compiled to
  every target and compared: the in-process module, the generated source (imported, run
  and traced with torch.fx), ONNX in onnxruntime (with and without BN folding, at a
  random opset and batch), the diagram, and parameter counts against ``stats --format json``;
* **hostile names**: the same kind of network with every name a spec can choose (the
  network, definitions, parameters, variables, layers) drawn from Python keywords and
  builtins, torch and ``nn.Module`` attributes, the names the generated file uses itself,
  and random identifiers. The spec must either be refused with diagnostics or compile
  to working code on every target.

A case that does not compile must fail with well-formed diagnostics, never a traceback.
The default run tries a few hundred cases; ``pytest --fuzz-long -m fuzz_long
tests/test_fuzz_backends.py`` runs the long campaign (``RESDSL_FUZZ_EXAMPLES`` cases per
generator; figures in tests/README.md).
"""

from __future__ import annotations

import builtins
import json
import keyword
import os
import re
import types
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import resdsl
from conftest import ROOT
from resdsl.backends import dot, onnx_graph, torch_source
from resdsl.backends.torch_model import build
from resdsl.diagnostics import SpecError
from resdsl.stats import render as render_stats

ort = pytest.importorskip("onnxruntime")

PATH = str(ROOT / "tests" / "fuzz_backends.res")  # never written: only names the text


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: thread pools cost far more than they save (10 ms a conv on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _session(data: bytes):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

# ----------------------------------------------------------------- the property


def _load(text: str) -> resdsl.Network | None:
    """The checked network, or None after checking that the diagnostics are well formed."""
    lines = text.splitlines() or [""]
    try:
        return resdsl.loads(text, PATH)
    except SpecError as err:
        assert err.diagnostics
        for d in err.diagnostics:
            assert re.fullmatch(r"E\d{3}", d.code), d
            if d.span.path == PATH:
                assert 1 <= d.span.line <= len(lines) + 1 and d.span.column >= 1, d
        assert "Traceback" not in err.render()
        return None


def _randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-trivial BN statistics and affine terms, so that folding and zero-init matter."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def _import_source(text: str) -> types.ModuleType:
    module = types.ModuleType("resdsl_fuzz_generated")
    exec(compile(text, "<generated>", "exec"), module.__dict__)  # noqa: S102 - our own output
    return module


def _forget(module: types.ModuleType) -> None:
    """Drop the module's `torch.fx.wrap` registrations: fx keeps every one for good and
    patches them all on each trace, so thousands of imported files slow a campaign tenfold."""
    from torch.fx import _symbolic_trace

    for key in [k for k in _symbolic_trace._wrapped_fns_to_patch if k[0] == id(module.__dict__)]:
        del _symbolic_trace._wrapped_fns_to_patch[key]


def _constructor(module: types.ModuleType, net: resdsl.Network):
    """The generated file's constructor: named after the network, or `build_model`."""
    for name in (net.name, "build_model"):
        fn = module.__dict__.get(name)
        # a network named like one of the file's helpers (`zero_pad`) gets `build_model`
        if (isinstance(fn, types.FunctionType) and fn.__module__ == module.__name__
                and fn.__code__.co_varnames[:1] == ("seed",)):
            return fn
    found = [v for v in module.__dict__.values() if isinstance(v, types.FunctionType)
             and v.__code__.co_varnames[:1] == ("seed",)]
    assert len(found) == 1, "no constructor in the generated source"
    return found[0]


def _close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.shape == b.shape, (what, a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    err = float(np.abs(a - b).max(initial=0.0))
    assert err <= 1e-3 * scale, f"{what}: outputs differ by {err:g} (scale {scale:g})"


STATS = os.environ.get("RESDSL_FUZZ_STATS")  # a file to count compiled and refused cases in


def _count(kind: str, compiled: bool | None) -> None:
    if STATS:
        with open(STATS, "a", encoding="utf-8") as f:
            f.write(f"{kind} {'FAILED' if compiled is None else 'compiled' if compiled else 'refused'}\n")


def check_everywhere(text: str, rnd_bits: int, *, onnx_runs: int = 1, kind: str = "differential") -> bool:
    """Compile ``text`` to every target and compare them; False if the spec was refused."""
    try:
        return _check_everywhere(text, rnd_bits, onnx_runs, kind)
    except BaseException:
        _count(kind, None)  # a campaign's tally shows a finding even while hypothesis shrinks it
        raise


def _check_everywhere(text: str, rnd_bits: int, onnx_runs: int, kind: str) -> bool:
    net = _load(text)
    _count(kind, net is not None)
    if net is None:
        return False
    gen = torch.Generator().manual_seed(rnd_bits)
    model = build(net, seed=0).eval()
    _randomize(model, gen)
    batch = 1 + rnd_bits % 2
    x = torch.randn(batch, *net.input_shape, generator=gen)
    with torch.no_grad():
        want = model(x)
    assert tuple(want.shape[1:]) == net.output_shape

    # parameter counts: the IR, the module, and `stats --format json`
    unique = sum(p.numel() for p in model.parameters())
    stats = json.loads(render_stats([net], "json"))
    stats = stats[0] if isinstance(stats, list) else stats
    assert net.params == unique == stats["params"], (net.params, unique, stats["params"])

    # the generated source: same state_dict and seeded weights, same outputs, fx works
    source = torch_source.emit(net, seed=0)
    module = _import_source(source)
    theirs = _constructor(module, net)(seed=0).eval()
    ref = build(net, seed=0).state_dict()
    mine = theirs.state_dict()
    assert list(mine) == list(ref)
    assert all(torch.equal(mine[k], ref[k]) for k in ref), "seeded weights differ"
    theirs.load_state_dict(model.state_dict(), strict=True)
    try:
        with torch.no_grad():
            _close(theirs(x).numpy(), want.numpy(), "generated source")
            traced = torch.fx.symbolic_trace(theirs)
            _close(traced(x).numpy(), want.numpy(), "generated source, fx")
            _close(torch.fx.symbolic_trace(model)(x).numpy(), want.numpy(), "in process, fx")
    finally:
        _forget(module)

    # ONNX in onnxruntime: with and without folding, a random opset, symbolic or static batch
    for run in range(onnx_runs):
        opset = onnx_graph.MIN_OPSET + (rnd_bits >> (3 + 4 * run)) % (onnx_graph.MAX_OPSET - onnx_graph.MIN_OPSET + 1)
        static = batch if (rnd_bits >> (2 + run)) % 2 else None
        fold = bool((run + (rnd_bits >> 1)) % 2)  # one run: folded or not, by the case's bits
        data = onnx_graph.emit(net, weights=model.state_dict(), opset=opset, fold_bn=fold,
                               static_batch=static)
        session = _session(data)
        got = session.run(None, {"input": x.numpy()})[0]
        _close(got, want.numpy(), f"onnx opset {opset} fold_bn={fold}")

    assert "digraph resdsl {" in dot.emit(net)
    return True


# ----------------------------------------------------------------- differential generator

WIDTHS = st.sampled_from([2, 3, 4, 6, 8])


@st.composite
def block_defs(draw, name: str) -> str:
    """A residual block with a parameterised width and stride, in one of several styles."""
    style = draw(st.sampled_from(["post", "pre", "bottleneck", "plain"]))
    act = draw(st.sampled_from(["relu", "relu6", "silu", "gelu", "sigmoid", "tanh", "hardswish"]))
    zero = draw(st.sampled_from(["true", "false", "zero_init_last"]))
    bias = draw(st.sampled_from(["true", "false"]))
    extra = draw(st.sampled_from(["", "dropout(0.1)", "drop_path(0.2)", "identity()", "se", "gain", "conv_with",
                                  "gc", "wstd", "gstd", "std1", "fstd"]))
    shortcut = draw(st.sampled_from(["proj", "zeropad", "avgdown", "conv_only"]))
    reapply = draw(st.booleans())
    lines = [f"block {name}(planes, stride = 1, zero_init_last = false, expand = 1) {{",
             "    out = planes * expand"]
    if style == "pre":
        lines += ["    bn1: batchnorm()", f"    act1: {act}()",
                  f"    conv1: conv(planes, 3, stride = stride, bias = {bias})",
                  "    bn2: batchnorm()", f"    {act}()", "    conv2: conv(out, 3)"]
        src = "act1" if draw(st.booleans()) else "input"
    elif style == "bottleneck":
        groups = draw(st.sampled_from(["1", "2 if planes % 2 == 0 else 1"]))
        lines += ["    conv1: conv(planes, 1)", "    bn1: batchnorm()", f"    {act}()",
                  f"    conv2: conv(planes, 3, stride = stride, groups = {groups})",
                  "    bn2: batchnorm()", f"    {act}()",
                  "    conv3: conv(out, 1)", f"    bn3: batchnorm(zero_init = {zero})"]
        src = "input"
    else:
        lines += [f"    conv1: conv(planes, 3, stride = stride, bias = {bias})", "    bn1: batchnorm()",
                  f"    act: {act}()" if reapply else f"    {act}()",
                  f"    conv2: conv(out, 3, dilation = {draw(st.sampled_from([1, 1, 2]))})",
                  f"    bn2: batchnorm(zero_init = {zero})"]
        src = "input"
    if extra == "se":
        lines += ["    se: squeeze(out)"]
    elif extra == "gc":
        lines += ["    gc: context(out)"]
    elif extra == "gain":  # a learned tensor (issue 22), broadcast over H×W
        lines += ['    gain: param([out, 1, 1], init = "normal", std = 0.5)', "    multiply(gain)"]
    elif extra == "conv_with":  # a conv whose weight is computed from learned tensors
        lines += ['    w: param([out, out, 1, 1], init = "kaiming")', '    g: param([out, 1, 1, 1], init = "ones")',
                  "    scaled: multiply(w, g)", "    conv_with(scaled)"]
    elif extra == "wstd":  # a weight-standardised conv written with reductions (NF-ResNet's)
        lines += ["    wstd: standardised_conv(out)"]
    elif extra == "std1":  # the same with `standardize`, over the weight's rows or other axes
        axes = draw(st.sampled_from(["[1, 2, 3]", "[2, 3]", "[0, 1, 2, 3]", "[0, 2]", "[-1]"]))
        lines += [f"    wstd: standardized_conv(out, axes = {axes}, correction = {draw(st.sampled_from([0, 0, 1]))})"]
    elif extra == "fstd":  # a feature map standardised per sample, or over H and W
        lines += [f"    standardize({draw(st.sampled_from(['[0, 1, 2]', '[1, 2]', '[0]']))}, eps = 1e-3)"]
    elif extra == "gstd":  # divided by a grouped std, scaled by a number (EvoNorm's)
        lines += ["    y = current", "    s: std([0, 1, 2], groups = 2 if out % 2 == 0 else 1, keepdim = true, "
                  "correction = 0, eps = 1e-5)", "    divide(y, s)", "    multiply(0.5)"]
    elif extra:
        lines += [f"    {extra}"]
    if style != "plain":
        if shortcut == "proj":
            lines += ["    if stride != 1 or in_channels != out {",
                      f"        downsample: projection(out, stride) from {src}",
                      "        add(downsample)", "    } else {", f"        add({src})", "    }"]
        elif shortcut == "zeropad":
            lines += ["    if stride != 1 or in_channels != out {",
                      "        if in_channels <= out {",
                      f"            pad: zeropad(out, stride = stride) from {src}",
                      "        } else {",
                      f"            pad: conv(out, 1, stride = stride) from {src}",
                      "        }",
                      "        add(pad)", "    } else {", f"        add({src})", "    }"]
        elif shortcut == "avgdown":
            lines += ["    downsample: avg_down(out, stride = stride) from input", "    add(downsample)"]
        else:
            lines += ["    if stride != 1 or in_channels != out {",
                      "        short: conv(out, 1, stride = stride) from input",
                      "        add(short)", "    } else {", "        add(input)", "    }"]
    if reapply and style == "plain":
        lines += ["    act"]
    elif style != "pre":
        lines += [f"    {act}()"]
    lines += ["}"]
    return "\n".join(lines)


#: Imported by every differential case: parsed once per run (the parser is most of a small
#: case's cost).
LIBRARY = 'import "fuzz_library.res"'


@st.composite
def differential_specs(draw) -> str:
    """A small network: a stem, stages of generated blocks, loops and conditions, a head."""
    n_blocks = draw(st.integers(1, 2))
    parts = [LIBRARY] + [draw(block_defs(f"blk{i}")) for i in range(n_blocks)]
    size = draw(st.sampled_from([7, 8, 9, 12, 16]))
    channels = draw(st.sampled_from([1, 3, 4]))
    width = draw(WIDTHS)
    body = [f"    input [{channels}, {size}, {size}]"]
    stem = draw(st.sampled_from(["inline", "named", "loop", "plain"]))
    if stem == "inline":
        body += [f"    small_stem({width}, pool = {draw(st.integers(0, 2))})"]
    elif stem == "named":
        body += [f"    stem: small_stem({width})"]
    elif stem == "loop":
        body += [f"    for i in range({draw(st.integers(1, 3))}) {{",
                 f"        conv{{i}}: conv({width}, 3, bias = i == 0)",
                 "        bn{i}: batchnorm()",
                 "        relu()", "    }"]
    else:
        body += [f"    conv1: conv({width}, {draw(st.sampled_from([1, 3, 5]))}, stride = {draw(st.integers(1, 2))})",
                 "    relu()"]
    widths = [width]
    for s in range(draw(st.integers(1, 3))):
        w = draw(WIDTHS)
        blk = f"blk{draw(st.integers(0, n_blocks - 1))}"
        depth = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        expand = draw(st.sampled_from([1, 1, 2]))
        kind = draw(st.sampled_from(["stage", "stage", "single", "variant"]))
        if kind == "stage":
            body += [f"    layer{s + 1}: stage({blk}, {depth}, stride = {stride}, planes = {w}, "
                     f"expand = {expand}, zero_init_last = index > 0)"]
        elif kind == "single":
            body += [f"    layer{s + 1}: {blk}({w}, stride = {stride}, expand = {expand})"]
        else:
            body += [f"    layer{s + 1}: stage({blk} with (expand = {expand}), {depth}, stride = {stride}, "
                     f"planes = {w})"]
        widths.append(w * expand)
    if draw(st.booleans()):
        body += [f"    if {draw(st.sampled_from(['true', 'false', 'len(range(3)) == 3']))} {{",
                 "        extra: conv(4, 1)", "    }"]
    head = draw(st.sampled_from(["linear", "conv", "pool"]))
    if head == "linear":
        body += ["    global_avgpool()", "    flatten()", f"    fc: linear({draw(st.integers(1, 7))}, "
                 f"bias = {draw(st.sampled_from(['true', 'false']))})"]
    elif head == "conv":
        body += ["    head: conv(5, 1)", "    maxpool(2, stride = 2, ceil_mode = true)"]
    else:
        body += ["    global_avgpool()", "    flatten()", "    dropout(0.5)", "    fc: linear(3)", "    tanh()"]
    parts.append("network main {\n" + "\n".join(body) + "\n}")
    if draw(st.booleans()):
        parts.append("network variant = main")
    return "\n\n".join(parts) + "\n"


# ----------------------------------------------------------------- hostile names

#: Names a generated file could trip over: keywords, builtins, torch's and nn.Module's
#: attributes, and the names the generated source uses itself.
HOSTILE = sorted({*keyword.kwlist, *keyword.softkwlist,
                  *(n for n in [*dir(builtins), *dir(torch.nn.Module)] if not n.startswith("_")),
                  *torch_source.MODULE_NAMES, *torch_source._helper_names(), "self", "x", "out", "shortcut", "seed", "module",
                  "reset_parameters", "training", "forward", "torch", "nn", "F", "fx", "jit",
                  "Conv2d", "BatchNorm2d", "Sequential", "init", "functional", "build_model",
                  "Net", "Main", "Blk", "Shortcut", "input", "index", "in_channels", "in_height",
                  "planes", "stride", "relu", "conv", "stage", "add", "zero_pad", "drop_path",
                  "DropPath", "getattr", "setattr", "isinstance", "super", "print", "type", "object",
                  "__init__", "__class__", "__name__", "_modules", "_parameters", "T_destination"})
IDENT = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
NAME = st.one_of(st.sampled_from(HOSTILE), st.sampled_from(HOSTILE).map(lambda s: s.capitalize()), IDENT)


def hostile_text(n: list[str]) -> str:
    """The network with hostile names ``n`` in every place a spec chooses a name."""
    block, param, var, short, network, stem = n[:6]
    labels = n[6:]
    return f"""\
shortcut {short}(out, stride = 1) {{
    if stride != 1 or in_channels != out {{
        {labels[0]}: conv(out, 1, stride = stride)
        {labels[1]}: batchnorm()
    }}
}}

block {block}({param}, stride = 1) {{
    {var} = {param} * 1
    {labels[2]}: conv({var}, 3, stride = stride)
    {labels[3]}: batchnorm()
    {labels[4]}: relu()
    {labels[5]}: conv({param}, 3)
    drop_path(0.1)
    {labels[6]}: {short}({param}, stride = stride) from input
    add({labels[6]})
    {labels[4]}
}}

stem {stem}({param}) {{
    {labels[7]}: conv({param}, 3)
    relu()
}}

network {network} {{
    input [3, 8, 8]
    {stem}(4)
    {labels[8]}: stage({block}, 2, {param} = 4)
    {labels[9]}: stage({block}, 2, stride = 2, {param} = 8)
    {labels[10]}: zeropad(12, stride = 2)
    global_avgpool()
    flatten()
    {labels[11]}: linear(3)
}}
"""


LABEL = st.one_of(NAME, st.integers(0, 20).map(str))


@st.composite
def hostile_names(draw) -> list[str]:
    """Six definition-level names and twelve labels; each is hostile or, often enough that
    most specs compile, a plain unique one (`n7`)."""
    out: list[str] = []
    for i in range(18):
        pool = NAME if i < 6 else LABEL
        name = draw(st.one_of(st.none(), pool))
        if name is None or name in out:
            name = f"n{i}"
            while name in out:  # a random identifier may be `n7` too
                name += "_"
        out.append(name)
    return out


HOSTILE_NAMES = hostile_names()


# ----------------------------------------------------------------- the default run

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _quiet(fn):
    """torch warns about deprecated paths it takes inside fx; not what is tested here."""
    def run(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    return run


@FAST
@given(differential_specs(), st.integers(0, 2**20))
def test_backends_agree(text, bits):
    _quiet(check_everywhere)(text, bits)


@FAST
@given(HOSTILE_NAMES, st.integers(0, 2**20))
def test_hostile_names(names, bits):
    _quiet(check_everywhere)(hostile_text(names), bits, onnx_runs=1, kind="hostile")


def test_differential_generator_makes_valid_specs():
    """The generator is useful only if most of its specs compile."""
    from hypothesis import find  # noqa: F401 - keeps the import local to this check

    texts = []

    @settings(max_examples=60, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(differential_specs())
    def collect(text):
        texts.append(text)

    collect()
    valid = sum(_load(t) is not None for t in texts)
    assert valid >= 0.7 * len(texts), f"only {valid} of {len(texts)} generated specs compile"


def test_hostile_names_mostly_compile():
    texts = []

    @settings(max_examples=60, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
    @given(HOSTILE_NAMES)
    def collect(names):
        texts.append(hostile_text(names))

    collect()
    valid = sum(_load(t) is not None for t in texts)
    assert valid >= 0.2 * len(texts), f"only {valid} of {len(texts)} hostile specs compile"


# ----------------------------------------------------------------- the long campaign

LONG = int(os.environ.get("RESDSL_FUZZ_EXAMPLES", "10000"))
LONG_SEED = int(os.environ.get("RESDSL_FUZZ_SEED", "20261129"))


@pytest.mark.fuzz_long
@seed(LONG_SEED)
@settings(max_examples=LONG, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(differential_specs(), st.integers(0, 2**20))
def test_backends_agree_long(text, bits):
    _quiet(check_everywhere)(text, bits)


@pytest.mark.fuzz_long
@seed(LONG_SEED)
@settings(max_examples=LONG, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(HOSTILE_NAMES, st.integers(0, 2**20))
def test_hostile_names_long(names, bits):
    _quiet(check_everywhere)(hostile_text(names), bits, onnx_runs=1, kind="hostile")


# Cases the campaigns found, kept as regressions.
HOSTILE_REGRESSIONS = [
    # a block parameter named after a builtin, `__build_class__`, was renamed `__build_class___2`,
    # which Python mangles inside the class body (`_N0__build_class___2`): TypeError (long campaign)
    ["n0", "__build_class__", "n2", "n3", "n4", "n5", *(f"n{i}" for i in range(6, 18))],
    ["n0", "__x", "__y__", "n3", "__main__", "n5", *(f"n{i}" for i in range(6, 18))],
    # a network named like a helper of the generated file (`zero_pad`): its constructor is
    # `build_model`; the harness took the helper for it (long campaign, a harness bug)
    ["n0", "n1", "n2", "n3", "zero_pad", *(f"n{i}" for i in range(5, 18))],
]


@pytest.mark.parametrize("names", HOSTILE_REGRESSIONS, ids=range(len(HOSTILE_REGRESSIONS)))
def test_hostile_regressions(names):
    assert _quiet(check_everywhere)(hostile_text(names), 0, kind="hostile")
