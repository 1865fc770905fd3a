"""Activations and gates: element-wise non-linearities and the softmax across groups.

None has weights; a named one is a module (``nn.ReLU``), an unnamed one a function call
(``F.relu``). All count zero MACs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..ir import Shape
from ..primitives import Primitive, Traits, param
from .shapes import divides, same


@dataclass(frozen=True)
class _Act:
    kind: str
    doc: str
    inplace: bool = False  # torch has an in-place form whose backward does not need the input
    # autograd saves neither its output nor, run in place, its result (ReLU and sigmoid do; an
    # in-place SiLU or hard-swish is kept whole as well, to be safe)
    overwritable: bool = True


_ACTS = [
    _Act("relu", "max(x, 0)", inplace=True, overwritable=False),
    _Act("relu6", "min(max(x, 0), 6)", inplace=True, overwritable=False),
    _Act("gelu", "Gaussian error linear unit"),
    _Act("silu", "x · sigmoid(x) (swish)", inplace=True, overwritable=False),
    _Act("hardswish", "x · relu6(x + 3) / 6", inplace=True, overwritable=False),
    _Act("sigmoid", "1 / (1 + e^-x)", overwritable=False),
    _Act("tanh", "hyperbolic tangent", overwritable=False),
]

_ACTIVATION = Traits(activation=True)


def _activation(act: _Act) -> Primitive:
    return Primitive(act.kind, (), same, f"activation: {act.doc}", traits=_ACTIVATION, inplace=act.inplace,
                     overwritable=act.overwritable)


ACTIVATIONS = [_activation(a) for a in _ACTS]

# ---------------------------------------------------------------- leaky_relu


LEAKY_RELU = Primitive(
    "leaky_relu", (param("negative_slope", "float", 0.01),), same,
    "activation: x if x > 0 else negative_slope · x",
    # not in place: torch refuses an in-place leaky ReLU's backward for a negative slope
    traits=_ACTIVATION, overwritable=True)

ELU = Primitive(
    "elu", (param("alpha", "float", 1.0, lo=0.0, hi=1e3),), same,
    "activation: x if x > 0 else alpha · (e^x − 1) (DPN's last activation)",
    # not in place: torch's in-place ELU backward needs its output, which a later op may overwrite
    traits=_ACTIVATION, overwritable=False)

# ---------------------------------------------------------------- group_softmax


def _group_softmax(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
    divides(a["radix"] * a["cardinality"], shapes[0][0], "radix × cardinality")
    return shapes[0], 0, 0


GROUP_SOFTMAX = Primitive(
    "group_softmax", (param("radix", "int", lo=1, hi=1024), param("cardinality", "int", 1, lo=1, hi=65_536)),
    _group_softmax,
    "softmax across `radix` groups of channels laid out [cardinality][radix][rest], written out "
    "[radix][cardinality][rest], as timm's RadixSoftmax (ResNeSt; SK-ResNet's softmax over "
    "paths is cardinality 1); a sigmoid for radix 1",
    traits=_ACTIVATION)
