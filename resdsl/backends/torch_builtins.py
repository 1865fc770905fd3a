"""The torch source's lowerings of the built-in primitives (see :mod:`resdsl.backends.torch_lowering`).

Each helper class or function the generated file may need is one template in
``templates/torch/`` — its only definition — and each kind of module is initialised by one
:class:`SourceInit` here.
"""

from __future__ import annotations

import re

from ..ir import Op, Shape
from ..ops.dataflow import split_range
from ..ops.elementwise import reduced_axes
from .torch_lowering import SourceArg, SourceCall, SourceHelper, SourceInit, TensorInit, torch_lowering


def _builtin(kind: str, **calls: object) -> None:
    torch_lowering(kind, origin="builtin", **calls)  # type: ignore[arg-type]


def inplace_flag(op: Op, shapes: list[Shape]) -> bool:
    """The ``inplace`` argument of a generated call: what resdsl.passes decided for ``op``."""
    return bool(dict(op.attrs).get("inplace", False))


#: ``inplace=True`` in the generated source, written only where the pass chose it.
INPLACE_ARG = SourceArg("inplace", "inplace", default=False, compute=inplace_flag)

# ---------------------------------------------------------------- weighted layers

#: The generated file's wrapper for modules built once (SourceCall.skip_init).
_SKIP_INIT = SourceHelper("skip_init", template="skip_init.j2")

_KAIMING = SourceInit("nn.Conv2d", ('nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")',
                                    "if module.bias is not None:", "    nn.init.zeros_(module.bias)"))

_CONV_ARGS = (SourceArg("in_channels"), SourceArg("out_channels"), SourceArg("kernel_size", "kernel_size"),
              SourceArg("stride", "stride", 1), SourceArg("padding", "padding", 0),
              SourceArg("dilation", "dilation", 1), SourceArg("groups", "groups", 1),
              SourceArg("bias", "bias", True))

_builtin("conv", module=SourceCall("nn.Conv2d", _CONV_ARGS, skip_init=True, helpers=(_SKIP_INIT,)), init=_KAIMING)
# a std_conv is initialised as the nn.Conv2d it is
_builtin("std_conv", module=SourceCall("StdConv2d", (*_CONV_ARGS[:-1], SourceArg("bias", "bias", False),
                                                     SourceArg("eps", "eps", 1e-6)), skip_init=True,
                                       helpers=(_SKIP_INIT, SourceHelper("StdConv2d", template="std_conv.j2",
                                                                         functional=True))),
         init=_KAIMING)
_builtin("channel_conv", module=SourceCall("ChannelConv", (SourceArg("kernel_size"),),
                                           helpers=(SourceHelper("ChannelConv", template="channel_conv.j2"),)))
_builtin("linear", module=SourceCall("nn.Linear", (SourceArg("in_features"), SourceArg("out_features"),
                                                   SourceArg("bias", "bias", True))))

# ---------------------------------------------------------------- norms

_builtin("batchnorm", module=SourceCall("nn.BatchNorm2d", (SourceArg("num_features"), SourceArg("eps", "eps", 1e-5),
                                                           SourceArg("momentum", "momentum", 0.1))),
         init=SourceInit("nn.BatchNorm2d", ("nn.init.ones_(module.weight)", "nn.init.zeros_(module.bias)")))
_builtin("groupnorm", module=SourceCall("nn.GroupNorm", (SourceArg("groups"), SourceArg("num_channels"),
                                                         SourceArg("eps", "eps", 1e-5))))
_builtin("layernorm", module=SourceCall("LayerNorm2d", (SourceArg("num_channels"), SourceArg("eps", "eps", 1e-6)),
                                        helpers=(SourceHelper("LayerNorm2d", template="layer_norm2d.j2",
                                                              functional=True),)))

# ---------------------------------------------------------------- activations

