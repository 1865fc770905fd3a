"""The primitive layers: their parameters, defaults, shape rules, parameter counts and MACs.

Each primitive is one :class:`Primitive` in :data:`PRIMITIVES`. A shape rule takes the
filled-in attributes and the input shapes and returns ``(shape, params, macs)``, or
raises :class:`ShapeError`, which the elaborator turns into a diagnostic at the layer.

MACs follow the convention of the published figures (torchvision's GFLOPS, He et al.
2015's FLOPs): multiply-accumulates of convolutions and linear layers only; bias,
normalisation, activations, pooling and element-wise ops count zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod

from .ir import Attr, Shape
from .limits import RANGES

REQUIRED = object()  # marks a parameter without a default


class ShapeError(Exception):
    """A layer cannot apply to its input; carries the diagnostic's code and wording."""

    def __init__(self, code: str, message: str, label: str = "", hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.label, self.hint = code, message, label, hint


@dataclass(frozen=True)
class PrimParam:
    name: str
    type: str  # "int" | "float" | "bool" | "int?" (int or none)
    default: object = REQUIRED
    doc: str = ""
    #: Accepted range, inclusive; checked before anything is built (resdsl/limits.py explains).
    lo: float | None = None
    hi: float | None = None


@dataclass(frozen=True)
class Primitive:
    kind: str
    params: tuple[PrimParam, ...]
    infer: Callable[[dict[str, Attr], list[Shape]], tuple[Shape, int, int]]
    doc: str
    #: None: the positional arguments are the input tensors (add, multiply).
    arity: int | None = 1
    #: False for ops that are always functional, named or not (add, multiply, zeropad).
    module: bool = True

    @property
    def has_params(self) -> bool:
        return self.kind in ("conv", "batchnorm", "linear")


def _feature_map(kind: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError("E051", f"`{kind}` needs a C×H×W feature map, got a {_fmt(shape)} vector",
                         hint="place it before `flatten()`")
    return shape  # type: ignore[return-value]


def _fmt(shape: Shape) -> str:
    return "×".join(str(s) for s in shape)


def _out_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1  # may be negative: a window wider than the input
    out = (-(-span // stride) if ceil else span // stride) + 1
    # As in torch: with ceil_mode the last window must start inside the input or left padding.
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return max(out, 0)


def _spatial(kind: str, h: int, w: int, a: dict, ceil: bool = False) -> tuple[int, int]:
    k, s, p, d = a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1)
    oh, ow = (_out_size(x, k, s, p, d, ceil) for x in (h, w))
    if oh < 1 or ow < 1:
        raise ShapeError("E016", f"`{kind}` shrinks the {h}×{w} feature map to nothing",
                         label=f"kernel {k}, stride {s}, padding {p} on a {h}×{w} input",
                         hint="use a larger input size or fewer downsampling stages")
    return oh, ow


def _conv(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = _feature_map("conv", shapes[0])
    out, g, k = a["out_channels"], a["groups"], a["kernel_size"]
    if a["padding"] is None:
        a["padding"] = (k - 1) // 2 * a["dilation"]
    if c % g or out % g:
        bad = c if c % g else out
        raise ShapeError("E014", f"groups = {g} does not divide {bad} channels",
                         label=f"{c} input channels, {out} output channels",
                         hint="choose groups that divide both channel counts")
    if a["padding"] * 2 >= k * a["dilation"] + 2 * max(h, w):
        raise ShapeError("E015", f"padding {a['padding']} is larger than the input and kernel",
                         hint="padding is usually (kernel_size - 1) // 2 × dilation")
    oh, ow = _spatial("conv", h, w, a)
    weights = out * (c // g) * k * k
    params = weights + (out if a["bias"] else 0)
    return (out, oh, ow), params, weights * oh * ow


def _batchnorm(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, _, _ = _feature_map("batchnorm", shapes[0])
    return shapes[0], 2 * c, 0


def _same(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    return shapes[0], 0, 0


def _pool(kind: str) -> Callable:
    def infer(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, h, w = _feature_map(kind, shapes[0])
        if a["stride"] is None:
            a["stride"] = a["kernel_size"]
        if a["padding"] * 2 > a["kernel_size"]:
            raise ShapeError("E015", f"`{kind}` padding {a['padding']} exceeds half the kernel "
                             f"size {a['kernel_size']}", hint="torch requires padding ≤ kernel_size / 2")
        oh, ow = _spatial(kind, h, w, a, ceil=a["ceil_mode"])
        return (c, oh, ow), 0, 0
    return infer


def _global_avgpool(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, _, _ = _feature_map("global_avgpool", shapes[0])
    return (c, 1, 1), 0, 0


def _flatten(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    return (prod(shapes[0]),), 0, 0


def _linear(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    if len(shapes[0]) != 1:
        raise ShapeError("E051", f"`linear` needs a flat vector, got a {_fmt(shapes[0])} feature map",
                         hint="add `flatten()` (after `global_avgpool()`) before it")
    f, out = shapes[0][0], a["out_features"]
    return (out,), f * out + (out if a["bias"] else 0), f * out


def _elementwise(kind: str) -> Callable:
    def infer(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
        if len(shapes) < 2:
            raise ShapeError("E020", f"`{kind}` needs at least two inputs, got {len(shapes)}",
                             hint=f"name the tensors to combine: `{kind}(a, b)`")
        first = shapes[0]
        for other in shapes[1:]:
            if len(other) != len(first):
                raise ShapeError("E013", f"`{kind}` joins a {_fmt(first)} tensor with a "
                                 f"{_fmt(other)} one")
            if kind == "multiply":  # gating: one side may be C×1×1
                ok = all(x == y or 1 in (x, y) for x, y in zip(first, other))
                if not ok:
                    raise ShapeError("E013", f"`multiply` cannot broadcast {_fmt(first)} with "
                                     f"{_fmt(other)}", hint="a gate must be C×1×1 or the same shape")
                first = tuple(max(x, y) for x, y in zip(first, other))
                continue
            if other[0] != first[0]:
                raise ShapeError("E012", f"residual add joins {first[0]} channels with {other[0]}",
                                 label=f"{_fmt(first)} + {_fmt(other)}",
                                 hint="use a projection shortcut (`shortcut = option_b`) or keep the width")
            if other != first:
                raise ShapeError("E013", f"residual add joins a {_fmt(first)} feature map with "
                                 f"a {_fmt(other)} one",
                                 label=f"{_fmt(first)} + {_fmt(other)}",
                                 hint="the shortcut must downsample too: use a projection shortcut "
                                      "(`shortcut = option_b`) with the block's stride")
        return first, 0, 0
    return infer


def _zeropad(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = _feature_map("zeropad", shapes[0])
    if a["out_channels"] < c:
        raise ShapeError("E015", f"`zeropad` can only add channels: {c} → {a['out_channels']}",
                         hint="option A shortcuts only widen; use a projection to narrow")
    s = a["stride"]
    return (a["out_channels"], -(-h // s), -(-w // s)), 0, 0


def _p(name: str, type_: str, default: object = REQUIRED, doc: str = "") -> PrimParam:
    lo, hi = RANGES.get(name, (None, None))
    return PrimParam(name, type_, default, doc, lo, hi)


_ACTIVATIONS = {
    "relu": "max(x, 0)", "relu6": "min(max(x, 0), 6)", "gelu": "Gaussian error linear unit",
    "silu": "x · sigmoid(x) (swish)", "hardswish": "x · relu6(x + 3) / 6",
    "sigmoid": "1 / (1 + e^-x)", "tanh": "hyperbolic tangent",
}

PRIMITIVES: dict[str, Primitive] = {p.kind: p for p in [
    Primitive("conv", (
        _p("out_channels", "int"), _p("kernel_size", "int"), _p("stride", "int", 1),
        _p("padding", "int?", None, "default (kernel_size - 1) // 2 × dilation"),
        _p("dilation", "int", 1), _p("groups", "int", 1), _p("bias", "bool", False)),
        _conv, "2-D convolution (torch.nn.Conv2d); square kernels"),
    Primitive("batchnorm", (
        _p("eps", "float", 1e-5), _p("momentum", "float", 0.1),
        _p("zero_init", "bool", False, "initialise the scale to 0 (last BN of a residual branch)")),
        _batchnorm, "batch normalisation over channels (torch.nn.BatchNorm2d)"),
    *[Primitive(k, (), _same, f"activation: {d}") for k, d in _ACTIVATIONS.items()],
    Primitive("leaky_relu", (_p("negative_slope", "float", 0.01),), _same,
              "activation: x if x > 0 else negative_slope · x"),
    Primitive("maxpool", (
        _p("kernel_size", "int"), _p("stride", "int?", None, "default kernel_size"),
        _p("padding", "int", 0), _p("dilation", "int", 1), _p("ceil_mode", "bool", False)),
        _pool("maxpool"), "max pooling (torch.nn.MaxPool2d)"),
    Primitive("avgpool", (
        _p("kernel_size", "int"), _p("stride", "int?", None, "default kernel_size"),
        _p("padding", "int", 0), _p("ceil_mode", "bool", False),
        _p("count_include_pad", "bool", True)),
        _pool("avgpool"), "average pooling (torch.nn.AvgPool2d)"),
    Primitive("global_avgpool", (), _global_avgpool,
              "average over H×W to C×1×1 (torch.nn.AdaptiveAvgPool2d(1))"),
    Primitive("flatten", (), _flatten, "C×H×W → a vector of C·H·W"),
    Primitive("linear", (_p("out_features", "int"), _p("bias", "bool", True)), _linear,
              "fully connected layer (torch.nn.Linear)"),
    Primitive("dropout", (_p("p", "float", 0.5),), _same, "dropout (identity in eval mode)"),
    Primitive("drop_path", (_p("p", "float", 0.0),), _same,
              "stochastic depth: drops the whole residual branch per sample (identity in eval mode)"),
    Primitive("identity", (), _same, "passes its input through (torch.nn.Identity)"),
    Primitive("add", (), _elementwise("add"), "element-wise sum of its inputs (the residual add)",
              arity=None, module=False),
    Primitive("multiply", (), _elementwise("multiply"),
              "element-wise product; a C×1×1 gate broadcasts over H×W", arity=None, module=False),
    Primitive("zeropad", (_p("out_channels", "int"), _p("stride", "int", 1)), _zeropad,
              "option A shortcut: subsample by `stride`, then pad channels with zeros on both sides", module=False),
]}
