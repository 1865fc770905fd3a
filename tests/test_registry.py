"""The op registry's conformance test: every primitive through every back end.

Each built-in primitive has a small spec below that uses it (named, as a module, and
unnamed, as a function, where it can be both). :func:`conform` runs it through the
in-process torch module, the generated source (imported and run), ONNX in onnxruntime
at every opset its lowerings distinguish, the DOT diagrams, the tables and the stats,
and compares outputs, ``state_dict`` names and shapes and parameter counts. A primitive
without a case, or with a lowering missing, fails here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch.fx")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_inplace import assert_same, training_step  # noqa: E402
from test_onnx import assert_valid  # noqa: E402
from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from conftest import ROOT  # noqa: E402
from resdsl import stats, tables  # noqa: E402
from resdsl.backends import dot, onnx_graph, torch_source  # noqa: E402
from resdsl.backends.onnx_graph import ONNX, lowering_for  # noqa: E402
from resdsl.backends.torch_lowering import TORCH  # noqa: E402
from resdsl.backends.torch_model import build  # noqa: E402
from resdsl.looks import LOOKS, look_of  # noqa: E402
from resdsl.passes import inplace_ops  # noqa: E402
from resdsl.primitives import PRIMITIVES  # noqa: E402

#: kind → (input shape, body). Inputs are small; every body uses the kind at least twice.
CASES: dict[str, tuple[str, str]] = {
    "conv": ("[4, 8, 8]", "a: conv(6, 3, stride = 2, bias = true)\nb: conv(6, 3, groups = 2, dilation = 2)"),
    "batchnorm": ("[4, 8, 8]", "c: conv(6, 3)\nbn: batchnorm(eps = 1e-3)\nz: batchnorm(zero_init = true) from c\n"
                               "add(z)"),
    **{k: ("[4, 8, 8]", f"c: conv(6, 3)\na: {k}()\n{k}()")
       for k in ("relu", "relu6", "gelu", "silu", "hardswish", "sigmoid", "tanh")},
    "leaky_relu": ("[4, 8, 8]", "c: conv(6, 3)\na: leaky_relu(0.2)\nleaky_relu(negative_slope = 0.1)"),
    "elu": ("[4, 8, 8]", "c: conv(6, 3)\na: elu(0.5)\nelu()"),
    "maxpool": ("[4, 9, 9]", "a: maxpool(3, stride = 2, padding = 1, ceil_mode = true)\nmaxpool(2, dilation = 1)"),
    "avgpool": ("[4, 9, 9]", "a: avgpool(3, stride = 2, padding = 1, ceil_mode = true)\n"
                             "avgpool(2, count_include_pad = false)"),
    "global_avgpool": ("[4, 8, 8]", "a: global_avgpool()\nc: conv(4, 1)\nglobal_avgpool()"),
    "flatten": ("[4, 8, 8]", "global_avgpool()\nf: flatten()\nfc: linear(3)\nflatten()"),
    "linear": ("[4, 8, 8]", "global_avgpool()\nflatten()\nfc: linear(5)\nfc2: linear(3, bias = false)"),
    "dropout": ("[4, 8, 8]", "c: conv(4, 3)\na: dropout(0.3)\ndropout(0.2)"),
    "drop_path": ("[4, 8, 8]", "c: conv(4, 3)\nd: drop_path(0.2)\ndrop_path(0.1)"),
    "identity": ("[4, 8, 8]", "a: identity()\nidentity()\nc: conv(4, 1)"),
    "add": ("[4, 8, 8]", "a: conv(4, 3)\nb: conv(4, 1) from input\nadd(a, b)\nadd(current, b, a)"),
    "multiply": ("[4, 8, 8]", "a: conv(4, 3)\nglobal_avgpool()\ns: sigmoid()\nmultiply(a, s)\nmultiply(current, s, a)"),
    "zeropad": ("[4, 8, 8]", "c: conv(4, 3)\nz: zeropad(8, stride = 2)\nzeropad(12)"),
    "groupnorm": ("[4, 8, 8]", "c: conv(8, 3)\ngn: groupnorm(groups = 4)\nz: groupnorm(2, eps = 1e-3, zero_init = true)"),
    "layernorm": ("[4, 8, 8]", "c: conv(8, 3)\nln: layernorm()\nln2: layernorm(eps = 1e-5, zero_init = true)"),
    "std_conv": ("[4, 8, 8]", "a: std_conv(6, 3, stride = 2)\nb: std_conv(6, 1, bias = true, eps = 1e-8)"),
    "channel_conv": ("[4, 8, 8]", "c: conv(8, 3)\ncc: channel_conv(3)\nglobal_avgpool()\ne: channel_conv(5)"),
    "blurpool": ("[4, 8, 8]", "a: blurpool()\nblurpool(stride = 1, filt_size = 5)\nc: conv(4, 1)"),
    "concat": ("[4, 8, 8]", "a: conv(4, 3)\nb: conv(2, 1) from input\ny: concat(a, b)\nconcat(y, a, b)"),
    "split": ("[4, 8, 8]", "parts: split(2)\np: split([1, 3]) from input\n"
                           "q: split(2) from input\nconcat(parts[1], p[0], p[1], q[0])"),
    "subtract": ("[4, 8, 8]", "a: conv(4, 3)\nb: conv(4, 1) from input\nsubtract(a, b)\ns: subtract(b, current)"),
    "mean": ("[4, 8, 8]", "a: conv(4, 3)\nm: mean([1, 2], keepdim = true)\nmultiply(a, m)"),
    "reduce_sum": ("[4, 8, 8]", "a: conv(4, 3)\nreduce_sum([0, 1, 2])"),
    "var": ("[4, 8, 8]", "a: conv(4, 3)\nv: var([-1], correction = 0)"),
    "std": ("[4, 8, 8]", "a: conv(4, 3)\ns: std([0, 1], keepdim = true, eps = 1e-5)\ndivide(a, s)"),
    "standardize": ("[4, 8, 8]", 'a: conv(4, 3)\ns: standardize([1, 2], eps = 1e-3)\nstandardize([0], correction = 1)\n'
                                 'w: param([4, 4, 3, 3], init = "kaiming")\nws: standardize([1, 2, 3]) from w\n'
                                 "conv_with(ws, padding = 1)"),
    "sqrt": ("[4, 8, 8]", "a: conv(4, 3)\ns: sigmoid()\nsqrt()"),
    "rsqrt": ("[4, 8, 8]", "a: conv(4, 3)\ns: sigmoid()\nr: rsqrt()"),
    "reciprocal": ("[4, 8, 8]", "a: conv(4, 3)\ns: sigmoid()\nreciprocal()"),
    "divide": ("[4, 8, 8]", "a: conv(4, 3)\nglobal_avgpool()\ns: sigmoid()\nd: divide(a, s)\ndivide(1.0, d)\n"
                            "multiply(0.5)\nadd(a, 1e-5)"),
    "group_softmax": ("[12, 4, 4]", "x: group_softmax(2, cardinality = 2)\nglobal_avgpool()\n"
                                    "a: group_softmax(2, cardinality = 3)\ngroup_softmax(3)\ns: group_softmax(1)"),
    "pad": ("[4, 8, 8]", "a: pad(1)\npad(2, value = 0.5)\nc: conv(4, 3)"),
    "param": ("[4, 8, 8]", 'v: param([4, 1, 1], init = "ones")\ng: param([1, 8, 8], init = "normal", std = 0.5)\n'
                           "c: conv(4, 3)\nmultiply(v)\nmultiply(current, g)"),
    "conv_with": ("[4, 8, 8]", 'w: param([6, 4, 3, 3], init = "kaiming")\nb: param([6], init = "constant", value = 0.1)\n'
                               "a: conv_with(w, b, stride = 2, padding = 1)\n"
                               'w2: param([6, 3, 1, 1], init = "trunc_normal", std = 0.02)\nconv_with(w2, groups = 2)'),
    # issue 22: tensor ops of any rank
    "reshape": ("[4, 8, 8]", "c: conv(8, 1)\nr: reshape([2, 4, -1])\nreshape([0, 0, 8, 8])\nreshape([-1])"),
    "permute": ("[4, 6, 8]", "c: conv(4, 1)\np: permute([1, 2, 0])\npermute([-1, 0, 1])"),
    "transpose": ("[4, 6, 8]", "c: conv(4, 1)\nt: transpose(0, 2)\ntranspose(-1, -2)"),
    "matmul": ("[4, 6, 8]", "c: conv(4, 1)\nk: transpose(-1, -2)\na: matmul(c, k)\nmatmul(c)"),
    "softmax": ("[4, 6, 8]", "c: conv(4, 1)\ns: softmax()\nsoftmax(axis = 0)\nr: reshape([4, 1, -1])\n"
                             "softmax(1)"),
    "slice": ("[4, 6, 8]", "c: conv(4, 1)\ns: slice(-1, 2, -1)\nslice(0, 1, 4, step = 2)"),
    "pad_axis": ("[4, 6, 8]", "c: conv(4, 1)\np: pad_axis(-1, 1, 2)\npad_axis(0, after = 3, value = 0.5)"),
}


def spec_text(kind: str) -> str:
    shape, body = CASES[kind]
    lines = "\n".join(f"    {line}" for line in body.splitlines())
    return f"network t_{kind} {{\n    input {shape}\n{lines}\n}}\n"


def randomized(state: dict) -> dict:
    """Every float tensor moved off its initial value, so scales and shifts are exercised;
    variances stay positive."""
    gen = torch.Generator().manual_seed(1)
    out = {}
    for key, value in state.items():
        if not value.is_floating_point():
            out[key] = value
        elif key.endswith("running_var"):
            out[key] = torch.rand(value.shape, generator=gen) + 0.5
        else:
            out[key] = value + 0.2 * torch.randn(value.shape, generator=gen)
    return out


def ruff_clean(path: Path) -> None:
    """The generated file passes ruff's lint and format checks. ruff is pinned in the `test` extra:
    without it this fails rather than pass unchecked."""
    config = ["--no-cache", "--config", str(ROOT / "pyproject.toml"), str(path)]
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run([sys.executable, "-m", "ruff", *command, *config], capture_output=True, text=True)
        if "No module named ruff" in result.stderr:  # never pass without checking
            pytest.fail("ruff is not installed: pip install -e '.[test]' brings the pinned version")
        assert result.returncode == 0, result.stdout + result.stderr



def test_ruff_clean_fails_without_ruff(monkeypatch, tmp_path):
    """Without ruff the check fails with the reason, never passes unchecked."""
    missing = subprocess.CompletedProcess([], 1, "", f"{sys.executable}: No module named ruff\n")
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: missing)
    with pytest.raises(pytest.fail.Exception, match="ruff is not installed"):
        ruff_clean(tmp_path / "t.py")

def opsets(net: resdsl.Network) -> list[int]:
    """The default, the oldest and newest opsets, and every opset where a lowering changes."""
    out = {onnx_graph.MIN_OPSET, onnx_graph.DEFAULT_OPSET, onnx_graph.MAX_OPSET}
    for op in net.ops:
        out |= {need for need, _ in ONNX.require(op.kind)
                if onnx_graph.MIN_OPSET <= need <= onnx_graph.MAX_OPSET}
    return sorted(out)


def conform(text: str, tmp_path: Path, kind: str) -> resdsl.Network:
    """Run one spec through every back end; return its network. ``kind`` must occur in it."""
    net = resdsl.loads(text, path=str(tmp_path / f"t_{kind}.res"))
    assert any(op.kind == kind for op in net.ops), f"the case for `{kind}` does not use it"

    # in-process torch: parameters as the IR counts them, state_dict as the registry says
    model = build(net, seed=0).eval()
    assert sum(p.numel() for p in model.parameters()) == net.params
    state = model.state_dict()
    expected = onnx_graph.expected_state(net)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected

    # in place where resdsl.passes allows it (issue 14): one training step, bit for bit the
    # out-of-place module's
    xt = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(5))
    assert_same(training_step(build(net, seed=0), xt), training_step(build(net, seed=0, inplace=False), xt))

    # generated source: same keys, same seeded weights, same outputs
    source = torch_source.emit(net, seed=0)
    ast.parse(source)
    generated = getattr(import_source(source, tmp_path, f"t_{kind}"), net.name)(seed=0).eval()
    ruff_clean(tmp_path / f"t_{kind}.py")
    assert list(generated.state_dict()) == list(state)
    for key, value in generated.state_dict().items():
        assert torch.equal(value, state[key]), key
    weights = randomized(state)
    model.load_state_dict(weights)
    generated.load_state_dict(weights)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)
        assert want.shape[1:] == net.output_shape
        torch.testing.assert_close(generated(x), want, rtol=1e-5, atol=1e-5)
        # as the README promises of every generated file: scriptable and traceable
        with warnings.catch_warnings():  # torch ≥ 2.10 deprecates scripting, and still supports it
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(generated)
        torch.testing.assert_close(scripted(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.fx.symbolic_trace(generated)(x), want, rtol=1e-5, atol=1e-5)

    # ONNX in onnxruntime, at every opset the lowerings distinguish
    for opset in opsets(net):
        proto = onnx_graph.build_model(net, weights=weights or None, opset=opset)  # none: nothing learned
        assert_valid(proto, net)  # checker, strict shape inference, the IR's shapes with a symbolic batch
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = session.run(None, {"input": x.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-4, atol=1e-4,
                                   msg=lambda m, o=opset: f"opset {o}: {m}")

    # diagrams: every detail level draws; each op shows as its look says
    layer = dot.emit(net, detail="layer", annotate="shapes,params,macs")
    for op in net.ops:
        look = look_of(op)
        shown = f"<B>{dot.text(look.symbol)}</B>" if look.symbol else dot.text(look.text(op))
        assert shown in layer, (op.name, shown)
    for detail in ("network", "block", "blocks"):
        assert dot.emit(net, detail=detail).startswith("//")

    # tables and stats
    for fmt in tables.FORMATS:
        assert tables.render([net], fmt)
    summary = stats.summary(net)
    assert summary["params"] == net.params == sum(s["params"] for s in summary["sections"])
    assert stats.render([net])
    return net


@pytest.mark.parametrize("kind", sorted(CASES))
def test_primitive_conforms_everywhere(kind, tmp_path):
    conform(spec_text(kind), tmp_path, kind)


def test_every_builtin_primitive_has_a_case_and_every_lowering():
    builtin = {k for k, p in PRIMITIVES.items() if p.origin == "builtin"}
    assert builtin == set(CASES), "add a conformance case for each new primitive"
    for kind in builtin:
        prim, torch_lowering = PRIMITIVES[kind], TORCH.require(kind)
        assert torch_lowering.module is not None or not prim.module, kind
        assert torch_lowering.function is not None or prim.has_params, kind
        assert ONNX.origin(kind) == TORCH.origin(kind) == LOOKS.origin(kind) == "builtin", kind


def _kind_literals(path: Path) -> set[str]:
    """String literals compared with something called ``kind`` (``op.kind == "conv"``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        sides = [node.left, *node.comparators]
        if not any(isinstance(s, ast.Attribute) and s.attr == "kind" or isinstance(s, ast.Name) and s.id == "kind"
                   for s in sides):
            continue
        for side in sides:
            for sub in ast.walk(side):
                if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                    found.add(sub.value)
    return found


@pytest.mark.parametrize("path", [*sorted((ROOT / "resdsl" / "backends").glob("*.py")),
                                  ROOT / "resdsl" / "tables.py", ROOT / "resdsl" / "stats.py",
                                  ROOT / "resdsl" / "passes.py"], ids=lambda p: p.name)
def test_no_back_end_switches_on_primitive_kinds(path):
    assert not _kind_literals(path) & set(PRIMITIVES), "look the primitive up in the registry instead"


def test_registry_refuses_incomplete_or_clashing_entries():
    from dataclasses import replace

    conv = PRIMITIVES["conv"]
    with pytest.raises(ValueError, match="already registered"):
        resdsl.register_primitive(replace(conv, origin="test"))
    with pytest.raises(ValueError, match="with weights needs `module=True`"):
        resdsl.register_primitive(replace(conv, kind="conv_without_module", module=False))
    with pytest.raises(ValueError, match="built-in name"):
        resdsl.register_primitive(replace(conv, kind="range"))
    with pytest.raises(ValueError, match="cannot be removed"):
        PRIMITIVES.remove("conv")
    with pytest.raises(ValueError, match="already registered"):
        resdsl.torch_lowering("conv", module=TORCH.require("relu").module)
    assert "conv_without_module" not in PRIMITIVES


def test_onnx_lowering_is_chosen_by_opset():
    assert lowering_for("gelu", 13) is lowering_for("gelu", 19) is not lowering_for("gelu", 20)
    assert re.search("Gelu", onnx_graph.build_model(resdsl.loads(spec_text("gelu")), opset=20)
                     .graph.node[1].op_type)


@pytest.mark.parametrize("kind", sorted(k for k, p in PRIMITIVES.items() if p.inplace))
def test_an_in_place_primitive_overwrites_its_input_in_every_torch_lowering(kind, tmp_path):
    """``inplace`` is a promise the torch lowering keeps: given ``inplace = true`` the
    generated source overwrites the first input."""
    prim = PRIMITIVES[kind]
    # the generated source: a statement of its own, or the call's inplace=True
    body = "c: conv(4, 3)\nb: conv(4, 1) from input\n" + (f"{kind}(c, b)" if prim.arity is None else f"h: {kind}() from b\nadd(h, c)")
    net = resdsl.loads(f"network t {{\n    input [4, 8, 8]\n    {body.replace(chr(10), chr(10) + '    ')}\n}}\n")
    assert any(op.kind == kind for op in net.ops if op.name in inplace_ops(net))
    source = torch_source.emit(net)
    assert "inplace=True" in source or " += " in source or " -= " in source