#: kind → (torch.nn class, function), and whether it takes ``inplace``.
_ACTS = {"relu": ("ReLU", "F.relu", True), "relu6": ("ReLU6", "F.relu6", True), "gelu": ("GELU", "F.gelu", False),
         "silu": ("SiLU", "F.silu", True), "hardswish": ("Hardswish", "F.hardswish", True),
         "sigmoid": ("Sigmoid", "torch.sigmoid", False), "tanh": ("Tanh", "torch.tanh", False)}

for _kind, (_module, _function, _inplace) in _ACTS.items():
    _args = (INPLACE_ARG,) if _inplace else ()
    _builtin(_kind, module=SourceCall(f"nn.{_module}", _args), function=SourceCall(_function, _args))

_builtin("elu", module=SourceCall("nn.ELU", (SourceArg("alpha", "alpha", 1.0),)),
         function=SourceCall("F.elu", (SourceArg("alpha", "alpha", 1.0),)))
_builtin("leaky_relu", module=SourceCall("nn.LeakyReLU", (SourceArg("negative_slope"),)),
         function=SourceCall("F.leaky_relu", (SourceArg("negative_slope"),)))

_GS_HELPER = SourceHelper("group_softmax", template="group_softmax.j2", functional=True, defines=("GroupSoftmax",))
_GS_ARGS = (SourceArg("radix"), SourceArg("cardinality"))
_builtin("group_softmax", module=SourceCall("GroupSoftmax", _GS_ARGS, helpers=(_GS_HELPER,)),
         function=SourceCall("group_softmax", _GS_ARGS, helpers=(_GS_HELPER,)))

# ---------------------------------------------------------------- pooling

_POOL_ARGS = (SourceArg("kernel_size"), SourceArg("stride", "stride"), SourceArg("padding", "padding", 0))
_MAX_ARGS = (*_POOL_ARGS, SourceArg("dilation", "dilation", 1), SourceArg("ceil_mode", "ceil_mode", False))
_AVG_ARGS = (*_POOL_ARGS, SourceArg("ceil_mode", "ceil_mode", False),
             SourceArg("count_include_pad", "count_include_pad", True))
_GAP_ARGS = (SourceArg("output_size", fixed=1),)

_builtin("maxpool", module=SourceCall("nn.MaxPool2d", _MAX_ARGS), function=SourceCall("F.max_pool2d", _MAX_ARGS))
_builtin("avgpool", module=SourceCall("nn.AvgPool2d", _AVG_ARGS), function=SourceCall("F.avg_pool2d", _AVG_ARGS))
_builtin("global_avgpool", module=SourceCall("nn.AdaptiveAvgPool2d", _GAP_ARGS),
         function=SourceCall("F.adaptive_avg_pool2d", _GAP_ARGS))

# blur_pool is a leaf for torch.fx: it reads the channel count from the tensor, which torch
# before 2.2 cannot pass to conv2d's `groups` as a traced value
_BLUR_HELPER = SourceHelper("BlurPool2d", template="blur_pool.j2", functional=True,
                            defines=("blur_filter", "blur_pool"), wrap=("blur_pool",))
_builtin("blurpool", module=SourceCall("BlurPool2d", (SourceArg("channels"), SourceArg("filt_size", "filt_size", 3),
                                                      SourceArg("stride", "stride", 2)), helpers=(_BLUR_HELPER,)),
         function=SourceCall("blur_pool", (SourceArg("filt_size"), SourceArg("stride")), helpers=(_BLUR_HELPER,)))

# ---------------------------------------------------------------- dataflow

#: Inputs past which a sum is written ``sum([b, c, …], a)``: Python compiles ``a + b + …``
#: into a nested tree, and about 3,000 terms exhaust its compiler's stack (issue 25, defect
#: 4). ``sum`` with a start adds left to right, exactly as the infix form does.
LONG_SUM = 64


#: The numeric operand of an element-wise op (``x * 0.5``): its value and position, written
#: into the expression by :func:`_infix`.
_CONSTANT_ARGS = (SourceArg("constant"), SourceArg("constant_at", structural=True))


