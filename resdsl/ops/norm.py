"""Normalisation layers: batch norm, group norm, channels-first layer norm.

Each owns a scale and a shift per channel (``weight``, ``bias``; batch norm also its
running statistics) and counts no MACs. A true ``zero_init`` starts the scale at zero,
so a residual branch ending in it starts as the identity.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ir import Shape
from ..primitives import Primitive, Traits, param
from .shapes import divides, feature_map

_ZERO_INIT = "initialise the scale to 0 (last norm of a residual branch)"
BN_TENSORS = ("weight", "bias", "running_mean", "running_var")


def _affine(kind: str):
    def infer(a: Mapping, shapes: list[Shape]) -> tuple[Shape, int, int]:
        c, _, _ = feature_map(kind, shapes[0])
        if "groups" in a:
            divides(a["groups"], c)
        return shapes[0], 2 * c, 0
    return infer


def _affine_weights(a: Mapping, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
    c = shapes[0][0]
    return {"weight": (c,), "bias": (c,)}


# ---------------------------------------------------------------- batchnorm








BATCHNORM = Primitive(
    "batchnorm", (param("eps", "float", 1e-5), param("momentum", "float", 0.1),
                  param("zero_init", "bool", False, _ZERO_INIT)),
    _affine("batchnorm"), "batch normalisation over channels (torch.nn.BatchNorm2d)",
    weights=lambda a, shapes: {**{k: (shapes[0][0],) for k in BN_TENSORS}, "num_batches_tracked": ()},
    zero_init="weight", traits=Traits(norm=True, folds=True), overwritable=True)

# ---------------------------------------------------------------- groupnorm










GROUPNORM = Primitive(
    "groupnorm", (param("groups", "int", 32), param("eps", "float", 1e-5),
                  param("zero_init", "bool", False, _ZERO_INIT)),
    _affine("groupnorm"), "group normalisation (torch.nn.GroupNorm): channels in `groups` groups, "
                          "each normalised over its channels and positions",
    weights=_affine_weights, zero_init="weight", traits=Traits(norm=True), overwritable=True)

# ---------------------------------------------------------------- layernorm (channels first)








LAYERNORM = Primitive(
    "layernorm", (param("eps", "float", 1e-6), param("zero_init", "bool", False, _ZERO_INIT)),
    _affine("layernorm"), "layer normalisation over the channels at each position, channels "
                          "first (timm's LayerNorm2d)",
    weights=_affine_weights, zero_init="weight", traits=Traits(norm=True))
