"""Learned tensors (`param`) and the conv given its weights (`conv_with`), issue 22.

A spec's `param` is a torch ``nn.Parameter`` at the label's path, so a hand-written torch
module with the same attributes loads into the build with ``strict=True``; outputs agree
with that module in process, from the generated source and in onnxruntime. `conv_with` is
``F.conv2d`` and counts the MACs of the conv it is. Diagnostics for bad shapes and inits
are cases in ``tests/cases/invalid/`` (``param_*``, ``conv_with_*``).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from test_registry import import_source  # noqa: E402

import resdsl  # noqa: E402
from resdsl.backends import onnx_graph, torch_source  # noqa: E402
from resdsl.backends.torch_model import build  # noqa: E402

#: A user's own norm holding its tensors at the call's name, a top-level vector and a conv
#: whose weight is scaled by a learned gain before use.
SPEC = """
module scale_norm() {
    weight: param([in_channels, 1, 1], init = "ones")
    scale: param([1, 1, 1], init = "constant", value = 0.5)
    multiply(weight)
    multiply(current, scale)
}

network pnet {
    input [3, 12, 12]
    weight: param([8, 3, 3, 3], init = "kaiming")
    gain: param([8, 1, 1, 1], init = "ones")
    bias: param([8], init = "normal", std = 0.1)
    w: multiply(weight, gain)
    conv_with(w, bias, stride = 2, padding = 1)
    norm1: scale_norm()
    relu()
    dw: param([8, 2, 3, 3], init = "trunc_normal", std = 0.02)
    conv_with(dw, groups = 4, dilation = 2, padding = 2)
    v: param([8, 1, 1])
    multiply(v)
    global_avgpool()
    flatten()
    fc: linear(5)
}
"""


class Norm(torch.nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(c, 1, 1))
        self.scale = torch.nn.Parameter(torch.randn(1, 1, 1))

    def forward(self, x):
        return x * self.weight * self.scale


class Reference(torch.nn.Module):
    """The same network written by hand in torch."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(8, 3, 3, 3))
        self.gain = torch.nn.Parameter(torch.randn(8, 1, 1, 1))
        self.bias = torch.nn.Parameter(torch.randn(8))
        self.norm1 = Norm(8)
        self.dw = torch.nn.Parameter(torch.randn(8, 2, 3, 3))
        self.v = torch.nn.Parameter(torch.randn(8, 1, 1))
        self.fc = torch.nn.Linear(8, 5)

    def forward(self, x):
        x = F.conv2d(x, self.weight * self.gain, self.bias, stride=2, padding=1)
        x = F.relu(self.norm1(x))
        x = F.conv2d(x, self.dw, groups=4, dilation=2, padding=2) * self.v
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def net() -> resdsl.Network:
    return resdsl.loads(SPEC)


def test_state_dict_keys_are_the_labels_paths(net):
    model = build(net, seed=0)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {"weight": (8, 3, 3, 3), "gain": (8, 1, 1, 1), "bias": (8,), "norm1.weight": (8, 1, 1),
                      "norm1.scale": (1, 1, 1), "dw": (8, 2, 3, 3), "v": (8, 1, 1), "fc.weight": (5, 8),
                      "fc.bias": (5,)}
    assert shapes == onnx_graph.expected_state(net)
    # parameters, not buffers or submodules: the user's norm holds them itself
    assert dict(model.named_parameters()).keys() == shapes.keys()
    assert not list(model.norm1.children())
    assert net.params == sum(p.numel() for p in model.parameters()) == sum(Reference().state_dict()[k].numel()
                                                                           for k in shapes)


def test_counts_params_as_elements_and_conv_macs_as_conv(net):
    by_name = {op.name: op for op in net.ops}
    assert (by_name["weight"].params, by_name["weight"].macs) == (8 * 3 * 3 * 3, 0)
    assert by_name["norm1.weight"].params == 8
    assert not by_name["weight"].batched and not by_name["w"].batched and by_name["conv_with"].batched
    # the same conv as a `conv` layer counts the same MACs
    plain = resdsl.loads("network c {\n input [3, 12, 12]\n conv1: conv(8, 3, stride = 2, padding = 1, bias = true)\n}\n")
    assert by_name["conv_with"].macs == plain.ops[0].macs
    assert by_name["conv_with"].shape == plain.ops[0].shape == (8, 6, 6)
    grouped = by_name["conv_with#2"]
    assert grouped.shape == (8, 6, 6) and grouped.macs == 8 * 2 * 9 * 36