def _infix(symbol: str):
    def render(ins: list[str], args: list[str]) -> str:
        terms = list(ins)
        if args and args[1] != "None":  # the number, where it stands: `x * 0.5`, `1.0 / x`
            terms.insert(int(args[1]), args[0])
        if symbol == "+" and len(terms) > LONG_SUM:
            return f"sum([{', '.join(terms[1:])}], {terms[0]})"
        return f" {symbol} ".join(terms)
    return render


def _augmented(symbol: str):
    """``out += b`` (then ``out += c``): left to right, as the expression form sums them.
    (An op with a number is never run in place: :func:`resdsl.passes.inplace_ops`.)"""
    return lambda ins: [f"{ins[0]} {symbol}= {y}" for y in ins[1:]]


def _slice(ins: list[str], args: list[str]) -> str:
    """``x[:, a:b]``, spaced as ruff format does when a bound is more than a name or number."""
    simple = all(a.isidentifier() or a.isdigit() for a in args)
    return f"{ins[0]}[:, {args[0]}{':' if simple else ' : '}{args[1]}]"


_builtin("add", function=SourceCall("add", _CONSTANT_ARGS, render=_infix("+"), render_inplace=_augmented("+")))
_builtin("multiply", function=SourceCall("multiply", _CONSTANT_ARGS, render=_infix("*")))
_builtin("subtract", function=SourceCall("subtract", _CONSTANT_ARGS, render=_infix("-"),
                                         render_inplace=_augmented("-")))
_builtin("divide", function=SourceCall("divide", _CONSTANT_ARGS, render=_infix("/")))
_builtin("concat", function=SourceCall("torch.cat", render=lambda ins, args: f"torch.cat([{', '.join(ins)}], 1)"))
_builtin("split", function=SourceCall("split", (
    SourceArg("start", compute=lambda op, shapes: split_range(dict(op.attrs))[0]),
    SourceArg("end", compute=lambda op, shapes: split_range(dict(op.attrs))[1])), render=_slice))
_builtin("flatten", module=SourceCall("nn.Flatten", (SourceArg("start_dim", fixed=1),)),
         function=SourceCall("torch.flatten", (SourceArg("start_dim", fixed=1),)))
_builtin("identity", module=SourceCall("nn.Identity"),
         function=SourceCall("identity", render=lambda ins, args: ins[0]))
_builtin("dropout", module=SourceCall("nn.Dropout", (SourceArg("p"),)),
         function=SourceCall("F.dropout", (SourceArg("p"),), training=True))
_DROP_PATH = SourceHelper("drop_path", template="drop_path.j2", wrap=("drop_path",), defines=("DropPath",))
_builtin("drop_path", module=SourceCall("DropPath", (SourceArg("p"),), helpers=(_DROP_PATH,)),
         function=SourceCall("drop_path", (SourceArg("p"),), training=True, helpers=(_DROP_PATH,)))
_builtin("pad", module=SourceCall("nn.ConstantPad2d", (SourceArg("padding"), SourceArg("value"))),
         function=SourceCall("F.pad", (SourceArg("padding"), SourceArg("value", "value", 0.0)),
                             render=lambda ins, args: f"F.pad({ins[0]}, [{args[0]}] * 4"
                                                      + "".join(f", {a}" for a in args[1:]) + ")"))
_builtin("zeropad", function=SourceCall("zero_pad", (SourceArg("stride", "stride"),
                                                     SourceArg("out_channels", "out_channels")),
                                        helpers=(SourceHelper("zero_pad", template="zero_pad.j2", wrap=("zero_pad",),
                                                              functional=True),)))

# ---------------------------------------------------------------- reductions, element-wise functions


def _dims(op: Op, shapes: list[Shape]) -> int | tuple[int, ...]:
    """The torch dims of a reduction: its per-sample axes after the batch axis if it has one,
    and after the group axis of ``grouped(x, groups)`` over channel groups."""
    a = dict(op.attrs)
    shift = op.batched + (a.get("groups", 1) != 1)
    dims = tuple(i + shift for i in reduced_axes(op.kind, a, shapes[0]))
    return dims[0] if len(dims) == 1 else dims


