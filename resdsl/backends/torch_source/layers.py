"""The layer vocabularies: what the torch lowering registry says about an op (its
function or module call, whether it runs in place as a statement, zero-init, which
arguments are channel counts)."""

from __future__ import annotations

from ...ir import Attr, Op, Shape
from ...primitives import PRIMITIVES, NoLowering
from .. import BackendError
from ..torch_lowering import INPUT_CHANNELS, NODEFAULT, TORCH, SourceArg, SourceCall, TensorInit


def _call(op: Op, functional: bool) -> SourceCall:
    """The registered source text for ``op``: its function, or its module's constructor."""
    try:
        lowering = TORCH.require(op.kind)
    except NoLowering as err:
        raise BackendError("{what}", what=err, hint="register one with "
                           "resdsl.backends.torch_lowering.torch_lowering, or leave the layer out") from None
    call = lowering.function if functional else lowering.module
    if call is None:
        form = "function (for an unnamed layer)" if functional else "module (for a named layer)"
        raise BackendError("no torch {form} for `{kind}` (a primitive registered by {origin})",
                           hint="name the layer" if functional else "leave the layer unnamed",
                           form=form, kind=op.kind, origin=PRIMITIVES[op.kind].origin)
    return call


def _inplace_statement(op: Op) -> bool:
    """The op runs in place as a statement of its own (``out += shortcut``)."""
    call = TORCH.require(op.kind).function
    return bool(dict(op.attrs).get("inplace")) and call is not None and call.render_inplace is not None


def _is_tensor(op: Op) -> bool:
    """The op's module form is a tensor attribute (a ``param``'s ``nn.Parameter``)."""
    call = TORCH.require(op.kind).module
    return call is not None and call.tensor


def _tensor_init(op: Op) -> str | None:
    """The line initialising a tensor attribute (``{tensor}`` for its reference), if any."""
    init = TORCH.require(op.kind).init
    return init.statement(op) if isinstance(init, TensorInit) and op.module is not None else None


def _is_zero_init(op: Op) -> bool:
    return PRIMITIVES[op.kind].zero_init is not None and bool(dict(op.attrs).get("zero_init"))


def _reads_width(arg: SourceArg) -> bool:
    """The argument is, by the registry's contract, the channel count of the op's input."""
    return arg.key in INPUT_CHANNELS and arg.fixed is NODEFAULT and arg.compute is None


def _channels(value: Attr, op: Op, shapes: list[Shape]) -> bool:
    """``value`` is the channel count of a tensor ``op`` reads or writes."""
    return type(value) is int and value in {s[0] for s in (*shapes, op.shape) if s}


def _typed(value: Attr) -> tuple[str, Attr]:
    # True == 1 in Python: compare values with their types
    return (type(value).__name__, value)
