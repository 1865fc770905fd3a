"""Activations and gates: element-wise non-linearities and the softmax across groups.

None has weights; a named one is a module (``nn.ReLU``), an unnamed one a function call
(``F.relu``). All count zero MACs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Op, Shape
from ..primitives import Look, Primitive, SourceArg, SourceCall, SourceHelper, param
from .recognise import TENSOR, Call, class_name, stock
from .shapes import divides, same


@dataclass(frozen=True)
class _Act:
    kind: str
    doc: str
    text: str  # as diagrams write it
    module: str  # torch.nn class
    function: str  # call in torch, "F.relu" or "torch.sigmoid"
    inplace: bool = False  # torch has an in-place form whose backward does not need the input
    # autograd saves neither its output nor, run in place, its result (ReLU and sigmoid do; an
    # in-place SiLU or hard-swish is kept whole as well, to be safe)
    overwritable: bool = True


_ACTS = [
    _Act("relu", "max(x, 0)", "ReLU", "ReLU", "F.relu", inplace=True, overwritable=False),
    _Act("relu6", "min(max(x, 0), 6)", "ReLU6", "ReLU6", "F.relu6", inplace=True, overwritable=False),
    _Act("gelu", "Gaussian error linear unit", "GELU", "GELU", "F.gelu"),
    _Act("silu", "x · sigmoid(x) (swish)", "SiLU", "SiLU", "F.silu", inplace=True, overwritable=False),
    _Act("hardswish", "x · relu6(x + 3) / 6", "hard-swish", "Hardswish", "F.hardswish", inplace=True,
         overwritable=False),
    _Act("sigmoid", "1 / (1 + e^-x)", "sigmoid", "Sigmoid", "torch.sigmoid", overwritable=False),
    _Act("tanh", "hyperbolic tangent", "tanh", "Tanh", "torch.tanh", overwritable=False),
]


def inplace_flag(op: Op, shapes: list[Shape]) -> bool:
    """The ``inplace`` argument of a generated call: what resdsl.passes decided for ``op``."""
    return bool(dict(op.attrs).get("inplace", False))


#: ``inplace=True`` in the generated source, written only where the pass chose it.
INPLACE_ARG = SourceArg("inplace", "inplace", default=False, compute=inplace_flag)


def _simple(onnx_op: str):
    def lower(g, op: Op, xs: list[str], out: str) -> None:
        g.node(onnx_op, [xs[0]], op.name, out)
    return lower


def _relu6(g, op: Op, xs: list[str], out: str) -> None:
    import numpy as np

    lo = g.const("const/zero", 0.0, np.float32)
    hi = g.const("const/six", 6.0, np.float32)
    g.node("Clip", [xs[0], lo, hi], op.name, out)


def _silu(g, op: Op, xs: list[str], out: str) -> None:
    g.node("Mul", [xs[0], g.node("Sigmoid", [xs[0]], f"{op.name}/sigmoid")], op.name, out)


def _hardswish_decomposed(g, op: Op, xs: list[str], out: str) -> None:
    # x · hardsigmoid(x) with ONNX's alpha/beta for relu6(x + 3) / 6
    gate = g.node("HardSigmoid", [xs[0]], f"{op.name}/gate", alpha=1.0 / 6.0, beta=0.5)
    g.node("Mul", [xs[0], gate], op.name, out)


def _gelu_decomposed(g, op: Op, xs: list[str], out: str) -> None:
    """torch's exact GELU: x · (1 + erf(x / √2)) / 2."""
    import numpy as np

    x, name = xs[0], op.name
    sqrt2 = g.const("const/sqrt2", np.sqrt(2.0), np.float32)
    one = g.const("const/one", 1.0, np.float32)
    half = g.const("const/half", 0.5, np.float32)
    e = g.node("Erf", [g.node("Div", [x, sqrt2], f"{name}/scale")], f"{name}/erf")
    y = g.node("Mul", [x, g.node("Add", [e, one], f"{name}/shift")], f"{name}/gate")
    g.node("Mul", [y, half], name, out)


_ONNX = {
    "relu": ((1, _simple("Relu")),),
    "relu6": ((1, _relu6),),
    "gelu": ((1, _gelu_decomposed), (20, _simple("Gelu"))),
    "silu": ((1, _silu),),
    "hardswish": ((1, _hardswish_decomposed), (14, _simple("HardSwish"))),
    "sigmoid": ((1, _simple("Sigmoid")),),
    "tanh": ((1, _simple("Tanh")),),
}


