"""Dataflow: joining, splitting and passing tensors on, and the option-A shortcut.

``concat`` takes its inputs as tensor arguments (the arithmetic, ``add`` and its kin, is
in :mod:`resdsl.ops.elementwise`); ``split`` yields one part of its input's channels (a spec's
``parts: split(4)`` becomes one op per part, with ``sizes`` and ``index``). None has
weights or counts MACs; dropout and drop-path are the identity at inference.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

from ..errors import E
from ..ir import Shape
from ..primitives import Primitive, ShapeError, Traits, param
from .shapes import at_least, feature_map, fmt, same

_MERGE = Traits(merge=True)

# ---------------------------------------------------------------- concat, split


def _concat(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    at_least("concat", shapes, 1)
    first = shapes[0]
    for other in shapes[1:]:
        if len(other) != len(first) or other[1:] != first[1:]:
            raise ShapeError(E.SIZE_MISMATCH, f"`concat` joins a {fmt(first)} tensor with a {fmt(other)} one",
                             label="channels are concatenated; the other sizes must agree",
                             hint="downsample both to the same size first")
    return (sum(s[0] for s in shapes), *first[1:]), 0, 0


CONCAT = Primitive(
    "concat", (), _concat, "its inputs' channels, one after another (torch.cat on dim 1)",
    # `concat(x)` is x's channels alone, not `current` and x
    arity=None, reads_current=False, module=False, traits=_MERGE, overwritable=True)


def split_range(a: Mapping) -> tuple[int, int]:
    """The channels ``[start, end)`` one part of a split takes."""
    sizes, i = a["sizes"], a["index"]
    start = sum(sizes[:i])
    return start, start + sizes[i]


def _split(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
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


SPLIT = Primitive(
    "split", (param("sizes", "ints"), param("index", "int", 0, lo=0, hi=65_535)), _split,
    "part `index` of its input's channels cut into parts of `sizes` channels (a spec's "
    "`split(…)` yields every part)", parts=True, module=False, traits=_MERGE)

# ---------------------------------------------------------------- flatten, identity, dropout, drop_path


def _flatten(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    return (prod(shapes[0]),), 0, 0


FLATTEN = Primitive(
    "flatten", (), _flatten, "C×H×W → a vector of C·H·W",
    traits=Traits(hidden=True))


IDENTITY = Primitive(
    "identity", (), same, "passes its input through (torch.nn.Identity)",
    traits=Traits(hidden=True, identity=True))


DROPOUT = Primitive(
    "dropout", (param("p", "float", 0.5),), same, "dropout (identity in eval mode)",
    traits=Traits(eval_identity=True))


DROP_PATH = Primitive(
    "drop_path", (param("p", "float", 0.0),), same,
    "stochastic depth: drops the whole residual branch per sample (identity in eval mode)",
    traits=Traits(eval_identity=True))

# ---------------------------------------------------------------- pad (constant)


def _pad(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("pad", shapes[0])
    p = a["padding"]
    return (c, h + 2 * p, w + 2 * p), 0, 0


PAD = Primitive(
    "pad", (param("padding", "int"), param("value", "float", 0.0, lo=-1e9, hi=1e9)), _pad,
    "constant padding of `padding` on every side of H and W (torch.nn.ConstantPad2d)",
    traits=Traits(pad=True))

# ---------------------------------------------------------------- zeropad (option A)


def _zeropad(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    c, h, w = feature_map("zeropad", shapes[0])
    if a["out_channels"] < c:
        raise ShapeError(E.OUT_OF_RANGE, f"`zeropad` can only add channels: {c} → {a['out_channels']}",
                         hint="option A shortcuts only widen; use a projection to narrow")
    s = a["stride"]
    return (a["out_channels"], -(-h // s), -(-w // s)), 0, 0


ZEROPAD = Primitive(
    "zeropad", (param("out_channels", "int"), param("stride", "int", 1)), _zeropad,
    "option A shortcut: subsample by `stride`, then pad channels with zeros on both sides", module=False,
    traits=Traits(pad=True, resolution="stride"))
