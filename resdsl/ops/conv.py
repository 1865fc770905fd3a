"""Weighted layers: convolution, weight-standardised convolution, convolution across
channels (ECA), fully connected.

MACs: a convolution counts ``weights × output positions`` (padding positions included,
as torchvision's figures do); ``std_conv`` counts the same as ``conv`` (standardising
the weights is per weight, not per activation); ``channel_conv`` counts ``k`` per channel
and position, ``C·k·H·W``; ``linear`` counts ``in × out``. Biases count nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import E
from ..ir import Attr, Shape
from ..primitives import Primitive, ShapeError, Traits, param
from .shapes import feature_map, fmt, spatial

# ---------------------------------------------------------------- conv and std_conv


def _conv_rule(kind: str):
    def infer(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, h, w = feature_map(kind, shapes[0])
        out, g, k = a["out_channels"], a["groups"], a["kernel_size"]
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


def _conv_padding(a: Mapping[str, Attr]) -> dict[str, Attr]:
    """The default padding, ``(kernel_size - 1) // 2 × dilation``: the size kept at stride 1."""
    return {"padding": (a["kernel_size"] - 1) // 2 * a["dilation"]} if a["padding"] is None else {}


def _conv_weights(a: Mapping, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
    out = {"weight": (a["out_channels"], shapes[0][0] // a["groups"], a["kernel_size"], a["kernel_size"])}
    if a["bias"]:
        out["bias"] = (a["out_channels"],)
    return out


_CONV_PARAMS = (param("out_channels", "int"), param("kernel_size", "int"), param("stride", "int", 1),
                param("padding", "int?", None, "default (kernel_size - 1) // 2 × dilation"),
                param("dilation", "int", 1), param("groups", "int", 1), param("bias", "bool", False))


#: A BN after a plain conv folds into it; a std_conv's weight is not the one it applies.
_CONV_TRAITS = Traits(conv=True, depth=True, resolution="stride", fold_target=True, bias_attr="bias")

CONV = Primitive(
    "conv", _CONV_PARAMS, _conv_rule("conv"), "2-D convolution (torch.nn.Conv2d); square kernels",
    weights=_conv_weights, fill=_conv_padding, traits=_CONV_TRAITS, overwritable=True)


STD_CONV = Primitive(
    "std_conv", (*_CONV_PARAMS, param("eps", "float", 1e-6, "added to the weights' variance")),
    _conv_rule("std_conv"),
    "weight-standardised 2-D convolution, as timm's StdConv2d (BiT): each output channel's "
    "weights are normalised to zero mean and unit variance",
    weights=_conv_weights, fill=_conv_padding, traits=Traits(conv=True, depth=True, resolution="stride"),
    overwritable=True)

# ---------------------------------------------------------------- channel_conv (ECA)


def _channel_conv(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("channel_conv", shapes[0])
    k = a["kernel_size"]
    if k % 2 == 0:
        raise ShapeError(E.OUT_OF_RANGE, f"`channel_conv` needs an odd kernel size, got {k}",
                         hint="ECA rounds its kernel size up to the next odd number")
    return shapes[0], k, c * k * h * w


CHANNEL_CONV = Primitive(
    "channel_conv", (param("kernel_size", "int"),), _channel_conv,
    "1-D convolution across the channel axis at each position, weight 1×1×k, no bias "
    "(the conv of timm's EcaModule); the channel count is kept",
    weights=lambda a, shapes: {"weight": (1, 1, a["kernel_size"])})

# ---------------------------------------------------------------- linear


def _linear(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    if len(shapes[0]) != 1:
        raise ShapeError(E.WRONG_TENSOR_KIND, f"`linear` needs a flat vector, got a {fmt(shapes[0])} feature map",
                         hint="add `flatten()` (after `global_avgpool()`) before it")
    f, out = shapes[0][0], a["out_features"]
    return (out,), f * out + (out if a["bias"] else 0), f * out


def _linear_weights(a: Mapping, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
    out = {"weight": (a["out_features"], shapes[0][0])}
    if a["bias"]:
        out["bias"] = (a["out_features"],)
    return out


LINEAR = Primitive(
    "linear", (param("out_features", "int"), param("bias", "bool", True)), _linear,
    "fully connected layer (torch.nn.Linear)",
    weights=_linear_weights, traits=Traits(classifier=True, depth=True), overwritable=True)
