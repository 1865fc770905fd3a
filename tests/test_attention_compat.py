"""Attention written in `.res` with the tensor ops (issue 22): std.byobnet's global-context
and bottleneck self-attention (BoTNet) blocks and the shipped gcresnet50t and botnet26t_256
against timm's ByobNet models, in the reference environment.

As in test_families_compat: timm's model gets random weights with its norms randomised, its
``state_dict`` must load into our build with ``strict=True``, and the outputs must agree in
process, from the generated PyTorch source and in onnxruntime; parameters must be timm's and
MACs what torch's FLOP counter measures on timm's model (the attention pooling's and the
self-attention's matrix products included). Skipped (failed in CI's reference run) without timm.
"""

from __future__ import annotations

import dataclasses

import pytest

torch = pytest.importorskip("torch")

from test_families_compat import SIZE, _load, _macs, agrees_with  # noqa: E402
from test_fuzz_backends import one_thread  # noqa: E402, F401  (autouse: small inputs, one thread)
from test_torch_compat import _need, _randomize, timm  # noqa: E402
from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402

_GCA = "attn = global_context with (fuse_add = true, fuse_scale = false)"

#: timm's byobnet config (by model name, with changed fields) → the `.res` text of the same network.
MEMBERS = {
    # timm's GlobalContext as it defaults (the context scales the input through a gate), on
    # gcresnet50t's network: no timm model name uses it, so the config is changed
    "gcresnet50t-gc": ({"attn_layer": "gc"}, "import std.byobnet\nnetwork v = byobnet(attn = global_context)"),
    "gcresnext26ts": ({}, "import std.byobnet\nnetwork v = byobnet(depths = [2, 2, 2, 2], group_size = 32, "
                          f"stem_pool = true, act = silu, {_GCA})"),
    # self-attention blocks between bottlenecks in a stage, SiLU
    "botnet50ts_256": ({}, "import std.byobnet\nnetwork v = byobnet(stem_pool = true, act = silu, self_attn_blocks = "
                           "[[], [false, false, false, true], [false, true, false, true, false, true], "
                           "[false, true, false]])"),
    # BottleneckAttn's options: a given head width, q/k/v bias, the position logits scaled too
    "botnet26t-opts": ({"self_attn_kwargs": {"dim_head": 16, "qkv_bias": True, "scale_pos_embed": True}},
                       "import std.byobnet\nnetwork v = byobnet(depths = [2, 2, 2, 2], stem_pool = true, "
                       "self_attn_blocks = [[], [], [false, true], [true, true]], self_attn = bottleneck_attn "
                       "with (dim_head = 16, qkv_bias = true, scale_pos_embed = true))"),
}


def _reference(name: str, changes: dict) -> torch.nn.Module:
    """timm's model at the test's input size (self-attention sizes its position tables by it)."""
    found = _need(timm, "timm")  # skipped without timm, failed where the reference is required
    if not changes:
        return found.create_model(name, pretrained=False, img_size=SIZE)
    from timm.models import byoanet, byobnet

    base = name.split("-")[0]
    cfg = dataclasses.replace({**byobnet.model_cfgs, **byoanet.model_cfgs}[base], **changes)
    return byobnet.ByobNet(cfg, img_size=SIZE)


def _check(reference: torch.nn.Module, text: str, tmp_path, backends: bool) -> resdsl.Network:
    reference = reference.eval()
    _randomize(reference)
    net = _load(text)
    agrees_with(net, reference, tmp_path, backends)
    return net


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_global_context_members_are_timms(name, tmp_path):
    changes, text = MEMBERS[name]
    _check(_reference(name, changes), text, tmp_path, backends=name.endswith(("-gc", "-opts")))


#: Shipped specs, each timm's model of the same name.
SHIPPED = ["gcresnet50t", "botnet26t_256"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_is_timms_model_in_process_source_and_onnxruntime(name, tmp_path):
    text = (SPECS / f"{name}.res").read_text(encoding="utf-8")
    _check(_reference(name, {}), text, tmp_path, backends=True)
    # the count the spec's comment states is the spec's own
    assert f"{resdsl.load(SPECS / f'{name}.res').params:,} parameters (timm 1.0.31)" in text


@pytest.mark.parametrize("stride, scale_pos_embed", [(1, False), (2, True)])
def test_bottleneck_attn_on_a_non_square_input_is_timms(stride, scale_pos_embed, tmp_path):
    """The layer alone on 8×6 (its two tables of different lengths): timm's BottleneckAttn
    with its weights, in process, from the generated source and in onnxruntime; MACs as torch
    counts timm's (q·k, attention·v and the two tables' products)."""
    _need(timm, "timm")
    from timm.layers.bottleneck_attn import BottleneckAttn

    reference = BottleneckAttn(64, feat_size=(8, 6), stride=stride, scale_pos_embed=scale_pos_embed).eval()
    state = {f"attn.{k}": v for k, v in reference.state_dict().items()}
    net = resdsl.loads(f"import std.byobnet\nnetwork t {{\n    input [64, 8, 6]\n    attn: bottleneck_attn("
                       f"stride = {stride}, scale_pos_embed = {str(scale_pos_embed).lower()})\n}}\n",
                       path=str(SPECS / "variant.res"))
    x = torch.randn(2, 64, 8, 6, generator=torch.Generator().manual_seed(1))
    assert net.params == sum(p.numel() for p in reference.parameters())
    assert net.macs == _macs(reference, x)
    ours = resdsl.build(net, seed=0).eval()
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-5)
        generated = import_source(emit(net), tmp_path, net.name).t().eval()
        generated.load_state_dict(state, strict=True)
        torch.testing.assert_close(generated(x), expected, rtol=1e-5, atol=1e-5)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(onnx_graph.emit(net, weights=state), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
