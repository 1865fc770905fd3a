"""Re-parameterisation (issue 22, item 4): ``resdsl.reparameterize`` and ``compile --reparam``.

The deploy form must compute what the training form computes in eval mode, with batch norms'
statistics and affine terms away from their initial values (so no branch hides): in process,
from the generated source and in onnxruntime, on every shipped spec (those with batch norms
change; the ImageNet ones at 64×64, the larger ones marked slow) and on hand-written branch
trees that RepVGG does not cover (kernels of three sizes, dilation, groups, a bare identity,
branches that must not merge). In the reference environment, timm's repvgg_a0 after
``timm.utils.model.reparameterize_model`` is the oracle for the merged ``state_dict``'s keys
and values.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_fuzz_backends import one_thread  # noqa: E402, F401  (autouse: small inputs, one thread)
from test_onnx import FAST, assert_close, run_onnx, small, trained_like  # noqa: E402
from test_torch_compat import _need, _randomize, timm  # noqa: E402
from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPEC_NAMES, SPECS  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.diagnostics import Note  # noqa: E402
from resdsl.passes import foldable_batchnorms, reparameterize  # noqa: E402

#: Branch trees beyond RepVGG's: 5×5, dilated 3×3 and 1×1 convs with groups, a norm of the
#: input and the input itself, summed in two adds (`merged` names the merged conv); then a
#: block whose branches read different tensors, and one whose taps cannot line up.
TREES = """
network trees(size = 11) {
    input [3, size, size]
    stem: conv(8, 3)
    stem_bn: batchnorm()
    relu()
    pre: conv(8, 1)
    pre_bn: batchnorm()
    post: conv(8, 3, bias = true) from pre_bn
    post_bn: batchnorm() from post
    pc: conv(8, 1) from pre_bn
    add(post_bn, pc, pre_bn)
    x1: relu()
    a: conv(8, 5, groups = 2)
    a_bn: batchnorm()
    b: conv(8, 3, dilation = 2, groups = 2) from x1
    b_bn: batchnorm() from b
    c: conv(8, 1, groups = 2, bias = true) from x1
    n: batchnorm() from x1
    sum1: add(a_bn, b_bn)
    dp: drop_path(0.1)
    merged: add(dp, c, n, x1)
    x2: relu()
    d: conv(8, 3)
    d_bn: batchnorm()
    g: conv(8, 3, dilation = 2) from x2
    h: conv(8, 3) from x2
    add(g, h, d_bn)
    y: relu()
    e: conv(8, 1, stride = 2)
    e_bn: batchnorm()
    f: conv(8, 3, stride = 2) from y
    add(e_bn, f)
    global_avgpool()
    flatten()
    fc: linear(4)
}
"""


def _x(net: resdsl.Network, n: int = 2) -> torch.Tensor:
    return torch.randn(n, *net.input_shape, generator=torch.Generator().manual_seed(7))


def _same(got: torch.Tensor, ref: torch.Tensor) -> None:
    assert_close(got.detach().numpy(), ref.detach().numpy())


def _check_everywhere(net: resdsl.Network, model: torch.nn.Module, tmp_path: Path) -> torch.nn.Module:
    """The deploy form of ``model`` equals it in process, from the source and in onnxruntime."""
    x = _x(net)
    with torch.no_grad():
        ref = model.eval()(x)
        deploy = resdsl.reparameterize(model)
        assert not deploy.training
        _same(deploy(x), ref)
        generated = import_source(emit(net, reparam=True), tmp_path, "deploy").__dict__[net.name]()
        generated.load_state_dict(deploy.state_dict(), strict=True)
        _same(generated.eval()(x), ref)
    got = run_onnx(onnx_graph.emit(net, weights=model.state_dict(), reparam=True), x.numpy())
    assert_close(got, ref.numpy())
    return deploy


def test_branch_trees_merge_where_their_taps_line_up(tmp_path):
    net = resdsl.loads(TREES)
    plan = reparameterize(net)
    deploy_net = plan.network
    modules = set(deploy_net.modules())
    # 5×5 + dilated 3×3 + 1×1 (grouped) + norm of the input + the input, through a drop-path
    assert "merged" in modules and not {"a", "b", "c", "n", "a_bn", "b_bn"} & modules
    assert dict(deploy_net.op("merged").attrs)["kernel_size"] == 5
    assert deploy_net.op("merged").inputs == ("x1",)
    # the stride-2 pair merges too (the second default name); stem_bn, d_bn, pre_bn fold into their convs
    assert "reparam_conv" in modules and not {"e", "f", "stem_bn", "d_bn", "pre_bn"} & modules
    assert dict(deploy_net.op("stem").attrs)["bias"] and dict(deploy_net.op("d").attrs)["bias"]
    # a tree reading a norm that folds: the merged conv reads the conv the norm folded into
    assert deploy_net.op("reparam_conv").inputs == ("pre",)
    assert deploy_net.op("reparam_conv_2").inputs == ("y",)
    # a dilated 3×3 and a plain 3×3 do not line up: kept as they are
    assert {"g", "h"} <= modules
    # the counts are the registry's: 5×5×4 weights per output channel and a bias
    assert deploy_net.op("merged").params == 8 * 4 * 25 + 8
    assert deploy_net.params == sum(op.params for op in deploy_net.ops)
    assert reparameterize(deploy_net).merges == ()  # a fixed point
    model = trained_like(net)
    deploy = _check_everywhere(net, model, tmp_path)
    assert sum(p.numel() for p in deploy.parameters()) == deploy_net.params


@pytest.mark.parametrize("groups", [1, 4])
def test_repvgg_family_member(groups, tmp_path):
    """Stride-2 and identity blocks, grouped blocks (timm's g4 variants), with drop-path."""
    net = resdsl.loads(f"""import std.repvgg
network r = repvgg(depths = [2, 3], widths = [16, 32], stem_width = 16, groups = {groups},
                   drop_path_rate = 0.1, num_classes = 5, image_size = 24)""")
    model = trained_like(net)
    deploy = _check_everywhere(net, model, tmp_path)
    keys = [k.rpartition(".")[0] for k in deploy.state_dict()]
    assert all(k.endswith("reparam_conv") for k in keys if not k.startswith("head"))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in deploy.modules())


