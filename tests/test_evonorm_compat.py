"""EvoNorm-S0 written in `.res` (std.resnetv2's `evonorm_s0`: param, reductions over channel
groups, sigmoid, multiply/divide with broadcasting) and timm's resnetv2_50d_evos built on it,
against timm itself in the reference environment (skipped, or failed where
RESDSL_REQUIRE_REFERENCE=1, without timm).

timm's EvoNorm2dS0 starts at weight 1, bias 0, v 1: those are randomised first, so a wrong
group, eps, gate or scale shows. The state_dict must load with ``strict=True`` and the
outputs agree in process, from the generated source and in onnxruntime; parameter counts and
MACs must be timm's (MACs as torch's FLOP counter measures timm's model).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_families_compat import SIZE, _load, _macs  # noqa: E402
from test_fuzz_backends import one_thread  # noqa: E402, F401  (autouse: small inputs, one thread)
from test_torch_compat import _need, timm  # noqa: E402
from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402


def _randomize(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__.startswith("EvoNorm"):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
                if m.v is not None:
                    m.v.copy_(torch.rand(m.v.shape, generator=gen) + 0.5)


def _agree(net: resdsl.Network, reference: torch.nn.Module, x: torch.Tensor, tmp_path, name: str) -> None:
    _randomize(reference)
    reference.eval()
    state = reference.state_dict()
    ours = resdsl.build(net, seed=0).eval()
    ours.load_state_dict(state, strict=True)
    generated = getattr(import_source(emit(net), tmp_path, name), net.name)().eval()
    generated.load_state_dict(state, strict=True)
    with torch.no_grad():
        want = reference(x).reshape(x.shape[0], *net.output_shape)
        atol = 1e-5 * max(1.0, float(want.abs().max()))
        torch.testing.assert_close(ours(x), want, rtol=1e-4, atol=atol)
        torch.testing.assert_close(generated(x), want, rtol=1e-4, atol=atol)
    ort = pytest.importorskip("onnxruntime")
    for opset in (onnx_graph.MIN_OPSET, onnx_graph.DEFAULT_OPSET, onnx_graph.MAX_OPSET):
        session = ort.InferenceSession(onnx_graph.emit(net, weights=state, opset=opset),
                                       providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {"input": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-3, atol=atol)


class _Named(torch.nn.Module):
    def __init__(self, layer: torch.nn.Module):
        super().__init__()
        self.norm = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


@pytest.mark.parametrize("args, kwargs", [
    ("", {}),
    ("group_size = 16", {"group_size": 16}),
    ("groups = 8, eps = 1e-3", {"groups": 8, "eps": 1e-3}),
    ("apply_act = false", {"apply_act": False}),
])
def test_evonorm_s0_is_timms(args, kwargs, tmp_path):
    layers = _need(timm, "timm").layers
    net = resdsl.loads(f"import std.resnetv2\nnetwork t {{\n    input [64, 7, 6]\n    norm: evonorm_s0({args})\n}}\n",
                       path=str(SPECS / "t.res"))
    assert sorted(k for k in resdsl.build(net, seed=0).state_dict()) == \
        (["norm.bias", "norm.v", "norm.weight"] if kwargs.get("apply_act", True) else ["norm.bias", "norm.weight"])
    x = torch.randn(2, 64, 7, 6, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    _agree(net, _Named(layers.EvoNorm2dS0(64, **kwargs)), x, tmp_path, "evonorm")


def test_resnetv2_50d_evos_is_timms(tmp_path):
    name = "resnetv2_50d_evos"
    text = (SPECS / f"{name}.res").read_text(encoding="utf-8")
    reference = _need(timm, "timm").create_model(name, pretrained=False).eval()
    net = _load(text)
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    assert net.params == sum(p.numel() for p in reference.parameters())
    assert net.macs == _macs(reference, x)
    assert f"{resdsl.load(SPECS / f'{name}.res').params:,} parameters (timm 1.0.31)" in text
    _agree(net, reference, x, tmp_path, name)
