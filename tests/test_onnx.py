"""The ONNX back end against torch, onnx's checker and onnxruntime.

The oracle is the torch back end's module in eval mode, run by torch, and the ONNX graph
run by onnxruntime (CPU) with the same weights. Fresh BNs are the identity in eval mode,
so every model here gets random BN scales and shifts and running statistics measured on a
batch (as after training): a graph that skipped or mangled a BN would not match.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import resdsl
from conftest import SPEC_NAMES, SPECS
from resdsl.backends import BackendError, OptionError, onnx_graph
from resdsl.backends.torch_model import build
from resdsl.ir import Network
from resdsl.passes import foldable_batchnorms

# The default run covers each kind of network once (option A, pre-activation, wide, basic,
# bottleneck, ResNet-D, SE); the rest, big or deep or like one of those, run in the slow set.
FAST = {"resnet20_cifar", "resnet32_cifar", "preact_resnet164_cifar", "wrn16_8_cifar", "resnet18",
        "resnet50", "resnet50d", "seresnet50"}

PRIMS = """
network prims(size = 33) {
    input [3, size, size]
    c1: conv(8, 3, stride = 2, bias = true)
    bn1: batchnorm(eps = 0.1)
    a1: relu6()
    c2: conv(16, 3, dilation = 2, groups = 4)
    bn2: batchnorm()
    gelu()
    c3: conv(16, 3)
    a3: silu()
    hardswish()
    b: leaky_relu(0.2)
    sigmoid()
    t: tanh()
    drop_path(0.2)
    dropout(0.3)
    identity()
    p1: maxpool(3, stride = 2, padding = 1, ceil_mode = true)
    p2: avgpool(3, stride = 2, padding = 1, ceil_mode = true, count_include_pad = true)
    z: zeropad(24, stride = 2)
    r: relu()
    g: global_avgpool()
    gc: conv(24, 1, bias = true)
    gate: sigmoid()
    se: multiply(r)
    add(se, r, z)
    p3: avgpool(2, stride = 1, ceil_mode = true, count_include_pad = false)
    p4: maxpool(2, stride = 2, ceil_mode = true)
    flatten()
    fc1: linear(7, bias = false)
    fc2: linear(5)
}
"""


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These models are small: on a busy machine torch's thread pool costs more than it
    saves (10× slower at 2 threads on 2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(name: str) -> Network:
    """A shipped spec at a small input: CIFAR specs as they are, ImageNet ones at 64×64."""
    path = SPECS / f"{name}.res"
    if name.endswith("_cifar"):
        return resdsl.load(path)
    return resdsl.loads(path.read_text() + f"\nnetwork small = {name} with (image_size = 64)",
                        path=str(path))


def trained_like(net: Network, seed: int = 0) -> torch.nn.Module:
    """The torch module with random BN affine parameters and running statistics measured
    on a random batch (so deep networks neither vanish nor overflow), in eval mode."""
    model = build(net, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for bn in bns:
        bn.weight.data.uniform_(0.5, 1.5, generator=g)
        bn.bias.data.normal_(0.0, 0.2, generator=g)
        bn.momentum = 1.0  # running stats := this batch's
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *net.input_shape, generator=g))
    for bn in bns:
        bn.momentum = 0.1
        # A floor under the variances: a channel almost constant on the batch would scale
        # float rounding up by 1/√eps and test the calibration, not the graph.
        bn.running_var.add_(bn.running_var.mean())
    return model.eval()


@lru_cache(maxsize=1)
def case(name: str) -> tuple[Network, dict, np.ndarray, np.ndarray]:
    net = small(name)
    model = trained_like(net)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model(x).numpy()
    return net, model.state_dict(), x.numpy(), ref


def run_onnx(model: bytes | str, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def assert_close(got: np.ndarray, ref: np.ndarray, scale: float = 1e-5) -> None:
    """Equal to ``rtol`` 1e-3, and to ``scale`` of the largest output in absolute terms."""
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=scale * max(1.0, float(np.abs(ref).max())))


def assert_valid(model: onnx.ModelProto, net: Network) -> None:
    """The checker passes, strict shape inference passes, and the inferred shape of every
    tensor named after an op is that op's IR shape."""
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    shapes = {v.name: [d.dim_value or d.dim_param for d in v.type.tensor_type.shape.dim]
              for v in [*inferred.graph.value_info, *inferred.graph.output]}
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = batch.dim_value or batch.dim_param
    produced = {o for node in model.graph.node for o in node.output}
    names = {op.name for op in net.ops}
    for op in net.ops:
        tensor = "output" if op.name == net.output else op.name
        if tensor in produced:
            # a tensor computed from learned ones (a standardised weight) has no batch axis
            assert shapes[tensor] == ([batch] if op.batched else []) + list(op.shape), op.name
    assert {n for n in produced if "/" not in n} <= names | {"output"}