@st.composite
def branch_trees(draw) -> tuple[str, bool]:
    """A sum of 1 to 4 conv branches (kernel 1, 3 or 5, dilation 1 or 2, with or without a
    norm after, with or without a bias) of one tensor, with stride and groups, and where the
    shape keeps a norm of it and the tensor itself; and whether all its taps must line up."""
    groups = draw(st.sampled_from([1, 2]))
    c_in, c_out = 2 * draw(st.integers(1, 3)), 2 * draw(st.integers(1, 3))
    stride = draw(st.sampled_from([1, 1, 2]))
    lines, terms, dilations = [], [], []
    for i in range(draw(st.integers(1, 4))):
        k, d = draw(st.sampled_from([1, 3, 5])), draw(st.sampled_from([1, 1, 2]))
        bias = draw(st.booleans())
        lines.append(f"b{i}: conv({c_out}, {k}, stride = {stride}, dilation = {d}, groups = {groups}, "
                     f"bias = {str(bias).lower()}) from x")
        if k > 1:
            dilations.append(d)
        if draw(st.booleans()):
            lines.append(f"n{i}: batchnorm() from b{i}")
            terms.append(f"n{i}")
        else:
            terms.append(f"b{i}")
    if c_in == c_out and stride == 1:
        if draw(st.booleans()):
            lines.append("nx: batchnorm() from x")
            terms.append("nx")
        if draw(st.booleans()) or len(terms) == 1:
            terms.append("x")
    if len(terms) == 1:  # one branch: a sum needs two
        lines.append(f"b9: conv({c_out}, 1, stride = {stride}, groups = {groups}) from x")
        terms.append("b9")
    body = "\n    ".join(lines)
    spec = f"""network t {{
    input [{c_in}, 9, 9]
    stem: conv({c_in}, 3)
    x: relu()
    {body}
    add({", ".join(terms)})
    global_avgpool()
    flatten()
    fc: linear(3)
}}
"""
    return spec, len(set(dilations)) <= 1


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))
@given(branch_trees())
def test_random_branch_trees_merge_and_compute_the_same(case):
    spec, lines_up = case
    net = resdsl.loads(spec)
    model = trained_like(net)
    x = _x(net)
    with torch.no_grad():
        ref = model(x)
        deploy = resdsl.reparameterize(model)
        _same(deploy(x), ref)
    deploy_net = reparameterize(net).network
    if lines_up:  # one dilation among the wider kernels: every branch lands on the widest's taps
        assert [op.name for op in deploy_net.ops][:3] == ["stem", "x", "reparam_conv"], spec
    assert sum(p.numel() for p in deploy.parameters()) == deploy_net.params