def test_a_torch_state_dict_loads_strictly_and_outputs_agree(net, tmp_path):
    reference = Reference().eval()
    state = reference.state_dict()
    x = torch.randn(2, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = reference(x)
    ours = build(net, seed=0).eval()
    ours.load_state_dict(state, strict=True)
    generated = getattr(import_source(torch_source.emit(net), tmp_path, "pnet"), net.name)().eval()
    generated.load_state_dict(state, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(generated(x), want, rtol=1e-5, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    for opset in (onnx_graph.MIN_OPSET, onnx_graph.DEFAULT_OPSET, onnx_graph.MAX_OPSET):
        proto = onnx_graph.build_model(net, weights=state, opset=opset)
        # each learned tensor is an initializer under its state_dict key, read by no extra node
        assert set(state) <= {t.name for t in proto.graph.initializer}
        assert "Identity" not in {n.op_type for n in proto.graph.node}
        session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_the_generated_module_holds_parameters_read_in_forward(net):
    text = torch_source.emit(net)
    assert "self.weight = nn.Parameter(torch.empty(8, 3, 3, 3))" in text
    assert "w = self.weight * self.gain" in text
    assert "F.conv2d(x, w, self.bias, stride=2, padding=1)" in text
    assert "nn.init.ones_(module.weight)" in text and "nn.init.constant_(module.scale, 0.5)" in text


def test_inits_are_as_the_spec_says(net):
    model = build(net, seed=3)
    state = model.state_dict()
    assert torch.equal(state["gain"], torch.ones(8, 1, 1, 1))
    assert torch.equal(state["norm1.weight"], torch.ones(8, 1, 1))
    assert torch.equal(state["norm1.scale"], torch.full((1, 1, 1), 0.5))
    assert torch.equal(state["v"], torch.zeros(8, 1, 1))
    assert 0.0 < state["bias"].std() < 0.3
    assert state["dw"].abs().max() <= 2.0 and 0.0 < state["dw"].std() < 0.05
    fan_out = 8 * 3 * 3
    assert 0.5 < state["weight"].std() / (2 / fan_out) ** 0.5 < 1.5
    # seeded: the same weights every time, and from the generated source
    again = build(net, seed=3).state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_transplant_takes_learned_tensors_by_name(net):
    state = Reference().state_dict()
    placed, report = resdsl.transplant(net, state)
    assert sorted(report.copied) == sorted(state)
    assert all(torch.equal(placed[k], state[k]) for k in state)


def test_conv_with_matches_f_conv2d_with_every_attribute(tmp_path):
    net = resdsl.loads("""network c {
    input [6, 11, 11]
    w: param([9, 2, 3, 5], init = "normal")
    conv_with(w, stride = 2, padding = 3, dilation = 2, groups = 3)
}
""")
    assert net.output_shape == (9, 7, 5)
    model = build(net, seed=1).eval()
    x = torch.randn(2, 6, 11, 11)
    with torch.no_grad():
        want = F.conv2d(x, model.state_dict()["w"], stride=2, padding=3, dilation=2, groups=3)
        torch.testing.assert_close(model(x), want)


def test_numbered_params_are_a_parameter_list(tmp_path):
    """`gains.{i}` is an nn.ParameterList (keys `b1.gains.0`), as torch code keeps tensors in lists."""
    net = resdsl.loads("""module blk() {
    for i in range(2) {
        gains.{i}: param([in_channels, 1, 1], init = "constant", value = 2.0)
    }
    height: param([in_channels, 1, 1], init = "ones")
    multiply(gains[0])
    multiply(current, gains[1])
    multiply(current, height)
}
network pnet {
    input [3, 8, 8]
    b1: blk()
    b2: blk()
}
""")
    model = build(net, seed=0)
    assert sorted(model.state_dict()) == sorted(f"{b}.{k}" for b in ("b1", "b2")
                                                for k in ("gains.0", "gains.1", "height"))
    assert isinstance(model.b1.gains, torch.nn.ParameterList)
    x = torch.randn(2, 3, 8, 8)
    generated = getattr(import_source(torch_source.emit(net), tmp_path, "lists"), net.name)(seed=0)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x * 16.0)
        torch.testing.assert_close(generated(x), x * 16.0)


def test_conv_with_applied_again_reads_the_same_weights():
    net = resdsl.loads("""network again {
    input [3, 8, 8]
    w: param([3, 3, 3, 3], init = "normal", std = 0.3)
    c: conv_with(w, padding = 1)
    c
}
""")
    model = build(net, seed=0).eval()
    w, x = model.state_dict()["w"], torch.randn(1, 3, 8, 8)
    assert net.params == w.numel() and net.macs == 2 * net.ops[1].macs
    with torch.no_grad():
        torch.testing.assert_close(model(x), F.conv2d(F.conv2d(x, w, padding=1), w, padding=1))
