"""Weighted layers: convolution, weight-standardised convolution, convolution across
channels (ECA), fully connected.

MACs: a convolution counts ``weights × output positions`` (padding positions included,
as torchvision's figures do); ``std_conv`` counts the same as ``conv`` (standardising
the weights is per weight, not per activation); ``channel_conv`` counts ``k`` per channel
and position, ``C·k·H·W``; ``linear`` counts ``in × out``. Biases count nothing.
"""

from __future__ import annotations

from ..errors import E
from ..ir import Op, Shape
from ..primitives import (
    NODEFAULT,
    Look,
    Primitive,
    ShapeError,
    SourceArg,
    SourceCall,
    SourceHelper,
    SourceInit,
    param,
)
from .recognise import Call, class_name, square, stock
from .shapes import feature_map, fmt, spatial

# ---------------------------------------------------------------- conv and std_conv


def _conv_rule(kind: str):
    def infer(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, h, w = feature_map(kind, shapes[0])
        out, g, k = a["out_channels"], a["groups"], a["kernel_size"]
        if a["padding"] is None:
            a["padding"] = (k - 1) // 2 * a["dilation"]
        if c % g or out % g:
            bad = c if c % g else out
            raise ShapeError(E.GROUPS_NOT_DIVIDING, f"groups = {g} does not divide {bad} channels",
                             label=f"{c} input channels, {out} output channels",
                             hint="choose groups that divide both channel counts")
        if a["padding"] * 2 >= k * a["dilation"] + 2 * max(h, w):
            raise ShapeError(E.OUT_OF_RANGE, f"padding {a['padding']} is larger than the input and kernel",
                             hint="padding is usually (kernel_size - 1) // 2 × dilation")
        oh, ow = spatial(kind, h, w, a)
        weights = out * (c // g) * k * k
        params = weights + (out if a["bias"] else 0)
        return (out, oh, ow), params, weights * oh * ow
    return infer


def _conv_weights(a: dict, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
    out = {"weight": (a["out_channels"], shapes[0][0] // a["groups"], a["kernel_size"], a["kernel_size"])}
    if a["bias"]:
        out["bias"] = (a["out_channels"],)
    return out


_KAIMING = SourceInit("nn.Conv2d", ('nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")',
                                    "if module.bias is not None:", "    nn.init.zeros_(module.bias)"))

_CONV_ARGS = (SourceArg("in_channels"), SourceArg("out_channels"), SourceArg("kernel_size", "kernel_size"),
              SourceArg("stride", "stride", 1), SourceArg("padding", "padding", 0),
              SourceArg("dilation", "dilation", 1), SourceArg("groups", "groups", 1),
              SourceArg("bias", "bias", True))


def _conv_text(word: str):
    def text(op: Op) -> str:
        size = op.attr("kernel_size")
        s = f"{size}×{size} {word}, {op.attr('out_channels')}"
        if op.attr("stride") != 1:
            s += f", /{op.attr('stride')}"
        if op.attr("groups") != 1:
            s += f", groups {op.attr('groups')}"
        if op.attr("dilation") != 1:
            s += f", dilation {op.attr('dilation')}"
        return s
    return text


def conv_table(op: Op, with_stride: bool) -> str:
    """A conv as a line of a paper table: ``3×3, 64, C=32``."""
    k = op.attr("kernel_size")
    s = f"{k}×{k}, {op.attr('out_channels')}"
    if op.attr("groups") != 1:
        s += f", C={op.attr('groups')}"
    if op.attr("dilation") != 1:
        s += f", dilation {op.attr('dilation')}"
    if with_stride and op.attr("stride") != 1:
        s += f", stride {op.attr('stride')}"
    return s


def _conv_attrs(g, a: dict) -> dict:
    k, p, s, d = a["kernel_size"], a["padding"], a["stride"], a["dilation"]
    return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p], "dilations": [d, d],
            "group": a["groups"]}


def _conv_onnx(g, op: Op, xs: list[str], out: str) -> None:
    a, m = dict(op.attrs), op.module
    bn = g.folded_bn(op)
    if bn is not None:
        from ..backends.fold import fold_conv_bn_arrays

        w, b = g.state[f"{m}.weight"], g.state.get(f"{m}.bias") if a["bias"] else None
        s = {p: g.state[f"{bn.module}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")}
        w, b = fold_conv_bn_arrays(w, b, s["weight"], s["bias"], s["running_mean"], s["running_var"],
                                   float(bn.attr("eps")))
        # Re-key the folded tensors under the conv's names, as the torch folding pass does.
        inputs = [g.init(f"{m}.weight", w), g.init(f"{m}.bias", b)]
    else:
        inputs = [g.param(f"{m}.weight")] + ([g.param(f"{m}.bias")] if a["bias"] else [])
    g.node("Conv", [xs[0], *inputs], op.name, out, **_conv_attrs(g, a))


def _std_conv_onnx(g, op: Op, xs: list[str], out: str) -> None:
    """Standardise the weight in the graph (InstanceNormalization over each output
    channel's weights), so the initializer stays the state_dict's weight."""
    import numpy as np

    a, m, name = dict(op.attrs), op.module, op.name
    w = g.param(f"{m}.weight")
    shape = g.state[f"{m}.weight"].shape
    rows = g.node("Reshape", [w, g.const(f"{name}/rows", [1, shape[0], -1])], f"{name}/as_rows")
    ones = g.const(f"{name}/ones", np.ones(shape[0]), np.float32)
    zeros = g.const(f"{name}/zeros", np.zeros(shape[0]), np.float32)
    std = g.node("InstanceNormalization", [rows, ones, zeros], f"{name}/standardise", epsilon=float(a["eps"]))
    weight = g.node("Reshape", [std, g.const(f"{name}/shape", list(shape))], f"{name}/weight")
    bias = [g.param(f"{m}.bias")] if a["bias"] else []
    g.node("Conv", [xs[0], weight, *bias], name, out, **_conv_attrs(g, a))


#: The generated file's wrapper for modules built once (SourceCall.skip_init).
_SKIP_INIT = SourceHelper("skip_init", text='''
def skip_init(module_cls: type[nn.Module], *args: object, **kwargs: object) -> nn.Module:
    """`module_cls(*args, **kwargs)` without torch's default initialisation, on the default
    device: reset_parameters() initialises every tensor once."""
    module = module_cls.__new__(module_cls)
    # shadowed on the instance for its constructor only (torch's own skip_init would run the
    # default draws on the meta device, which costs more than building the module)
    object.__setattr__(module, "reset_parameters", lambda: None)
    module.__init__(*args, **kwargs)
    del module.reset_parameters
    return module
''')

_CONV_PARAMS = (param("out_channels", "int"), param("kernel_size", "int"), param("stride", "int", 1),
                param("padding", "int?", None, "default (kernel_size - 1) // 2 × dilation"),
                param("dilation", "int", 1), param("groups", "int", 1), param("bias", "bool", False))

def _module_conv_attrs(m) -> dict | None:
    k, stride, dilation = square(m.kernel_size), square(m.stride), square(m.dilation)
    padding = square(m.padding) if not isinstance(m.padding, str) else None
    if m.padding == "same" and k is not None and dilation is not None and (k - 1) * dilation % 2 == 0:
        padding = (k - 1) * dilation // 2
    if None in (k, stride, dilation, padding) or m.padding_mode != "zeros":
        return None
    return {"out_channels": m.out_channels, "kernel_size": k, "stride": stride, "padding": padding,
            "dilation": dilation, "groups": m.groups, "bias": m.bias is not None}


def _recognise_conv(call: Call) -> dict | None:
    from torch import nn

    return _module_conv_attrs(call.module) if stock(call.module, nn.Conv2d) else None


def _recognise_std_conv(call: Call) -> dict | None:
    # timm's StdConv2d and the generated source's: standardised weights, a float `eps`
    # (timm's ScaledStdConv2d adds a gain: not this primitive)
    from torch import nn

    m = call.module
    if not isinstance(m, nn.Conv2d) or class_name(m) != "StdConv2d" or hasattr(m, "gain") or \
            not isinstance(getattr(m, "eps", None), float):
        return None
    a = _module_conv_attrs(m)
    return None if a is None else {**a, "eps": m.eps}


CONV = Primitive(
    "conv", _CONV_PARAMS, _conv_rule("conv"), "2-D convolution (torch.nn.Conv2d); square kernels",
    look=Look(_conv_text("conv"), "conv", table=conv_table, depth=True),
    weights=_conv_weights,
    source_module=SourceCall("nn.Conv2d", _CONV_ARGS, skip_init=True, helpers=(_SKIP_INIT,)), source_init=_KAIMING,
    onnx=((1, _conv_onnx),), fold="conv", overwritable=True, recognise=_recognise_conv)

_STD_CONV = SourceHelper("StdConv2d", template="std_conv.j2", functional=True)

STD_CONV = Primitive(
    "std_conv", (*_CONV_PARAMS, param("eps", "float", 1e-6, "added to the weights' variance")),
    _conv_rule("std_conv"),
    "weight-standardised 2-D convolution, as timm's StdConv2d (BiT): each output channel's "
    "weights are normalised to zero mean and unit variance",
    look=Look(_conv_text("WS conv"), "conv", table=conv_table, depth=True),
    weights=_conv_weights,
    source_module=SourceCall("StdConv2d", (*_CONV_ARGS[:-1], SourceArg("bias", "bias", False),
                                           SourceArg("eps", "eps", 1e-6)),
                             skip_init=True, helpers=(_SKIP_INIT, _STD_CONV)),
    source_init=_KAIMING, onnx=((1, _std_conv_onnx),), overwritable=True, recognise=_recognise_std_conv)

# ---------------------------------------------------------------- channel_conv (ECA)


def _channel_conv(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("channel_conv", shapes[0])
    k = a["kernel_size"]
    if k % 2 == 0:
        raise ShapeError(E.OUT_OF_RANGE, f"`channel_conv` needs an odd kernel size, got {k}",
                         hint="ECA rounds its kernel size up to the next odd number")
    return shapes[0], k, c * k * h * w


def _channel_conv_onnx(g, op: Op, xs: list[str], out: str) -> None:
    """The channels as a column (N×1×C×H·W) and a k×1 ``Conv`` down it: no transpose, and
    every reshape keeps the batch dimension (0), so shape inference keeps it symbolic."""
    c, h, w = g.shape_of(op.inputs[0])
    k, name = op.attr("kernel_size"), op.name
    column = g.node("Reshape", [xs[0], g.const(f"{name}/column", [0, 1, c, -1])], f"{name}/as_column")
    kernel = g.node("Reshape", [g.param(f"{op.module}.weight"), g.const(f"{name}/kernel", [1, 1, k, 1])],
                    f"{name}/weight")
    pad = (k - 1) // 2
    y = g.node("Conv", [column, kernel], f"{name}/conv", kernel_shape=[k, 1], pads=[pad, 0, pad, 0])
    # back to N×C×H×W: the input's own shape where its size varies (a graph of any size)
    shape = (g.spatial_shape(xs[0], f"{name}/input_shape") if g.varies(op.inputs[0])
             else g.const(f"{name}/shape", [0, c, h, w]))
    g.node("Reshape", [y, shape], name, out)


def _recognise_channel_conv(call: Call) -> dict | None:
    # timm's EcaModule holds a plain Conv1d(1, 1, k) applied to the pooled channels laid
    # out as a sequence; the generated source's ChannelConv is the same layer
    from torch import nn

    m = call.module
    if not isinstance(m, nn.Conv1d) or (type(m).forward is not nn.Conv1d.forward and class_name(m) != "ChannelConv"):
        return None
    k = square(m.kernel_size)
    if (m.in_channels, m.out_channels, m.groups, m.bias) != (1, 1, 1, None) or k is None or k % 2 == 0 or \
            square(m.stride) != 1 or square(m.dilation) != 1 or square(m.padding) != (k - 1) // 2 or \
            m.padding_mode != "zeros":
        return None
    return {"kernel_size": k}


CHANNEL_CONV = Primitive(
    "channel_conv", (param("kernel_size", "int"),), _channel_conv,
    "1-D convolution across the channel axis at each position, weight 1×1×k, no bias "
    "(the conv of timm's EcaModule); the channel count is kept",
    look=Look(lambda op: f"{op.attr('kernel_size')}-tap conv across channels", "conv"),
    weights=lambda a, shapes: {"weight": (1, 1, a["kernel_size"])},
    source_module=SourceCall("ChannelConv", (SourceArg("kernel_size"),),
                             helpers=(SourceHelper("ChannelConv", template="channel_conv.j2"),)),
    onnx=((1, _channel_conv_onnx),), recognise=_recognise_channel_conv)

# ---------------------------------------------------------------- linear


def _linear(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    if len(shapes[0]) != 1:
        raise ShapeError(E.WRONG_TENSOR_KIND, f"`linear` needs a flat vector, got a {fmt(shapes[0])} feature map",
                         hint="add `flatten()` (after `global_avgpool()`) before it")
    f, out = shapes[0][0], a["out_features"]
    return (out,), f * out + (out if a["bias"] else 0), f * out


def _linear_weights(a: dict, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
    out = {"weight": (a["out_features"], shapes[0][0])}
    if a["bias"]:
        out["bias"] = (a["out_features"],)
    return out


def _linear_onnx(g, op: Op, xs: list[str], out: str) -> None:
    w = g.param(f"{op.module}.weight")
    b = [g.param(f"{op.module}.bias")] if op.attr("bias") else []
    g.node("Gemm", [xs[0], w, *b], op.name, out, transB=1)


def _recognise_linear(call: Call) -> dict | None:
    from torch import nn

    m = call.module
    return {"out_features": m.out_features, "bias": m.bias is not None} if stock(m, nn.Linear) else None


LINEAR = Primitive(
    "linear", (param("out_features", "int"), param("bias", "bool", True)), _linear,
    "fully connected layer (torch.nn.Linear)",
    look=Look(lambda op: f"fc, {op.attr('out_features')}", "fc", depth=True,
              head=lambda op: f"{op.attr('out_features')}-d fc"),
    weights=_linear_weights,
    source_module=SourceCall("nn.Linear", (SourceArg("in_features"), SourceArg("out_features"),
                                           SourceArg("bias", "bias", True))),
    onnx=((1, _linear_onnx),), overwritable=True, recognise=_recognise_linear)

__all__ = ["CONV", "STD_CONV", "CHANNEL_CONV", "LINEAR", "conv_table", "NODEFAULT"]
