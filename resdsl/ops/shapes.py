"""Helpers the shape rules share: feature-map checks, window arithmetic, wording.

Every rule returns ``(shape, params, macs)`` or raises :class:`ShapeError` with the
diagnostic's code; the elaborator reports it at the layer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import E
from ..ir import FEATURE_MAP_AXES, NamedShape, Shape, axis_names, axis_texts
from ..primitives import ShapeError

Rule = Callable[[dict, list[Shape]], tuple[Shape, int, int]]


def fmt(shape: Shape) -> str:
    return "×".join(str(s) for s in shape)


def feature_map(kind: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(E.WRONG_TENSOR_KIND, f"`{kind}` needs a C×H×W feature map, got a {fmt(shape)} vector",
                         hint="place it before `flatten()`")
    return shape  # type: ignore[return-value]


def out_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1  # may be negative: a window wider than the input
    out = (-(-span // stride) if ceil else span // stride) + 1
    # As in torch: with ceil_mode the last window must start inside the input or left padding.
    if ceil and (out - 1) * stride >= size + padding:
        out -= 1
    return max(out, 0)


def spatial(kind: str, h: int, w: int, a: dict, ceil: bool = False) -> tuple[int, int]:
    k, s, p, d = a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1)
    oh, ow = (out_size(x, k, s, p, d, ceil) for x in (h, w))
    if oh < 1 or ow < 1:
        raise ShapeError(E.SHRINKS_TO_NOTHING, f"`{kind}` shrinks the {h}×{w} feature map to nothing",
                         label=f"kernel {k}, stride {s}, padding {p} on a {h}×{w} input",
                         hint="use a larger input size or fewer downsampling stages")
    return oh, ow


def same(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    """Shape unchanged, nothing learned, nothing counted (activations, dropout…)."""
    return shapes[0], 0, 0




def at_least(kind: str, shapes: list[Shape], n: int) -> None:
    if len(shapes) < n:
        raise ShapeError(E.UNKNOWN_PARAMETER, f"`{kind}` needs at least {n} input{'s' if n > 1 else ''}, got {len(shapes)}",
                         hint=f"name the tensors to combine: `{kind}(a, b)`")


def residual_join(kind: str, first: Shape, other: Shape) -> None:
    """The checks of a residual add (or subtract): equal channels (E012), equal sizes (E013)."""
    if len(other) != len(first):
        raise ShapeError(E.SIZE_MISMATCH, f"`{kind}` joins a {fmt(first)} tensor with a {fmt(other)} one")
    if other[0] != first[0]:
        what = "residual add" if kind == "add" else f"`{kind}`"
        raise ShapeError(E.CHANNEL_MISMATCH, f"{what} joins {first[0]} channels with {other[0]}",
                         label=f"{fmt(first)} {'+' if kind == 'add' else '−'} {fmt(other)}",
                         hint="use a projection shortcut (`shortcut = option_b`) or keep the width"
                         if kind == "add" else "both operands need the same number of channels")
    if other != first:
        what = "residual add" if kind == "add" else f"`{kind}`"
        raise ShapeError(E.SIZE_MISMATCH, f"{what} joins a {fmt(first)} feature map with a {fmt(other)} one",
                         label=f"{fmt(first)} {'+' if kind == 'add' else '−'} {fmt(other)}",
                         hint="the shortcut must downsample too: use a projection shortcut "
                              "(`shortcut = option_b`) with the block's stride"
                         if kind == "add" else "both operands need the same size")


def divides(groups: int, channels: int, what: str = "groups") -> None:
    if groups < 1 or channels % groups:
        raise ShapeError(E.GROUPS_NOT_DIVIDING, f"{what} = {groups} does not divide {channels} channels",
                         hint=f"choose {what} that divide the channel count")



def dims(shape: Shape) -> str:
    """A shape of any rank as a diagnostic writes it: ``[4, 64, 256]``, with the names of its
    axes where they say more than a feature map's (``[heads: 4, C/heads: 64, HW: 256]``)."""
    return "[" + ", ".join(axis_texts(shape)) + "]"