def _spec_cases() -> list:
    return [pytest.param(name, fold, marks=[] if name in FAST else [pytest.mark.slow])
            for name in SPEC_NAMES for fold in (False, True)]


@pytest.mark.parametrize("name, fold", _spec_cases())
def test_every_spec_matches_torch_in_onnxruntime(name, fold):
    net, state, x, ref = case(name)
    data = onnx_graph.emit(net, weights=state, fold_bn=fold)
    model = onnx.load_from_string(data)
    assert_valid(model, net)
    kinds = Counter(n.op_type for n in model.graph.node)
    spec_bns = sum(op.kind == "batchnorm" for op in net.ops)
    if fold:
        assert kinds["BatchNormalization"] == spec_bns - len(foldable_batchnorms(net))
    else:
        assert kinds["BatchNormalization"] == spec_bns
    # Weight standardisation is recomputed in float32 at run time on both sides, by
    # InstanceNormalization here and batch_norm in torch: over BiT's 50 layers the outputs
    # differ by 1.7e-5 to 2.3e-5 of the largest (four seeds), too close to 1e-5 for any one
    # element small enough to miss rtol
    std_conv = any(op.kind == "std_conv" for op in net.ops)
    assert_close(run_onnx(data, x), ref, scale=1e-4 if std_conv else 1e-5)


@pytest.mark.parametrize("opset", range(onnx_graph.MIN_OPSET, onnx_graph.MAX_OPSET + 1))
def test_every_primitive_at_every_opset(opset):
    for size in (33, 34):
        net = resdsl.loads(PRIMS + f"\nnetwork p = prims with (size = {size})")
        model_t = trained_like(net)
        x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            ref = model_t(x).numpy()
        for fold in (False, True):
            model = onnx_graph.build_model(net, weights=model_t.state_dict(), opset=opset, fold_bn=fold)
            assert model.opset_import[0].version == opset
            assert_valid(model, net)
            kinds = Counter(n.op_type for n in model.graph.node)
            assert kinds["Gelu"] == (opset >= 20) and kinds["Erf"] == (opset < 20)
            assert kinds["HardSwish"] == (opset >= 14)
            assert not {"Dropout", "Identity"} & set(kinds)
            assert_close(run_onnx(model.SerializeToString(), x.numpy()), ref)


