"""Axis names from what a spec writes: the expressions of a size list name the axes of the
shape they give (``reshape([heads, in_channels // heads, in_height * in_width])`` is
``[heads, C/heads, HW]``). Names are for people, in diagnostics and figures; they never
change a size, an attribute or a lowering (:mod:`resdsl.ops.shapes` derives the rest)."""

from __future__ import annotations

from ..ir import NamedShape
from ..syntax import Arg, BinOp, Expr, ListExpr, Name, Num

#: The definition's input axes, by the names a feature map's axes have.
_INPUT_AXES = {"in_channels": "C", "in_height": "H", "in_width": "W"}


def _label(e: Expr, top: bool = False) -> str | None:
    """The name an expression gives an axis: a variable's name, or arithmetic on names and
    whole numbers (``2W-1``, ``C/heads``, ``HW``); none for a bare number (``-1``, ``64``:
    the size alone) or anything else (a call, a condition)."""
    t = type(e)
    if t is Name:
        return _INPUT_AXES.get(e.id, e.id)  # type: ignore[union-attr]
    if t is Num:
        return None if top or type(e.value) is not int else str(e.value)  # type: ignore[union-attr]
    if t is not BinOp or e.op not in ("*", "/", "//", "+", "-"):  # type: ignore[union-attr]
        return None
    left, right = _label(e.left), _label(e.right)  # type: ignore[union-attr]
    if left is None or right is None:
        return None
    op = e.op  # type: ignore[union-attr]
    if op in ("+", "-"):
        if type(e.right) is BinOp and e.right.op in ("+", "-"):  # type: ignore[union-attr]
            right = f"({right})"
        return f"{left}{op}{right}"
    if type(e.left) is BinOp and e.left.op in ("+", "-"):  # type: ignore[union-attr]
        left = f"({left})"
    if type(e.right) is BinOp:
        right = f"({right})"
    if op != "*":
        return f"{left}/{right}"
    if type(e.left) is Num or (len(left) == 1 and len(right) == 1):
        return f"{left}{right}"  # 2W, HW
    return f"{left}·{right}"


def name_axes(attrs: dict, key: str, args: tuple[Arg, ...], names: tuple[str, ...]) -> None:
    """Attach to ``attrs[key]`` (a list of sizes) the names its written list gives, when the
    call wrote it as a list (positionally at ``key``'s place, or as ``key = [...]``)."""
    sizes = attrs.get(key)
    if type(sizes) is not tuple:
        return
    at, i, arg = names.index(key), 0, None
    for a in args:
        if a.name == key or (a.name is None and i == at):
            arg = a
            break
        i += a.name is None
    if arg is None or type(arg.value) is not ListExpr:
        return
    node = arg.value
    # a definition's statements run once per instance: label its lists once (kept on the
    # frozen node, as the elaborator keeps a definition's parameter names)
    labels = node.__dict__.get("_axis_labels")
    if labels is None:
        labels = tuple(_label(e, top=True) for e in node.items)
        object.__setattr__(node, "_axis_labels", labels if any(n is not None for n in labels) else ())
        labels = node.__dict__["_axis_labels"]
    if labels and len(labels) == len(sizes):
        attrs[key] = NamedShape(sizes, labels)
