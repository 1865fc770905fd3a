"""An example resdsl plugin: ``channel_scale`` (learnable, with weights) and ``hardtanh``
(a parameterised activation).

Each primitive is one core entry (:class:`~resdsl.primitives.Primitive`: parameters,
shape rule, weights, traits) plus the lowerings this plugin supports, each registered
with its back end: the torch source's (:func:`~resdsl.backends.torch_lowering.torch_lowering`),
ONNX's (:func:`~resdsl.backends.onnx_graph.onnx_lowering`) and the diagrams' look
(:func:`~resdsl.looks.register_look`). resdsl finds them through the entry point
``resdsl.primitives`` this package declares (pyproject.toml): importing this module
registers the lowerings, and :func:`primitives` returns the entries. Torch and numpy are
imported inside the lowerings only, so checking a spec stays light.
"""

from __future__ import annotations

from resdsl.backends.onnx_graph import onnx_lowering
from resdsl.backends.torch_lowering import SourceArg, SourceCall, SourceHelper, torch_lowering
from resdsl.looks import Look, register_look
from resdsl.primitives import Primitive, ShapeError, Traits, param

# ---------------------------------------------------------------- channel_scale


def _scale_rule(attrs, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int, int]:
    """Shape unchanged; C learned values; no multiply-accumulates (an element-wise op)."""
    return shapes[0], shapes[0][0], 0


CHANNEL_SCALE = Primitive(
    "channel_scale", (param("init_value", "float", 1.0, "the scale every channel starts with", lo=-1e3, hi=1e3),),
    _scale_rule, "a learnable scale per channel (LayerScale); weight `gamma`, one value per channel",
    weights=lambda attrs, shapes: {"gamma": (shapes[0][0],)})

#: The class the generated file pastes in (its one definition).
_SCALE_SOURCE = '''class ChannelScale(nn.Module):
    """A learnable scale per channel (LayerScale)."""

    def __init__(self, num_channels: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((num_channels,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.reshape([-1] + [1] * (x.dim() - 2))'''

torch_lowering("channel_scale", module=SourceCall(
    "ChannelScale", (SourceArg("num_channels"), SourceArg("init_value", "init_value", 1.0)),
    helpers=(SourceHelper("ChannelScale", text=_SCALE_SOURCE),)))


@onnx_lowering("channel_scale")
def _scale_onnx(g, op, inputs: list[str], out: str) -> None:
    """x · gamma, gamma shaped to broadcast over the positions of a feature map."""
    gamma = g.param(f"{op.module}.gamma")
    rank = len(g.shape_of(op.inputs[0]))
    if rank > 1:
        gamma = g.node("Reshape", [gamma, g.const(f"{op.name}/per_channel", [-1] + [1] * (rank - 1))],
                       f"{op.name}/gamma")
    g.node("Mul", [inputs[0], gamma], op.name, out)


register_look("channel_scale", Look(lambda op: "channel scale", "norm"))

# ---------------------------------------------------------------- hardtanh


def _hardtanh_rule(attrs, shapes: list[tuple[int, ...]]) -> tuple[tuple[int, ...], int, int]:
    if attrs["min_val"] >= attrs["max_val"]:
        raise ShapeError("E015", f"`hardtanh` clips to an empty range: min_val {attrs['min_val']:g} "
                         f"is not below max_val {attrs['max_val']:g}", hint="swap them")
    return shapes[0], 0, 0


HARDTANH = Primitive(
    "hardtanh", (param("min_val", "float", -1.0, lo=-1e6, hi=1e6), param("max_val", "float", 1.0, lo=-1e6, hi=1e6)),
    _hardtanh_rule, "activation: x clipped to [min_val, max_val]", traits=Traits(activation=True))

_CLIP_ARGS = (SourceArg("min_val"), SourceArg("max_val"))
torch_lowering("hardtanh", module=SourceCall("nn.Hardtanh", _CLIP_ARGS), function=SourceCall("F.hardtanh", _CLIP_ARGS))


@onnx_lowering("hardtanh")
def _hardtanh_onnx(g, op, inputs: list[str], out: str) -> None:
    import numpy as np

    lo = g.const(f"{op.name}/min", float(op.attr("min_val")), np.float32)
    hi = g.const(f"{op.name}/max", float(op.attr("max_val")), np.float32)
    g.node("Clip", [inputs[0], lo, hi], op.name, out)


register_look("hardtanh", Look(lambda op: f"hardtanh [{op.attr('min_val'):g}, {op.attr('max_val'):g}]", "act"))


def primitives() -> list[Primitive]:
    """The entries this plugin adds (the entry point's target)."""
    return [CHANNEL_SCALE, HARDTANH]