def _squeezed(op: Op, shapes: list[Shape]) -> tuple[int, ...]:
    """Over channel groups without keepdim: the dims to drop once every channel has its value."""
    a = dict(op.attrs)
    if a["groups"] == 1 or a["keepdim"]:
        return ()
    return tuple(i + op.batched for i in reduced_axes(op.kind, a, shapes[0]) if i != 0)


#: `groups` and `keepdim` decide the expression's form, so they are never constructor parameters.
_REDUCE_ARGS = (SourceArg("dim", compute=_dims), SourceArg("keepdim", "keepdim", False, structural=True),
                SourceArg("groups", "groups", 1, structural=True), SourceArg("squeeze", "squeeze", (), compute=_squeezed))
_SPREAD_ARGS = (SourceArg("correction", "correction", 1),)
_GROUPS = SourceHelper("grouped", template="channel_groups.j2", defines=("ungrouped",), wrap=("grouped", "ungrouped"))


def _method(name: str):
    """``x.mean((2, 3), keepdim=True)``; for ``std`` with an ``eps``, the root written out
    (``torch.sqrt(x.var(…) + 1e-05)``); over channel groups, computed on ``grouped(x, g)``
    and given back to every channel by ``ungrouped``."""
    def render(ins: list[str], args: list[str]) -> str:
        x, dim = ins[0], args[0]
        kw = dict(a.split("=", 1) for a in args[1:])
        grouped = "groups" in kw
        rest = [f"correction={kw['correction']}"] if "correction" in kw else []
        if grouped or "keepdim" in kw:
            rest.append("keepdim=True")
        source = f"grouped({x}, {kw['groups']})" if grouped else x
        method = "var" if "eps" in kw else name
        stat = f"{source}.{method}({', '.join([dim, *rest])})"
        if "eps" in kw:
            stat = f"torch.sqrt({stat} + {kw['eps']})"
        if grouped:
            stat = f"ungrouped({stat}, {x})" + (f".squeeze({kw['squeeze']})" if "squeeze" in kw else "")
        return stat
    return render


_builtin("mean", function=SourceCall("mean", _REDUCE_ARGS, render=_method("mean"), helpers=(_GROUPS,)))
_builtin("reduce_sum", function=SourceCall("sum", _REDUCE_ARGS, render=_method("sum"), helpers=(_GROUPS,)))
_builtin("var", function=SourceCall("var", (*_REDUCE_ARGS, *_SPREAD_ARGS), render=_method("var"), helpers=(_GROUPS,)))
_builtin("std", function=SourceCall("std", (*_REDUCE_ARGS, *_SPREAD_ARGS, SourceArg("eps", "eps", 0.0)),
                                    render=_method("std"), helpers=(_GROUPS,)))


def _trailing_from(op: Op, shapes: list[Shape]) -> int:
    """The torch dim from which a standardisation covers every dim to the last, or -1 where
    its dims are not the trailing ones (or the variance is not the biased one F.group_norm uses)."""
    a = dict(op.attrs)
    dims = [i + op.batched for i in reduced_axes(op.kind, a, shapes[0])]
    start = len(shapes[0]) + op.batched - len(dims)
    return start if a["correction"] == 0 and dims == list(range(start, start + len(dims))) else -1


