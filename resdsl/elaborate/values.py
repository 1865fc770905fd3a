"""The values a spec computes with, and how they read in messages and in the IR.

Expressions evaluate to plain values (numbers, booleans, strings, lists as tuples), to
tensors (a body's labels), or to *callables*: definitions and primitive layers, possibly
with some arguments already bound (``resnet50 with (groups = 32)``), and the built-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from ..diagnostics import Span
from ..ir import Attr
from ..primitives import Primitive
from ..syntax import Definition


def _param_names(owner) -> tuple[str, ...]:
    """The parameter names of a definition or primitive, computed once per object (kept in
    its ``__dict__``: both are frozen dataclasses, compared and hashed by their fields)."""
    names = owner.__dict__.get("_param_names")
    if names is None:
        names = tuple(p.name for p in owner.params)
        object.__setattr__(owner, "_param_names", names)
    return names


@dataclass(frozen=True)
class DefValue:
    """A definition, with the arguments bound so far (by ``with`` or a partial call)."""

    definition: Definition
    env: ModuleEnv
    bound: tuple[tuple[str, Any], ...] = ()
    #: The kind an alias gives it (``stage level1 = conv_level``: a stage), or None: its own.
    as_kind: str | None = None

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def kind(self) -> str:
        return self.as_kind or self.definition.kind

    @property
    def param_names(self) -> tuple[str, ...]:
        return _param_names(self.definition)


@dataclass(frozen=True)
class PrimValue:
    """A primitive layer, with the arguments bound so far."""

    prim: Primitive
    bound: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.prim.kind

    @property
    def param_names(self) -> tuple[str, ...]:
        return _param_names(self.prim)


@dataclass(frozen=True)
class Builtin:
    """A built-in function; ``arity`` is how many arguments it takes, (least, most),
    ``most`` None for any number: checked before the call, from the declaration."""

    name: str
    fn: Callable[..., Any]
    arity: tuple[int, int | None] = (1, 1)


class Tensor:
    """A tensor a body can name: the output of the op ``op`` (``label`` for messages).

    Labels evaluate to tensors, so tensors can be stored in variables and lists and
    passed to ``from`` and to the tensor arguments of ``add``, ``concat``… (A plain
    class: one is made each time a label is read, and a frozen dataclass is slow to make.)
    """

    __slots__ = ("op", "label")

    def __init__(self, op: str, label: str) -> None:
        self.op = op
        self.label = label

    def __eq__(self, other: object) -> bool:
        return type(other) is Tensor and other.op == self.op

    def __hash__(self) -> int:
        return hash(self.op)

    def __repr__(self) -> str:
        return f"Tensor({self.op!r}, {self.label!r})"

    @property
    def name(self) -> str:
        return self.label


class _Current:
    """The built-in ``current``: the running value of the body being run."""

    name = "current"


CURRENT = _Current()


class _Stage:
    """The built-in ``stage(block, depth, stride = 1, ...)``: a block repeated."""

    name = "stage"


STAGE = _Stage()
Value = Union[int, float, bool, str, None, tuple, DefValue, PrimValue, Builtin, _Stage, Tensor]


@dataclass
class ModuleEnv:
    """One loaded ``.res`` file: its own definitions and every name it can see."""

    path: str
    is_std: bool
    own: dict[str, tuple[Value, Span]] = field(default_factory=dict)
    names: dict[str, Value] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)  # own networks, in file order
    #: Where a definition is instantiated from when built as the main network: the
    #: right side of an alias, or a definition's name.
    sites: dict[str, Span] = field(default_factory=dict)


class _Failed:
    """The value of a definition that failed: its diagnostics are out, so a use of its
    name stays quiet instead of adding an `unknown name` error."""

    name = "<failed>"


FAILED = _Failed()


def type_name(v: Value) -> str:
    """What a value is, as a message says it: ``an integer``, ``the block `basic```."""
    if v is None:
        return "none"
    if isinstance(v, Tensor):
        return f"the tensor `{v.label}`"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, tuple):
        return "a list"
    if isinstance(v, DefValue):
        return f"the {v.kind} `{v.name}`"
    if isinstance(v, PrimValue):
        return f"the layer `{v.name}`"
    return f"the function `{v.name}`"


def to_attr(v: Value) -> Attr:
    """IR-friendly form of a value: callables by name, lists as tuples."""
    t = type(v)
    if t is int or t is str or t is float or t is bool or v is None:
        return v
    if isinstance(v, tuple):
        return tuple(to_attr(x) for x in v)
    if isinstance(v, (DefValue, PrimValue, Builtin, _Stage, _Current)):
        return v.name
    return v.op if type(v) is Tensor else v


def attrs_of(bound: dict[str, Value]) -> tuple[tuple[str, Attr], ...]:
    """``(name, to_attr(value))`` for each argument (plain values kept as they are)."""
    out = []
    for k, v in bound.items():
        t = type(v)
        out.append((k, v if t is int or t is str or t is float or t is bool or v is None
                    else to_attr(v)))
    return tuple(out)


def join_path(path: str, name: str) -> str:
    """The path of ``name`` inside the instance at ``path`` (the network's is empty)."""
    return f"{path}.{name}" if path else name


def show(v: Value) -> str:
    """A value as a spec would write it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        text = "[" + ", ".join(show(x) for x in v[:8]) + (", …" if len(v) > 8 else "") + "]"
        return text
    if isinstance(v, (DefValue, PrimValue, Builtin, Tensor)):
        return f"`{v.name}`"
    return str(v)
