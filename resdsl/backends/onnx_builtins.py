"""The ONNX back end's lowerings of the built-in primitives (see :func:`resdsl.backends.onnx_graph.onnx_lowering`).

Each is ``fn(g, op, inputs, out)`` on the graph builder ``g``
(:class:`resdsl.backends.onnx_lowering.Lowering`); one registered for a newer opset takes
over from there. ``numpy`` is imported inside the functions, so registering them stays light.
"""

from __future__ import annotations

import math

from ..ir import Op
from ..ops.elementwise import operands, reduced_axes
from ..ops.norm import BN_TENSORS
from ..ops.pool import blur_padding
from ..ops.tensor import transposition
from . import BackendError
from .fold import fold_conv_bn_arrays
from .onnx_registry import onnx_lowering


def _builtin(kind: str, opset: int = 1):
    return onnx_lowering(kind, opset, origin="builtin")


# ---------------------------------------------------------------- weighted layers


def _conv_attrs(g, a: dict) -> dict:
    k, p, s, d = a["kernel_size"], a["padding"], a["stride"], a["dilation"]
    return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p], "dilations": [d, d],
            "group": a["groups"]}


@_builtin("conv")
def _conv_onnx(g, op: Op, xs: list[str], out: str) -> None:
    a, m = dict(op.attrs), op.module
    bn = g.folded_bn(op)
    if bn is not None:
        w, b = g.state[f"{m}.weight"], g.state.get(f"{m}.bias") if a["bias"] else None
        s = {p: g.state[f"{bn.module}.{p}"] for p in ("weight", "bias", "running_mean", "running_var")}
        w, b = fold_conv_bn_arrays(w, b, s["weight"], s["bias"], s["running_mean"], s["running_var"],
                                   float(bn.attr("eps")))
        # Re-key the folded tensors under the conv's names, as the torch folding pass does.
        inputs = [g.init(f"{m}.weight", w), g.init(f"{m}.bias", b)]
    else:
        inputs = [g.param(f"{m}.weight")] + ([g.param(f"{m}.bias")] if a["bias"] else [])
    g.node("Conv", [xs[0], *inputs], op.name, out, **_conv_attrs(g, a))


@_builtin("std_conv")
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


@_builtin("channel_conv")
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


@_builtin("linear")
def _linear_onnx(g, op: Op, xs: list[str], out: str) -> None:
    w = g.param(f"{op.module}.weight")
    b = [g.param(f"{op.module}.bias")] if op.attr("bias") else []
    g.node("Gemm", [xs[0], w, *b], op.name, out, transB=1)


# ---------------------------------------------------------------- norms


@_builtin("batchnorm")
def _bn_onnx(g, op: Op, xs: list[str], out: str) -> None:
    m = op.module
    g.node("BatchNormalization", [xs[0], *(g.param(f"{m}.{p}") for p in BN_TENSORS)], op.name, out,
           epsilon=float(op.attr("eps")))


@_builtin("groupnorm")
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


@_builtin("groupnorm", 21)
def _gn_native(g, op: Op, xs: list[str], out: str) -> None:
    m = op.module
    g.node("GroupNormalization", [xs[0], g.param(f"{m}.weight"), g.param(f"{m}.bias")], op.name, out,
           epsilon=float(op.attr("eps")), num_groups=op.attr("groups"))
    g.declare(out, op.shape)  # onnx's shape inference has no rule for it yet


@_builtin("layernorm", 17)
def _ln_native(g, op: Op, xs: list[str], out: str) -> None:
    m, name = op.module, op.name
    last = g.node("Transpose", [xs[0]], f"{name}/channels_last", perm=[0, 2, 3, 1])
    y = g.node("LayerNormalization", [last, g.param(f"{m}.weight"), g.param(f"{m}.bias")],
               f"{name}/normalise", axis=-1, epsilon=float(op.attr("eps")))
    g.node("Transpose", [y], name, out, perm=[0, 3, 1, 2])


@_builtin("layernorm")
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


# ---------------------------------------------------------------- activations


def _simple(onnx_op: str):
    def lower(g, op: Op, xs: list[str], out: str) -> None:
        g.node(onnx_op, [xs[0]], op.name, out)
    return lower


