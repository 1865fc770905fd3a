"""Tensor ops of any rank: reshape, permute, transpose, matmul, softmax over an axis, a slice
of one axis and a constant pad of one axis.

Shapes are per sample (the batch axis is never in them, and never named by an axis):
axis 0 is the channels of a feature map, negative axes count from the end. With these an
attention block is written in the language: the logits of a 1×1 conv reshaped to one row
of H·W positions, a softmax over them, a ``matmul`` with the features.

None has weights. ``matmul`` counts its multiply-accumulates (as torch's FLOP counter and
fvcore do); the others count none.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

from ..errors import E
from ..ir import Shape, axis_names
from ..primitives import Primitive, ShapeError, Traits, param
from .shapes import Phrase, at_least, axis, broadcast_names, dims, named, picked, reshape_names, resized

#: The most axes a tensor may have: far above any network's, and what ONNX runtimes handle.
MAX_RANK = 8

_AXIS = {"lo": -MAX_RANK, "hi": MAX_RANK - 1}


def _rank(kind: str, shape: Shape) -> None:
    if len(shape) > MAX_RANK:
        raise ShapeError(E.TOO_LARGE, f"`{kind}` makes a tensor of {len(shape)} axes, over the limit of {MAX_RANK}",
                         hint="merge axes with `reshape`")


# ---------------------------------------------------------------- reshape


def reshape_sizes(sizes: tuple[int, ...], shape: Shape) -> Shape:
    """The output of reshaping ``shape`` to ``sizes``: ``0`` copies the input's size at that
    axis (ONNX's convention), ``-1`` is what the others leave (at most one)."""
    kept = tuple(shape[i] if s == 0 else s for i, s in enumerate(sizes))
    if -1 not in kept:
        return kept
    known = prod(s for s in kept if s != -1)
    return tuple(prod(shape) // known if s == -1 else s for s in kept)


def _reshape(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    sizes, shape = tuple(a["shape"]), shapes[0]
    what = Phrase("`reshape` of {} to {}", shape, sizes)
    if not sizes:
        raise ShapeError(E.OUT_OF_RANGE, f"{what}: the new shape has no axes",
                         hint="give at least one size: `reshape([-1])` is a flat vector")
    _rank("reshape", sizes)
    bad = [s for s in sizes if s < -1]
    if bad:
        raise ShapeError(E.OUT_OF_RANGE, f"{what}: size {bad[0]} is negative",
                         hint="sizes are positive; -1 infers one size, 0 keeps the input's")
    if sizes.count(-1) > 1:
        raise ShapeError(E.OUT_OF_RANGE, f"{what}: more than one size is -1",
                         hint="-1 infers one size from the others: give the rest")
    zeros = [i for i, s in enumerate(sizes) if s == 0 and i >= len(shape)]
    if zeros:
        raise ShapeError(E.OUT_OF_RANGE, f"{what}: size 0 at axis {zeros[0]} keeps an axis the input lacks",
                         label=f"the input has {len(shape)} axes",
                         hint="0 copies the input's size at the same axis; write the size instead")
    kept = tuple(shape[i] if s == 0 else s for i, s in enumerate(sizes))
    total, known = prod(shape), prod(s for s in kept if s != -1)
    if -1 in kept and (known == 0 or total % known):
        raise ShapeError(E.SIZE_MISMATCH, f"{what}: {total:,} elements do not divide into parts of {known:,}",
                         label=f"{' × '.join(str(s) for s in kept if s != -1)} = {known:,}",
                         hint="the sizes other than -1 must divide the input's element count")
    if -1 not in kept and known != total:
        raise ShapeError(E.SIZE_MISMATCH, f"{what}: {total:,} elements cannot take a shape of {known:,}",
                         label=f"{' × '.join(str(s) for s in kept)} = {known:,}",
                         hint="the sizes must multiply to the input's element count; write -1 for one of them")
    out = reshape_sizes(sizes, shape)
    return named(out, reshape_names(shape, a["shape"], out)), 0, 0


RESHAPE = Primitive(
    "reshape", (param("shape", "ints", doc="the new per-sample sizes; -1 infers one, 0 keeps the input's",
                      axes=True),),
    _reshape, "the same elements in a new per-sample shape (`torch.reshape`; -1 infers one size, "
    "0 keeps the input's size at that axis)",
    module=False, traits=Traits(hidden=True))

# ---------------------------------------------------------------- permute, transpose


def permutation(kind: str, axes: tuple[int, ...], shape: Shape) -> tuple[int, ...]:
    """``axes`` normalised (negative counted from the end), checked to be a permutation."""
    if len(axes) != len(shape):
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` of a {dims(shape)} tensor needs {len(shape)} axes, "
                         f"got {len(axes)}: {dims(axes)}",
                         hint=f"list every axis once, in its new order: e.g. {dims(tuple(range(len(shape)))[::-1])}")
    out = tuple(axis(kind, v, shape) for v in axes)
    if len(set(out)) != len(out):
        twice = next(v for v in out if out.count(v) > 1)
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` {dims(axes)} names axis {twice} twice",
                         hint="list every axis once, in its new order")
    return out


def _permute(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    shape = shapes[0]
    order = permutation("permute", tuple(a["axes"]), shape)
    return picked(shape, order), 0, 0


def transposition(a: Mapping, shape: Shape) -> tuple[int, ...]:
    """The permutation that swaps axes ``a`` and ``b`` of ``shape``."""
    i, j = axis("transpose", a["a"], shape), axis("transpose", a["b"], shape)
    order = list(range(len(shape)))
    order[i], order[j] = j, i
    return tuple(order)


def _transpose(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    shape = shapes[0]
    return picked(shape, transposition(a, shape)), 0, 0


PERMUTE = Primitive(
    "permute", (param("axes", "ints", doc="every axis once, in its new order"),), _permute,
    "its input's axes in a new order (`torch.permute`)", module=False, traits=Traits(hidden=True))

TRANSPOSE = Primitive(
    "transpose", (param("a", "int", **_AXIS), param("b", "int", **_AXIS)), _transpose,
    "its input with axes `a` and `b` swapped (`torch.transpose`)", module=False, traits=Traits(hidden=True))

# ---------------------------------------------------------------- matmul


def _matmul(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    at_least("matmul", shapes, 2)
    if len(shapes) != 2:
        raise ShapeError(E.UNKNOWN_PARAMETER, f"`matmul` multiplies two tensors, got {len(shapes)}",
                         hint="`matmul(k)` is current · k, `matmul(q, k)` is q · k")
    x, y = shapes
    what = Phrase("`matmul` of {} and {}", x, y)
    if len(x) < 2 or len(y) < 2:
        raise ShapeError(E.WRONG_TENSOR_KIND, f"{what}: each operand needs at least two axes",
                         hint="reshape a vector of n to [1, n] (a row) or [n, 1] (a column)")
    if x[-1] != y[-2]:
        raise ShapeError(E.SIZE_MISMATCH, f"{what}: inner sizes {x[-1]} and {y[-2]} differ",
                         label=f"the last axis of the first ({x[-1]}) against the next to last of the second ({y[-2]})",
                         hint="transpose one operand (`transpose(-1, -2)`) or reshape it")
    # the axes before the last two broadcast as numpy's, aligned at the last (the elaborator
    # refuses an operand with a batch axis and fewer axes than the result)
    rank = max(len(x), len(y)) - 2
    a, b = (1,) * (rank - len(x) + 2) + x[:-2], (1,) * (rank - len(y) + 2) + y[:-2]
    lead = []
    for i, (p, q) in enumerate(zip(a, b)):
        if p != q and 1 not in (p, q):
            raise ShapeError(E.SIZE_MISMATCH, f"{what}: batch sizes {p} and {q} differ at axis {i - rank - 2}",
                             hint="the axes before the last two must be equal or 1 (they broadcast)")
        lead.append(max(p, q))
    xn, yn = axis_names(x), axis_names(y)
    names = broadcast_names([(x[:-2], xn[:-2]), (y[:-2], yn[:-2])], tuple(lead)) if lead else ()
    out = named((*lead, x[-2], y[-1]), (*names, xn[-2], yn[-1]))
    return out, 0, prod(out) * x[-1]


MATMUL = Primitive(
    "matmul", (), _matmul,
    "matrix product over the last two axes, the axes before them broadcast (`torch.matmul`); "
    "`matmul(k)` is current · k",
    arity=None, module=False, traits=Traits(merge=True), overwritable=True)

# ---------------------------------------------------------------- softmax


def _softmax(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    axis("softmax", a["axis"], shapes[0])
    return shapes[0], 0, 0


SOFTMAX = Primitive(
    "softmax", (param("axis", "int", -1, **_AXIS),), _softmax,
    "softmax over one axis (`torch.softmax`; the last by default)",
    # not overwritable: its backward reads its output
    module=False, traits=Traits(activation=True))

# ---------------------------------------------------------------- slice, pad_axis
# Relative position logits (BoTNet's rel_logits_1d) shift rows by padding one axis, reshaping
# and slicing out the padded elements.

#: bounds of a slice and a pad: far above any axis, and short in a range diagnostic
_BOUND = {"lo": -100_000, "hi": 100_000}


def slice_range(a: Mapping, size: int) -> range:
    """The indices ``slice(axis, start, end, step)`` keeps of an axis of ``size``: Python's
    ``start:end:step`` (negative counted from the end, clamped to the axis)."""
    return range(size)[a["start"]:a["end"]:a["step"]]


def _slice(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    shape = shapes[0]
    i = axis("slice", a["axis"], shape)
    kept = slice_range(a, shape[i])
    if not kept:
        step = f":{a['step']}" if a["step"] != 1 else ""
        raise ShapeError(E.OUT_OF_RANGE, f"`slice` {a['start']}:{a['end']}{step} of axis {a['axis']} "
                         f"(size {shape[i]}) of a {dims(shape)} tensor keeps nothing",
                         label=f"axis {a['axis']} has indices 0 to {shape[i] - 1}",
                         hint="start before end, both within the axis (negative counts from the end)")
    return resized(shape, i, len(kept)), 0, 0


SLICE = Primitive(
    "slice", (param("axis", "int", **_AXIS), param("start", "int", **_BOUND), param("end", "int", **_BOUND),
              param("step", "int", 1, lo=1, hi=_BOUND["hi"])), _slice,
    "the elements `start:end:step` of one axis, as Python's slice (`x[..., start:end:step, ...]`; "
    "negative counts from the end)",
    module=False, traits=Traits(hidden=True))


def _pad_axis(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    shape = shapes[0]
    i = axis("pad_axis", a["axis"], shape)
    return resized(shape, i, shape[i] + a["before"] + a["after"]), 0, 0


PAD_AXIS = Primitive(
    "pad_axis", (param("axis", "int", **_AXIS), param("before", "int", 0, lo=0, hi=_BOUND["hi"]),
                 param("after", "int", 0, lo=0, hi=_BOUND["hi"]), param("value", "float", 0.0, lo=-1e9, hi=1e9)),
    _pad_axis,
    "`before` and `after` elements of `value` added at the two ends of one axis (`F.pad`)",
    module=False, traits=Traits(hidden=True))

TENSOR_OPS = (RESHAPE, PERMUTE, TRANSPOSE, MATMUL, SOFTMAX, SLICE, PAD_AXIS)
