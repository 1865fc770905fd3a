"""The ONNX back end's registry: each primitive's ONNX lowerings, by the opset each needs,
and what a lowering and a reader of the written model need to know. Apart from
:mod:`resdsl.backends.onnx_graph` (options, ``emit``) and :mod:`resdsl.backends.onnx_lowering`
(the graph builder) so that both read it without importing each other; it imports neither
``onnx`` nor ``numpy``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ..ir import Network
from ..primitives import PRIMITIVES, Lowerings, guarded, registration_origin, state_key

#: ``fn(g, op, inputs, out)``: writes an op's nodes on the graph builder ``g``
#: (:class:`resdsl.backends.onnx_lowering.Lowering`), ending with the node that writes ``out``.
OnnxLowering = Callable[..., None]
#: A primitive's lowerings, ``(opset each needs, lowering)``, oldest first.
OnnxLowerings = tuple[tuple[int, OnnxLowering], ...]

F = TypeVar("F", bound=OnnxLowering)


def _guard(entry: OnnxLowerings, kind: str, origin: str) -> OnnxLowerings:
    return tuple((need, guarded(fn, kind, origin, f"ONNX lowering (opset {need})")) for need, fn in entry)


#: kind → its ONNX lowerings.
ONNX = Lowerings[OnnxLowerings]("ONNX", _guard)


def onnx_lowering(kind: str, opset: int = 1, *, origin: str | None = None,
                  replace: bool = False) -> Callable[[F], F]:
    """Decorator: register the function as primitive ``kind``'s ONNX lowering for targets of
    ``opset`` and newer (until a lowering registered for a newer opset takes over)."""
    def register(fn: F) -> F:
        known, by = ONNX.registered(kind) or ((), None)
        mine = registration_origin(origin)
        if any(need == opset for need, _ in known) and not replace and by != mine:
            raise ValueError(f"an ONNX lowering of `{kind}` for opset {opset} is already registered (by {by}); "
                             "pass replace=True to replace it")
        ONNX.register(kind, tuple(sorted([*((n, f) for n, f in known if n != opset), (opset, fn)],
                                         key=lambda t: t[0])), origin=mine, replace=True)
        return fn

    return register


def lowering_for(kind: str, opset: int) -> OnnxLowering | None:
    """``kind``'s lowering for ``opset``: the one needing the newest opset not above it."""
    usable = [(need, fn) for need, fn in ONNX.get(kind) or () if need <= opset]
    return max(usable, key=lambda t: t[0])[1] if usable else None



def data_files(path: str | Path) -> list[Path]:
    """The tensor files that ``external_data`` writes beside the model at ``path``
    (``NAME.<16 hex digits>.data``, named by their content), as they are now: the next
    write replaces them, so a run must not read one."""
    import re

    path = Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.[0-9a-f]{16}\.data")
    try:
        return sorted(p for p in path.parent.iterdir() if pattern.fullmatch(p.name))
    except OSError:
        return []


def expected_state(net: Network) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` keys and shapes of the torch back end's module for ``net``,
    from the IR and the registry's weights alone (``num_batches_tracked`` included)."""
    out: dict[str, tuple[int, ...]] = {}
    for path, op in net.modules().items():
        state = PRIMITIVES[op.kind].state(dict(op.attrs), [net.shape_of(i) for i in op.inputs])
        for key, shape in state.items():
            out[state_key(path, key)] = tuple(shape)
    return out