POOLS = [(size, k, s, p, ceil, cip) for size in (4, 5, 6, 7) for k in (1, 2, 3) for s in (1, 2, 3)
         for p in range(k // 2 + 1) for ceil in (False, True) for cip in (False, True)]


def test_pooling_rounding_and_padding_match_torch():
    """ceil_mode and count_include_pad at every small size, kernel, stride and padding:
    shapes as torch computes them, values as torch computes them."""
    for size, k, s, p, ceil, cip in POOLS:
        flags = f"ceil_mode = {str(ceil).lower()}"
        layers = [f"avgpool({k}, stride = {s}, padding = {p}, {flags}, "
                  f"count_include_pad = {str(cip).lower()})"]
        if not cip:
            layers.append(f"maxpool({k}, stride = {s}, padding = {p}, {flags})")
            layers.append(f"maxpool({k}, stride = {s}, padding = {p}, dilation = 2, {flags})")
        for layer in layers:
            try:
                # Not square: height and width may round differently.
                net = resdsl.loads(f"network n {{\n input [2, {size}, {size + 1}]\n pool: {layer}\n}}")
            except resdsl.SpecError:  # the window does not fit: torch refuses it too
                continue
            x = torch.randn(1, 2, size, size + 1)
            with torch.no_grad():
                ref = build(net).eval()(x).numpy()
            model = onnx_graph.build_model(net)
            assert_valid(model, net)
            assert_close(run_onnx(model.SerializeToString(), x.numpy()), ref)


def test_resnet50_census_and_names():
    """torchvision's ResNet-50: 53 convolutions (1 + 16 × 3 + 4 projections), 53 BNs,
    16 residual adds, 49 ReLUs (the stem's and 3 per bottleneck), and nothing else."""
    net = resdsl.load(SPECS / "resnet50.res")
    model = onnx_graph.build_model(net)
    kinds = Counter(n.op_type for n in model.graph.node)
    assert kinds == Counter({"Conv": 53, "BatchNormalization": 53, "Relu": 49, "Add": 16, "MaxPool": 1,
                             "GlobalAveragePool": 1, "Flatten": 1, "Gemm": 1})
    folded = Counter(n.op_type for n in onnx_graph.build_model(net, fold_bn=True).graph.node)
    assert folded == kinds - Counter({"BatchNormalization": 53})
    # Initializers are exactly the state_dict's tensors (less the BN step counters).
    state = build(net).state_dict()
    names = [t.name for t in model.graph.initializer]
    assert sorted(names) == sorted(k for k in state if not k.endswith("num_batches_tracked"))
    assert {"layer1.0.downsample.0.weight", "layer4.2.bn3.running_var", "fc.bias"} <= set(names)
    # Nodes in the IR's order, named by spec path.
    assert [n.name for n in model.graph.node] == [op.name for op in net.ops]
    assert model.graph.node[-1].output[0] == "output"


def test_seeded_weights_are_the_torch_back_ends():
    net = resdsl.load(SPECS / "seresnet50.res")
    state = build(net, seed=3).state_dict()
    model = onnx_graph.build_model(net, seed=3)
    for tensor in model.graph.initializer:
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(tensor), state[tensor.name].numpy())
    other = onnx_graph.build_model(net, seed=4).graph.initializer
    assert not np.array_equal(onnx.numpy_helper.to_array(other[0]), state[other[0].name].numpy())


def test_expected_state_is_the_torch_modules():
    for name in ("resnet50d", "seresnet50", "preact_resnet164_cifar"):
        net = resdsl.load(SPECS / f"{name}.res")
        with torch.device("meta"):
            state = build(net, seed=None).state_dict()
        assert onnx_graph.expected_state(net) == {k: tuple(v.shape) for k, v in state.items()}


def test_output_is_byte_identical_and_carries_provenance():
    net = resdsl.load(SPECS / "resnet20_cifar.res")
    first = onnx_graph.emit(net, seed=5, fold_bn=True)
    assert first == onnx_graph.emit(net, seed=5, fold_bn=True)
    assert first != onnx_graph.emit(net, seed=6, fold_bn=True)
    model = onnx.load_from_string(first)
    # The spliced writer gives exactly protobuf's own serialisation of the model.
    assert first == model.SerializeToString()
    assert first == onnx_graph.build_model(net, seed=5, fold_bn=True).SerializeToString()
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {"resdsl.version": resdsl.__version__, "resdsl.spec": "resnet20_cifar.res",
                     "resdsl.network": "resnet20_cifar", "resdsl.weights": "seed 5",
                     "resdsl.fold_bn": "true"}
    assert "resnet20_cifar.res" in model.doc_string and resdsl.__version__ in model.doc_string
    assert model.producer_name == "resdsl" and model.graph.name == "resnet20_cifar"
    assert (model.ir_version, model.opset_import[0].version) == (8, 17)


def test_batch_is_symbolic_unless_fixed():
    net, state, x, ref = case("resnet20_cifar")
    model = onnx_graph.build_model(net, weights=state)
    (dim, *_), (out, *_) = (v.type.tensor_type.shape.dim for v in (model.graph.input[0], model.graph.output[0]))
    assert dim.dim_param == out.dim_param == "batch"
    data = model.SerializeToString()
    assert_close(run_onnx(data, np.concatenate([x, x, x])), np.concatenate([ref, ref, ref]))
    fixed = onnx_graph.build_model(net, weights=state, static_batch=2)
    assert [d.dim_value for d in fixed.graph.input[0].type.tensor_type.shape.dim] == [2, 3, 32, 32]
    assert_valid(fixed, net)
    assert_close(run_onnx(fixed.SerializeToString(), x), ref)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        run_onnx(fixed.SerializeToString(), x[:1])


@pytest.mark.parametrize("body, kinds, output", [
    # an elided last op: the tensor before it becomes `output`
    ("flatten()\n fc: linear(4)\n dropout(0.5)", ["Flatten", "Gemm"], "output"),
    # nothing but the input itself
    ("identity()\n drop_path(0.1)", ["Identity"], "output"),
    # a layer named `output` that is not the last: the graph output keeps the last op's name
    ("output: relu()\n flatten()\n fc: linear(3)", ["Relu", "Flatten", "Gemm"], "fc"),
])
def test_graph_ends(body, kinds, output):
    net = resdsl.loads(f"network n {{\n input [2, 3, 1]\n {body}\n}}")
    model = onnx_graph.build_model(net)
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node] == kinds
    assert model.graph.output[0].name == output
    x = np.random.default_rng(0).standard_normal((2, *net.input_shape)).astype(np.float32)
    with torch.no_grad():
        ref = build(net, seed=0).eval()(torch.from_numpy(x)).numpy()  # the graph's weights: seed 0
    assert_close(run_onnx(model.SerializeToString(), x), ref)


