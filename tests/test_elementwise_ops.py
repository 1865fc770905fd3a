"""Element-wise arithmetic (broadcasting, numeric operands) and reductions against plain
torch: each spec is built in process, written as source and exported to ONNX (every
supported opset, run in onnxruntime), and all must compute what the torch expression does."""

from __future__ import annotations

from collections.abc import Callable

import pytest

torch = pytest.importorskip("torch")

from test_registry import import_source  # noqa: E402

import resdsl  # noqa: E402
from resdsl.backends import onnx_graph, torch_source  # noqa: E402
from resdsl.backends.torch_model import build  # noqa: E402

OPSETS = (onnx_graph.MIN_OPSET, 17, 18, onnx_graph.MAX_OPSET)


def _spec(shape: str, body: str) -> resdsl.Network:
    lines = "\n".join(f"    {line}" for line in body.strip().splitlines())
    return resdsl.loads(f"network t {{\n    input {shape}\n{lines}\n}}\n")


def check(net: resdsl.Network, reference: Callable, tmp_path, *, positive: bool = False) -> None:
    """``reference(x, model)`` (plain torch, reading the built model's layers by name) is
    what the model computes in process, from its generated source and in onnxruntime."""
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(1))
    if positive:
        x = x.abs() + 0.1
    model = build(net, seed=0).eval()
    state = model.state_dict()
    generated = getattr(import_source(torch_source.emit(net), tmp_path, "elementwise"), net.name)().eval()
    generated.load_state_dict(state, strict=True)
    with torch.no_grad():
        want = reference(x, model)
        assert tuple(want.shape) == (2, *net.output_shape)
        torch.testing.assert_close(model(x), want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(generated(x), want, rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime")
    for opset in OPSETS:
        proto = onnx_graph.build_model(net, weights=state, opset=opset)
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- arithmetic


def test_numbers_as_operands(tmp_path):
    net = _spec("[4, 8, 8]", """
        c: conv(4, 3, padding = 1)
        m: multiply(0.5)
        s: subtract(1.0, m)
        d: divide(s, 2)
        e: add(d, 1e-5)
        r: divide(1.0, e)
        subtract(0.25)
        add(c)
    """)
    assert net.op("m").attrs == (("constant", 0.5), ("constant_at", 1))
    assert net.op("s").attrs == (("constant", 1.0), ("constant_at", 0))
    assert net.macs == net.op("c").macs  # element-wise ops count none

    def ref(x, model):
        c = model.c(x)
        return 1.0 / ((1.0 - c * 0.5) / 2 + 1e-5) - 0.25 + c

    check(net, ref, tmp_path)
    source = torch_source.emit(net)
    for text in ("* 0.5", "1.0 - ", "/ 2.0", "+ 1e-05", "1.0 / ", "- 0.25"):
        assert text in source


def test_broadcasting_as_numpy(tmp_path):
    net = _spec("[4, 6, 6]", """
        c: conv(4, 3, padding = 1)
        g: global_avgpool() from c
        a: add(c, g)
        s: subtract(g, c)
        d: divide(a, s)
        m: multiply(g, g)
        add(d, m)
    """)
    assert net.op("g").shape == (4, 1, 1) and net.op("m").shape == (4, 1, 1) and net.output_shape == (4, 6, 6)

    def ref(x, model):
        c = model.c(x)
        g = c.mean((2, 3), keepdim=True)
        return (c + g) / (g - c) + g * g

    check(net, ref, tmp_path)


def test_broadcast_add_is_not_run_in_place(tmp_path):
    # `out += y` cannot grow `out` to the broadcast shape: the expression form is written
    net = _spec("[4, 6, 6]", """
        c: conv(4, 3, padding = 1)
        g: global_avgpool()
        h: conv(4, 1) from g
        add(h, c)
    """)
    check(net, lambda x, m: m.h(m.c(x).mean((2, 3), keepdim=True)) + m.c(x), tmp_path)


@pytest.mark.parametrize("body, code, words", [
    ("a: conv(8, 1)\nadd(a, input)", "E012", "residual add joins 8 channels with 4"),
    ("a: conv(4, 3, stride = 2)\nsubtract(a, input)", "E013", "`subtract` joins a 4×4×4 feature map"),
    ("a: conv(4, 3, stride = 2)\ndivide(a, input)", "E013", "`divide` cannot broadcast [4, 4, 4] with [4, 8, 8]"),
    ("multiply(0.5, 2.0)", "E022", "one number among its operands"),
    ("divide(input, 0)", "E015", "`divide` by the number 0"),
    ("subtract(input, input, input)", "E020", "`subtract` takes exactly 2 operands, got 3"),
    ("concat(input, 1.0)", "E023", "the arguments of `concat` are tensors, got a number"),
    ("add(x = 1.0)", "E023", "the arguments of `add` are operands, not keywords"),
])
def test_arithmetic_diagnostics(body, code, words):
    with pytest.raises(resdsl.SpecError) as err:
        _spec("[4, 8, 8]", body)
    [d] = err.value.diagnostics
    assert d.code == code and words in d.message, d.message


# ---------------------------------------------------------------- reductions and functions


@pytest.mark.parametrize("call, torch_fn", [
    ("mean([1, 2])", lambda c: c.mean((2, 3))),
    ("mean([1, 2], keepdim = true)", lambda c: c.mean((2, 3), keepdim=True)),
    ("mean([0, 1, 2])", lambda c: c.mean((1, 2, 3))),
    ("mean([-1])", lambda c: c.mean(-1)),
    ("reduce_sum([0], keepdim = true)", lambda c: c.sum(1, keepdim=True)),
    ("reduce_sum([2, 0])", lambda c: c.sum((1, 3))),
    ("var([1, 2])", lambda c: c.var((2, 3))),
    ("var([1, 2], correction = 0, keepdim = true)", lambda c: c.var((2, 3), unbiased=False, keepdim=True)),
    ("std([0])", lambda c: c.std(1)),
    ("std([0, 1, 2], correction = 0)", lambda c: c.std((1, 2, 3), unbiased=False)),
    ("std([1, 2], correction = 0, eps = 1e-3, keepdim = true)",
     lambda c: torch.sqrt(c.var((2, 3), unbiased=False, keepdim=True) + 1e-3)),
])
def test_reductions_are_torchs(call, torch_fn, tmp_path):
    net = _spec("[6, 5, 4]", f"c: conv(6, 3, padding = 1)\nr: {call}")
    assert net.macs == net.op("c").macs
    check(net, lambda x, m: torch_fn(m.c(x)), tmp_path)


def _grouped(c, groups, fn, keep_other: bool):
    """timm's group_std pattern: the statistic of each group of channels, given to each channel."""
    b, ch = c.shape[:2]
    s = fn(c.reshape(b, groups, ch // groups, *c.shape[2:]))
    s = s.expand(b, groups, ch // groups, *s.shape[3:]).reshape(b, ch, *s.shape[3:])
    return s if keep_other else s.flatten(2) if s.dim() > 3 else s


@pytest.mark.parametrize("call, torch_fn", [
    ("std([0, 1, 2], groups = 4, keepdim = true, correction = 0, eps = 1e-5)",
     lambda c: _grouped(c, 4, lambda t: t.var((2, 3, 4), unbiased=False, keepdim=True).add(1e-5).sqrt(), True)),
    ("mean([0], groups = 2)", lambda c: _grouped(c, 2, lambda t: t.mean(2, keepdim=True), True)),
    ("reduce_sum([0, 1], groups = 3, keepdim = true)",
     lambda c: _grouped(c, 3, lambda t: t.sum((2, 3), keepdim=True), True)),
    ("var([0, 2], groups = 2)", lambda c: _grouped(c, 2, lambda t: t.var((2, 4), keepdim=True), True)[..., 0]),
    ("std([0, 1, 2], groups = 6)", lambda c: _grouped(c, 6, lambda t: t.std((2, 3, 4), keepdim=True), True)[:, :, 0, 0]),
])
def test_reductions_over_channel_groups(call, torch_fn, tmp_path):
    net = _spec("[12, 5, 4]", f"c: conv(12, 3, padding = 1)\nr: {call}")
    check(net, lambda x, m: torch_fn(m.c(x)), tmp_path)
    assert "grouped(" in torch_source.emit(net)


def _standardized(t, dims, eps=1e-5, correction=0):
    """(t − mean) / √(var + eps) over ``dims``, in float64 (the reference, as a formula)."""
    d = t.double()
    out = (d - d.mean(dims, keepdim=True)) / torch.sqrt(d.var(dims, correction=correction, keepdim=True) + eps)
    return out.float()


@pytest.mark.parametrize("call, torch_fn", [
    ("standardize([0, 1, 2])", lambda c: _standardized(c, (1, 2, 3))),  # F.group_norm(x, 1)
    ("standardize([1, 2], eps = 1e-3)", lambda c: _standardized(c, (2, 3), 1e-3)),  # flattened rows
    ("standardize([-1])", lambda c: _standardized(c, 3)),
    ("standardize([0])", lambda c: _standardized(c, 1)),  # not the trailing axes: written out
    ("standardize([0, 2], correction = 1, eps = 1e-4)", lambda c: _standardized(c, (1, 3), 1e-4, 1)),
])
def test_standardize_is_the_formula(call, torch_fn, tmp_path):
    # off-centre, so a missing centring shows
    net = _spec("[6, 5, 4]", f"c: conv(6, 3, padding = 1)\nadd(2.0)\nr: {call}")
    assert net.macs == net.op("c").macs and net.params == net.op("c").params
    check(net, lambda x, m: torch_fn(m.c(x) + 2.0), tmp_path)


@pytest.mark.parametrize("axes, dims", [("[1, 2, 3]", (1, 2, 3)), ("[0, 1, 2, 3]", (0, 1, 2, 3)),
                                        ("[2, 3]", (2, 3)), ("[0, 2]", (0, 2))])
def test_standardize_of_a_learned_weight(axes, dims, tmp_path):
    # a conv weight standardised each forward (NF-ResNet's), per output channel or otherwise
    net = _spec("[4, 7, 7]", f"""
        w: param([6, 4, 3, 3], init = "normal", std = 0.3)
        s: standardize({axes}, eps = 1e-6) from w
        conv_with(s, padding = 1)
    """)
    assert net.op("s").shape == (6, 4, 3, 3) and not net.op("s").batched

    def ref(x, m):
        return torch.nn.functional.conv2d(x, _standardized(m.w, dims, 1e-6), padding=1)

    check(net, ref, tmp_path)
    if axes == "[1, 2, 3]":  # one normalisation call, as timm's ScaledStdConv2d makes one
        assert "F.group_norm(self.w, 1, eps=1e-06)" in torch_source.emit(net)


@pytest.mark.parametrize("kind, torch_fn", [
    ("sqrt", torch.sqrt), ("rsqrt", torch.rsqrt), ("reciprocal", torch.reciprocal)])
def test_functions_are_torchs(kind, torch_fn, tmp_path):
    net = _spec("[4, 6, 6]", f"f: {kind}()\nadd(f, input)")
    check(net, lambda x, m: torch_fn(x) + x, tmp_path, positive=True)


def test_group_std_without_centring_as_evonorm(tmp_path):
    # timm's group_std written with a reduction over positions and channels: here one group
    net = _spec("[8, 5, 5]", """
        s: std([0, 1, 2], keepdim = true, correction = 0, eps = 1e-5)
        g: sigmoid() from input
        y: multiply(input, g)
        divide(y, s)
    """)
    assert net.op("s").shape == (1, 1, 1)

    def ref(x, m):
        std = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True).add(1e-5).sqrt()
        return x * x.sigmoid() / std

    check(net, ref, tmp_path)


@pytest.mark.parametrize("body, code, words", [
    ("mean([3])", "E015", "`mean` axis 3 does not exist in a [4, 8, 8] tensor"),
    ("mean([1, -2])", "E015", "`mean` names axis 1 twice"),
    ("reduce_sum([])", "E015", "`reduce_sum` over no axes"),
    ("var([0], correction = 4)", "E015", "`var` of 4 values with correction 4 divides by 0"),
    ("std(axes = 1)", "E023", "must be a list of integers"),
    ("mean()", "E021", "`mean` needs the argument `axes`"),
    ("mean([1, 2], groups = 2)", "E015", "`mean` over channel groups must reduce axis 0"),
    ("var([0], groups = 3)", "E014", "groups = 3 does not divide 4 channels"),
    ("standardize([0, 3])", "E015", "`standardize` axis 3 does not exist in a [4, 8, 8] tensor"),
    ("standardize([], eps = 1e-3)", "E015", "`standardize` over no axes"),
    ("standardize([0], correction = 4)", "E015", "`standardize` of 4 values with correction 4 divides by 0"),
    ("standardize([1], eps = 0)", "E015", "eps"),
    ("standardize(eps = 1e-3)", "E021", "`standardize` needs the argument `axes`"),
])
def test_reduction_diagnostics(body, code, words):
    with pytest.raises(resdsl.SpecError) as err:
        _spec("[4, 8, 8]", body)
    [d] = err.value.diagnostics
    assert d.code == code and words in d.message, d.message


# ---------------------------------------------------------------- resdsl import


def test_import_writes_numbers_reductions_and_functions():
    import torch.nn.functional as F
    from torch import nn

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(1)

        def forward(self, x):
            x = self.conv(x)
            g = self.pool(x)
            y = 1.0 - (x * 0.5 + g)
            y = y / (g + 2) + 1.0 / (y + 1e-5)
            v = torch.rsqrt(x.var(1, keepdim=True) + 1) + F.group_norm(x, 1, eps=1e-3) + F.layer_norm(x, (8, 8))
            s = torch.sum(x, dim=(2, 3), keepdim=True).reciprocal()
            return y * v + s - x.mean(1, keepdim=True) + x.std(dim=(2, 3), correction=0, keepdim=True).sqrt()

    # from_torch loads the model's weights into the spec it writes and compares the outputs
    text = resdsl.from_torch(Model(), input_size=(3, 8, 8))
    for line in ("multiply(x1, 0.5)", "subtract(1.0, current)", "divide(1.0, current)", "var([0], keepdim = true)",
                 "reduce_sum([1, 2], keepdim = true)", "rsqrt()", "reciprocal()", "sqrt()",
                 "std([1, 2], keepdim = true, correction = 0)", "mean([0], keepdim = true)",
                 "standardize([0, 1, 2], eps = 0.001)", "standardize([1, 2])"):
        assert line in text, line
