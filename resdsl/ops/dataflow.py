"""Dataflow: joining, splitting and passing tensors on, and the option-A shortcut.

``add``, ``multiply``, ``subtract`` and ``concat`` take their inputs as tensor
arguments; ``split`` yields one part of its input's channels (a spec's
``parts: split(4)`` becomes one op per part, with ``sizes`` and ``index``). None has
weights or counts MACs; dropout and drop-path are the identity at inference.
"""

from __future__ import annotations

from math import prod

from ..errors import E
from ..ir import Op, Shape
from ..primitives import Look, Primitive, ShapeError, SourceArg, SourceCall, SourceHelper, param
from .recognise import TENSOR, Call, class_name, square, stock
from .shapes import at_least, feature_map, fmt, residual_join, same

# ---------------------------------------------------------------- add, multiply, subtract


def _add(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    at_least("add", shapes, 2)
    for other in shapes[1:]:
        residual_join("add", shapes[0], other)
    return shapes[0], 0, 0


def _multiply(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    at_least("multiply", shapes, 2)
    if len(shapes) > MAX_PRODUCT:
        raise ShapeError(E.TOO_LARGE, f"`multiply` of {len(shapes):,} tensors is over the limit of {MAX_PRODUCT}",
                         hint="multiply fewer tensors at once, in several layers")
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first):
            raise ShapeError(E.SIZE_MISMATCH, f"`multiply` joins a {fmt(first)} tensor with a {fmt(other)} one")
        if not all(x == y or 1 in (x, y) for x, y in zip(first, other)):  # gating: one side may be C×1×1
            raise ShapeError(E.SIZE_MISMATCH, f"`multiply` cannot broadcast {fmt(first)} with {fmt(other)}",
                             hint="a gate must be C×1×1 or the same shape")
        first = tuple(max(x, y) for x, y in zip(first, other))
    return first, 0, 0


def _subtract(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    if len(shapes) != 2:
        raise ShapeError(E.UNKNOWN_PARAMETER, f"`subtract` takes two inputs, got {len(shapes)}",
                         hint="`subtract(a, b)` is a - b")
    residual_join("subtract", shapes[0], shapes[1])
    return shapes[0], 0, 0


def _augmented(symbol: str):
    """``out += b`` (then ``out += c``): left to right, as the expression form sums them."""
    return lambda ins: [f"{ins[0]} {symbol}= {y}" for y in ins[1:]]


def _chain(onnx_op: str):
    def lower(g, op: Op, xs: list[str], out: str) -> None:
        acc = xs[0]
        for i, y in enumerate(xs[1:-1], start=1):  # left to right, as torch sums them
            acc = g.node(onnx_op, [acc, y], f"{op.name}/{i}")
        g.node(onnx_op, [acc, xs[-1]], op.name, out)
    return lower


#: Inputs past which a sum is written ``sum([b, c, …], a)``: Python compiles ``a + b + …``
#: into a nested tree, and about 3,000 terms exhaust its compiler's stack (issue 25, defect
#: 4). ``sum`` with a start adds left to right, exactly as the infix form does.
LONG_SUM = 64
#: The most inputs a product may have: its infix form has the same limit, and no builtin
#: multiplies left to right from a start without an import.
MAX_PRODUCT = 256


def _infix(symbol: str):
    def render(ins, args):
        if symbol == "+" and len(ins) > LONG_SUM:
            return f"sum([{', '.join(ins[1:])}], {ins[0]})"
        return f" {symbol} ".join(ins)
    return render


def _recognise_binary(symbol: str):
    """``a + b`` (and ``+=``, ``torch.add``) of two tensors; a number on one side is not this op."""
    def recognise(call: Call) -> dict | None:
        import operator

        import torch

        name = {"+": "add", "*": "mul", "-": "sub"}[symbol]
        functions = {getattr(operator, name), getattr(operator, f"i{name}"), getattr(torch, name)}
        ok = (call.function in functions or call.method in (name, f"{name}_")) and \
            call.args[:2] == (TENSOR, TENSOR) and len(call.args) == 2 and not call.kwargs
        return {} if ok else None
    return recognise


ADD = Primitive(
    "add", (), _add, "element-wise sum of its inputs (the residual add)", arity=None, module=False,
    look=Look(lambda op: "+", "merge", symbol="+", residual=True),
    source_function=SourceCall("add", render=_infix("+"), render_inplace=_augmented("+")),
    onnx=((1, _chain("Add")),), inplace=True, overwritable=True, recognise=_recognise_binary("+"))

MULTIPLY = Primitive(
    "multiply", (), _multiply, "element-wise product; a C×1×1 gate broadcasts over H×W",
    arity=None, module=False,
    look=Look(lambda op: "×", "merge", symbol="×"),
    source_function=SourceCall("multiply", render=_infix("*")),
    # not in place: a product's backward needs both factors
    onnx=((1, _chain("Mul")),), overwritable=True, recognise=_recognise_binary("*"))

SUBTRACT = Primitive(
    "subtract", (), _subtract, "element-wise difference `a - b` of two tensors of one shape",
    arity=None, module=False,
    look=Look(lambda op: "−", "merge", symbol="−"),
    source_function=SourceCall("subtract", render=_infix("-"), render_inplace=_augmented("-")),
    onnx=((1, _chain("Sub")),), inplace=True, overwritable=True, recognise=_recognise_binary("-"))

# ---------------------------------------------------------------- concat, split


def _concat(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    at_least("concat", shapes, 1)
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first) or other[1:] != first[1:]:
            raise ShapeError(E.SIZE_MISMATCH, f"`concat` joins a {fmt(first)} tensor with a {fmt(other)} one",
                             label="channels are concatenated; the other sizes must agree",
                             hint="downsample both to the same size first")
    return (sum(s[0] for s in shapes), *first[1:]), 0, 0


def _concat_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Concat", xs, op.name, out, axis=1)


def _channel_dim(call: Call, i: int, default: int = 0) -> bool:
    dim = call.arg(i, "dim", default)
    return isinstance(dim, int) and dim in (1, -3) and all(len(s) == 3 for s in call.in_shapes)


def _recognise_concat(call: Call) -> dict | None:
    import torch

    parts = call.arg(0, "tensors")
    ok = call.function in (torch.cat, torch.concat) and isinstance(parts, (list, tuple)) and \
        all(p is TENSOR for p in parts) and _channel_dim(call, 1)
    return {} if ok else None


CONCAT = Primitive(
    "concat", (), _concat, "its inputs' channels, one after another (torch.cat on dim 1)",
    arity=None, module=False,
    look=Look(lambda op: "concat", "merge"),
    source_function=SourceCall("torch.cat", render=lambda ins, args: f"torch.cat([{', '.join(ins)}], 1)"),
    onnx=((1, _concat_onnx),), overwritable=True, recognise=_recognise_concat)


def split_range(a: dict) -> tuple[int, int]:
    """The channels ``[start, end)`` one part of a split takes."""
    sizes, i = a["sizes"], a["index"]
    start = sum(sizes[:i])
    return start, start + sizes[i]


def _part_words(op: Op) -> str:
    """A part of a split as a figure writes it: which part, of how many, and its width
    (the slice ``split 14:28`` is jargon to a reader of a paper)."""
    a = dict(op.attrs)
    return f"part {a['index'] + 1} of {len(a['sizes'])}, {a['sizes'][a['index']]} channels"


def _split(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c = shapes[0][0]
    sizes, i = tuple(a["sizes"]), a["index"]
    if not sizes or any(not isinstance(s, int) or s < 1 for s in sizes):
        raise ShapeError(E.OUT_OF_RANGE, "`split` sizes must be positive integers", hint="e.g. `split([26, 26, 52])`")
    if sum(sizes) != c:
        raise ShapeError(E.OUT_OF_RANGE, f"`split` sizes add up to {sum(sizes)}, but the input has {c} channels",
                         label=f"sizes {list(sizes)}", hint="the sizes must add up to the channel count")
    if not 0 <= i < len(sizes):
        raise ShapeError(E.OUT_OF_RANGE, f"`split` part {i} does not exist: there are {len(sizes)} parts")
    return (sizes[i], *shapes[0][1:]), 0, 0


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


def _slice(ins: list[str], args: list[str]) -> str:
    """``x[:, a:b]``, spaced as ruff format does when a bound is more than a name or number."""
    simple = all(a.isidentifier() or a.isdigit() for a in args)
    return f"{ins[0]}[:, {args[0]}{':' if simple else ' : '}{args[1]}]"


_SPLIT_ARGS = (SourceArg("start", compute=lambda op, shapes: split_range(dict(op.attrs))[0]),
               SourceArg("end", compute=lambda op, shapes: split_range(dict(op.attrs))[1]))

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


SPLIT = Primitive(
    "split", (param("sizes", "ints"), param("index", "int", 0, lo=0, hi=65_535)), _split,
    "part `index` of its input's channels cut into parts of `sizes` channels (a spec's "
    "`split(…)` yields every part)", module=False,
    look=Look(_part_words, "merge"),
    source_function=SourceCall("split", _SPLIT_ARGS, render=_slice),
    onnx=((1, _split_onnx),), recognise=_recognise_split)

# ---------------------------------------------------------------- flatten, identity, dropout, drop_path


def _flatten(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    return (prod(shapes[0]),), 0, 0


def _flatten_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Flatten", [xs[0]], op.name, out, axis=1)


def _recognise_flatten(call: Call) -> dict | None:
    import torch
    from torch import nn

    if call.module is not None:
        m = call.module
        return {} if stock(m, nn.Flatten) and m.start_dim == 1 and m.end_dim == -1 else None
    if call.function is torch.flatten or call.method == "flatten":
        ok = call.args[:1] == (TENSOR,) and call.arg(1, "start_dim", 0) == 1 and call.arg(2, "end_dim", -1) == -1
        return {} if ok else None
    return None


FLATTEN = Primitive(
    "flatten", (), _flatten, "C×H×W → a vector of C·H·W",
    look=Look(lambda op: "flatten", hidden=True),
    source_module=SourceCall("nn.Flatten", (SourceArg("start_dim", fixed=1),)),
    source_function=SourceCall("torch.flatten", (SourceArg("start_dim", fixed=1),)),
    onnx=((1, _flatten_onnx),), recognise=_recognise_flatten)


def _alias(g, op: Op, xs: list[str], out: str) -> None:
    g.alias(op, op.inputs[0])


IDENTITY = Primitive(
    "identity", (), same, "passes its input through (torch.nn.Identity)",
    look=Look(lambda op: "identity", hidden=True),
    source_module=SourceCall("nn.Identity"), source_function=SourceCall("identity", render=lambda ins, args: ins[0]),
    onnx=((1, _alias),), passthrough="always",
    recognise=lambda call: {} if class_name(call.module) == "Identity" and not list(call.module.children())
    else None)


def _recognise_dropout(call: Call) -> dict | None:
    import torch
    from torch import nn

    if call.module is not None:
        return {"p": float(call.module.p)} if stock(call.module, nn.Dropout) else None
    if call.function is torch.nn.functional.dropout and call.args[:1] == (TENSOR,):
        return {"p": float(call.arg(1, "p", 0.5))}
    return None


DROPOUT = Primitive(
    "dropout", (param("p", "float", 0.5),), same, "dropout (identity in eval mode)",
    look=Look(lambda op: f"dropout {op.attr('p'):g}", head=lambda op: f"dropout {op.attr('p'):g}"),
    source_module=SourceCall("nn.Dropout", (SourceArg("p"),)),
    source_function=SourceCall("F.dropout", (SourceArg("p"),), training=True),
    onnx=((1, _alias),), passthrough="eval", recognise=_recognise_dropout)

_DROP_PATH = SourceHelper("drop_path", template="drop_path.j2", wrap=("drop_path",), defines=("DropPath",))


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


DROP_PATH = Primitive(
    "drop_path", (param("p", "float", 0.0),), same,
    "stochastic depth: drops the whole residual branch per sample (identity in eval mode)",
    look=Look(lambda op: f"drop path {op.attr('p'):g}"),
    source_module=SourceCall("DropPath", (SourceArg("p"),), helpers=(_DROP_PATH,)),
    source_function=SourceCall("drop_path", (SourceArg("p"),), training=True, helpers=(_DROP_PATH,)),
    onnx=((1, _alias),), passthrough="eval", recognise=_recognise_drop_path)

# ---------------------------------------------------------------- pad (constant)


def _pad(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("pad", shapes[0])
    p = a["padding"]
    return (c, h + 2 * p, w + 2 * p), 0, 0


def _pad_onnx(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    p = op.attr("padding")
    if p == 0:
        g.alias(op, op.inputs[0])
        return
    pads = g.const(f"{op.name}/pads", [0, 0, p, p, 0, 0, p, p])
    value = g.const(f"{op.name}/value", float(op.attr("value")), np.float32)
    g.node("Pad", [xs[0], pads, value], op.name, out)


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


PAD = Primitive(
    "pad", (param("padding", "int"), param("value", "float", 0.0, lo=-1e9, hi=1e9)), _pad,
    "constant padding of `padding` on every side of H and W (torch.nn.ConstantPad2d)",
    look=Look(lambda op: f"pad {op.attr('padding')}" + (f" with {op.attr('value'):g}" if op.attr("value") else ""),
              "pad"),
    source_module=SourceCall("nn.ConstantPad2d", (SourceArg("padding"), SourceArg("value"))),
    source_function=SourceCall("F.pad", (SourceArg("padding"), SourceArg("value", "value", 0.0)),
                               render=lambda ins, args: f"F.pad({ins[0]}, [{args[0]}] * 4"
                                                        + "".join(f", {a}" for a in args[1:]) + ")"),
    onnx=((1, _pad_onnx),), recognise=_recognise_pad)

# ---------------------------------------------------------------- zeropad (option A)


def _zeropad(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("zeropad", shapes[0])
    if a["out_channels"] < c:
        raise ShapeError(E.OUT_OF_RANGE, f"`zeropad` can only add channels: {c} → {a['out_channels']}",
                         hint="option A shortcuts only widen; use a projection to narrow")
    s = a["stride"]
    return (a["out_channels"], -(-h // s), -(-w // s)), 0, 0


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


ZEROPAD = Primitive(
    "zeropad", (param("out_channels", "int"), param("stride", "int", 1)), _zeropad,
    "option A shortcut: subsample by `stride`, then pad channels with zeros on both sides", module=False,
    look=Look(lambda op: f"zero-pad to {op.attr('out_channels')}"
              + (f", /{op.attr('stride')}" if op.attr("stride") != 1 else ""), "pad"),
    source_function=SourceCall("zero_pad", (SourceArg("stride", "stride"), SourceArg("out_channels", "out_channels")),
                               helpers=(SourceHelper("zero_pad", template="zero_pad.j2", wrap=("zero_pad",),
                                                     functional=True),)),
    onnx=((1, _zeropad_onnx),),
    recognise=lambda call: {"stride": int(call.arg(1, "stride")), "out_channels": int(call.arg(2, "out_channels"))}
    if call.is_generated("zero_pad") else None)