@pytest.mark.parametrize("options, message", [
    ({"opset": 12}, "opset 12"), ({"opset": 22}, "opset 22"), ({"opset": "17"}, "`opset` must be a whole number"),
    ({"static_batch": 0}, "batch size .* not 0"), ({"static_batch": True}, "`static_batch` must be a whole number"),
    ({"seed": 1, "weights": {}}, "`seed` and `weights` exclude each other"), ({"seed": -1}, "a seed lies"),
    ({"fold_bn": 1}, "`fold_bn` is True or False"),
])
def test_bad_options_are_option_errors(options, message):
    with pytest.raises(OptionError, match=message):
        onnx_graph.emit(resdsl.load(SPECS / "resnet20_cifar.res"), **options)


def test_too_large_for_protobuf_says_to_use_external_data(monkeypatch):
    monkeypatch.setattr(onnx_graph, "PROTOBUF_LIMIT", 1000)
    with pytest.raises(BackendError) as err:
        onnx_graph.emit(resdsl.load(SPECS / "resnet20_cifar.res"))
    assert "2 GiB" in str(err.value) and "`external_data=True`" in err.value.hint


# ---------------------------------------------------------------------------------- --dynamic-size

#: Every lowering that once read the declared size, on full feature maps (not after a
#: global pool, where shipped specs use them): GN decomposed (before opset 21) and native,
#: ECA's channel conv, group softmax, option A's slice, ceil_mode pools without padding.
DYNAMIC = """
network dyn(size = 33) {
    input [3, size, size]
    c1: conv(8, 3, stride = 2, bias = true)
    bn1: batchnorm()
    gn: groupnorm(4)
    r: relu()
    cc: channel_conv(3)
    gs: group_softmax(2, cardinality = 2)
    ln: layernorm()
    p: maxpool(3, stride = 2, padding = 1)
    z: zeropad(16, stride = 2)
    q: avgpool(2, stride = 2, ceil_mode = true, count_include_pad = false)
    m: maxpool(3, stride = 2, ceil_mode = true)
    g: global_avgpool()
    cc2: channel_conv(3)
    gs2: group_softmax(2, cardinality = 2)
    flatten()
    fc: linear(5)
}
"""


