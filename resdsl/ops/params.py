"""Learned tensors, and a convolution that takes its weights as tensors.

``param(shape, init)`` is a learned tensor of any shape under the name the spec gives it:
its ``state_dict`` key is the layer's path (``weight: param([c])`` in the instance
``norm1`` is ``norm1.weight``), so a user's own definition can hold a layer's tensors at
the call's own name. It reads no tensor, is the same for every sample (no batch axis), and
counts its elements as parameters and no MACs.

``conv_with(w, b, …)`` convolves the running value with a weight (and a bias) given as
tensors — a weight the spec computes, as a scaled weight-standardised conv does — and
counts the MACs of the conv it is; its tensors count where they are made.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

from .. import limits
from ..errors import E
from ..ir import Shape
from ..primitives import Primitive, ShapeError, Traits, param
from .shapes import dims, feature_map, out_size, written

# ---------------------------------------------------------------- param

#: The initialisations a `param` may ask for (the torch back end writes each one).
INITS = ("zeros", "ones", "constant", "normal", "trunc_normal", "kaiming")


def _param(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    shape = tuple(a["shape"])
    if not shape:
        raise ShapeError(E.OUT_OF_RANGE, "a `param` needs at least one axis, got the shape []",
                         hint="a single learned number is `param([1])`")
    if min(shape) < 1:
        raise ShapeError(E.OUT_OF_RANGE, f"the sizes of a `param` must be positive, got {dims(shape)}",
                         hint="every axis needs a size of 1 or more")
    n = prod(shape)
    if n > limits.MAX_PARAMS:
        raise ShapeError(E.TOO_LARGE, f"a `param` of shape {dims(shape)} has {n:,} elements, over the limit "
                         f"of {limits.MAX_PARAMS:,}", hint="check the sizes")
    if a["init"] == "kaiming" and len(shape) < 2:
        raise ShapeError(E.OUT_OF_RANGE, f"`init = \"kaiming\"` needs a weight of 2 axes or more, got {dims(shape)}",
                         hint="Kaiming's rule reads the fan of a conv or linear weight "
                              "([out, in, kh, kw]); use \"normal\" with a `std` for a vector")
    return written(a["shape"]), n, 0


PARAM = Primitive(
    "param", (param("shape", "ints", doc="its sizes; any rank, no batch axis", axes=True),
              param("init", "str", "zeros", "how it starts: " + ", ".join(INITS), choices=INITS),
              param("std", "float", 1.0, "the standard deviation of `normal` and `trunc_normal`", lo=0.0, hi=1e3),
              param("value", "float", 0.0, "the value of `constant`", lo=-1e6, hi=1e6)),
    _param, "a learned tensor of any shape (an nn.Parameter), under the layer's own name; "
            "reads no tensor and has no batch axis",
    arity=0, weights=lambda a, shapes: {"": tuple(a["shape"])}, traits=Traits(batchless=True))

# ---------------------------------------------------------------- conv_with


def _conv_with(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("conv_with", shapes[0])
    weight, g = shapes[1], a["groups"]
    if len(weight) != 4:
        raise ShapeError(E.WRONG_TENSOR_KIND, f"the weight of `conv_with` must be [out, in / groups, kh, kw], "
                         f"got {dims(weight)}", hint="a conv weight has 4 axes: `param([out, in, k, k])`")
    out, per_group, kh, kw = weight
    if c % g or out % g:
        bad = c if c % g else out
        raise ShapeError(E.GROUPS_NOT_DIVIDING, f"groups = {g} does not divide {bad} channels",
                         label=f"{c} input channels, {out} output channels",
                         hint="choose groups that divide both channel counts")
    if per_group * g != c:
        raise ShapeError(E.CHANNEL_MISMATCH, f"the weight {dims(weight)} reads {per_group} channels per group, "
                         f"but the input has {c} in {g} group{'s' * (g != 1)}",
                         label=f"input {dims(shapes[0])}, weight {dims(weight)}",
                         hint=f"the weight's second size is in_channels / groups = {c // g}")
    if len(shapes) > 2 and tuple(shapes[2]) != (out,):
        raise ShapeError(E.SIZE_MISMATCH, f"the bias of `conv_with` must be [{out}], one per output channel, "
                         f"got {dims(shapes[2])}", hint=f"`param([{out}])`")
    s, p, d = a["stride"], a["padding"], a["dilation"]
    oh, ow = out_size(h, kh, s, p, d, False), out_size(w, kw, s, p, d, False)
    if oh < 1 or ow < 1:
        raise ShapeError(E.SHRINKS_TO_NOTHING, f"`conv_with` shrinks the {h}×{w} feature map to nothing",
                         label=f"kernel {kh}×{kw}, stride {s}, padding {p} on a {h}×{w} input",
                         hint="use a larger input size or fewer downsampling stages")
    return (out, oh, ow), 0, out * per_group * kh * kw * oh * ow


CONV_WITH = Primitive(
    "conv_with", (param("stride", "int", 1), param("padding", "int", 0), param("dilation", "int", 1),
                  param("groups", "int", 1)),
    _conv_with, "2-D convolution of the running value with a weight and an optional bias given as "
                "learned tensors (torch.nn.functional.conv2d): `conv_with(w, b, stride = 2, padding = 1)`",
    arity=None, operands=(1, 2), module=False,
    traits=Traits(depth=True, resolution="stride", weight_operand=1), overwritable=True)