class Phrase:
    """A diagnostic's phrase about shapes, written (with :func:`dims`) only when a message
    formats it: a rule runs at every layer, and almost none fails."""

    __slots__ = ("text", "shapes")

    def __init__(self, text: str, *shapes: Shape) -> None:
        self.text, self.shapes = text, shapes

    def __format__(self, spec: str) -> str:
        return format(self.text.format(*(dims(s) for s in self.shapes)), spec)

    def __str__(self) -> str:
        return self.__format__("")


# ---------------------------------------------------------------- axis names
# Names are for people (diagnostics, figures): every rule computes its sizes as before and
# passes them through one of these, which only attach names.


def named(sizes: Sequence[int], names: Sequence[str | None]) -> Shape:
    """``sizes`` with the axis names ``names``: a plain tuple where they are the default ones."""
    sizes, names = tuple(sizes), tuple(names)
    if names == (FEATURE_MAP_AXES if len(sizes) == 3 else (None,) * len(sizes)):
        return sizes
    return NamedShape(sizes, names)


def written(sizes: Sequence[int]) -> Shape:
    """Sizes a spec wrote (``param([2 * h - 1, dim_head])``) as a shape named by the
    expressions written for them, if the elaborator attached any; unnamed otherwise."""
    return named(tuple(sizes), getattr(sizes, "names", None) or (None,) * len(sizes))


def picked(shape: Shape, order: Sequence[int]) -> Shape:
    """The axes of ``shape`` in the order ``order``, with their names (permute, transpose)."""
    names = axis_names(shape)
    return named([shape[i] for i in order], [names[i] for i in order])


def resized(shape: Shape, i: int, size: int) -> Shape:
    """``shape`` with axis ``i`` of ``size`` (slice, pad_axis): a part or a padding of the
    axis is not what its name says, so it keeps the name only at the same size."""
    names = axis_names(shape)
    if size != shape[i]:
        names = (*names[:i], None, *names[i + 1:])
    return named((*shape[:i], size, *shape[i + 1:]), names)


def reduced(shape: Shape, gone: set[int], keepdim: bool) -> Shape:
    """``shape`` without the axes ``gone``, or with them of size 1 and still named."""
    names = axis_names(shape)
    if keepdim:
        return named([1 if i in gone else s for i, s in enumerate(shape)], names)
    return named([s for i, s in enumerate(shape) if i not in gone], [n for i, n in enumerate(names) if i not in gone])


def _aligned_names(shapes: Sequence[tuple[Shape, Sequence[str | None]]], out: Shape) -> list[str | None]:
    """The names of a broadcast result's axes: at each axis (aligned at the last), the first
    name among the operands whose size there is the result's."""
    rank = len(out)
    names: list[str | None] = [None] * rank
    for sizes, own in shapes:
        at = rank - len(sizes)
        for i, n in enumerate(own):
            if n is not None and names[at + i] is None and sizes[i] == out[at + i]:
                names[at + i] = n
    return names


def _joined(names: Sequence[str | None]) -> str | None:
    """One name for axes merged into one: ``HW`` for H and W, ``heads·dqk``; none if one is unnamed."""
    if any(n is None for n in names):
        return None
    if all(len(n) == 1 for n in names):  # type: ignore[arg-type]
        return "".join(names)  # type: ignore[arg-type]
    return "·".join(n if n.replace("_", "").isalnum() else f"({n})" for n in names)  # type: ignore[union-attr]


