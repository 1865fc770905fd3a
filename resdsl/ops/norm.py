"""Normalisation layers: batch norm, group norm, channels-first layer norm.

Each owns a scale and a shift per channel (``weight``, ``bias``; batch norm also its
running statistics) and counts no MACs. A true ``zero_init`` starts the scale at zero,
so a residual branch ending in it starts as the identity.
"""

from __future__ import annotations

from ..ir import Op, Shape
from ..primitives import Look, Primitive, SourceArg, SourceCall, SourceHelper, SourceInit, param
from .recognise import Call, class_name, stock
from .shapes import divides, feature_map

_ZERO_INIT = "initialise the scale to 0 (last norm of a residual branch)"
_BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")


def _affine(kind: str):
    def infer(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, _, _ = feature_map(kind, shapes[0])
        if "groups" in a:
            divides(a["groups"], c)
        return shapes[0], 2 * c, 0
    return infer


def _affine_weights(a: dict, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
    c = shapes[0][0]
    return {"weight": (c,), "bias": (c,)}


# ---------------------------------------------------------------- batchnorm


def _bn_onnx(g, op: Op, xs: list[str], out: str) -> None:
    m = op.module
    g.node("BatchNormalization", [xs[0], *(g.param(f"{m}.{p}") for p in _BN_BUFFERS)], op.name, out,
           epsilon=float(op.attr("eps")))


def _with_act(call: Call, kind: str, attrs: dict, base: type):
    """``attrs`` for a stock ``base`` module; for timm's norm-act layers (a subclass holding
    ``drop`` and ``act`` modules, applied after the norm) the chain norm, drop, act."""
    m = call.module
    if stock(m, base):
        return attrs
    from torch import nn

    if not isinstance(m, base):
        return None
    if not isinstance(getattr(m, "act", None), nn.Module):
        # a subclass with its own forward and nothing more (timm's GroupNorm, for its fast
        # kernel): the same norm, as the import's output comparison confirms
        own = {n for n, _ in m.named_children()}
        return attrs if not own else None
    chain = [(kind, attrs)]
    for part in (getattr(m, "drop", None), m.act):
        if part is None or isinstance(part, nn.Identity):
            continue
        sub = call.recognise_module(part)
        if sub is None:
            return None
        chain += sub
    return chain


def _recognise_bn(call: Call):
    from torch import nn

    m = call.module
    if not isinstance(m, nn.BatchNorm2d) or not m.affine or not m.track_running_stats:
        return None
    return _with_act(call, "batchnorm", {"eps": float(m.eps), "momentum": float(m.momentum or 0.1)},
                     nn.BatchNorm2d)


BATCHNORM = Primitive(
    "batchnorm", (param("eps", "float", 1e-5), param("momentum", "float", 0.1),
                  param("zero_init", "bool", False, _ZERO_INIT)),
    _affine("batchnorm"), "batch normalisation over channels (torch.nn.BatchNorm2d)",
    look=Look(lambda op: "BN", "norm"),
    weights=lambda a, shapes: {**{k: (shapes[0][0],) for k in _BN_BUFFERS}, "num_batches_tracked": ()},
    zero_init="weight",
    source_module=SourceCall("nn.BatchNorm2d", (SourceArg("num_features"), SourceArg("eps", "eps", 1e-5),
                                                SourceArg("momentum", "momentum", 0.1))),
    source_init=SourceInit("nn.BatchNorm2d", ("nn.init.ones_(module.weight)", "nn.init.zeros_(module.bias)")),
    onnx=((1, _bn_onnx),), fold="bn", overwritable=True, recognise=_recognise_bn)

# ---------------------------------------------------------------- groupnorm


def _gn_decomposed(g, op: Op, xs: list[str], out: str) -> None:
    """Before opset 21 (18's GroupNormalization has per-group scales): normalise
    N×G×(C/G·H)×W blocks with InstanceNormalization, then scale and shift per channel."""
    import numpy as np

    c = g.shape_of(op.inputs[0])[0]
    groups, name, m = op.attr("groups"), op.name, op.module
    # N×G×(C/G·H)×W and back: 0 keeps N and W, so no constant holds the input's size.
    rows = g.node("Reshape", [xs[0], g.const(f"{name}/groups", [0, groups, -1, 0])], f"{name}/grouped")
    ones = g.const(f"{name}/ones", np.ones(groups), np.float32)
    zeros = g.const(f"{name}/zeros", np.zeros(groups), np.float32)
    normed = g.node("InstanceNormalization", [rows, ones, zeros], f"{name}/normalise",
                    epsilon=float(op.attr("eps")))
    y = g.node("Reshape", [normed, g.const(f"{name}/shape", [0, c, -1, 0])], f"{name}/unflatten")
    _scale_shift(g, op, y, out, m, name)


def _scale_shift(g, op: Op, y: str, out: str, m: str, name: str) -> None:
    per_channel = g.const(f"{name}/per_channel", [-1, 1, 1])
    scale = g.node("Reshape", [g.param(f"{m}.weight"), per_channel], f"{name}/weight")
    shift = g.node("Reshape", [g.param(f"{m}.bias"), per_channel], f"{name}/bias")
    g.node("Add", [g.node("Mul", [y, scale], f"{name}/scale"), shift], name, out)


def _gn_native(g, op: Op, xs: list[str], out: str) -> None:
    m = op.module
    g.node("GroupNormalization", [xs[0], g.param(f"{m}.weight"), g.param(f"{m}.bias")], op.name, out,
           epsilon=float(op.attr("eps")), num_groups=op.attr("groups"))
    g.declare(out, op.shape)  # onnx's shape inference has no rule for it yet


def _recognise_gn(call: Call):
    from torch import nn

    m = call.module
    if not isinstance(m, nn.GroupNorm) or not m.affine:
        return None
    return _with_act(call, "groupnorm", {"groups": m.num_groups, "eps": float(m.eps)}, nn.GroupNorm)


GROUPNORM = Primitive(
    "groupnorm", (param("groups", "int", 32), param("eps", "float", 1e-5),
                  param("zero_init", "bool", False, _ZERO_INIT)),
    _affine("groupnorm"), "group normalisation (torch.nn.GroupNorm): channels in `groups` groups, "
                          "each normalised over its channels and positions",
    look=Look(lambda op: f"GN ({op.attr('groups')} groups)", "norm"),
    weights=_affine_weights, zero_init="weight",
    source_module=SourceCall("nn.GroupNorm", (SourceArg("groups"), SourceArg("num_channels"),
                                              SourceArg("eps", "eps", 1e-5))),
    onnx=((1, _gn_decomposed), (21, _gn_native)), overwritable=True, recognise=_recognise_gn)

# ---------------------------------------------------------------- layernorm (channels first)


def _ln_native(g, op: Op, xs: list[str], out: str) -> None:
    m, name = op.module, op.name
    last = g.node("Transpose", [xs[0]], f"{name}/channels_last", perm=[0, 2, 3, 1])
    y = g.node("LayerNormalization", [last, g.param(f"{m}.weight"), g.param(f"{m}.bias")],
               f"{name}/normalise", axis=-1, epsilon=float(op.attr("eps")))
    g.node("Transpose", [y], name, out, perm=[0, 3, 1, 2])


def _ln_decomposed(g, op: Op, xs: list[str], out: str) -> None:
    """Before opset 17: mean and variance over the channel axis, spelt out."""
    import numpy as np

    name, x = op.name, xs[0]
    mean = g.reduce_mean(x, [1], f"{name}/mean")
    centred = g.node("Sub", [x, mean], f"{name}/centre")
    var = g.reduce_mean(g.node("Mul", [centred, centred], f"{name}/square"), [1], f"{name}/var")
    eps = g.const(f"{name}/eps", float(op.attr("eps")), np.float32)
    std = g.node("Sqrt", [g.node("Add", [var, eps], f"{name}/var_eps")], f"{name}/std")
    y = g.node("Div", [centred, std], f"{name}/normalise")
    _scale_shift(g, op, y, out, op.module, name)


def _recognise_ln(call: Call) -> dict | None:
    # timm's LayerNorm2d (and the generated source's): a LayerNorm over the channels, channels first
    m = call.module
    if class_name(m) != "LayerNorm2d" or not getattr(m, "elementwise_affine", True):
        return None
    return {"eps": float(m.eps)}


LAYERNORM = Primitive(
    "layernorm", (param("eps", "float", 1e-6), param("zero_init", "bool", False, _ZERO_INIT)),
    _affine("layernorm"), "layer normalisation over the channels at each position, channels "
                          "first (timm's LayerNorm2d)",
    look=Look(lambda op: "LN", "norm"),
    weights=_affine_weights, zero_init="weight",
    source_module=SourceCall("LayerNorm2d", (SourceArg("num_channels"), SourceArg("eps", "eps", 1e-6)),
                             helpers=(SourceHelper("LayerNorm2d", template="layer_norm2d.j2", functional=True),)),
    onnx=((1, _ln_decomposed), (17, _ln_native)), recognise=_recognise_ln)
