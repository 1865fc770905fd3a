"""The importer's recognisers of the built-in primitives (see :mod:`resdsl.importer.recognisers`).

Each reads a traced module's attributes (kernel, stride, eps…) or a call's arguments, and
refuses (``None``) anything its primitive does not compute exactly. torch is imported
inside the functions.
"""

from __future__ import annotations

from .calls import TENSOR, Call, class_name, square, stock
from .recognisers import register_recogniser


def _builtin(kind: str):
    def register(fn):
        register_recogniser(kind, fn, origin="builtin")
        return fn

    return register


# ---------------------------------------------------------------- weighted layers


def _module_conv_attrs(m) -> dict | None:
    k, stride, dilation = square(m.kernel_size), square(m.stride), square(m.dilation)
    padding = square(m.padding) if not isinstance(m.padding, str) else None
    if m.padding == "same" and k is not None and dilation is not None and (k - 1) * dilation % 2 == 0:
        padding = (k - 1) * dilation // 2
    if None in (k, stride, dilation, padding) or m.padding_mode != "zeros":
        return None
    return {
        "out_channels": m.out_channels,
        "kernel_size": k,
        "stride": stride,
        "padding": padding,
        "dilation": dilation,
        "groups": m.groups,
        "bias": m.bias is not None,
    }


@_builtin("conv")
def _recognise_conv(call: Call) -> dict | None:
    from torch import nn

    return _module_conv_attrs(call.module) if stock(call.module, nn.Conv2d) else None


@_builtin("std_conv")
def _recognise_std_conv(call: Call) -> dict | None:
    # timm's StdConv2d and the generated source's: standardised weights, a float `eps`
    # (timm's ScaledStdConv2d adds a gain: not this primitive)
    from torch import nn

    m = call.module
    if (
        not isinstance(m, nn.Conv2d)
        or class_name(m) != "StdConv2d"
        or hasattr(m, "gain")
        or not isinstance(getattr(m, "eps", None), float)
    ):
        return None
    a = _module_conv_attrs(m)
    return None if a is None else {**a, "eps": m.eps}


@_builtin("channel_conv")
def _recognise_channel_conv(call: Call) -> dict | None:
    # timm's EcaModule holds a plain Conv1d(1, 1, k) applied to the pooled channels laid
    # out as a sequence; the generated source's ChannelConv is the same layer
    from torch import nn

    m = call.module
    if not isinstance(m, nn.Conv1d) or (
        type(m).forward is not nn.Conv1d.forward and class_name(m) != "ChannelConv"
    ):
        return None
    k = square(m.kernel_size)
    if (
        (m.in_channels, m.out_channels, m.groups, m.bias) != (1, 1, 1, None)
        or k is None
        or k % 2 == 0
        or square(m.stride) != 1
        or square(m.dilation) != 1
        or square(m.padding) != (k - 1) // 2
        or m.padding_mode != "zeros"
    ):
        return None
    return {"kernel_size": k}


@_builtin("linear")
def _recognise_linear(call: Call) -> dict | None:
    from torch import nn

    m = call.module
    return {"out_features": m.out_features, "bias": m.bias is not None} if stock(m, nn.Linear) else None


# ---------------------------------------------------------------- norms


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


@_builtin("batchnorm")
def _recognise_bn(call: Call):
    from torch import nn

    m = call.module
    if m is None:
        return _batch_norm_function(call)
    if not isinstance(m, nn.BatchNorm2d) or not m.affine or not m.track_running_stats:
        return None
    return _with_act(
        call, "batchnorm", {"eps": float(m.eps), "momentum": float(m.momentum or 0.1)}, nn.BatchNorm2d
    )


@_builtin("groupnorm")
def _recognise_gn(call: Call):
    from torch import nn

    m = call.module
    if not isinstance(m, nn.GroupNorm) or not m.affine:
        return None
    return _with_act(call, "groupnorm", {"groups": m.num_groups, "eps": float(m.eps)}, nn.GroupNorm)


@_builtin("layernorm")
def _recognise_ln(call: Call) -> dict | None:
    # timm's LayerNorm2d (and the generated source's): a LayerNorm over the channels, channels first
    m = call.module
    if class_name(m) != "LayerNorm2d" or not getattr(m, "elementwise_affine", True):
        return None
    return {"eps": float(m.eps)}


# ---------------------------------------------------------------- activations


