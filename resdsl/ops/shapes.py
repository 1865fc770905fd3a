"""Helpers the shape rules share: feature-map checks, window arithmetic, wording.

Every rule returns ``(shape, params, macs)`` or raises :class:`ShapeError` with the
diagnostic's code; the elaborator reports it at the layer.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import E
from ..ir import Shape
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
    """A shape of any rank as a diagnostic writes it: ``[4, 64, 256]``."""
    return "[" + ", ".join(str(s) for s in shape) + "]"


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
    aligned at their last axes, and each pair of sizes must be equal or one of them 1."""
    out: Shape = shapes[0]
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
    return out
