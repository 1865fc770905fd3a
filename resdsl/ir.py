"""The IR: a checked network as small, immutable, typed data.

A :class:`Network` is a dataflow graph of primitive :class:`Op` s in execution
(topological) order, with a hierarchy of :class:`Scope` s over it: network → stem /
stages / head → blocks → layers. Every op knows its inputs, its static output shape for
the declared input, its parameter count, its multiply-accumulates and the source span
it came from. Back ends read this and nothing else: they never re-parse, never
re-compute shapes, and never invent a name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import Union

from .diagnostics import Span

#: A per-sample tensor shape: (C, H, W) for feature maps, (F,) after flatten. A shape may
#: be a :class:`NamedShape`, whose axes carry names for diagnostics and figures.
Shape = tuple[int, ...]

#: The axis names a plain tuple of three sizes has: a feature map's.
FEATURE_MAP_AXES = ("C", "H", "W")


class NamedShape(tuple):
    """A shape whose axes carry names (``[heads, C/heads, HW]``), for people only: it equals,
    hashes and prints as the plain tuple of its sizes, so no shape comparison, parameter
    count or lowering can tell it from one. A plain tuple has the default names
    (:func:`axis_names`); shape rules make named ones through :mod:`resdsl.ops.shapes`."""

    names: tuple[str | None, ...]

    def __new__(cls, sizes: tuple[int, ...], names: tuple[str | None, ...]) -> NamedShape:
        self = super().__new__(cls, sizes)
        self.names = names
        return self

    def __reduce__(self):
        return NamedShape, (tuple(self), self.names)


def axis_names(shape: Shape) -> tuple[str | None, ...]:
    """The names of ``shape``'s axes: its own, or by default a feature map's ``C, H, W`` for
    three axes and none (``None``) otherwise."""
    names = getattr(shape, "names", None)
    if names is not None:
        return names
    return FEATURE_MAP_AXES if len(shape) == 3 else (None,) * len(shape)


def shown_names(shape: Shape) -> tuple[str | None, ...] | None:
    """The names worth showing beside ``shape``'s sizes, or None: a feature map (three axes,
    the last two H and W, or each named as a feature map's or unnamed: a pooled C×1×1) and a
    tensor without names show their sizes alone."""
    names = getattr(shape, "names", None)
    if names is None or len(names) == 3 and (names[1:] == FEATURE_MAP_AXES[1:] or all(
            n is None or n == f for n, f in zip(names, FEATURE_MAP_AXES))):
        return None
    return names if any(n is not None for n in names) else None


def axis_texts(shape: Shape) -> list[str]:
    """Each axis of ``shape`` as people read it: its size, or ``name: size`` where
    :func:`shown_names` shows names (``["heads: 4", "HW: 256", "64"]``)."""
    names = shown_names(shape)
    if names is None:
        return [str(s) for s in shape]
    return [f"{n}: {s}" if n else str(s) for s, n in zip(shape, names)]

#: Attribute values are plain data, so IR values compare, hash and print simply.
Attr = Union[int, float, bool, str, None, tuple]

#: The op name of the network's input tensor.
INPUT = "input"


@dataclass(frozen=True)
class Op:
    """One primitive operation.

    ``name`` is unique in the network and is the spec path of the layer
    (``layer1.0.conv1``); an unnamed operation is named after its kind in its scope
    (``layer1.0.add``), and a layer applied a second time gets ``#2``
    (``layer1.0.relu#2``). The parts of ``parts: split(…)`` are the ops ``parts.0``,
    ``parts.1``, … of kind ``split`` (attributes ``sizes`` and ``index``), all reading the
    same input. ``module`` is the module path (the ``state_dict`` prefix) when the op owns
    a module, or ``None`` for a functional op; a dotted label gives a dotted path
    (``layer1.0.convs.2``) whose intermediate parts that are not modules themselves are
    containers.
    """

    name: str
    kind: str
    attrs: tuple[tuple[str, Attr], ...]
    inputs: tuple[str, ...]
    shape: Shape
    params: int
    macs: int
    module: str | None
    span: Span
    #: Its tensor has the batch axis in front (everything computed from the network input);
    #: false for a learned tensor (``param``) and what is computed from such tensors alone.
    #: ``shape`` never includes the batch axis, and an ``axis`` attribute counts from the
    #: first axis of ``shape``: a back end adds one for a batched tensor.
    batched: bool = True

    def attr(self, key: str) -> Attr:
        for k, v in self.attrs:
            if k == key:
                return v
        raise KeyError(f"{self.kind} op `{self.name}` has no attribute `{key}`")


class Role(Enum):
    """What an instance is: the kind of the definition it instantiates (``block``,
    ``stage``, ``shortcut``, ``stem``, ``head``, ``module``), ``stage`` also for a
    ``stage(…)``, and ``network`` for the root. The elaborator sets it; back ends decide structure by it,
    never by a definition's or a layer's name."""

    NETWORK = "network"
    STEM = "stem"
    STAGE = "stage"
    BLOCK = "block"
    SHORTCUT = "shortcut"
    HEAD = "head"
    MODULE = "module"


@dataclass(frozen=True)
class Scope:
    """One instantiated definition: the network, a stage, a block, a shortcut, a stem…

    ``items`` lists, in execution order, the op names this scope runs itself and its
    child scopes. ``role`` says what the instance is; ``definition`` names the ``.res``
    definition it instantiates (``bottleneck``); ``args`` are the arguments it was
    instantiated with.
    """

    name: str
    path: str
    role: Role
    definition: str
    args: tuple[tuple[str, Attr], ...]
    items: tuple[str | Scope, ...]
    input: str
    output: str
    span: Span
    #: An unnamed stem or head: its layers sit in the parent's namespace (``conv1``, not
    #: ``stem.conv1``), so ``path`` is the parent's path.
    inline: bool = False

    @property
    def children(self) -> tuple[Scope, ...]:
        return tuple(i for i in self.items if isinstance(i, Scope))

    def walk(self) -> Iterator[Scope]:
        """This scope and every scope below it, parents first."""
        yield self
        for child in self.children:
            yield from child.walk()

    def op_names(self) -> Iterator[str]:
        """Every op run in this scope or below, in execution order."""
        for item in self.items:
            if isinstance(item, str):
                yield item
            else:
                yield from item.op_names()


@dataclass(frozen=True)
class Network:
    """A checked network: ops in execution order, the scope tree, the declared input.

    The *stem* is what the network runs before its first stage (whatever definitions
    write it). ``stem_pool`` and ``stem_feature`` describe its end, as
    :func:`resdsl.roles.assign` works them out once from the network's structure:
    ``stem_pool`` is its final pooling (the ops from the pooling that ends the stem on;
    empty when the stem has none, or is nothing else), and ``stem_feature`` is the op whose
    output is the stem's feature map (timm's ``act1``: before the stem's final
    downsampling), or ``None`` for a network without stages.
    """

    name: str
    source: str
    input_shape: Shape
    ops: tuple[Op, ...]
    root: Scope
    output: str
    stem_pool: tuple[str, ...] = ()
    stem_feature: str | None = None
    #: A definition read its input's height or width (``in_height``, ``in_width``): its
    #: modules are built for the declared input size (BoTNet's position tables), so the
    #: network takes no other (timm's ``fixed_input_size``).
    sized_by_input: bool = False

    def __deepcopy__(self, memo: dict) -> Network:
        # immutable: a copy of a model (an EMA copy, fold_batchnorms) shares its network
        return self

    @cached_property
    def _by_name(self) -> dict[str, Op]:
        return {op.name: op for op in self.ops}

    def op(self, name: str) -> Op:
        return self._by_name[name]

    def shape_of(self, name: str) -> Shape:
        """The shape of an op's output, or of the network input."""
        return self.input_shape if name == INPUT else self._by_name[name].shape

    @property
    def output_shape(self) -> Shape:
        return self.shape_of(self.output)

    @property
    def params(self) -> int:
        return sum(op.params for op in self.ops)

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    def scope_params(self, scope: Scope) -> int:
        return sum(self._by_name[n].params for n in scope.op_names())

    def scope_macs(self, scope: Scope) -> int:
        return sum(self._by_name[n].macs for n in scope.op_names())

    def modules(self) -> dict[str, Op]:
        """Module path → the op that owns it, for ops with a module (first application)."""
        out: dict[str, Op] = {}
        for op in self.ops:
            if op.module is not None and op.module not in out:
                out[op.module] = op
        return out