def assert_dynamic(model: onnx.ModelProto) -> None:
    """The checker and strict shape inference pass on the symbolic graph, whose input is
    batch × C × height × width."""
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    dims = [d.dim_value or d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[2:] == ["height", "width"]


def run_sizes(data: bytes, model_t: torch.nn.Module, channels: int, sizes, expected=None) -> None:
    """onnxruntime runs one graph at every size and matches torch at each."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    for size in sizes:
        x = torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(size))
        with torch.no_grad():
            ref = model_t(x).numpy()
        got = session.run(None, {"input": x.numpy()})[0]
        if expected is not None:
            assert got.shape[1:] == expected[size], size
        assert_close(got, ref)


# (Not 21: strict shape inference refuses the native GroupNormalization there, static or not
# -- onnx 1.23 infers no type for its output; a fault of that lowering, not of the sizes.)
@pytest.mark.parametrize("opset", [13, 17, 18, 20])
def test_dynamic_size_every_size_dependent_lowering(opset):
    net = resdsl.loads(DYNAMIC)
    model_t = trained_like(net)
    for fold in (False, True):
        model = onnx_graph.build_model(net, weights=model_t.state_dict(), opset=opset, fold_bn=fold,
                                       dynamic_size=True)
        assert_dynamic(model)
        assert [d.dim_param or d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] \
            == ["batch", 5]
        kinds = Counter(n.op_type for n in model.graph.node)
        # A Shape only where a size is read: the full-map softmax and channel conv; none
        # after the global pool.
        assert kinds["Shape"] == 2
        run_sizes(model.SerializeToString(), model_t, 3, (33, 34, 40, 57, 96))


def test_dynamic_size_static_graph_is_unchanged_where_it_can_be():
    """Without --dynamic-size the graph names no symbolic size and reads no Shape."""
    net = resdsl.loads(DYNAMIC)
    model = onnx_graph.build_model(net)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert "Shape" not in {n.op_type for n in model.graph.node}
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 33, 33]


def test_dynamic_size_refuses_a_ceil_pool_with_padding():
    with pytest.raises(BackendError, match="ceil_mode.*`dynamic_size=True`"):
        onnx_graph.emit(resdsl.loads(PRIMS), dynamic_size=True)


def _sizes(name: str) -> tuple[int, ...]:
    return (32, 48, 64) if name.endswith("_cifar") else (160, 224, 320)


@pytest.mark.parametrize("name", [pytest.param(n, marks=[] if n in {"resnet20_cifar", "resnet50d"}
                                               else [pytest.mark.slow]) for n in SPEC_NAMES])
def test_dynamic_size_every_spec_at_three_sizes(name):
    """One graph per shipped spec, run by onnxruntime at 160, 224 and 320 (CIFAR: 32, 48,
    64) against the torch module, at every size the spec accepts (its own shape rules,
    loaded at that size, decide; and they give the output's shape)."""
    path = SPECS / f"{name}.res"
    net = resdsl.load(path)
    model_t = trained_like(small(name))  # the weights do not depend on the input size
    expected = {}
    for size in _sizes(name):
        try:
            sized = resdsl.loads(path.read_text() + f"\nnetwork sized = {name} with (image_size = {size})",
                                 path=str(path))
        except resdsl.SpecError:
            continue
        expected[size] = sized.output_shape
    assert expected, "no size is valid"
    model = onnx_graph.build_model(net, weights=model_t.state_dict(), dynamic_size=True)
    assert_dynamic(model)
    run_sizes(model.SerializeToString(), model_t, net.input_shape[0], sorted(expected), expected)


def test_dynamic_size_from_the_cli(tmp_path):
    from resdsl.cli import main

    out = tmp_path / "r20.onnx"
    assert main(["compile", str(SPECS / "resnet20_cifar.res"), "--target", "onnx", "--dynamic-size",
                 "-o", str(out)]) == 0
    model = onnx.load(str(out))
    assert_dynamic(model)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["resdsl.dynamic_size"] == "true"
    assert main(["compile", str(SPECS / "resnet20_cifar.res"), "--target", "torch", "--dynamic-size",
                 "-o", str(tmp_path / "x.py")]) == 2