@_builtin("relu6")
def _relu6(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    lo = g.const("const/zero", 0.0, np.float32)
    hi = g.const("const/six", 6.0, np.float32)
    g.node("Clip", [xs[0], lo, hi], op.name, out)


@_builtin("silu")
def _silu(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Mul", [xs[0], g.node("Sigmoid", [xs[0]], f"{op.name}/sigmoid")], op.name, out)


@_builtin("hardswish")
def _hardswish_decomposed(g, op: Op, xs: list[str], out: str) -> None:
    # x · hardsigmoid(x) with ONNX's alpha/beta for relu6(x + 3) / 6
    gate = g.node("HardSigmoid", [xs[0]], f"{op.name}/gate", alpha=1.0 / 6.0, beta=0.5)
    g.node("Mul", [xs[0], gate], op.name, out)


@_builtin("gelu")
def _gelu_decomposed(g, op: Op, xs: list[str], out: str) -> None:
    """torch's exact GELU: x · (1 + erf(x / √2)) / 2."""
    import numpy as np

    x, name = xs[0], op.name
    sqrt2 = g.const("const/sqrt2", np.sqrt(2.0), np.float32)
    one = g.const("const/one", 1.0, np.float32)
    half = g.const("const/half", 0.5, np.float32)
    e = g.node("Erf", [g.node("Div", [x, sqrt2], f"{name}/scale")], f"{name}/erf")
    y = g.node("Mul", [x, g.node("Add", [e, one], f"{name}/shift")], f"{name}/gate")
    g.node("Mul", [y, half], name, out)


@_builtin("leaky_relu")
def _leaky_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("LeakyRelu", [xs[0]], op.name, out, alpha=float(op.attr("negative_slope")))


@_builtin("elu")
def _elu_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Elu", [xs[0]], op.name, out, alpha=float(op.attr("alpha")))


@_builtin("group_softmax")
def _gs_onnx(g, op: Op, xs: list[str], out: str) -> None:
    radix, card, name = op.attr("radix"), op.attr("cardinality"), op.name
    if radix == 1:
        g.node("Sigmoid", [xs[0]], name, out)
        return
    groups = g.node("Reshape", [xs[0], g.const(f"{name}/groups", [0, card, radix, -1])], f"{name}/grouped")
    by_radix = g.node("Transpose", [groups], f"{name}/by_radix", perm=[0, 2, 1, 3])
    soft = g.node("Softmax", [by_radix], f"{name}/softmax", axis=1)
    # Back to the input's shape: a constant unless the size is symbolic (--dynamic-size).
    shape = (g.spatial_shape(xs[0], f"{name}/input_shape") if g.varies(op.inputs[0])
             else g.const(f"{name}/shape", [0, *g.shape_of(op.inputs[0])]))
    g.node("Reshape", [soft, shape], name, out)


for _kind, _op in (("relu", "Relu"), ("sigmoid", "Sigmoid"), ("tanh", "Tanh")):
    _builtin(_kind)(_simple(_op))
_builtin("gelu", 20)(_simple("Gelu"))
_builtin("hardswish", 14)(_simple("HardSwish"))


# ---------------------------------------------------------------- pooling


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
    raise BackendError(f"`{{name}}` pools with ceil_mode and padding {p}, stride {s}: its ONNX form depends "
                       "on the input size, so {dynamic_size=True} cannot express it",
                       hint="leave {dynamic_size} out, or give the layer padding 0 (or ceil_mode = false)",
                       name=op.name)


@_builtin("maxpool")
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


@_builtin("avgpool")
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


@_builtin("global_avgpool")
def _gap_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("GlobalAveragePool", [xs[0]], op.name, out)


@_builtin("blurpool")
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


# ---------------------------------------------------------------- dataflow


def _chain(onnx_op: str):
    def lower(g, op: Op, xs: list[str], out: str) -> None:
        import numpy as np

        # a number is a scalar float initializer, broadcast as numpy's like the tensors
        terms = [x if isinstance(x, str) else g.const(f"{op.name}/constant", x, np.float32)
                 for x in operands(dict(op.attrs), xs)]
        acc = terms[0]
        for i, y in enumerate(terms[1:-1], start=1):  # left to right, as torch sums them
            acc = g.node(onnx_op, [acc, y], f"{op.name}/{i}")
        g.node(onnx_op, [acc, terms[-1]], op.name, out)
    return lower


@_builtin("concat")
def _concat_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Concat", xs, op.name, out, axis=1)


@_builtin("split")
def _split_onnx(g, op: Op, xs: list[str], out: str) -> None:
    """One ``Split`` node for all the parts of one split (the first part's lowering writes
    it, named after that part; the others find their tensor written)."""
    if g.produced(out):
        return
    sizes, label = op.attr("sizes"), op.name.rpartition(".")[0]  # the parts are `label.0`, `label.1`…
    siblings = {o.attr("index"): o for o in g.net.ops if o.kind == op.kind and o.inputs == op.inputs
                and o.attr("sizes") == sizes and o.name.rpartition(".")[0] == label}
    outputs = [g.output_of(siblings[i]) if i in siblings else f"{op.name}/unused{i}" for i in range(len(sizes))]
    g.node_outputs("Split", [xs[0], g.const(f"{op.name}/sizes", list(sizes))], op.name, outputs, axis=1)


@_builtin("flatten")
def _flatten_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Flatten", [xs[0]], op.name, out, axis=1)


@_builtin("identity")
@_builtin("dropout")
@_builtin("drop_path")
def _alias(g, op: Op, xs: list[str], out: str) -> None:
    g.alias(op, op.inputs[0])


@_builtin("pad")
def _pad_onnx(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    p = op.attr("padding")
    if p == 0:
        g.alias(op, op.inputs[0])
        return
    pads = g.const(f"{op.name}/pads", [0, 0, p, p, 0, 0, p, p])
    value = g.const(f"{op.name}/value", float(op.attr("value")), np.float32)
    g.node("Pad", [xs[0], pads, value], op.name, out)


@_builtin("zeropad")
def _zeropad_onnx(g, op: Op, xs: list[str], out: str) -> None:
    c, h, w = g.shape_of(op.inputs[0])
    s, extra, x = op.attr("stride"), op.attr("out_channels") - c, xs[0]
    if s == 1 and not extra:
        g.alias(op, op.inputs[0])
        return
    if s != 1:
        # Ends past the size are clamped to it: the same slice at every input size.
        end = [h, w] if not g.varies(op.inputs[0]) else [2**63 - 1] * 2
        args = [g.const(f"{op.name}/{n}", v)
                for n, v in (("starts", [0, 0]), ("ends", end), ("axes", [2, 3]), ("steps", [s, s]))]
        x = g.node("Slice", [x, *args], op.name if not extra else f"{op.name}/slice", out if not extra else None)
    if extra:
        pad = g.const(f"{op.name}/pads", [0, extra // 2, 0, 0, 0, extra - extra // 2, 0, 0])
        g.node("Pad", [x, pad], op.name, out)


for _kind, _op in (("add", "Add"), ("multiply", "Mul"), ("subtract", "Sub"), ("divide", "Div")):
    _builtin(_kind)(_chain(_op))

# ---------------------------------------------------------------- reductions, element-wise functions


def _reduce(g, onnx_op: str, x: str, axes: list[int], keep: bool, name: str, out: str | None = None) -> str:
    """A Reduce* node over ``axes``: an attribute before the opset that made it an input
    (13 for ReduceSum, 18 for the others)."""
    if g.opset >= (13 if onnx_op == "ReduceSum" else 18):
        return g.node(onnx_op, [x, g.const(f"{name}/axes", axes)], name, out, keepdims=int(keep))
    return g.node(onnx_op, [x], name, out, axes=axes, keepdims=int(keep))


def _reduction_onnx(stat):
    """A reduction's lowering around ``stat(g, op, x, axes, keep, name, out)``, which writes the
    statistic of ``x`` over the ONNX ``axes``. Over channel groups, ``x`` is first reshaped to
    N×G×(C/G)×…, the statistic kept per group (N×G×1×…), expanded over each group's channels
    and reshaped back to N×C×…; the other reduced axes are then squeezed unless kept."""
    def lower(g, op: Op, xs: list[str], out: str) -> None:
        a, name, shape = dict(op.attrs), op.name, g.shape_of(op.inputs[0])
        axes = reduced_axes(op.kind, a, shape)
        groups, b = a["groups"], int(op.batched)
        if groups == 1:
            stat(g, op, xs[0], [i + b for i in axes], a["keepdim"], name, out)
            return
        c, rest = shape[0], list(shape[1:])
        if g.varies(op.inputs[0]):
            raise BackendError("`{kind}` over channel groups needs a fixed input size in ONNX",
                               hint="leave {dynamic_size} out", kind=op.kind)
        lead = [0] if b else []
        x = g.node("Reshape", [xs[0], g.const(f"{name}/group_shape", [*lead, groups, c // groups, *rest])],
                   f"{name}/grouped")
        s = stat(g, op, x, [i + b + 1 for i in axes], True, f"{name}/per_group")
        ones = [1 for _ in rest]
        s = g.node("Expand", [s, g.const(f"{name}/expand", [*([1] if b else []), 1, c // groups, *ones])],
                   f"{name}/per_channel")
        kept = [1 if i + 1 in axes else n for i, n in enumerate(rest)]
        final = [*lead, c, *(kept if a["keepdim"] else [n for i, n in enumerate(rest) if i + 1 not in axes])]
        g.node("Reshape", [s, g.const(f"{name}/shape", final)], name, out)
    return lower


def _mean_stat(g, op: Op, x: str, axes: list[int], keep: bool, name: str, out: str | None = None) -> str:
    return _reduce(g, "ReduceMean", x, axes, keep, name, out)


def _sum_stat(g, op: Op, x: str, axes: list[int], keep: bool, name: str, out: str | None = None) -> str:
    return _reduce(g, "ReduceSum", x, axes, keep, name, out)


def _spread_stat(root: bool):
    def stat(g, op: Op, x: str, axes: list[int], keep: bool, name: str, out: str | None = None) -> str:
        """Σ(x − mean)² / (n − correction), as torch computes it; std: √(that + eps)."""
        import numpy as np

        a = dict(op.attrs)
        shape = g.shape_of(op.inputs[0])
        n = math.prod(shape[i] for i in reduced_axes(op.kind, a, shape)) // a["groups"]
        mean = _reduce(g, "ReduceMean", x, axes, True, f"{name}/mean")
        d = g.node("Sub", [x, mean], f"{name}/centred")
        squares = _reduce(g, "ReduceSumSquare", d, axes, keep, f"{name}/squares")
        count = g.const(f"{name}/count", float(n - a["correction"]), np.float32)
        if not root:
            return g.node("Div", [squares, count], name, out)
        var = g.node("Div", [squares, count], f"{name}/var")
        if a["eps"]:
            var = g.node("Add", [var, g.const(f"{name}/eps", float(a["eps"]), np.float32)], f"{name}/plus_eps")
        return g.node("Sqrt", [var], name, out)
    return stat


_builtin("mean")(_reduction_onnx(_mean_stat))
_builtin("reduce_sum")(_reduction_onnx(_sum_stat))
_builtin("var")(_reduction_onnx(_spread_stat(False)))
_builtin("std")(_reduction_onnx(_spread_stat(True)))


@_builtin("standardize")
def _standardize_onnx(g, op: Op, xs: list[str], out: str) -> None:
    """(x − mean) / √(Σ(x − mean)² / (n − correction) + eps) over the axes (the batch axis
    never among them); over a learned tensor onnxruntime folds it to a constant."""
    import numpy as np

    a, name, shape = dict(op.attrs), op.name, g.shape_of(op.inputs[0])
    axes = reduced_axes(op.kind, a, shape)
    n = math.prod(shape[i] for i in axes)
    dims = [i + int(op.batched) for i in axes]
    mean = _reduce(g, "ReduceMean", xs[0], dims, True, f"{name}/mean")
    d = g.node("Sub", [xs[0], mean], f"{name}/centred")
    squares = _reduce(g, "ReduceSumSquare", d, dims, True, f"{name}/squares")
    var = g.node("Div", [squares, g.const(f"{name}/count", float(n - a["correction"]), np.float32)], f"{name}/var")
    var = g.node("Add", [var, g.const(f"{name}/eps", float(a["eps"]), np.float32)], f"{name}/plus_eps")
    g.node("Div", [d, g.node("Sqrt", [var], f"{name}/std")], name, out)


@_builtin("sqrt")
def _sqrt_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Sqrt", xs, op.name, out)


@_builtin("rsqrt")
def _rsqrt_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Reciprocal", [g.node("Sqrt", xs, f"{op.name}/sqrt")], op.name, out)


@_builtin("reciprocal")
def _reciprocal_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Reciprocal", xs, op.name, out)


# ---------------------------------------------------------------- learned tensors, conv_with


@_builtin("param")
def _param_onnx(g, op: Op, xs: list[str], out: str) -> None:
    """The state_dict's tensor as an initializer of its name: no node."""
    g.holds(op, g.param(op.module))


@_builtin("conv_with")
def _conv_with_onnx(g, op: Op, xs: list[str], out: str) -> None:
    a = dict(op.attrs)
    kh, kw = g.shape_of(op.inputs[1])[2:]
    s, p, d = a["stride"], a["padding"], a["dilation"]
    g.node("Conv", xs, op.name, out, kernel_shape=[kh, kw], strides=[s, s], pads=[p, p, p, p],
           dilations=[d, d], group=a["groups"])


# ---------------------------------------------------------------- tensor ops of any rank
# A per-sample axis is the ONNX axis one further on for a batched tensor (axis 0 is the batch).


def _lead(op: Op) -> list[int]:
    return [0] if op.batched else []


@_builtin("reshape")
def _reshape_onnx(g, op: Op, xs: list[str], out: str) -> None:
    # the spec's sizes as written: ONNX's Reshape has the same 0 (keep) and -1 (infer), so
    # the batch dimension (0) and sizes written as 0 or -1 stay symbolic
    sizes = g.const(f"{op.name}/shape", [*_lead(op), *op.attr("shape")])
    g.node("Reshape", [xs[0], sizes], op.name, out)


def _perm(g, op: Op, order: tuple[int, ...], xs: list[str], out: str) -> None:
    shift = len(_lead(op))
    g.node("Transpose", [xs[0]], op.name, out, perm=[*_lead(op), *(i + shift for i in order)])


@_builtin("permute")
def _permute_onnx(g, op: Op, xs: list[str], out: str) -> None:
    rank = len(g.shape_of(op.inputs[0]))
    _perm(g, op, tuple(a % rank for a in op.attr("axes")), xs, out)


@_builtin("transpose")
def _transpose_onnx(g, op: Op, xs: list[str], out: str) -> None:
    _perm(g, op, transposition(dict(op.attrs), g.shape_of(op.inputs[0])), xs, out)


@_builtin("matmul")
def _matmul_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("MatMul", xs, op.name, out)


@_builtin("softmax")
def _softmax_onnx(g, op: Op, xs: list[str], out: str) -> None:
    # opset 13's Softmax (the oldest this back end writes) is over one axis, as torch's
    rank = len(g.shape_of(op.inputs[0]))
    g.node("Softmax", [xs[0]], op.name, out, axis=op.attr("axis") % rank + len(_lead(op)))


@_builtin("slice")
def _slice_onnx(g, op: Op, xs: list[str], out: str) -> None:
    # the spec's start and end as written: ONNX's Slice counts negatives from the end and
    # clamps as Python does, so a symbolic size stays symbolic
    a = op.attr
    rank = len(g.shape_of(op.inputs[0]))
    ins = [xs[0], *(g.const(f"{op.name}/{k}", [v]) for k, v in
                    (("starts", a("start")), ("ends", a("end")), ("axes", a("axis") % rank + len(_lead(op))),
                     ("steps", a("step"))))]
    g.node("Slice", ins, op.name, out)


@_builtin("pad_axis")
def _pad_axis_onnx(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    rank = len(g.shape_of(op.inputs[0])) + len(_lead(op))
    i = op.attr("axis") % len(g.shape_of(op.inputs[0])) + len(_lead(op))
    begins, ends = [0] * rank, [0] * rank
    begins[i], ends[i] = op.attr("before"), op.attr("after")
    pads = g.const(f"{op.name}/pads", begins + ends)
    value = g.const(f"{op.name}/value", float(op.attr("value")), np.float32)
    g.node("Pad", [xs[0], pads, value], op.name, out)