def _recognise_act(kind: str, module: str, function: str):
    def recognise(call: Call) -> dict | None:
        import torch
        from torch import nn

        if call.module is not None:
            cls = getattr(nn, module)
            if not stock(call.module, cls) or getattr(call.module, "approximate", "none") != "none":
                return None
            return {}
        if call.tensors != 1 or call.kwargs.get("approximate", "none") != "none":
            return None
        if call.method is not None:
            return {} if call.method in (kind, f"{kind}_") and len(call.args) == 1 else None
        owner, _, name = function.partition(".")
        functions = {
            getattr(torch.nn.functional if owner == "F" else torch, name),
            getattr(torch, kind, None),
            getattr(torch.nn.functional, kind, None),
        }
        return {} if call.function in functions - {None} and call.args[:1] == (TENSOR,) else None

    return recognise


def _recognise_slope(kind: str, cls: str, name: str, default: float):
    """``nn.LeakyReLU`` / ``nn.ELU`` and their functions ``F.leaky_relu(x, 0.1)``, ``F.elu(x, 1.0)``."""

    def recognise(call: Call) -> dict | None:
        import torch
        from torch import nn

        if call.module is not None:
            return {name: float(getattr(call.module, name))} if stock(call.module, getattr(nn, cls)) else None
        if (
            call.function is not getattr(torch.nn.functional, kind)
            or call.args[:1] != (TENSOR,)
            or call.tensors != 1
        ):
            return None
        value = call.arg(1, name, default)
        return {name: float(value)} if type(value) in (int, float) else None

    return recognise


register_recogniser(
    "leaky_relu", _recognise_slope("leaky_relu", "LeakyReLU", "negative_slope", 0.01), origin="builtin"
)
register_recogniser("elu", _recognise_slope("elu", "ELU", "alpha", 1.0), origin="builtin")


@_builtin("group_softmax")
def _recognise_group_softmax(call: Call) -> dict | None:
    # timm's RadixSoftmax and the generated source's GroupSoftmax / group_softmax
    if call.module is not None:
        m = call.module
        if class_name(m) not in ("RadixSoftmax", "GroupSoftmax"):
            return None
        return {"radix": int(m.radix), "cardinality": int(m.cardinality)}
    if call.is_generated("group_softmax"):
        return {"radix": int(call.arg(1, "radix")), "cardinality": int(call.arg(2, "cardinality", 1))}
    return None


#: kind → its torch.nn class and function.
_ACTS = {
    "relu": ("ReLU", "F.relu"),
    "relu6": ("ReLU6", "F.relu6"),
    "gelu": ("GELU", "F.gelu"),
    "silu": ("SiLU", "F.silu"),
    "hardswish": ("Hardswish", "F.hardswish"),
    "sigmoid": ("Sigmoid", "torch.sigmoid"),
    "tanh": ("Tanh", "torch.tanh"),
}
for _kind, (_module, _function) in _ACTS.items():
    register_recogniser(_kind, _recognise_act(_kind, _module, _function), origin="builtin")


# ---------------------------------------------------------------- pooling


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
        k, s, p = (
            square(call.arg(i, n, d))
            for i, n, d in ((1, "kernel_size", None), (2, "stride", None), (3, "padding", 0))
        )
        if s is None:
            s = k
        ceil = bool(call.arg(5 if not avg else 4, "ceil_mode", False))
        extra = (
            {"count_include_pad": bool(call.arg(5, "count_include_pad", True))}
            if avg
            else {"dilation": square(call.arg(4, "dilation", 1))}
        )
        if avg and call.arg(6, "divisor_override") is not None or call.kwargs.get("return_indices"):
            return None
    else:
        return None
    if None in (k, s, p, *extra.values()):
        return None
    return {"kernel_size": k, "stride": s, "padding": p, "ceil_mode": ceil, **extra}


@_builtin("global_avgpool")
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
        if (
            call.args[:1] != (TENSOR,)
            or len(call.in_shapes[0]) != 3
            or call.kwargs.get("dtype") is not None
            or call.offsets[:1] not in ([], [1])
            or call.batchless[:1] == [True]
            or sorted(d % 4 for d in dims if isinstance(d, int)) != [2, 3]
        ):
            return None
        return {} if call.arg(2, "keepdim", False) else [("global_avgpool", {}), ("flatten", {})]
    return None


