"""The standard library's timm families written in `.res` (issue 22: std.regnet, std.cspnet,
std.repvgg, std.dpn, std.dla) against timm itself, in the reference environment.

Each timm model is built with random weights, then its norms' statistics and affine terms are
randomised (so that timm's zero-initialised last norms and RepVGG's identity norms hide no
branch); its ``state_dict`` must load into our build with ``strict=True`` and the outputs must
agree. The shipped specs (and the DPN family, which ships no spec) are also checked from the
generated PyTorch source and in onnxruntime. Parameter counts must be timm's, and MACs what
torch's own FLOP counter measures on timm's model (convolutions and matrix products, two FLOPs
per multiply-accumulate) at the same input. Other members of each family that no shipped spec
names are one-line calls of the same templates and must be timm's models too. Inputs are
64×64, so the whole file stays quick. Skipped (failed in CI's reference run) without timm.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_fuzz_backends import one_thread  # noqa: E402, F401  (autouse: small inputs, one thread)
from test_torch_compat import _need, _randomize, timm  # noqa: E402
from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402

SIZE = 64

#: Shipped specs, each timm's model of the same name.
SHIPPED = ["cspresnet50", "dla34", "regnety_016", "repvgg_a0", "dpn68"]

#: DPN members no spec ships, against timm's.
DPN = {
    "dpn68b": ("dpn(small = true, num_init_features = 10, k_r = 128, groups = 32, b = true, "
               "k_sec = [3, 4, 12, 3], inc_sec = [16, 32, 32, 64])", {}),
}


def test_timms_dpn_ends_in_a_relu_whatever_fc_act_layer_says():
    """Why std.dpn's `final_act` is a ReLU: timm's fc_act_layer does not reach the module."""
    for act in ("elu", "gelu"):
        model = _need(timm, "timm").create_model("dpn68", fc_act_layer=act)
        assert isinstance(model.features.conv5_bn_ac.bn.act, torch.nn.ReLU)

#: Members of the families that no shipped spec names: (the `.res` text, timm's keyword arguments).
ONE_LINERS = {
    "regnetx_002": ("import std.regnet\nnetwork v = regnet(w0 = 24, wa = 36.44, wm = 2.49, depth = 13, group_width = 8)",
                    {}),
    # timm's "avg" shortcut (not used by a registered post-activation RegNet): through timm's kwargs
    "regnetx_002-avg": ("import std.regnet\nnetwork v = regnet(w0 = 24, wa = 36.44, wm = 2.49, depth = 13, "
                        "group_width = 8, shortcut = regnet_avg_projection)", {"downsample": "avg"}),
    "regnetv_040": ("import std.regnet\nnetwork v = regnet(depth = 22, w0 = 96, wa = 31.41, wm = 2.24, "
                    "group_width = 64, se_ratio = 0.25, preact = true, act = silu)", {}),
    "regnetv_064": ("import std.regnet\nnetwork v = regnet(depth = 25, w0 = 112, wa = 33.22, wm = 2.27, "
                    "group_width = 72, se_ratio = 0.25, preact = true, act = silu, "
                    "shortcut = regnet_avg_projection)", {}),
    "regnetz_005": ("import std.regnet\nnetwork v = regnet(depth = 21, w0 = 16, wa = 10.7, wm = 2.51, group_width = 4, "
                    "bottle_ratio = 4.0, se_ratio = 0.25, shortcut = none, linear_out = true, "
                    "num_features = 1024, act = silu)", {}),
    "cspresnet50d": ('import "cspresnet50.res"\nnetwork v = cspresnet50 with (stem_widths = [32, 32, 64], '
                     "stem_kernel_size = 3)", {}),
    "cspresnext50": ('import "cspresnet50.res"\nnetwork v = cspresnet50 with (widths = [256, 512, 1024, 2048], '
                     "groups = 32, expand_ratio = 1.0, bottle_ratio = 1.0, block_ratio = 0.5)", {}),
    "cspdarknet53": ("import std.cspnet\nnetwork v = cspnet(depths = [1, 2, 8, 8, 4], "
                     "widths = [64, 128, 256, 512, 1024], stem_stride = 1, expand_ratio = [2.0, 1.0], "
                     "bottle_ratio = [0.5, 1.0], block_ratio = [1.0, 0.5], down_growth = true, "
                     "block = csp_dark_block)", {}),
    "cs3darknet_s": ("import std.cspnet\nnetwork v = cspnet(depths = [1, 3, 4, 1], widths = [64, 128, 256, 512], "
                     'stem_widths = [16, 32], block_ratio = 0.5, stage_type = "cs3", block = csp_dark_block, '
                     "act = silu)", {}),
    "darknet17": ("import std.cspnet\nnetwork v = cspnet(depths = [1, 1, 1, 1, 1], widths = [64, 128, 256, 512, 1024], "
                  'stem_stride = 1, bottle_ratio = 0.5, stage_type = "dark", block = csp_dark_block)', {}),
    "dla46_c": ("import std.dla\nnetwork v = dla(channels = [16, 32, 64, 64, 128, 256], block = dla_bottleneck)", {}),
    "dla60x": ("import std.dla\nnetwork v = dla(levels = [1, 1, 1, 2, 3, 1], channels = [16, 32, 128, 256, 512, 1024], "
               "block = dla_bottleneck, cardinality = 32, base_width = 4)", {}),
    "dla60_res2next": ("import std.dla\nnetwork v = dla(levels = [1, 1, 1, 2, 3, 1], "
                       "channels = [16, 32, 128, 256, 512, 1024], block = dla_bottle2neck, cardinality = 8, "
                       "base_width = 4)", {}),
    # trees of three and four levels, children handed down two levels, root shortcuts
    "dla102": ("import std.dla\nnetwork v = dla(levels = [1, 1, 1, 3, 4, 1], channels = [16, 32, 128, 256, 512, 1024], "
               "block = dla_bottleneck, shortcut_root = true)", {}),
    "repvgg_a1": ('import "repvgg_a0.res"\nnetwork v = repvgg_a0 with (widths = [64, 128, 256, 1280], '
                  "stem_width = 64)", {}),
    "repvgg_b1g4": ("import std.repvgg\nnetwork v = repvgg(depths = [4, 6, 16, 1], widths = [128, 256, 512, 2048], "
                    "stem_width = 64, groups = 4)", {}),
}



def _load(text: str, size: int = SIZE) -> resdsl.Network:
    """The main network of ``text`` (a spec beside the shipped ones) at ``size``×``size``."""
    name = text.rsplit("network ", 1)[1].split(" ", 1)[0]
    return resdsl.loads(f"{text}\nnetwork small = {name} with (image_size = {size})", path=str(SPECS / "variant.res"))


def _macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """timm's model measured by torch: convolutions and matrix products, 2 FLOPs per MAC."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x[:1])
    return counter.get_total_flops() // 2


