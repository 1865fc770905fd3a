"""The in-process torch module against the IR and against torch's own behaviour."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from test_torch_source import variant  # noqa: E402
from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPEC_NAMES, SPECS, load_spec  # noqa: E402
from resdsl.backends.torch_model import build, fold_batchnorms, values  # noqa: E402
from resdsl.passes import foldable_batchnorms  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device in this environment")


def randomize_batchnorms(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.25)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)


# ---------------------------------------------------------------- oracles for every spec


def small(name: str) -> resdsl.Network:
    """The spec at the smallest input its stages allow: CIFAR specs at their 32×32,
    ImageNet specs at 64×64 (loaded with an overridden ``image_size``)."""
    net = load_spec(name)
    return net if net.input_shape[-1] <= 64 else variant(name, "image_size = 64")


#: ResNet-1202 and pre-activation ResNet-1001 repeat the blocks of ResNet-110 and
#: pre-activation ResNet-164 (which run by default); they take ~30 s each here.
DEEP = {"resnet1202_cifar", "preact_resnet1001_cifar"}


#: Specs whose learned tensors are sized by the input (BoTNet's relative position tables, as
#: timm's): fewer parameters at 64×64 than published at their own size.
INPUT_SIZED = {"botnet26t_256"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else n
                                  for n in SPEC_NAMES])
def test_parameter_count_and_every_shape_equal_the_ir(name):
    net = small(name)
    # built on the meta device and given uninitialised memory: no time spent on init, and
    # only shapes matter here
    with torch.device("meta"):
        model = build(net)
    assert sum(p.numel() for p in model.parameters()) == net.params
    if name not in INPUT_SIZED:  # == published
        assert net.params == load_spec(name).params
    model = model.to_empty(device="cpu").eval()
    with torch.no_grad():
        found = values(model, torch.randn(1, *net.input_shape))
    modules = [op for op in net.ops if op.module is not None]
    assert set(found) == {"input", *(op.name for op in modules)}
    for op in modules:  # a learned tensor (`param`) has no batch axis
        assert tuple(found[op.name].shape) == ((1,) if op.batched else ()) + op.shape, op.name
    assert model(torch.randn(1, *net.input_shape)).shape == (1, *net.output_shape)


# ---------------------------------------------------------------- initialisation


def test_initialisation_is_torchvisions_and_seeded():
    net = load_spec("resnet50d")
    a, b = build(net, seed=1), build(net, seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.fc.weight, build(net, seed=2).fc.weight)
    # Kaiming normal, fan_out mode: std = sqrt(2 / (out_channels * k * k))
    w = a.get_submodule("layer3.0.conv2").weight
    w = w.detach()
    assert float(w.std()) == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)
    assert float(w.mean()) == pytest.approx(0.0, abs=2e-3)
    bn = a.get_submodule("layer1.0.bn1")
    assert torch.equal(bn.weight, torch.ones(64)) and torch.equal(bn.bias, torch.zeros(64))
    # resnet50d asks for zero_init_last (timm's default): every bn3 starts at 0
    assert all(not m.weight.any() for n, m in a.named_modules() if n.endswith(".bn3"))
    assert a.get_submodule("layer1.0.downsample.2").weight.all()


def test_seed_leaves_the_global_random_state_alone():
    torch.manual_seed(3)
    before = torch.rand(1)
    torch.manual_seed(3)
    build(load_spec("resnet20_cifar"), seed=0)
    assert torch.equal(torch.rand(1), before)


# ---------------------------------------------------------------- train / eval, stochastic depth


def test_train_updates_bn_statistics_and_eval_does_not():
    model = build(load_spec("resnet20_cifar"))
    bn = model.get_submodule("bn1")
    x = torch.randn(4, 3, 32, 32) * 3 + 1
    model.train()
    model(x)
    moved = bn.running_mean.clone()
    assert moved.abs().sum() > 0 and int(bn.num_batches_tracked) == 1
    model.eval()
    model(x)
    assert torch.equal(bn.running_mean, moved)
    out = model(x).sum()
    out.backward()
    assert model.get_submodule("fc").weight.grad is not None


def test_stochastic_depth_follows_the_spec_schedule():
    net = variant("resnet20_cifar", "drop_path_rate = 0.4")
    model = build(net)
    rates = {n: m.p for n, m in model.named_modules() if type(m).__name__ == "DropPath"}
    # timm's schedule: block i of n gets rate * i / (n - 1); a block with rate 0 has no drop_path
    expected = {f"layer{s + 1}.{b}.drop_path": 0.4 * (3 * s + b) / 8 for s in range(3) for b in range(3)}
    expected.pop("layer1.0.drop_path")
    assert rates.keys() == expected.keys()
    assert all(rates[k] == pytest.approx(expected[k]) for k in rates)


def test_drop_path_zeroes_whole_samples_in_training_only():
    net = variant("resnet20_cifar", "drop_path_rate = 0.9")
    model = build(net)
    layer = model.get_submodule("layer3.2.drop_path")
    keep = 1 - layer.p
    x = torch.ones(512, 4, 2, 2)
    layer.train()
    torch.manual_seed(0)
    y = layer(x)
    per_sample = y.flatten(1)
    # each sample is either dropped entirely or scaled by 1 / keep
    assert all(bool((row == 0).all()) or torch.allclose(row, torch.full_like(row, 1 / keep)) for row in per_sample)
    dropped = float((per_sample[:, 0] == 0).float().mean())
    assert dropped == pytest.approx(layer.p, abs=0.06)
    layer.eval()
    assert torch.equal(layer(x), x)


# ---------------------------------------------------------------- toolbox


def test_torch_compile_fullgraph_and_fx():
    net = load_spec("resnet20_cifar")
    model = build(net).eval()
    x = torch.randn(2, 3, 32, 32)
    reference = model(x)
    # the graph-capture part of torch.compile: fullgraph fails on any graph break
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x), reference, atol=1e-6)
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), reference)
    assert any(n.op == "call_function" and "zero_pad" in str(n.target) for n in traced.graph.nodes)


@pytest.mark.slow
def test_torch_compile_inductor():
    net = load_spec("resnet20_cifar")
    model = build(net).eval()
    x = torch.randn(2, 3, 32, 32)
    compiled = torch.compile(model, fullgraph=True)
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


def test_channels_last_and_reduced_precision():
    net = variant("resnet50d", "depths = [1, 1, 1, 1], image_size = 64")
    model = build(net).eval()
    randomize_batchnorms(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)
        cl = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(cl(x.to(memory_format=torch.channels_last)), reference,
                                   rtol=1e-4, atol=1e-4)
        scale = float(reference.abs().max())
        # torch before 2.2 has no float16 convolution on the CPU (the floor job's torch 2.1)
        half = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 2)
        for dtype in (torch.bfloat16, torch.float16)[:1 + half]:
            low = build(net).eval()
            low.load_state_dict(model.state_dict())
            y = low.to(dtype)(x.to(dtype))
            assert y.dtype == dtype
            # a few mantissa bits over ~20 layers: agree to a few percent of the output's scale
            assert float((y.float() - reference).abs().max()) < 0.05 * scale


@cuda
@pytest.mark.gpu
def test_cuda_forward_backward_matches_cpu():
    net = load_spec("resnet20_cifar")
    model = build(net).eval()
    x = torch.randn(2, 3, 32, 32)
    expected = model(x)
    gpu = model.cuda()
    torch.testing.assert_close(gpu(x.cuda()).cpu(), expected, rtol=1e-3, atol=1e-3)
    gpu.train()
    gpu(x.cuda()).sum().backward()


# ---------------------------------------------------------------- features and folding


def test_out_indices_give_stage_outputs_like_timm_features_only():
    net = load_spec("resnet50")
    with torch.device("meta"):
        model = build(net, out_indices=(0, 1, 2, 3, 4))
        feats = model(torch.empty(1, 3, 224, 224))
    # timm's resnet50 feature_info: act1, layer1..layer4
    assert [f.shape[1] for f in feats] == [64, 256, 512, 1024, 2048]
    assert [i["reduction"] for i in model.feature_info] == [2, 4, 8, 16, 32]
    assert [f.shape[-1] for f in feats] == [112, 56, 28, 14, 7]
    small = build(net, out_indices=(2, -1))
    assert small.feature_info.module_name() == ["layer2", "layer4"]
    assert [i["op"] for i in small.feature_info] == ["layer2.3.relu#3", "layer4.2.relu#3"]
    with pytest.raises(ValueError, match="out of range"):
        build(net, out_indices=(5,))


def test_out_indices_stop_after_the_last_stage_asked_for():
    net = load_spec("resnet20_cifar")
    model = build(net, out_indices=(1,)).eval()
    full = build(net).eval()
    model.load_state_dict({k: v for k, v in full.state_dict().items() if k in model.state_dict()})
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        (f,) = model(x)
        assert torch.equal(f, values(full, x)["layer1.2.relu#2"])
    # only what the feature needs is built: the stem and layer1 (as timm's features_only)
    assert [name for name, _ in model.named_children()] == ["conv1", "bn1", "relu", "layer1"]
    assert sum(p.numel() for p in model.parameters()) == \
        sum(op.params for op in net.ops if op.name.split(".")[0] in ("conv1", "bn1", "layer1"))


def test_fold_batchnorms_keeps_outputs():
    net = variant("resnet50d", "depths = [2, 1, 1, 1], image_size = 64")
    model = build(net).eval()
    randomize_batchnorms(model)
    folded = fold_batchnorms(model)
    bns = [m for m in folded.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == sum(1 for op in net.ops if op.kind == "batchnorm") - len(foldable_batchnorms(net))
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-4,
                                   atol=1e-5 * max(1.0, float(expected.abs().max())))


def test_fold_batchnorms_skips_bns_that_are_not_after_a_conv():
    # pre-activation: every BN but none of the stem's follows an add or the input, not a conv
    net = variant("preact_resnet164_cifar", "depths = [2, 2, 2]")
    model = build(net).eval()
    randomize_batchnorms(model)
    folded = fold_batchnorms(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert "layer1.1.bn1.weight" in folded.state_dict()  # after an add: kept


def test_build_accepts_a_path(tmp_path):
    model = resdsl.build("specs/resnet20_cifar.res", seed=0)
    assert isinstance(model, nn.Module)
    assert sum(p.numel() for p in model.parameters()) == 269_722


def test_top_level_build_takes_a_path_and_out_indices():
    """The README's example: `resdsl.build(path, out_indices=...)` returns the stage outputs."""
    net = load_spec("resnet20_cifar")
    model = resdsl.build(SPECS / "resnet20_cifar.res", seed=0, out_indices=(1, 2, 3)).eval()
    with torch.no_grad():
        feats = model(torch.zeros(2, 3, 32, 32))
    stages = [s for s in net.root.children if s.role is resdsl.Role.STAGE]
    assert [tuple(f.shape[1:]) for f in feats] == [net.shape_of(s.output) for s in stages]


def test_feature_reductions_are_strides_not_size_ratios():
    # timm's feature_info for resnet50 gives reductions 2, 4, 8, 16, 32 whatever the input
    # size; at 200×200 the maps are 100, 50, 25, 13, 7 wide, so a size ratio would be wrong.
    text = (SPECS / "resnet50.res").read_text() + "\nnetwork v = resnet50 with (image_size = 200)\n"
    net = resdsl.loads(text, path=str(SPECS / "resnet50.res"))
    model = resdsl.build(net, out_indices=(0, 1, 2, 3, 4))
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    assert [net.shape_of(f["op"])[-1] for f in model.feature_info] == [100, 50, 25, 13, 7]