def _recognise_act(act: _Act):
    def recognise(call: Call) -> dict | None:
        import torch
        from torch import nn

        if call.module is not None:
            cls = getattr(nn, act.module)
            if not stock(call.module, cls) or getattr(call.module, "approximate", "none") != "none":
                return None
            return {}
        if call.tensors != 1 or call.kwargs.get("approximate", "none") != "none":
            return None
        if call.method is not None:
            return {} if call.method in (act.kind, f"{act.kind}_") and len(call.args) == 1 else None
        owner, _, name = act.function.partition(".")
        functions = {getattr(torch.nn.functional if owner == "F" else torch, name),
                     getattr(torch, act.kind, None), getattr(torch.nn.functional, act.kind, None)}
        return {} if call.function in functions - {None} and call.args[:1] == (TENSOR,) else None
    return recognise


def _activation(act: _Act) -> Primitive:
    args = (INPLACE_ARG,) if act.inplace else ()
    return Primitive(
        act.kind, (), same, f"activation: {act.doc}",
        look=Look(lambda op, t=act.text: t, "act"),
        source_module=SourceCall(f"nn.{act.module}", args), source_function=SourceCall(act.function, args),
        onnx=_ONNX[act.kind], inplace=act.inplace, overwritable=act.overwritable,
        recognise=_recognise_act(act))


ACTIVATIONS = [_activation(a) for a in _ACTS]

# ---------------------------------------------------------------- leaky_relu


def _leaky_onnx(g, op: Op, xs: list[str], out: str) -> None:
    g.node("LeakyRelu", [xs[0]], op.name, out, alpha=float(op.attr("negative_slope")))


def _recognise_leaky(call: Call) -> dict | None:
    from torch import nn

    return {"negative_slope": float(call.module.negative_slope)} if stock(call.module, nn.LeakyReLU) else None


LEAKY_RELU = Primitive(
    "leaky_relu", (param("negative_slope", "float", 0.01),), same,
    "activation: x if x > 0 else negative_slope · x",
    look=Look(lambda op: "leaky ReLU", "act"),
    source_module=SourceCall("nn.LeakyReLU", (SourceArg("negative_slope"),)),
    source_function=SourceCall("F.leaky_relu", (SourceArg("negative_slope"),)),
    onnx=((1, _leaky_onnx),),
    # not in place: torch refuses an in-place leaky ReLU's backward for a negative slope
    overwritable=True, recognise=_recognise_leaky)

# ---------------------------------------------------------------- group_softmax


def _group_softmax(a: dict, shapes: list[Shape]) -> tuple[Shape, int, int]:
    divides(a["radix"] * a["cardinality"], shapes[0][0], "radix × cardinality")
    return shapes[0], 0, 0


def _gs_onnx(g, op: Op, xs: list[str], out: str) -> None:
    radix, card, name = op.attr("radix"), op.attr("cardinality"), op.name
    if radix == 1:
        g.node("Sigmoid", [xs[0]], name, out)
        return
    groups = g.node("Reshape", [xs[0], g.const(f"{name}/groups", [0, card, radix, -1])], f"{name}/grouped")
    by_radix = g.node("Transpose", [groups], f"{name}/by_radix", perm=[0, 2, 1, 3])
    soft = g.node("Softmax", [by_radix], f"{name}/softmax", axis=1)
    # Back to the input's shape: a constant unless the size is symbolic (--dynamic-size).
    shape = (g.spatial_shape(xs[0], f"{name}/input_shape") if g.varies(op.inputs[0])
             else g.const(f"{name}/shape", [0, *g.shape_of(op.inputs[0])]))
    g.node("Reshape", [soft, shape], name, out)


def _gs_text(op: Op) -> str:
    r, c = op.attr("radix"), op.attr("cardinality")
    if r == 1:
        return "sigmoid"
    return f"softmax over {r} groups" + (f" × {c}" if c != 1 else "")


_GS_HELPER = SourceHelper("group_softmax", template="group_softmax.j2", functional=True,
                          defines=("GroupSoftmax",))
_GS_ARGS = (SourceArg("radix"), SourceArg("cardinality"))

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


GROUP_SOFTMAX = Primitive(
    "group_softmax", (param("radix", "int", lo=1, hi=1024), param("cardinality", "int", 1, lo=1, hi=65_536)),
    _group_softmax,
    "softmax across `radix` groups of channels laid out [cardinality][radix][rest], written out "
    "[radix][cardinality][rest], as timm's RadixSoftmax (ResNeSt; SK-ResNet's softmax over "
    "paths is cardinality 1); a sigmoid for radix 1",
    look=Look(_gs_text, "act"),
    source_module=SourceCall("GroupSoftmax", _GS_ARGS, helpers=(_GS_HELPER,)),
    source_function=SourceCall("group_softmax", _GS_ARGS, helpers=(_GS_HELPER,)),
    onnx=((1, _gs_onnx),), recognise=_recognise_group_softmax)
