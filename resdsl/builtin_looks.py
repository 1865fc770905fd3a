"""The looks of the built-in primitives (see :mod:`resdsl.looks`)."""

from __future__ import annotations

from .ir import Op
from .looks import Look, fmt_constant, register_look


def _builtin(kind: str, look: Look) -> None:
    register_look(kind, look, origin="builtin")


# ---------------------------------------------------------------- weighted layers


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


_builtin("conv", Look(_conv_text("conv"), "conv", table=conv_table))
_builtin("std_conv", Look(_conv_text("WS conv"), "conv", table=conv_table))
_builtin("channel_conv", Look(lambda op: f"{op.attr('kernel_size')}-tap conv across channels", "conv"))
_builtin("linear", Look(lambda op: f"fc, {op.attr('out_features')}", "fc",
                        head=lambda op: f"{op.attr('out_features')}-d fc"))

# ---------------------------------------------------------------- norms

_builtin("batchnorm", Look(lambda op: "BN", "norm"))
_builtin("groupnorm", Look(lambda op: f"GN ({op.attr('groups')} groups)", "norm"))
_builtin("layernorm", Look(lambda op: "LN", "norm"))

# ---------------------------------------------------------------- activations

for _kind, _text in (("relu", "ReLU"), ("relu6", "ReLU6"), ("gelu", "GELU"), ("silu", "SiLU"),
                     ("hardswish", "hard-swish"), ("sigmoid", "sigmoid"), ("tanh", "tanh")):
    _builtin(_kind, Look(lambda op, t=_text: t, "act"))
_builtin("leaky_relu", Look(lambda op: "leaky ReLU", "act"))
_builtin("elu", Look(lambda op: "ELU", "act"))


def _gs_text(op: Op) -> str:
    r, c = op.attr("radix"), op.attr("cardinality")
    if r == 1:
        return "sigmoid"
    return f"softmax over {r} groups" + (f" × {c}" if c != 1 else "")


_builtin("group_softmax", Look(_gs_text, "act"))

# ---------------------------------------------------------------- pooling


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


_builtin("maxpool", Look(_pool_text("max"), "pool", table=_pool_table("max"), head=lambda op: "max pool"))
_builtin("avgpool", Look(_pool_text("avg"), "pool", table=_pool_table("average"), head=lambda op: "average pool"))
_builtin("global_avgpool", Look(lambda op: "global avg pool", "pool", head=lambda op: "average pool"))
_builtin("blurpool", Look(lambda op: f"{op.attr('filt_size')}×{op.attr('filt_size')} blur pool"
                          + (f", /{op.attr('stride')}" if op.attr("stride") != 1 else ""), "pool",
                          table=lambda op, _: f"{op.attr('filt_size')}×{op.attr('filt_size')} blur pool, "
                                              f"stride {op.attr('stride')}"))

# ---------------------------------------------------------------- dataflow



def _arithmetic(symbol: str):
    """``×``, or ``× 0.5`` with a number among the operands (``1 ÷`` where it comes first)."""
    def text(op: Op) -> str:
        at = dict(op.attrs).get("constant_at")
        if at is None:
            return symbol
        number = fmt_constant(op.attr("constant"))
        return f"{number} {symbol}" if at == 0 else f"{symbol} {number}"
    return text


for _kind, _symbol in (("add", "+"), ("multiply", "×"), ("subtract", "−"), ("divide", "÷")):
    _builtin(_kind, Look(_arithmetic(_symbol), "merge", symbol=_symbol))
_builtin("concat", Look(lambda op: "concat", "merge"))


def _reduction(word: str):
    """``mean over axes 1, 2``, ``std over axes 1, 2, 3 (kept)``: what a figure's reader needs."""
    def text(op: Op) -> str:
        s = f"{word} over axes {', '.join(str(a) for a in op.attr('axes'))}"
        return s + (" (kept)" if op.attr("keepdim") else "")
    return text


for _kind, _word in (("mean", "mean"), ("reduce_sum", "sum"), ("var", "variance"), ("std", "std")):
    _builtin(_kind, Look(_reduction(_word), "other"))
_builtin("standardize", Look(lambda op: f"standardise over axes {', '.join(str(a) for a in op.attr('axes'))}",
                             "norm"))
for _kind, _text in (("sqrt", "√"), ("rsqrt", "1/√"), ("reciprocal", "1/x")):
    _builtin(_kind, Look(lambda op, t=_text: t, "act"))
def _part_words(op: Op) -> str:
    """A part of a split as a figure writes it: which part, of how many, and its width
    (the slice ``split 14:28`` is jargon to a reader of a paper)."""
    a = dict(op.attrs)
    return f"part {a['index'] + 1} of {len(a['sizes'])}, {a['sizes'][a['index']]} channels"


_builtin("split", Look(_part_words, "merge"))
_builtin("flatten", Look(lambda op: "flatten"))
_builtin("identity", Look(lambda op: "identity"))
_builtin("dropout", Look(lambda op: f"dropout {op.attr('p'):g}", head=lambda op: f"dropout {op.attr('p'):g}"))
_builtin("drop_path", Look(lambda op: f"drop path {op.attr('p'):g}"))
_builtin("pad", Look(lambda op: f"pad {op.attr('padding')}" + (f" with {op.attr('value'):g}"
                                                               if op.attr("value") else ""), "pad"))
_builtin("zeropad", Look(lambda op: f"zero-pad to {op.attr('out_channels')}"
                         + (f", /{op.attr('stride')}" if op.attr("stride") != 1 else ""), "pad"))

# ---------------------------------------------------------------- learned tensors, conv_with


def _param_text(op: Op) -> str:
    shape = op.attr("shape")
    return "param " + "×".join(map(str, shape))  # type: ignore[arg-type]


def _conv_with_text(op: Op) -> str:
    s = "conv with given weights"
    if op.attr("stride") != 1:
        s += f", /{op.attr('stride')}"
    if op.attr("groups") != 1:
        s += f", groups {op.attr('groups')}"
    return s


_builtin("param", Look(_param_text, "other"))
_builtin("conv_with", Look(_conv_with_text, "conv"))

# ---------------------------------------------------------------- tensor ops of any rank

_builtin("reshape", Look(lambda op: f"reshape to [{', '.join(str(s) for s in op.shape)}]"))
_builtin("permute", Look(lambda op: f"permute {list(op.attr('axes'))}"))
_builtin("transpose", Look(lambda op: f"transpose {op.attr('a')}, {op.attr('b')}"))
_builtin("matmul", Look(lambda op: "matmul", "merge", symbol="@"))
_builtin("softmax", Look(lambda op: f"softmax over axis {op.attr('axis')}", "act"))
_builtin("slice", Look(lambda op: f"slice {op.attr('start')}:{op.attr('end')}"
                      + (f":{op.attr('step')}" if op.attr("step") != 1 else "") + f" of axis {op.attr('axis')}"))
_builtin("pad_axis", Look(lambda op: f"pad axis {op.attr('axis')} by {op.attr('before')}, {op.attr('after')}"
                          + (f" with {op.attr('value'):g}" if op.attr("value") else ""), "pad"))
