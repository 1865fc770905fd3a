"""What a recogniser (:mod:`resdsl.importer.recognisers`) receives when a torch model is imported (``resdsl.from_torch``).

The importer traces the model with ``torch.fx`` and offers every leaf module, function and
method call to the registry's recognisers, in registry order; the first that returns
attributes names the op. A recogniser reads the module's attributes (kernel, stride, eps…)
or the call's arguments, and returns ``None`` for anything it does not compute exactly:
what it accepts, the importer checks afterwards by comparing outputs, but a recogniser
that refuses what it is unsure of gives the user a clear error instead of a failed check.

Nothing here imports torch: recognisers import it inside their functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ir import Shape

#: Stands for a tensor among a call's arguments.
TENSOR: Any = type("Tensor", (), {"__repr__": lambda self: "TENSOR"})()


@dataclass
class Call:
    """One traced call: a leaf ``module``, a ``function`` (``F.relu``, ``operator.add``) or a
    ``method`` name (``"mean"`` for ``x.mean(…)``), with its arguments (tensors replaced by
    :data:`TENSOR`; for a method the first is the tensor it is called on) and the per-sample
    shapes of its tensor inputs and output."""

    module: Any = None
    function: Callable | None = None
    method: str | None = None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    in_shapes: list[Shape] = field(default_factory=list)
    out_shape: Shape = ()
    #: Recognises a submodule (a norm layer's activation): its chain of ``(kind, attrs)``, or None.
    recognise_module: Callable[[Any], list | None] = lambda module: None
    #: Per tensor input, how many leading torch dims are not per-sample axes: 1 where dim 0
    #: is the batch, 0 where the tensor has no batch axis (a parameter, or computed from
    #: parameters alone) or dim 0 holds the batch merged with an axis (``x.reshape(-1, W, k)``).
    offsets: list[int] = field(default_factory=list)
    #: Per tensor input: it has no batch axis.
    batchless: list[bool] = field(default_factory=list)

    def axis(self, dim: Any, i: int = 0) -> int | None:
        """Torch ``dim`` of tensor input ``i`` as a per-sample axis (negative stays from the
        end), or None where it is not an int or is the batch (or a merged batch) dim."""
        if type(dim) is not int or i >= len(self.in_shapes):
            return None
        rank = len(self.in_shapes[i])
        offset = self.offsets[i] if i < len(self.offsets) else 1
        batchless = self.batchless[i] if i < len(self.batchless) else False
        if dim < 0:
            return dim if -dim <= rank else None
        if not batchless and dim == 0:
            return None
        axis = dim - offset
        return axis if 0 <= axis < rank else None

    def tensor_at(self, i: int, name: str) -> int | None:
        """Which tensor input (0, 1…) positional argument ``i`` or keyword ``name`` is, or None."""
        flat = [v for v in self.args] + [self.kwargs[k] for k in self.kwargs]
        where = (
            i
            if i < len(self.args)
            else (len(self.args) + list(self.kwargs).index(name) if name in self.kwargs else None)
        )
        if where is None or flat[where] is not TENSOR:
            return None
        return sum(1 for v in flat[:where] if v is TENSOR)

    def arg(self, i: int, name: str, default: Any = None) -> Any:
        """Positional argument ``i`` or keyword ``name``."""
        if i < len(self.args):
            return self.args[i]
        return self.kwargs.get(name, default)

    def is_generated(self, name: str) -> bool:
        """A helper function ``name`` of a resdsl-generated source (its own ``relu``-like helpers)."""
        f = self.function
        return (
            f is not None
            and getattr(f, "__name__", "") == name
            and str(getattr(f, "__module__", "")).startswith("resdsl._generated")
        )

    @property
    def tensors(self) -> int:
        """How many tensor arguments the call has (lists of tensors count each)."""

        def count(v: Any) -> int:
            if v is TENSOR:
                return 1
            if isinstance(v, (list, tuple)):
                return sum(count(x) for x in v)
            return 0

        return count(self.args) + count(tuple(self.kwargs.values()))


def square(value: Any) -> int | None:
    """An int from an int or a tuple of equal ints (a module's ``kernel_size = (3, 3)``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if (
        isinstance(value, (tuple, list))
        and value
        and all(isinstance(v, int) and v == value[0] for v in value)
    ):
        return int(value[0])
    return None


def stock(module: Any, base: type) -> bool:
    """``module`` is a ``base`` whose ``forward`` is ``base``'s own (a subclass that computes
    something else is another primitive's, or none's)."""
    return isinstance(module, base) and type(module).forward is base.forward


def class_name(module: Any) -> str:
    return type(module).__name__
