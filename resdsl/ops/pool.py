"""Pooling: max and average pooling, global average pooling, anti-aliased (blur) pooling.

None learns anything and none counts MACs; ``blurpool``'s filter is fixed (a buffer
outside the ``state_dict``, as in timm), so it counts zero too.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import E
from ..ir import Attr, Shape
from ..primitives import Primitive, ShapeError, Traits, param
from .shapes import feature_map, spatial

# ---------------------------------------------------------------- maxpool, avgpool


def _pool_rule(kind: str):
    def infer(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, h, w = feature_map(kind, shapes[0])
        if a["padding"] * 2 > a["kernel_size"]:
            raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` padding {a['padding']} exceeds half the kernel "
                             f"size {a['kernel_size']}", hint="torch requires padding ≤ kernel_size / 2")
        oh, ow = spatial(kind, h, w, a, ceil=a["ceil_mode"])
        return (c, oh, ow), 0, 0
    return infer


def _pool_stride(a: Mapping[str, Attr]) -> dict[str, Attr]:
    """The default stride: the kernel size, windows side by side."""
    return {"stride": a["kernel_size"]} if a["stride"] is None else {}


_POOL = Traits(pool=True, resolution="stride")

MAXPOOL = Primitive(
    "maxpool", (param("kernel_size", "int"), param("stride", "int?", None, "default kernel_size"),
                param("padding", "int", 0), param("dilation", "int", 1), param("ceil_mode", "bool", False)),
    _pool_rule("maxpool"), "max pooling (torch.nn.MaxPool2d)",
    fill=_pool_stride, traits=_POOL, overwritable=True)


AVGPOOL = Primitive(
    "avgpool", (param("kernel_size", "int"), param("stride", "int?", None, "default kernel_size"),
                param("padding", "int", 0), param("ceil_mode", "bool", False),
                param("count_include_pad", "bool", True)),
    _pool_rule("avgpool"), "average pooling (torch.nn.AvgPool2d)",
    fill=_pool_stride, traits=_POOL, overwritable=True)

# ---------------------------------------------------------------- global_avgpool


def _global_avgpool(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, _, _ = feature_map("global_avgpool", shapes[0])
    return (c, 1, 1), 0, 0


GLOBAL_AVGPOOL = Primitive(
    "global_avgpool", (), _global_avgpool, "average over H×W to C×1×1 (torch.nn.AdaptiveAvgPool2d(1))",
    traits=Traits(pool=True), overwritable=True)

# ---------------------------------------------------------------- blurpool


def blur_padding(filt_size: int, stride: int) -> int:
    """timm's ``get_padding(filt_size, stride)``: the reflect padding on each side."""
    return (stride - 1 + filt_size - 1) // 2


def _blurpool(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("blurpool", shapes[0])
    f, s = a["filt_size"], a["stride"]
    p = blur_padding(f, s)
    if p >= min(h, w):
        raise ShapeError(E.SHRINKS_TO_NOTHING, f"`blurpool` pads {p} by reflection, which needs a feature map larger than "
                         f"{p}×{p}, got {h}×{w}", hint="use a larger input size or fewer downsampling stages")
    oh, ow = ((n + 2 * p - f) // s + 1 for n in (h, w))
    return (c, oh, ow), 0, 0


BLURPOOL = Primitive(
    "blurpool", (param("stride", "int", 2), param("filt_size", "int", 3, lo=2, hi=15)), _blurpool,
    "anti-aliased downsampling, as timm's BlurPool2d: reflect padding, a fixed binomial "
    "filt_size × filt_size depthwise blur, then the stride",
    traits=_POOL)
