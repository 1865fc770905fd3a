"""Element-wise arithmetic with numpy's broadcasting and numeric constants; reductions
over axes (``mean``, ``sum``, ``var``, ``std``) and ``standardize`` (zero mean, unit variance
over axes); ``sqrt``, ``rsqrt``, ``reciprocal``.

``add``, ``subtract``, ``multiply`` and ``divide`` take their operands as arguments:
tensors, and at most one number (``multiply(0.5)``, ``add(x, 1e-5)``, ``divide(1.0, x)``).
The number is not an input: it is the attribute ``constant``, and ``constant_at`` says
where it stands among the operands (``None``: there is none), so the IR stays plain data
and a back end writes ``x * 0.5`` or a scalar initializer. Shapes broadcast as numpy's
(:func:`~resdsl.ops.shapes.broadcast`); a residual add (or subtract) of two feature maps
that cannot broadcast keeps its own diagnostics, E012 (channels) and E013 (sizes), with
their projection hints. A reduction names the per-sample axes it reduces (0 is the
channels of a feature map; the batch axis has no number and is never reduced). None has
weights or counts MACs (the published figures' convention).
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod

from ..errors import E
from ..ir import Attr, Shape, shown_names
from ..primitives import Primitive, ShapeError, Traits, param
from .shapes import axis, broadcast, dims, divides, reduced, residual_join, same

#: The most inputs a product may have: the generated source's infix form has the same limit,
#: and no builtin multiplies left to right from a start without an import.
MAX_PRODUCT = 256

#: The attributes of a numeric operand; a primitive that declares them takes numbers among
#: its tensor arguments (the elaborator reads them, back ends write the number in place).
CONSTANT_PARAMS = (
    param("constant", "float", 0.0, "the numeric operand", lo=-1e300, hi=1e300),
    param("constant_at", "int?", None, "its position among the operands; none: no number", lo=0, hi=65_536),
)


def operands(attrs: Mapping[str, Attr], inputs: list) -> list:
    """The operands in order: ``inputs`` with the constant (a float) inserted where it stands."""
    out = list(inputs)
    at = attrs.get("constant_at")
    if at is not None:
        out.insert(int(at), float(attrs["constant"]))  # type: ignore[arg-type]
    return out


def _count(kind: str, a: Mapping, shapes: list[Shape], least: int, most: int | None) -> int:
    at = a.get("constant_at")
    n = len(shapes) + (at is not None)
    if at is not None and not 0 <= at <= len(shapes):
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}`: the number's position {at} is not among its {n} operands")
    if not shapes:
        raise ShapeError(E.UNKNOWN_PARAMETER, f"`{kind}` needs a tensor among its operands",
                         hint=f"e.g. `{kind}(x, 2.0)`, or `{kind}(2.0)` with the running value")
    if n < least or (most is not None and n > most):
        what = f"exactly {least}" if most == least else f"at least {least}"
        raise ShapeError(E.UNKNOWN_PARAMETER, f"`{kind}` takes {what} operands, got {n}",
                         hint=f"`{kind}(a, b)` is a {_SYMBOL[kind]} b; a number may be one of them")
    return n


_SYMBOL = {"add": "+", "subtract": "−", "multiply": "×", "divide": "/"}


def _joined(kind: str, shapes: list[Shape]) -> Shape:
    """The broadcast shape; two feature maps that cannot broadcast are a residual join's
    mismatch (E012 for channels, E013 for sizes) with its projection hint (three axes
    named otherwise, [heads, HW, dqk], are no feature map: numpy's rule's message)."""
    out = shapes[0]
    for other in shapes[1:]:
        try:
            out = broadcast(kind, [out, other])
        except ShapeError:
            if len(out) == len(other) == 3 and shown_names(out) is None and shown_names(other) is None:
                residual_join(kind, out, other)
            raise
    return out


def _add(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    _count("add", a, shapes, 2, None)
    return _joined("add", shapes), 0, 0


def _subtract(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    _count("subtract", a, shapes, 2, 2)
    return _joined("subtract", shapes), 0, 0


def _multiply(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    n = _count("multiply", a, shapes, 2, None)
    if n > MAX_PRODUCT:
        raise ShapeError(E.TOO_LARGE, f"`multiply` of {n:,} operands is over the limit of {MAX_PRODUCT}",
                         hint="multiply fewer tensors at once, in several layers")
    return broadcast("multiply", shapes), 0, 0


def _divide(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    _count("divide", a, shapes, 2, 2)
    if a.get("constant_at") == 1 and a.get("constant") == 0:
        raise ShapeError(E.OUT_OF_RANGE, "`divide` by the number 0", hint="divide by a number other than 0")
    return broadcast("divide", shapes), 0, 0


_MERGE = Traits(merge=True)

ADD = Primitive(
    "add", CONSTANT_PARAMS, _add,
    "element-wise sum of its operands, broadcast as numpy's (the residual add)", arity=None, module=False,
    traits=Traits(merge=True, residual=True), inplace=True, overwritable=True)

MULTIPLY = Primitive(
    "multiply", CONSTANT_PARAMS, _multiply,
    "element-wise product, broadcast as numpy's (a C×1×1 gate over C×H×W)", arity=None, module=False,
    # not in place: a product's backward needs both factors
    traits=_MERGE, overwritable=True)

SUBTRACT = Primitive(
    "subtract", CONSTANT_PARAMS, _subtract, "element-wise difference `a - b`, broadcast as numpy's",
    arity=None, module=False, traits=_MERGE, inplace=True, overwritable=True)

DIVIDE = Primitive(
    "divide", CONSTANT_PARAMS, _divide, "element-wise quotient `a / b`, broadcast as numpy's",
    # not in place: a quotient's backward needs both operands
    arity=None, module=False, traits=_MERGE, overwritable=True)

ARITHMETIC = (ADD, MULTIPLY, SUBTRACT, DIVIDE)

# ---------------------------------------------------------------- reductions


def reduced_axes(kind: str, a: Mapping, shape: Shape) -> tuple[int, ...]:
    """The per-sample axes a reduction reduces, normalised and sorted (E015 for an axis that
    does not exist or is named twice)."""
    raw = tuple(a["axes"])
    if not raw:
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` over no axes", label=f"a {dims(shape)} tensor",
                         hint=f"name the axes it reduces: `{kind}([1, 2])` over H and W of a feature map")
    out = tuple(axis(kind, v, shape) for v in raw)
    if len(set(out)) != len(out):
        twice = next(v for v in raw if out.count(axis(kind, v, shape)) > 1)
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` names axis {twice} twice", label=f"axes {list(raw)} of {dims(shape)}",
                         hint="name each axis once")
    return tuple(sorted(out))


def _divisor(kind: str, a: Mapping, shape: Shape, n: int) -> None:
    """A variance of ``n`` values divides by n − correction: E015 unless that is positive."""
    if a["correction"] >= n:
        raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` of {n} value{'s' if n != 1 else ''} with correction "
                         f"{a['correction']} divides by {n - a['correction']}",
                         label=f"axes {list(a['axes'])} of {dims(shape)}",
                         hint="reduce over more values, or use `correction = 0` (the biased estimate)")


def _reduction(kind: str, spread: bool):
    def infer(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
        shape = shapes[0]
        axes = reduced_axes(kind, a, shape)
        g = a["groups"]
        n = prod(shape[i] for i in axes)
        if g != 1:
            if 0 not in axes:
                raise ShapeError(E.OUT_OF_RANGE, f"`{kind}` over channel groups must reduce axis 0",
                                 label=f"axes {list(a['axes'])}, groups = {g}",
                                 hint=f"add axis 0: `{kind}([0, 1, 2], groups = {g})` over each group and H, W")
            divides(g, shape[0])
            n //= g
        if spread:
            _divisor(kind, a, shape, n)
        # over groups, every channel keeps its group's value: axis 0 stays
        gone = set(axes) - ({0} if g != 1 else set())
        return reduced(shape, gone, a["keepdim"]), 0, 0
    return infer


_AXES = (param("axes", "ints", doc="the per-sample axes it reduces (0: channels; negative from the end)"),
         param("keepdim", "bool", False, "keep each reduced axis as size 1"),
         param("groups", "int", 1, "reduce each of this many groups of channels; every channel gets its group's "
                                   "value", lo=1, hi=65_536))
_SPREAD = (param("correction", "int", 1, "divide by n − correction: 0 biased (timm's norms), 1 torch's default",
                 lo=0, hi=65_536),)

MEAN = Primitive("mean", _AXES, _reduction("mean", False), "the mean over `axes` of each sample", module=False)
SUM = Primitive("reduce_sum", _AXES, _reduction("reduce_sum", False),
                "the sum over `axes` of each sample (`sum` is the language's function on lists)", module=False)
VAR = Primitive("var", (*_AXES, *_SPREAD), _reduction("var", True),
                "the variance over `axes` of each sample, divided by n − `correction`", module=False)
STD = Primitive("std", (*_AXES, *_SPREAD, param("eps", "float", 0.0, "added to the variance under the root",
                                                lo=0.0, hi=1.0)),
                _reduction("std", True),
                "the standard deviation over `axes` of each sample: √(var + `eps`)", module=False)



def _standardize(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    shape = shapes[0]
    axes = reduced_axes("standardize", a, shape)
    _divisor("standardize", a, shape, prod(shape[i] for i in axes))
    return shape, 0, 0


# (x − mean) / √(var + eps) in one op, so that a back end writes one normalisation call: a
# weight standardised every forward (NF-ResNet's ScaledStdConv2d) costs one kernel, not six.
STANDARDIZE = Primitive(
    "standardize", (param("axes", "ints", doc="the per-sample axes it standardises over (0: channels; negative "
                                              "from the end)"),
                    param("eps", "float", 1e-5, "added to the variance under the root"),
                    param("correction", "int", 0, "the variance divides by n − correction: 0 biased (the norms'), "
                                                  "1 torch's `var` default", lo=0, hi=65_536)),
    _standardize, "zero mean and unit variance over `axes` of each sample: (x − mean) / √(var + `eps`)",
    module=False, overwritable=True)

REDUCTIONS = (MEAN, SUM, VAR, STD, STANDARDIZE)

# ---------------------------------------------------------------- element-wise functions

SQRT = Primitive("sqrt", (), same, "element-wise square root", module=False)
RSQRT = Primitive("rsqrt", (), same, "element-wise 1 / √x", module=False)
RECIPROCAL = Primitive("reciprocal", (), same, "element-wise 1 / x", module=False)

FUNCTIONS = (SQRT, RSQRT, RECIPROCAL)