def _spec_cases() -> list:
    return [n if n in FAST or n == "repvgg_a0" else pytest.param(n, marks=pytest.mark.slow) for n in SPEC_NAMES]


@pytest.mark.parametrize("name", _spec_cases())
def test_every_shipped_spec_equals_its_deploy_form(name, tmp_path):
    net = small(name)
    model = trained_like(net)
    x = _x(net)
    with torch.no_grad():
        ref = model(x)
        deploy = resdsl.reparameterize(model)
        _same(deploy(x), ref)
    plan = reparameterize(net)
    assert not foldable_batchnorms(plan.network)
    assert reparameterize(plan.network).merges == ()
    assert sum(p.numel() for p in deploy.parameters()) == plan.network.params
    # weight standardisation is recomputed at run time on both sides: test_onnx's tolerance for it
    scale = 1e-4 if any(op.kind == "std_conv" for op in net.ops) else 1e-5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Note)
        data = onnx_graph.emit(net, weights=model.state_dict(), reparam=True)
    # a network without batch norms (GroupNorm's) has nothing to merge, and is told so
    assert any("nothing to re-parameterise" in str(w.message) for w in caught) == (not plan.merges)
    assert_close(run_onnx(data, x.numpy()), ref.numpy(), scale=scale)


def test_timms_repvgg_a0_deploy_form(tmp_path):
    """Our deploy form of timm's weights is timm's deploy form: the same state_dict and the
    same outputs, in process, from the generated source and in onnxruntime."""
    timm_ = _need(timm, "timm")
    from timm.utils.model import reparameterize_model

    reference = timm_.create_model("repvgg_a0", pretrained=False).eval()
    _randomize(reference)
    train_state = reference.state_dict()
    deployed = reparameterize_model(reference).eval()
    expected_state = deployed.state_dict()
    text = (SPECS / "repvgg_a0.res").read_text(encoding="utf-8")
    net = resdsl.loads(f"{text}\nnetwork small = repvgg_a0 with (image_size = 64)",
                       path=str(SPECS / "variant.res"))
    ours = resdsl.build(net, seed=0)
    ours.load_state_dict(train_state, strict=True)
    deploy = resdsl.reparameterize(ours)
    state = deploy.state_dict()
    assert list(state) == list(expected_state)
    for key, value in expected_state.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=1e-5, msg=key)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = deployed(x)
        atol = 1e-5 * max(1.0, float(expected.abs().max()))
        torch.testing.assert_close(deploy(x), expected, rtol=1e-4, atol=atol)
        torch.testing.assert_close(reference(x), expected, rtol=1e-4, atol=atol)  # timm's own merge
        generated = import_source(emit(net, reparam=True), tmp_path, "repvgg_deploy").small()
        generated.load_state_dict(expected_state, strict=True)
        torch.testing.assert_close(generated.eval()(x), expected, rtol=1e-4, atol=atol)
    assert sum(p.numel() for p in deployed.parameters()) == reparameterize(net).network.params
    # the CLI: the training checkpoint in, timm's deploy graph out
    weights = tmp_path / "train.pt"
    torch.save(train_state, weights)
    spec = tmp_path / "small.res"
    spec.write_text(f"{text}\nnetwork small = repvgg_a0 with (image_size = 64)", encoding="utf-8")
    out = tmp_path / "deploy.onnx"
    assert main(["compile", str(spec), "--target", "onnx",
                 "--reparam", "--weights", str(weights), "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert {i.name for i in model.graph.initializer} == set(expected_state)
    assert not any(n.op_type == "BatchNormalization" for n in model.graph.node)
    torch.testing.assert_close(torch.from_numpy(run_onnx(str(out), x.numpy())), expected, rtol=1e-3, atol=atol)


def test_cli_reparam(tmp_path, capsys):
    spec = SPECS / "resnet20_cifar.res"
    assert main(["compile", str(spec), "--target", "torch", "--reparam"]) == 0
    source = capsys.readouterr().out
    assert "BatchNorm" not in source and "bias=False" not in source
    # where it means nothing: a clear error, exit status 2, nothing written
    out = tmp_path / "r.dot"
    assert main(["compile", str(spec), "--target", "dot", "--reparam", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "`--reparam` does not apply to --target dot" in err and "torch, onnx" in err
    assert "Traceback" not in err and not out.exists()
    # nothing to merge: said, and the same output
    gn = SPECS / "resnet50_gn.res"
    assert main(["compile", str(gn), "--target", "torch", "--reparam"]) == 0
    captured = capsys.readouterr()
    assert "has nothing to re-parameterise" in captured.err
    assert main(["compile", str(gn), "--target", "torch"]) == 0
    assert capsys.readouterr().out == captured.out


def test_bad_models_are_refused_clearly():
    with pytest.raises(TypeError, match="reparameterize: `model` is a module built by resdsl.build"):
        resdsl.reparameterize("resnet18")
    with pytest.raises(TypeError, match=r"reparameterize: `model` \(Linear\) was not built by resdsl.build"):
        resdsl.reparameterize(torch.nn.Linear(2, 2))
    net = resdsl.loads("import std.repvgg\nnetwork r = repvgg(depths = [1], widths = [8], stem_width = 8, "
                       "num_classes = 3, image_size = 16)")
    model = resdsl.build(net, seed=0)
    model.stem.conv_kxk.bn = torch.nn.Identity()  # a user's change the network does not know
    with pytest.raises(ValueError, match="stem.conv_kxk.bn.weight.*was a layer of the model replaced"):
        resdsl.reparameterize(model)


def test_network_in_network_out_and_features():
    """Given a Network, the pass's network (for stats, tables, figures); a feature extractor
    stays one."""
    net = small("repvgg_a0")
    deploy_net = resdsl.reparameterize(net)
    assert isinstance(deploy_net, resdsl.Network) and deploy_net.params < net.params
    assert deploy_net.output_shape == net.output_shape
    model = trained_like(net)
    features = resdsl.build(net, seed=0, out_indices=(1, 3))
    features.load_state_dict({k: v for k, v in model.state_dict().items() if k in features.state_dict()})
    x = _x(net)
    with torch.no_grad():
        ref = features.eval()(x)
        got = resdsl.reparameterize(features)(x)
    assert len(got) == len(ref) == 2
    for a, b in zip(got, ref, strict=True):
        _same(a, b)


def test_dtype_is_kept_and_float64_merges_exactly():
    net = resdsl.loads("import std.repvgg\nnetwork r = repvgg(depths = [2], widths = [8], stem_width = 8, "
                       "num_classes = 3, image_size = 16)")
    model = trained_like(net).double()
    x = _x(net).double()
    with torch.no_grad():
        deploy = resdsl.reparameterize(model)
        assert {p.dtype for p in deploy.parameters()} == {torch.float64}
        torch.testing.assert_close(deploy(x), model(x), rtol=0, atol=1e-12)