def agrees_with(net: resdsl.Network, reference: torch.nn.Module, tmp_path, backends: bool = False,
                opsets: tuple[int | None, ...] = (None,), x: torch.Tensor | None = None) -> None:
    """``net`` is ``reference`` (eval mode, weights randomised by the caller): its parameter
    count and MACs, its state_dict loaded strictly, and its outputs in process and, with
    ``backends``, from the generated source and in onnxruntime (at each of ``opsets``), on
    ``x`` (by default a standard normal batch of two)."""
    state = reference.state_dict()
    if x is None:
        x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(1))
    assert net.params == sum(p.numel() for p in reference.parameters())
    assert net.macs == _macs(reference, x)
    ours = resdsl.build(net, seed=0).eval()
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        expected = reference(x)
        atol = 1e-5 * max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(ours(x), expected, rtol=1e-4, atol=atol)
        if backends:
            generated = getattr(import_source(emit(net), tmp_path, net.name), net.name)().eval()
            generated.load_state_dict(state, strict=True)
            torch.testing.assert_close(generated(x), expected, rtol=1e-4, atol=atol)
    if backends:
        ort = pytest.importorskip("onnxruntime")
        for opset in opsets:
            extra = {} if opset is None else {"opset": opset}
            session = ort.InferenceSession(onnx_graph.emit(net, weights=state, **extra),
                                           providers=["CPUExecutionProvider"])
            (got,) = session.run(None, {"input": x.numpy()})
            torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-3, atol=atol)


def _check(name: str, text: str, tmp_path, kwargs=None, backends: bool = False) -> None:
    reference = _need(timm, "timm").create_model(name.split("-")[0], pretrained=False, **(kwargs or {})).eval()
    _randomize(reference)
    agrees_with(_load(text), reference, tmp_path, backends)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_is_timms_model_in_process_source_and_onnxruntime(name, tmp_path):
    text = (SPECS / f"{name}.res").read_text(encoding="utf-8")
    _check(name, text, tmp_path, backends=True)
    # the count the spec's comment states is the spec's own
    assert f"{resdsl.load(SPECS / f'{name}.res').params:,} parameters (timm 1.0.31)" in text


@pytest.mark.parametrize("name", sorted(DPN))
def test_dpn_family_is_timms_dpn(name, tmp_path):
    text, kwargs = DPN[name]
    _check(name, f"import std.dpn\nnetwork v = {text}", tmp_path, kwargs, backends=True)


@pytest.mark.parametrize("name", sorted(ONE_LINERS))
def test_family_members_are_one_liners(name, tmp_path):
    text, kwargs = ONE_LINERS[name]
    _check(name, text, tmp_path, kwargs)