def _standardize_render(ins: list[str], args: list[str]) -> str:
    """One ``F.group_norm`` of one group over the trailing dims (each leading index its own
    sample): ``F.group_norm(w, 1, eps=1e-05)`` for a conv weight's rows; the mean and
    variance written out otherwise."""
    x, dim, eps, correction, start = ins[0], args[0], args[1], args[2], int(args[3])
    if start == 0:  # every dim of a learned tensor
        return f"F.group_norm({x}.unsqueeze(0), 1, eps={eps}).squeeze(0)"
    if start == 1:
        return f"F.group_norm({x}, 1, eps={eps})"
    if start > 1:
        return f"F.group_norm({x}.flatten(0, {start - 1}), 1, eps={eps}).reshape_as({x})"
    return (f"({x} - {x}.mean({dim}, keepdim=True)) * torch.rsqrt({x}.var({dim}, correction={correction}, "
            f"keepdim=True) + {eps})")


_builtin("standardize", function=SourceCall("standardize", (
    # the dims only where the mean and variance are written out
    SourceArg("dim", compute=lambda op, shapes: _dims(op, shapes) if _trailing_from(op, shapes) < 0 else None),
    SourceArg("eps"), SourceArg("correction", structural=True),
    SourceArg("start", compute=_trailing_from, structural=True)), render=_standardize_render))
for _kind in ("sqrt", "rsqrt", "reciprocal"):
    _builtin(_kind, function=SourceCall(f"torch.{_kind}"))

# ---------------------------------------------------------------- learned tensors, conv_with

#: A `param`'s `init` → the statement of reset_parameters that initialises it ({tensor}: its
#: reference); "kaiming" is the generated convs' own.
PARAM_INITS = {"zeros": "nn.init.zeros_({tensor})", "ones": "nn.init.ones_({tensor})",
               "constant": "nn.init.constant_({tensor}, {value!r})", "normal": "nn.init.normal_({tensor}, std={std!r})",
               "trunc_normal": "nn.init.trunc_normal_({tensor}, std={std!r})",
               "kaiming": 'nn.init.kaiming_normal_({tensor}, mode="fan_out", nonlinearity="relu")'}


def _param_init(op: Op) -> str:
    a = dict(op.attrs)
    # the placeholder {tensor} stays for the template to fill
    return PARAM_INITS[str(a["init"])].format(tensor="{tensor}", std=a["std"], value=a["value"])


def _param_size(op: Op, shapes: list[Shape]) -> object:
    """A vector's size as a number (a channel count the class may name), else the shape."""
    shape = op.attr("shape")
    return shape[0] if len(shape) == 1 else shape  # type: ignore[index, arg-type]


def _empty(ins: list[str], args: list[str]) -> str:
    """``nn.Parameter(torch.empty(64, 1, 1))``: a literal shape's parentheses dropped."""
    size = args[0]
    if size.startswith("(") and size.endswith(")"):
        size = size[1:-1].rstrip(",").strip()
    return f"nn.Parameter(torch.empty({size}))"


_builtin("param", module=SourceCall("nn.Parameter", (SourceArg("shape", compute=_param_size),), render=_empty,
                                    tensor=True), init=TensorInit(_param_init))

_CONV_WITH_ARGS = (SourceArg("stride", "stride", 1), SourceArg("padding", "padding", 0),
                   SourceArg("dilation", "dilation", 1), SourceArg("groups", "groups", 1))
_builtin("conv_with", function=SourceCall("F.conv2d", _CONV_WITH_ARGS,
                                          render=lambda ins, args: f"F.conv2d({', '.join([*ins, *args])})"))

# ---------------------------------------------------------------- tensor ops of any rank
# A per-sample axis is the torch dim one further on for a batched tensor; a negative one
# counts from the end either way.


def _dim(op: Op, value: int) -> int:
    return value + 1 if op.batched and value >= 0 else value


def _sizes_text(text: str) -> str:
    """A tuple argument's items as call arguments: ``(4, 64, -1)`` → ``4, 64, -1``; a
    constructor parameter holding one (``self.axes``) is unpacked."""
    if text.startswith("(") and text.endswith(")"):
        return text[1:-1].rstrip(",")
    return f"*{text}"


