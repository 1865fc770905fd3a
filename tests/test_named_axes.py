"""Named axes (issue 22): every shape's axes have names, derived through reshape, permute,
matmul, softmax, reductions, slices and broadcasting, shown in diagnostics and figures for
tensors that are not feature maps — and never changing a size, the generated source, the
ONNX graph, a parameter or a MAC count."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resdsl
from resdsl.diagnostics import SpecError
from resdsl.ir import NamedShape, axis_names
from resdsl.ops.shapes import dims
from resdsl.primitives import PRIMITIVES, ShapeError
from resdsl.stats import fmt_shape


def names(spec: str, *layers: str) -> list[tuple[str | None, ...]]:
    net = resdsl.loads(spec)
    return [axis_names(net.op(n).shape) for n in layers]


def block(body: str, input_: str = "[32, 8, 8]") -> str:
    return f"block b(heads = 4) {{\n{body}\n}}\nnetwork n {{\n    input {input_}\n    c: conv(32, 1)\n    x: b()\n}}\n"


def diagnostic(spec: str) -> str:
    with pytest.raises(SpecError) as err:
        resdsl.loads(spec)
    return err.value.diagnostics[0].message


# ---------------------------------------------------------------- where names come from


def test_feature_maps_are_c_h_w_and_plain_tuples():
    net = resdsl.loads(
        "network n {\n    input [3, 8, 8]\n    c: conv(4, 3)\n    relu()\n    p: maxpool(2)\n}\n"
    )
    for op in net.ops:
        assert axis_names(op.shape) == ("C", "H", "W") and type(op.shape) is tuple


def test_reshape_names_from_the_expressions_written_and_from_the_input():
    spec = block(
        "    dqk = in_channels // heads\n"
        "    q: reshape([heads, dqk, -1])\n"  # written, merged H·W
        "    k: reshape([heads, in_channels // heads, in_height * in_width]) from input\n"
        "    r: reshape([0, 0, heads, -1]) from input\n"  # 0 keeps; split remainder
        "    l: reshape([4, -1]) from input\n"  # regrouped: unnamed
        "    f: reshape([0, 1, 1, -1]) from input\n"
        "    back: reshape([in_channels, in_height, in_width]) from q\n"
    )
    assert names(spec, "x.q", "x.k", "x.r", "x.l", "x.f", "x.back") == [
        ("heads", "dqk", "HW"),
        ("heads", "C/heads", "HW"),
        ("C", "H", "heads", "W/heads"),
        (None, None),
        ("C", None, None, "HW"),
        ("C", "H", "W"),
    ]


def test_a_split_into_numbers_names_only_the_rest():
    assert names(block("    a: reshape([4, -1, 8, 8]) from input"), "x.a") == [(None, "C/4", "H", "W")]
    assert names(block("    a: reshape([4, 8, 64]) from input"), "x.a") == [(None, None, "HW")]


def test_permute_transpose_matmul_softmax_carry_names():
    spec = block(
        "    q: reshape([heads, in_channels // heads, -1])\n"
        "    t: transpose(-1, -2)\n"
        "    p: permute([2, 0, 1]) from q\n"
        "    l: matmul(t, q)\n"
        "    s: softmax()\n"
        "    o: matmul(q, s)\n"
        "    reshape([in_channels, in_height, in_width])\n"
    )
    assert names(spec, "x.t", "x.p", "x.l", "x.s", "x.o") == [
        ("heads", "HW", "C/heads"),
        ("HW", "heads", "C/heads"),
        ("heads", "HW", "HW"),
        ("heads", "HW", "HW"),
        ("heads", "C/heads", "HW"),
    ]


def test_reductions_drop_or_keep_names():
    spec = block(
        "    q: reshape([heads, in_channels // heads, -1])\n"
        "    m: mean([-1]) from q\n"
        "    k: reduce_sum([1], keepdim = true) from q\n"
        "    g: std([0, 1, 2], groups = 4, keepdim = true) from input\n"
    )
    assert names(spec, "x.m", "x.k", "x.g") == [
        ("heads", "C/heads"),
        ("heads", "C/heads", "HW"),
        ("C", "H", "W"),
    ]
    net = resdsl.loads(spec)
    assert net.op("x.k").shape == (4, 1, 64)


def test_broadcast_names_by_the_operand_whose_size_the_result_has():
    spec = block(
        "    q: reshape([heads, in_channels // heads, -1])\n"
        "    s: reduce_sum([1], keepdim = true) from q\n"  # [heads, 1, HW]
        "    w: param([8, 1])\n"  # unnamed, fewer axes
        "    a: add(s, q)\n"
        "    b: multiply(s, w)\n"
    )
    assert names(spec, "x.a", "x.b") == [("heads", "C/heads", "HW"), ("heads", None, "HW")]


def test_param_names_from_its_sizes_and_slice_pad_drop_a_changed_axis():
    spec = block(
        "    t: param([2 * in_width - 1, in_channels // heads])\n"
        "    u: transpose(0, 1) from t\n"
        "    q: reshape([heads, in_channels // heads, -1])\n"
        "    qt: transpose(-1, -2) from q\n"
        "    m: matmul(qt, u)\n"
        "    s: slice(-1, 0, in_width)\n"
        "    p: pad_axis(-1, after = in_width - 1)\n"
        "    f: slice(0, 0, 4) from q\n"
    )
    assert names(spec, "x.t", "x.u", "x.m", "x.s", "x.p", "x.f") == [
        ("2W-1", "C/heads"),
        ("C/heads", "2W-1"),
        ("heads", "HW", "2W-1"),
        ("heads", "HW", None),
        ("heads", "HW", None),
        ("heads", "C/heads", "HW"),
    ]


def test_a_conv_after_tensor_ops_is_a_feature_map_again():
    spec = block("    q: reshape([heads, -1, in_height * in_width])\n    y: conv(16, 1)\n")
    assert names(spec, "x.q", "x.y") == [("heads", "C/heads", "HW"), ("C", "H", "W")]


# ---------------------------------------------------------------- where names are shown


def test_dims_and_fmt_shape_show_names_only_beyond_feature_maps():
    assert dims((64, 8, 8)) == "[64, 8, 8]" and fmt_shape((64, 8, 8)) == "64×8×8"
    assert dims(NamedShape((64, 1, 1), ("C", None, None))) == "[64, 1, 1]"  # a pooled feature map
    assert fmt_shape(NamedShape((64, 8, 8), ("out", "H", "W"))) == "64×8×8"
    named = NamedShape((4, 256, 64), ("heads", "HW", "dqk"))
    assert dims(named) == "[heads: 4, HW: 256, dqk: 64]"
    assert fmt_shape(named) == "heads: 4 × HW: 256 × dqk: 64"
    assert dims(NamedShape((4, 2048), (None, None))) == "[4, 2048]"
    assert dims(NamedShape((1, 784), (None, "HW"))) == "[1, HW: 784]"


def test_diagnostics_name_the_axes():
    message = diagnostic(
        block(
            "    dqk = in_channels // heads\n"
            "    q: reshape([heads, dqk, -1]) from input\n"
            "    k: reshape([heads, in_channels // heads, -1]) from input\n"
            "    matmul(q, k)\n"
        )
    )
    assert message == (
        "`matmul` of [heads: 4, dqk: 8, HW: 64] and [heads: 4, C/heads: 8, HW: 64]: "
        "inner sizes 64 and 8 differ"
    )
    message = diagnostic(block("    reshape([heads, -1, in_height * in_width])\n    softmax(3)\n"))
    assert message == "`softmax` axis 3 does not exist in a [heads: 4, C/heads: 8, HW: 64] tensor"
    # three axes that are not a feature map: numpy's rule, not the residual add's projection hint
    err = diagnostic(
        block("    q: reshape([heads, -1, in_height * in_width])\n    t: transpose(-1, -2)\n    add(q, t)\n")
    )
    assert err.startswith(
        "`add` cannot broadcast [heads: 4, C/heads: 8, HW: 64] with [heads: 4, HW: 64, C/heads: 8]"
    )


def test_feature_map_diagnostics_are_unchanged():
    message = diagnostic(
        "network n {\n    input [3, 8, 8]\n    a: conv(4, 3)\n    b: conv(8, 3) from a\n    add(a, b)\n}\n"
    )
    assert message == "residual add joins 4 channels with 8"


def test_layer_diagram_labels_named_tensors_and_keeps_feature_maps():
    from resdsl.backends import dot

    net = resdsl.loads(
        block(
            "    q: reshape([heads, in_channels // heads, -1])\n    softmax()\n"
            "    reshape([in_channels, in_height, in_width])\n"
        )
    )
    text = dot.emit(net, detail="layer")
    assert "heads: 4 × C/heads: 8 × HW: 64" in text and "32×8×8" in text


# ---------------------------------------------------------------- names change nothing else


def _stripped(net):
    """The network with every name dropped: plain tuples of sizes."""
    return dataclasses.replace(
        net, ops=tuple(dataclasses.replace(op, shape=tuple(op.shape)) for op in net.ops)
    )


@pytest.mark.parametrize("name", ["botnet26t_256", "gcresnet50t"])
def test_names_change_no_lowering(name: str):
    pytest.importorskip("onnx")
    from conftest import load_spec
    from resdsl.backends import dot, onnx_graph, torch_source

    net = load_spec(name)
    assert any(type(op.shape) is NamedShape for op in net.ops)
    bare = _stripped(net)
    assert torch_source.emit(net) == torch_source.emit(bare)
    assert onnx_graph.build_model(net).SerializeToString() == onnx_graph.build_model(bare).SerializeToString()
    assert (net.params, net.macs) == (bare.params, bare.macs)
    assert dot.emit(net, detail="block") == dot.emit(bare, detail="block")


_RANK = st.integers(1, 5)
_SIZE = st.sampled_from([1, 2, 3, 4, 6])
_NAME = st.sampled_from([None, "C", "H", "W", "heads", "HW", "C/heads"])


@st.composite
def _named_shape(draw):
    sizes = tuple(draw(st.lists(_SIZE, min_size=1, max_size=5)))
    return NamedShape(sizes, tuple(draw(st.lists(_NAME, min_size=len(sizes), max_size=len(sizes)))))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(shape=_named_shape(), other=_named_shape(), data=st.data())
def test_property_names_never_change_sizes(shape, other, data):
    """Each tensor rule gives the same sizes, params and MACs for named and plain inputs (or
    refuses both: the wording may differ, three named axes being no feature map), and names
    one per axis."""
    rank = len(shape)
    axis = data.draw(st.integers(-rank, rank - 1))
    cases = [
        ("permute", {"axes": tuple(data.draw(st.permutations(range(rank))))}, [shape]),
        ("transpose", {"a": axis, "b": data.draw(st.integers(-rank, rank - 1))}, [shape]),
        ("reshape", {"shape": (-1, *data.draw(st.lists(_SIZE, max_size=2)))}, [shape]),
        ("softmax", {"axis": axis}, [shape]),
        (
            "slice",
            {
                "axis": axis,
                "start": data.draw(st.integers(-3, 3)),
                "end": data.draw(st.integers(-3, 6)),
                "step": 1,
            },
            [shape],
        ),
        ("pad_axis", {"axis": axis, "before": 1, "after": 0, "value": 0.0}, [shape]),
        ("reduce_sum", {"axes": (axis,), "keepdim": data.draw(st.booleans()), "groups": 1}, [shape]),
        ("add", {"constant": 0.0, "constant_at": None}, [shape, other]),
        ("matmul", {}, [shape, other]),
    ]
    for kind, attrs, shapes in cases:
        prim = PRIMITIVES[kind]
        attrs = prim.complete({p.name: p.default for p in prim.params} | attrs)
        outcomes = []
        for inputs in (shapes, [tuple(s) for s in shapes]):
            try:
                out, params, macs = prim.infer(attrs, inputs)
            except ShapeError:
                outcomes.append("refused")
                continue
            assert len(axis_names(out)) == len(out)
            outcomes.append((tuple(out), params, macs))
        assert outcomes[0] == outcomes[1], kind
