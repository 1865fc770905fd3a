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

from test_families_compat import _load, agrees_with  # noqa: E402
from test_fuzz_backends import one_thread  # noqa: E402, F401  (autouse: small inputs, one thread)
from test_torch_compat import _need, timm  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402


def _randomize(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if type(m).__name__.startswith("EvoNorm"):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.75)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
                if m.v is not None:
                    m.v.copy_(torch.rand(m.v.shape, generator=gen) + 0.5)


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
    # off-centre, so a std taken about zero instead of the group's mean shows
    x = torch.randn(2, 64, 7, 6, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    reference = _Named(layers.EvoNorm2dS0(64, **kwargs))
    _randomize(reference)
    agrees_with(net, reference.eval(), tmp_path, backends=True, x=x,
                opsets=(onnx_graph.MIN_OPSET, onnx_graph.DEFAULT_OPSET, onnx_graph.MAX_OPSET))


def test_resnetv2_50d_evos_is_timms(tmp_path):
    name = "resnetv2_50d_evos"
    text = (SPECS / f"{name}.res").read_text(encoding="utf-8")
    reference = _need(timm, "timm").create_model(name, pretrained=False).eval()
    _randomize(reference)
    assert f"{resdsl.load(SPECS / f'{name}.res').params:,} parameters (timm 1.0.31)" in text
    agrees_with(_load(text), reference, tmp_path, backends=True,
                opsets=(onnx_graph.MIN_OPSET, onnx_graph.DEFAULT_OPSET, onnx_graph.MAX_OPSET))