def _reshape_render(ins: list[str], args: list[str]) -> str:
    """``x.reshape(x.shape[0], 4, 64, -1)``: the batch kept, and a size written 0 (keep
    the input's) read from the tensor, as torch has no such size."""
    x, sizes, batched, keeps = ins[0], args[0], args[1] == "True", args[2]
    lead = int(batched)
    head = [f"{x}.shape[0]"] if batched else []
    if sizes.startswith("(") and sizes.endswith(")"):
        items = [t.strip() for t in sizes[1:-1].split(",") if t.strip()]
        items = [f"{x}.shape[{i + lead}]" if t == "0" else t for i, t in enumerate(items)]
        return f"{x}.reshape({', '.join(head + items)})"
    if keeps == "False":  # sizes that differ between a class's instances, none of them 0
        return f"{x}.reshape({', '.join([*head, f'*{sizes}'])})"
    # sizes that differ between a class's instances, with a 0 among them (a leading 0 keeps the batch)
    every = f"(0,) + {sizes}" if batched else sizes
    return f"{x}.reshape([{x}.shape[i] if s == 0 else s for i, s in enumerate({every})])"


_BATCHED_ARG = SourceArg("batched", compute=lambda op, shapes: bool(op.batched))

_builtin("reshape", function=SourceCall("reshape", (
    SourceArg("shape"), _BATCHED_ARG, SourceArg("keeps", compute=lambda op, shapes: 0 in op.attr("shape"))),
    render=_reshape_render))
_builtin("permute", function=SourceCall("permute", (SourceArg(
    "axes", compute=lambda op, shapes: ((0,) if op.batched else ())
    + tuple(_dim(op, a % len(shapes[0])) for a in op.attr("axes"))),),
    render=lambda ins, args: f"{ins[0]}.permute({_sizes_text(args[0])})"))
_builtin("transpose", function=SourceCall("transpose", (
    SourceArg("a", compute=lambda op, shapes: _dim(op, op.attr("a"))),
    SourceArg("b", compute=lambda op, shapes: _dim(op, op.attr("b")))),
    render=lambda ins, args: f"{ins[0]}.transpose({args[0]}, {args[1]})"))
_builtin("matmul", function=SourceCall("matmul", render=_infix("@")))
_builtin("softmax", function=SourceCall("softmax", (SourceArg("axis", compute=lambda op, shapes: _dim(op, op.attr("axis"))),),
                                        render=lambda ins, args: f"{ins[0]}.softmax(dim={args[0]})"))


def _slice_render(ins: list[str], args: list[str]) -> str:
    """``x[:, :, 3:7]``: a ``:`` for every dim before the sliced one (its torch dim), Python's
    own ``start:end:step``; spaced (``0 : self.end``) where a bound is a class's parameter,
    as ruff formats it."""
    dim, parts = int(args[0]), args[1:] if args[3] != "1" else args[1:3]
    colon = ":" if all(re.fullmatch(r"-?\d+", p) for p in parts) else " : "
    return f"{ins[0]}[{':, ' * dim}{colon.join(parts)}]"


_builtin("slice", function=SourceCall("slice", (
    SourceArg("axis", compute=lambda op, shapes: _dim(op, op.attr("axis") % len(shapes[0]))),
    SourceArg("start"), SourceArg("end"), SourceArg("step")), render=_slice_render))


def _pad_axis_render(ins: list[str], args: list[str]) -> str:
    """``F.pad(x, [0, 0, 0, 1])``: F.pad lists (before, after) from the last dim backwards."""
    after_it, before, after, value = int(args[0]), args[1], args[2], args[3]
    pads = ", ".join(["0, 0"] * after_it + [f"{before}, {after}"])
    return f"F.pad({ins[0]}, [{pads}]" + ("" if float(value) == 0 else f", value={value}") + ")"


_builtin("pad_axis", function=SourceCall("pad_axis", (
    SourceArg("after_it", compute=lambda op, shapes: len(shapes[0]) - 1 - op.attr("axis") % len(shapes[0])),
    SourceArg("before"), SourceArg("after"), SourceArg("value")), render=_pad_axis_render))