@_builtin("blurpool")
def _recognise_blurpool(call: Call) -> dict | None:
    # timm's BlurPool2d (reflect padding, binomial filter) and the generated source's
    if call.is_generated("blur_pool"):
        return {"filt_size": int(call.arg(1, "filt_size")), "stride": int(call.arg(2, "stride"))}
    m = call.module
    if class_name(m) != "BlurPool2d" or getattr(m, "pad_mode", "reflect") != "reflect":
        return None
    f, s = square(getattr(m, "filt_size", None)), square(getattr(m, "stride", None))
    return None if f is None or s is None else {"stride": s, "filt_size": f}


register_recogniser(
    "maxpool", lambda call: _pool_attrs(call, "MaxPool2d", "max_pool2d", False), origin="builtin"
)
register_recogniser(
    "avgpool", lambda call: _pool_attrs(call, "AvgPool2d", "avg_pool2d", True), origin="builtin"
)


# ---------------------------------------------------------------- dataflow


def _recognise_binary(name: str, methods: tuple[str, ...]):
    """``a + b`` (and ``+=``, ``torch.add``, ``x.add(…)``) of two tensors, or of a tensor and
    a number (``x * 0.5``, ``1.0 - x``: the op's ``constant`` and ``constant_at``)."""

    def recognise(call: Call) -> dict | None:
        import operator

        import torch

        functions = {
            getattr(operator, name),
            getattr(operator, f"i{name}"),
            *(getattr(torch, m) for m in methods),
        }
        if (
            not (call.function in functions or call.method in (*methods, *(f"{m}_" for m in methods)))
            or len(call.args) != 2
            or call.kwargs
        ):  # torch.div's rounding_mode is not this op
            return None
        numbers = [i for i, a in enumerate(call.args) if type(a) in (int, float)]
        if call.args.count(TENSOR) == 2:
            return {}
        if call.args.count(TENSOR) == 1 and len(numbers) == 1:
            return {"constant": float(call.args[numbers[0]]), "constant_at": numbers[0]}
        return None

    return recognise


def _channel_dim(call: Call, i: int, default: int = 0) -> bool:
    dim = call.arg(i, "dim", default)
    return isinstance(dim, int) and dim in (1, -3) and all(len(s) == 3 for s in call.in_shapes)


@_builtin("concat")
def _recognise_concat(call: Call) -> dict | None:
    import torch

    parts = call.arg(0, "tensors")
    ok = (
        call.function in (torch.cat, torch.concat)
        and isinstance(parts, (list, tuple))
        and all(p is TENSOR for p in parts)
        and _channel_dim(call, 1)
    )
    return {} if ok else None


