"""Pooling: max and average pooling, global average pooling, anti-aliased (blur) pooling.

None learns anything and none counts MACs; ``blurpool``'s filter is fixed (a buffer
outside the ``state_dict``, as in timm), so it counts zero too.
"""

from __future__ import annotations

import math

from ..errors import E
from ..ir import Op, Shape
from ..primitives import Look, Primitive, ShapeError, SourceArg, SourceCall, SourceHelper, param
from .recognise import TENSOR, Call, class_name, square, stock
from .shapes import feature_map, spatial

# ---------------------------------------------------------------- maxpool, avgpool


def _pool_rule(kind: str):
    def infer(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, h, w = feature_map(kind, shapes[0])
        if a["stride"] is None:
            a["stride"] = a["kernel_size"]
        if a["padding"] * 2 > a["kernel_size"]:
            raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` padding {a['padding']} exceeds half the kernel "
                             f"size {a['kernel_size']}", hint="torch requires padding ≤ kernel_size / 2")
        oh, ow = spatial(kind, h, w, a, ceil=a["ceil_mode"])
        return (c, oh, ow), 0, 0
    return infer


def _pool_text(word: str):
    def text(op: Op) -> str:
        size, stride = op.attr("kernel_size"), op.attr("stride")
        s = f"{size}×{size} {word} pool"
        return s + (f", /{stride}" if stride not in (None, 1) else "")
    return text


def _pool_table(word: str):
    def table(op: Op, with_stride: bool) -> str:
        k, stride = op.attr("kernel_size"), op.attr("stride")
        s = f"{k}×{k} {word} pool"
        return s + (f", stride {stride}" if stride not in (None, 1) else "")
    return table


def _windows(g, op: Op) -> tuple[list[int], dict]:
    # With ceil_mode, torch drops a last window that would start in the right padding;
    # onnx's shape inference does not. So ceil_mode is never emitted: where rounding up
    # adds a window (`extra` > 0), the overhang is spelt out as end padding.
    _, h, w = g.shape_of(op.inputs[0])
    _, oh, ow = op.shape
    k, s, p, d = op.attr("kernel_size"), op.attr("stride"), op.attr("padding"), dict(op.attrs).get("dilation", 1)
    extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, n in ((oh, h), (ow, w))]
    return extra, {"kernel_shape": [k, k], "strides": [s, s]}


def _symbolic_ceil(g, op: Op) -> bool:
    """A ceil_mode pool on a symbolic size (``dynamic_size``): whether a window overhangs
    depends on the size, so ONNX's own ceil_mode is used. Without padding, and with windows
    at least as wide as the stride, no window starts past the input, where torch and ONNX
    differ; other such pools are refused."""
    if not (op.attr("ceil_mode") and g.varies(op.inputs[0])):
        return False
    k, s, p, d = op.attr("kernel_size"), op.attr("stride"), op.attr("padding"), dict(op.attrs).get("dilation", 1)
    if p == 0 and d * (k - 1) + 1 >= s:
        return True
    from ..backends import BackendError

    raise BackendError(f"`{{name}}` pools with ceil_mode and padding {p}, stride {s}: its ONNX form depends "
                       "on the input size, so {dynamic_size=True} cannot express it",
                       hint="leave {dynamic_size} out, or give the layer padding 0 (or ceil_mode = false)",
                       name=op.name)


def _maxpool_onnx(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    if _symbolic_ceil(g, op):
        k, s, d = op.attr("kernel_size"), op.attr("stride"), op.attr("dilation")
        g.node("MaxPool", [xs[0]], op.name, out, kernel_shape=[k, k], strides=[s, s], dilations=[d, d],
               ceil_mode=1)
        return
    extra, attrs = _windows(g, op)
    k, p, d, x = op.attr("kernel_size"), op.attr("padding"), op.attr("dilation"), xs[0]
    pads = [p, p, p + extra[0], p + extra[1]]
    if max(pads) >= k:  # onnxruntime wants pads below the kernel size (dilated windows)
        fill = g.const("const/-inf", -np.inf, np.float32)
        pad = g.const(f"{op.name}/pads", [0, 0, p, p, 0, 0, pads[2], pads[3]])
        x, pads = g.node("Pad", [x, pad, fill], f"{op.name}/pad"), [0, 0, 0, 0]
    g.node("MaxPool", [x], op.name, out, **attrs, pads=pads, dilations=[d, d])


def _avgpool_onnx(g, op: Op, xs: list[str], out: str) -> None:
    if _symbolic_ceil(g, op):  # no padding: nothing to count but the input
        k, s = op.attr("kernel_size"), op.attr("stride")
        g.node("AveragePool", [xs[0]], op.name, out, kernel_shape=[k, k], strides=[s, s], ceil_mode=1,
               count_include_pad=0)
        return
    extra, attrs = _windows(g, op)
    p, x = op.attr("padding"), xs[0]
    pads = [p, p, p + extra[0], p + extra[1]]
    # torch's divisor counts the real padding (with count_include_pad) but never the
    # overhang: the overhang is padding left out of the count, and counted padding
    # next to it becomes explicit zeros. (p + extra < kernel without dilation.)
    include = bool(op.attr("count_include_pad")) and p > 0
    if include and any(extra):
        pad = g.const(f"{op.name}/pads", [0, 0, p, p, 0, 0, p, p])
        x = g.node("Pad", [x, pad], f"{op.name}/pad")
        pads, include = [0, 0, extra[0], extra[1]], False
    g.node("AveragePool", [x], op.name, out, **attrs, pads=pads, count_include_pad=int(include))


def _pool_attrs(call: Call, module_cls: str, function: str, avg: bool) -> dict | None:
    import torch
    from torch import nn

    m = call.module
    if m is not None:
        if not stock(m, getattr(nn, module_cls)):
            return None
        k, s, p = square(m.kernel_size), square(m.stride), square(m.padding)
        extra = {"count_include_pad": bool(m.count_include_pad)} if avg else {"dilation": square(m.dilation)}
        if avg and m.divisor_override is not None:
            return None
        ceil = bool(m.ceil_mode)
    elif call.function is getattr(torch.nn.functional, function) and call.args[:1] == (TENSOR,):
        k, s, p = (square(call.arg(i, n, d)) for i, n, d in ((1, "kernel_size", None), (2, "stride", None),
                                                             (3, "padding", 0)))
        if s is None:
            s = k
        ceil = bool(call.arg(5 if not avg else 4, "ceil_mode", False))
        extra = {"count_include_pad": bool(call.arg(5, "count_include_pad", True))} if avg else \
            {"dilation": square(call.arg(4, "dilation", 1))}
        if avg and call.arg(6, "divisor_override") is not None or call.kwargs.get("return_indices"):
            return None
    else:
        return None
    if None in (k, s, p, *extra.values()):
        return None
    return {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil, **extra}


_POOL_ARGS = (SourceArg("kernel_size"), SourceArg("stride", "stride"), SourceArg("padding", "padding", 0))

MAXPOOL = Primitive(
    "maxpool", (param("kernel_size", "int"), param("stride", "int?", None, "default kernel_size"),
                param("padding", "int", 0), param("dilation", "int", 1), param("ceil_mode", "bool", False)),
    _pool_rule("maxpool"), "max pooling (torch.nn.MaxPool2d)",
    look=Look(_pool_text("max"), "pool", table=_pool_table("max"), pool=True, head=lambda op: "max pool"),
    source_module=SourceCall("nn.MaxPool2d", (*_POOL_ARGS, SourceArg("dilation", "dilation", 1),
                                              SourceArg("ceil_mode", "ceil_mode", False))),
    source_function=SourceCall("F.max_pool2d", (*_POOL_ARGS, SourceArg("dilation", "dilation", 1),
                                                SourceArg("ceil_mode", "ceil_mode", False))),
    onnx=((1, _maxpool_onnx),), overwritable=True,
    recognise=lambda call: _pool_attrs(call, "MaxPool2d", "max_pool2d", False))

_AVG_ARGS = (*_POOL_ARGS, SourceArg("ceil_mode", "ceil_mode", False),
             SourceArg("count_include_pad", "count_include_pad", True))

AVGPOOL = Primitive(
    "avgpool", (param("kernel_size", "int"), param("stride", "int?", None, "default kernel_size"),
                param("padding", "int", 0), param("ceil_mode", "bool", False),
                param("count_include_pad", "bool", True)),
    _pool_rule("avgpool"), "average pooling (torch.nn.AvgPool2d)",
    look=Look(_pool_text("avg"), "pool", table=_pool_table("average"), pool=True,
              head=lambda op: "average pool"),
    source_module=SourceCall("nn.AvgPool2d", _AVG_ARGS), source_function=SourceCall("F.avg_pool2d", _AVG_ARGS),
    onnx=((1, _avgpool_onnx),), overwritable=True,
    recognise=lambda call: _pool_attrs(call, "AvgPool2d", "avg_pool2d", True))

# ---------------------------------------------------------------- global_avgpool


def _global_avgpool(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, _, _ = feature_map("global_avgpool", shapes[0])
    return (c, 1, 1), 0, 0


def _gap_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("GlobalAveragePool", [xs[0]], op.name, out)


_GAP_ARGS = (SourceArg("output_size", fixed=1),)

def _recognise_gap(call: Call):
    """AdaptiveAvgPool2d(1), F.adaptive_avg_pool2d(x, 1), and a mean over H and W (timm's SE
    and ECA); without keepdim, the mean is the pooling and a flatten."""
    import torch
    from torch import nn

    m = call.module
    if m is not None:
        return {} if stock(m, nn.AdaptiveAvgPool2d) and square(m.output_size) == 1 else None
    if call.function is torch.nn.functional.adaptive_avg_pool2d:
        return {} if square(call.arg(1, "output_size")) == 1 else None
    if call.method == "mean" or call.function is torch.mean:
        dims = call.arg(1, "dim")
        dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
        if call.args[:1] != (TENSOR,) or len(call.in_shapes[0]) != 3 or call.kwargs.get("dtype") is not None or \
                sorted(d % 4 for d in dims if isinstance(d, int)) != [2, 3]:
            return None
        return {} if call.arg(2, "keepdim", False) else [("global_avgpool", {}), ("flatten", {})]
    return None


GLOBAL_AVGPOOL = Primitive(
    "global_avgpool", (), _global_avgpool, "average over H×W to C×1×1 (torch.nn.AdaptiveAvgPool2d(1))",
    look=Look(lambda op: "global avg pool", "pool", pool=True, head=lambda op: "average pool"),
    source_module=SourceCall("nn.AdaptiveAvgPool2d", _GAP_ARGS),
    source_function=SourceCall("F.adaptive_avg_pool2d", _GAP_ARGS),
    onnx=((1, _gap_onnx),), overwritable=True, recognise=_recognise_gap)

# ---------------------------------------------------------------- blurpool


def blur_padding(filt_size: int, stride: int) -> int:
    """timm's ``get_padding(filt_size, stride)``: the reflect padding on each side."""
    return (stride - 1 + filt_size - 1) // 2


def _blurpool(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("blurpool", shapes[0])
    f, s = a["filt_size"], a["stride"]
    p = blur_padding(f, s)
    if p >= min(h, w):
        raise ShapeError(E.SHRINKS_TO_NOTHING, f"`blurpool` pads {p} by reflection, which needs a feature map larger than "
                         f"{p}×{p}, got {h}×{w}", hint="use a larger input size or fewer downsampling stages")
    oh, ow = ((n + 2 * p - f) // s + 1 for n in (h, w))
    return (c, oh, ow), 0, 0


def _blurpool_onnx(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    c = g.shape_of(op.inputs[0])[0]
    f, s, name = op.attr("filt_size"), op.attr("stride"), op.name
    p = blur_padding(f, s)
    padded = g.node("Pad", [xs[0], g.const(f"{name}/pads", [0, 0, p, p, 0, 0, p, p])], f"{name}/pad",
                    mode="reflect")
    # the binomial filter of templates/torch/blur_pool.j2, in numpy (the ONNX path needs no torch)
    row = np.array([math.comb(f - 1, k) for k in range(f)], np.float32) / 2 ** (f - 1)
    filt = g.init(f"{name}/filt", np.broadcast_to(row[:, None] * row[None, :], (c, 1, f, f)))
    g.node("Conv", [padded, filt], name, out, kernel_shape=[f, f], strides=[s, s], group=c)


# blur_pool is a leaf for torch.fx: it reads the channel count from the tensor, which torch
# before 2.2 cannot pass to conv2d's `groups` as a traced value
_BLUR_HELPER = SourceHelper("BlurPool2d", template="blur_pool.j2", functional=True,
                            defines=("blur_filter", "blur_pool"), wrap=("blur_pool",))

def _recognise_blurpool(call: Call) -> dict | None:
    # timm's BlurPool2d (reflect padding, binomial filter) and the generated source's
    if call.is_generated("blur_pool"):
        return {"filt_size": int(call.arg(1, "filt_size")), "stride": int(call.arg(2, "stride"))}
    m = call.module
    if class_name(m) != "BlurPool2d" or getattr(m, "pad_mode", "reflect") != "reflect":
        return None
    f, s = square(getattr(m, "filt_size", None)), square(getattr(m, "stride", None))
    return None if f is None or s is None else {"stride": s, "filt_size": f}


BLURPOOL = Primitive(
    "blurpool", (param("stride", "int", 2), param("filt_size", "int", 3, lo=2, hi=15)), _blurpool,
    "anti-aliased downsampling, as timm's BlurPool2d: reflect padding, a fixed binomial "
    "filt_size × filt_size depthwise blur, then the stride",
    look=Look(lambda op: f"{op.attr('filt_size')}×{op.attr('filt_size')} blur pool"
              + (f", /{op.attr('stride')}" if op.attr("stride") != 1 else ""), "pool",
              table=lambda op, _: f"{op.attr('filt_size')}×{op.attr('filt_size')} blur pool, "
                                  f"stride {op.attr('stride')}", pool=True),
    source_module=SourceCall("BlurPool2d", (SourceArg("channels"), SourceArg("filt_size", "filt_size", 3),
                                            SourceArg("stride", "stride", 2)), helpers=(_BLUR_HELPER,)),
    source_function=SourceCall("blur_pool", (SourceArg("filt_size"), SourceArg("stride")),
                               helpers=(_BLUR_HELPER,)),
    onnx=((1, _blurpool_onnx),), recognise=_recognise_blurpool)