def reshape_names(shape: Shape, sizes: Sequence[int], out: Shape) -> tuple[str | None, ...]:
    """The names of the axes of ``shape`` reshaped to ``out`` (``sizes`` as written: ``0``
    keeps the input's axis). A name given with a size (the expression written for it,
    :func:`resdsl.elaborate.axes.written_names`) comes first; otherwise the input's axes
    and the output's are matched in runs of equal element counts (axes of size 1 aside): an
    axis that stays keeps its name, axes merged into one join theirs (H, W → ``HW``), and
    the one unnamed part of a split axis is what the named parts leave of it (``C/heads``)."""
    given = getattr(sizes, "names", None)
    if given is not None and None not in given:
        return given  # every size written as a name
    src = axis_names(shape)
    names = list(given) if given is not None else [None] * len(out)
    if 0 in sizes:
        for i, s in enumerate(sizes):
            if s == 0 and names[i] is None and i < len(src):
                names[i] = src[i]
    ins = [i for i, n in enumerate(shape) if n != 1]
    outs = [i for i, n in enumerate(out) if n != 1]
    p = q = 0
    while p < len(ins) and q < len(outs):
        gi, go = [ins[p]], [outs[q]]
        a, b = shape[ins[p]], out[outs[q]]
        p, q = p + 1, q + 1
        while a != b:
            if a < b and p < len(ins):
                a, p = a * shape[ins[p]], p + 1
                gi.append(ins[p - 1])
            elif b < a and q < len(outs):
                b, q = b * out[outs[q]], q + 1
                go.append(outs[q - 1])
            else:
                return tuple(names)
        missing = [k for k in go if names[k] is None]
        if len(missing) > 1:  # the part written -1 is what the others leave: [4, -1] of C is C/4
            missing = [k for k in missing if sizes[k] == -1] or missing
        if len(go) == 1 and missing:
            names[go[0]] = _joined([src[i] for i in gi])
        elif len(gi) == 1 and len(missing) == 1 and src[gi[0]] is not None:
            rest = _joined([names[k] or str(out[k]) for k in go if k != missing[0]]) or ""
            names[missing[0]] = f"{src[gi[0]]}/{rest if rest.replace('_', '').isalnum() else f'({rest})'}"
    return tuple(names)


def axis(kind: str, value: int, shape: Shape, what: str = "axis") -> int:
    """``value`` (negative counts from the end) as an index into ``shape``, the per-sample
    shape (axis 0 is the channels of a feature map; the batch axis is never named)."""
    rank = len(shape)
    if not -rank <= value < rank:
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` {what} {value} does not exist in a {dims(shape)} tensor",
                         label=f"{rank} axes: 0 to {rank - 1}, or -1 to -{rank} from the end",
                         hint="axes count from 0, the channels of a feature map; the batch axis has no number")
    return value % rank


def broadcast(kind: str, shapes: list[Shape]) -> Shape:
    """The shape of an element-wise op's result under numpy's broadcasting: shapes are
    aligned at their last axes, and each pair of sizes must be equal or one of them 1. Each
    axis is named by the first operand whose size there is the result's."""
    out: Shape = shapes[0]
    if len(shapes) == 2 and type(out) is tuple and type(shapes[1]) is tuple and out == shapes[1]:
        return out  # the residual add: two plain shapes alike
    for other in shapes[1:]:
        rank = max(len(out), len(other))
        a, b = (1,) * (rank - len(out)) + tuple(out), (1,) * (rank - len(other)) + tuple(other)
        bad = [i for i, (x, y) in enumerate(zip(a, b)) if x != y and 1 not in (x, y)]
        if bad:
            i = bad[0]
            raise ShapeError(E.SIZE_MISMATCH, f"`{kind}` cannot broadcast {dims(out)} with {dims(other)}: "
                             f"sizes {a[i]} and {b[i]} differ at axis {i - rank}",
                             label=f"{dims(out)} and {dims(other)}",
                             hint="sizes must be equal or 1 at each axis, counted from the last "
                                  "(a gate is C×1×1; reshape a C vector to [C, 1, 1])")
        out = tuple(max(x, y) for x, y in zip(a, b))
    for s in shapes:
        if type(s) is not tuple or len(s) != len(out):
            return named(out, _aligned_names([(s, axis_names(s)) for s in shapes], out))
    return out  # plain operands of the result's rank: the default names


def broadcast_names(shapes: Sequence[tuple[Shape, Sequence[str | None]]], out: Shape) -> list[str | None]:
    """:func:`broadcast`'s names for parts of shapes (``matmul``'s axes before the last two)."""
    return _aligned_names(shapes, out)