@_builtin("split")
def _recognise_split(call: Call) -> dict | None:
    """``torch.split`` / ``chunk`` along the channels: the sizes of all the parts (the
    importer makes one op per part used)."""
    import torch

    if call.args[:1] != (TENSOR,) or not _channel_dim(call, 2):
        return None
    c = call.in_shapes[0][0]
    if call.function is torch.split or call.method == "split":
        size = call.arg(1, "split_size_or_sections")
        if isinstance(size, int) and size > 0:
            return {"sizes": tuple(min(size, c - i) for i in range(0, c, size))}
        if isinstance(size, (list, tuple)) and all(isinstance(v, int) for v in size) and sum(size) == c:
            return {"sizes": tuple(size)}
    elif call.function is torch.chunk or call.method == "chunk":
        n = call.arg(1, "chunks")
        if isinstance(n, int) and n > 0:
            step = -(-c // n)
            return {"sizes": tuple(min(step, c - i) for i in range(0, c, step))}
    return None


@_builtin("flatten")
def _recognise_flatten(call: Call) -> dict | None:
    import torch
    from torch import nn

    if call.module is not None:
        m = call.module
        return {} if stock(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1 else None
    if call.function is torch.flatten or call.method == "flatten":
        ok = (
            call.args[:1] == (TENSOR,)
            and call.arg(1, "start_dim", 0) == 1
            and call.arg(2, "end_dim", -1) == -1
        )
        return {} if ok else None
    return None


@_builtin("dropout")
def _recognise_dropout(call: Call) -> dict | None:
    import torch
    from torch import nn

    if call.module is not None:
        return {"p": float(call.module.p)} if stock(call.module, nn.Dropout) else None
    if call.function is torch.nn.functional.dropout and call.args[:1] == (TENSOR,):
        return {"p": float(call.arg(1, "p", 0.5))}
    return None


@_builtin("drop_path")
def _recognise_drop_path(call: Call) -> dict | None:
    # timm's DropPath (drop_prob) and the generated source's (p)
    if call.module is not None:
        m = call.module
        if class_name(m) != "DropPath":
            return None
        p = getattr(m, "drop_prob", getattr(m, "p", None))
        return {"p": float(p)} if isinstance(p, (int, float)) else None
    if call.is_generated("drop_path"):
        return {"p": float(call.arg(1, "p", 0.0))}
    return None


@_builtin("pad")
def _recognise_pad(call: Call) -> dict | None:
    import torch
    from torch import nn

    if call.module is not None:
        m = call.module
        if not stock(m, nn.ConstantPad2d):
            return None
        pads, value = m.padding, m.value
    elif call.function is torch.nn.functional.pad and call.args[:1] == (TENSOR,):
        pads, value = call.arg(1, "pad"), call.arg(3, "value", 0.0)
        if call.arg(2, "mode", "constant") != "constant":
            return None
    else:
        return None
    p = square(tuple(pads)) if isinstance(pads, (list, tuple)) and len(pads) == 4 else None
    return None if p is None else {"padding": p, "value": float(value or 0.0)}


def _exponent(call: Call) -> float | None:
    """The number of ``x ** p``, ``torch.pow(x, p)``, ``x.pow(p)``; ``x.square()`` is 2."""
    import operator

    import torch

    if (
        (call.method == "square" or call.function is torch.square)
        and call.args == (TENSOR,)
        and not call.kwargs
    ):
        return 2.0
    if (
        not (call.function in (operator.pow, torch.pow) or call.method == "pow")
        or call.kwargs
        or len(call.args) != 2
        or call.args[0] is not TENSOR
        or type(call.args[1]) not in (int, float)
    ):
        return None
    return float(call.args[1])


_multiply = _recognise_binary("mul", ("mul", "multiply"))


@_builtin("multiply")
def _recognise_multiply(call: Call):
    # a square is the tensor times itself
    return [("multiply", {}, [-1, -1])] if _exponent(call) == 2.0 else _multiply(call)


for _kind, _name, _methods in (
    ("add", "add", ("add",)),
    ("subtract", "sub", ("sub", "subtract")),
    ("divide", "truediv", ("div", "divide", "true_divide")),
):
    register_recogniser(_kind, _recognise_binary(_name, _methods), origin="builtin")
register_recogniser(
    "identity",
    lambda call: {} if class_name(call.module) == "Identity" and not list(call.module.children()) else None,
    origin="builtin",
)
register_recogniser(
    "zeropad",
    lambda call: (
        {"stride": int(call.arg(1, "stride")), "out_channels": int(call.arg(2, "out_channels"))}
        if call.is_generated("zero_pad")
        else None
    ),
    origin="builtin",
)


# ---------------------------------------------------------------- reductions, element-wise functions


def _reduction_axes(call: Call) -> tuple[int, ...] | None:
    """A reduction's torch ``dim`` as per-sample axes (the batch dim is never one), or None."""
    dims = call.arg(1, "dim")
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else (dims,)
    rank = len(call.in_shapes[0])
    axes = [call.axis(d) for d in dims]
    if not dims or None in axes:
        return None
    return tuple(sorted(a % rank for a in axes))


def _recognise_reduction(name: str, spread: bool):
    """``x.mean((2, 3))``, ``torch.sum(x, 1, keepdim=True)``, ``x.var(dim, unbiased=False)``…"""

    def recognise(call: Call) -> dict | None:
        import torch

        if (
            not (call.method == name or call.function is getattr(torch, name))
            or call.args[:1] != (TENSOR,)
            or call.kwargs.get("dtype") is not None
        ):
            return None
        allowed = {"dim", "keepdim"} | ({"unbiased", "correction"} if spread else set())
        if set(call.kwargs) - allowed or len(call.args) > 3:
            return None
        axes = _reduction_axes(call)
        keep = call.arg(2, "keepdim", False)
        if axes is None or not isinstance(keep, bool):
            return None
        attrs: dict = {"axes": axes, "keepdim": keep}
        if spread:
            correction = call.kwargs.get("correction", 1 if call.kwargs.get("unbiased", True) else 0)
            if type(correction) not in (int, float) or correction != int(correction) or correction < 0:
                return None
            attrs["correction"] = int(correction)
        return attrs

    return recognise


for _kind, _name, _spread in (
    ("mean", "mean", False),
    ("reduce_sum", "sum", False),
    ("var", "var", True),
    ("std", "std", True),
):
    register_recogniser(_kind, _recognise_reduction(_name, _spread), origin="builtin")


@_builtin("standardize")
def _recognise_standardize(call: Call) -> dict | None:
    """A norm without scale and shift: ``F.group_norm(x, 1, eps=…)`` over each whole sample,
    ``F.layer_norm(x, shape, eps=…)`` over the trailing axes ``shape`` names."""
    import torch.nn.functional as F

    if call.args[:1] != (TENSOR,) or call.tensors != 1:  # a tensor weight or bias: an affine norm
        return None
    shape = call.in_shapes[0]
    if call.function is F.group_norm and set(call.kwargs) <= {"num_groups", "weight", "bias", "eps"} \
            and len(call.args) <= 5 and call.arg(1, "num_groups") == 1:
        # every torch dim after the first: a batched tensor's whole sample, a parameter's
        # (no batch axis) each slice along its first axis (a conv weight's per output channel)
        offset = 0 if call.batchless[:1] == [True] else (call.offsets[:1] or [1])[0]
        axes, eps = tuple(range(1 - offset, len(shape))), call.arg(4, "eps", 1e-5)
    elif call.function is F.layer_norm and set(call.kwargs) <= {"normalized_shape", "weight", "bias", "eps"} \
            and len(call.args) <= 5:
        sizes = call.arg(1, "normalized_shape")
        sizes = tuple(sizes) if isinstance(sizes, (list, tuple)) else (sizes,)
        if not sizes or len(sizes) > len(shape) or sizes != tuple(shape[len(shape) - len(sizes):]):
            return None
        axes, eps = tuple(range(len(shape) - len(sizes), len(shape))), call.arg(4, "eps", 1e-5)
    else:
        return None
    if call.arg(2, "weight") is not None or call.arg(3, "bias") is not None or type(eps) is not float:
        return None
    return {"axes": axes, "eps": eps, "correction": 0}


def _recognise_function(name: str, exponent: float):
    """``torch.sqrt(x)`` and ``x.sqrt()`` (and the in-place ``x.sqrt_()``), ``x ** 0.5``."""

    def recognise(call: Call) -> dict | None:
        import torch

        ok = (
            (call.function is getattr(torch, name) or call.method in (name, f"{name}_"))
            and call.args == (TENSOR,)
            and not call.kwargs
        )
        return {} if ok or _exponent(call) == exponent else None

    return recognise


for _name, _power in (("sqrt", 0.5), ("rsqrt", -0.5), ("reciprocal", -1.0)):
    register_recogniser(_name, _recognise_function(_name, _power), origin="builtin")


# ---------------------------------------------------------------- tensor ops
# Axes are read through Call.axis: a torch dim of a tensor with a batch axis is one less, of
# a learned tensor the same; the batch dim itself is never an op's axis.


@_builtin("softmax")
def _recognise_softmax(call: Call) -> dict | None:
    import torch

    functions = (torch.softmax, torch.nn.functional.softmax)
    if (
        not (call.function in functions or call.method == "softmax")
        or call.args[:1] != (TENSOR,)
        or call.tensors != 1
        or call.kwargs.get("dtype") is not None
    ):
        return None
    axis = call.axis(call.arg(1, "dim"))
    return None if axis is None else {"axis": axis}


@_builtin("matmul")
def _recognise_matmul(call: Call) -> dict | None:
    import operator

    import torch

    ok = call.function in (operator.matmul, torch.matmul, torch.bmm) or call.method in ("matmul", "bmm")
    if not ok or call.args != (TENSOR, TENSOR) or call.kwargs:
        return None
    # the batch (or a batch merged with an axis) lines up in both, or one has none
    offsets = {o for o, b in zip(call.offsets, call.batchless) if not b}
    return {} if len(offsets) <= 1 else None


@_builtin("permute")
def _recognise_permute(call: Call) -> dict | None:
    import torch

    if not (call.function is torch.permute or call.method == "permute") or call.args[:1] != (TENSOR,):
        return None
    dims = call.arg(1, "dims")
    dims = tuple(dims) if isinstance(dims, (list, tuple)) else tuple(call.args[1:])
    rank = len(call.in_shapes[0]) + call.offsets[0] if not call.batchless[0] else len(call.in_shapes[0])
    if len(dims) != rank or not all(type(d) is int for d in dims):
        return None
    dims = tuple(d % rank for d in dims)
    if not call.batchless[0]:
        if dims[0] != 0:  # the batch stays first
            return None
        dims = dims[1:]
    axes = [call.axis(d) for d in dims]
    if None in axes:
        return None
    if not call.batchless[0] and call.offsets[0] == 0:  # the axis merged with the batch stays first
        axes = [0, *axes]
    return {"axes": [a % len(call.in_shapes[0]) for a in axes]}


@_builtin("transpose")
def _recognise_transpose(call: Call) -> dict | None:
    import torch

    if not (call.function is torch.transpose or call.method == "transpose") or call.args[:1] != (TENSOR,):
        return None
    a, b = call.axis(call.arg(1, "dim0")), call.axis(call.arg(2, "dim1"))
    return None if a is None or b is None else {"a": a, "b": b}


@_builtin("pad_axis")
def _recognise_pad_axis(call: Call) -> dict | None:
    """``F.pad(x, [0, 1])``: constant padding of one axis (the last pair of pads is the first axis)."""
    import torch

    if (
        call.function is not torch.nn.functional.pad
        or call.args[:1] != (TENSOR,)
        or call.arg(2, "mode", "constant") != "constant"
    ):
        return None
    pads = call.arg(1, "pad")
    if (
        not isinstance(pads, (list, tuple))
        or len(pads) % 2
        or not all(type(p) is int and p >= 0 for p in pads)
    ):
        return None
    cut = [(k, pads[2 * k], pads[2 * k + 1]) for k in range(len(pads) // 2) if pads[2 * k] or pads[2 * k + 1]]
    cut = cut or [(0, 0, 0)]  # padding by nothing (BoTNet's W - 1 on a 1×1 map)
    if len(cut) != 1 or cut[0][0] >= len(call.in_shapes[0]):
        return None
    k, before, after = cut[0]
    return {
        "axis": -1 - k,
        "before": before,
        "after": after,
        "value": float(call.arg(3, "value", 0.0) or 0.0),
    }


@_builtin("conv_with")
def _recognise_conv_with(call: Call) -> dict | None:
    """``F.conv2d(x, w, b, …)`` with a weight (and a bias) computed or read as tensors (timm's
    ScaledStdConv2d standardises its weight in its forward)."""
    import torch

    if call.function is not torch.nn.functional.conv2d or call.args[:2] != (TENSOR, TENSOR):
        return None
    bias = call.arg(2, "bias")
    if bias is not None and bias is not TENSOR:
        return None
    attrs = {}
    for i, name, default in ((3, "stride", 1), (4, "padding", 0), (5, "dilation", 1), (6, "groups", 1)):
        v = square(call.arg(i, name, default))
        if v is None:
            return None
        attrs[name] = v
    return attrs if all(call.batchless[1:]) else None


def _batch_norm_function(call: Call):
    """``F.batch_norm`` with the statistics of its input (``training=True``, no running
    statistics) over a tensor without a batch axis (timm's ScaledStdConv2d standardises its
    weight so): mean and biased variance over every axis but axis 1, then the scale and shift."""
    import torch

    if call.function is not torch.nn.functional.batch_norm or call.args[:1] != (TENSOR,):
        return None
    if (
        call.arg(1, "running_mean") is not None
        or call.arg(2, "running_var") is not None
        or call.arg(5, "training", False) is not True
        or not call.batchless[0]
    ):
        return None
    shape = call.in_shapes[0]
    if len(shape) < 2:
        return None
    axes = [a for a in range(len(shape)) if a != 1]

    def per_channel(weight):  # a scale or shift of one value per channel, along axis 1
        return [weight[0]] + [1] * (len(shape) - 2)

    eps = float(call.arg(7, "eps", 1e-5))
    x = -1
    graph: list = [
        ("mean", {"axes": axes, "keepdim": True}, [x]),
        ("subtract", {}, [x, 0]),
        ("var", {"axes": axes, "keepdim": True, "correction": 0}, [x]),
        ("add", {"constant": eps, "constant_at": 1}, [2]),
        ("rsqrt", {}, [3]),
        ("multiply", {}, [1, 4]),
    ]
    for i, name, kind in ((3, "weight", "multiply"), (4, "bias", "add")):
        k = call.tensor_at(i, name)
        if call.arg(i, name) is None:
            continue
        if k is None:
            return None
        graph.append(("reshape", {"shape": per_channel(call.in_shapes[k])}, [-1 - k]))
        graph.append((kind, {}, [len(graph) - 2, len(graph) - 1]))
    return graph
