"""The syntax tree: small immutable nodes, each with the span of source it came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from ..diagnostics import Span


@dataclass(frozen=True)
class Node:
    span: Span


@dataclass(frozen=True)
class Num(Node):
    value: int | float


@dataclass(frozen=True)
class Str(Node):
    value: str


@dataclass(frozen=True)
class Bool(Node):
    value: bool


@dataclass(frozen=True)
class NoneLit(Node):
    """``none``: no value (an optional layer left out, a default padding)."""


@dataclass(frozen=True)
class Name(Node):
    id: str


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Arg(Node):
    name: str | None  # None for a positional argument
    value: Expr


@dataclass(frozen=True)
class Call(Node):
    func: Expr
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class With(Node):
    base: Expr
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class Index(Node):
    base: Expr
    index: Expr


@dataclass(frozen=True)
class BinOp(Node):
    op: str  # + - * / // % ** == != < <= > >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Node):
    op: str  # - not
    operand: Expr


@dataclass(frozen=True)
class Cond(Node):
    then: Expr
    test: Expr
    orelse: Expr


Expr = Union[Num, Str, Bool, NoneLit, Name, ListExpr, Call, With, Index, BinOp, UnaryOp, Cond]


@dataclass(frozen=True)
class Label(Node):
    """A layer name; ``parts`` mixes literal text (``"."`` between the components of a
    dotted path) and interpolated expressions."""

    parts: tuple[str | Expr, ...]
    #: Where the name has a space inside it (``conv {i}``, ``paths. 0``), if anywhere.
    gap: Span | None = None


@dataclass(frozen=True)
class Layer(Node):
    label: Label | None
    call: Call
    source: Expr | None  # `from EXPR`: the tensor it reads instead of the running value


@dataclass(frozen=True)
class Reuse(Node):
    name: str
    source: Expr | None


@dataclass(frozen=True)
class Assign(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class If(Node):
    branches: tuple[tuple[Expr, tuple[Stmt, ...]], ...]
    orelse: tuple[Stmt, ...]


@dataclass(frozen=True)
class For(Node):
    var: str
    iterable: Expr
    body: tuple[Stmt, ...]


@dataclass(frozen=True)
class Require(Node):
    test: Expr
    message: str


@dataclass(frozen=True)
class InputDecl(Node):
    shape: Expr


Stmt = Union[Layer, Reuse, Assign, If, For, Require, InputDecl]


@dataclass(frozen=True)
class Param(Node):
    name: str
    default: Expr | None


@dataclass(frozen=True)
class Definition(Node):
    """``block basic(planes, stride = 1) { ... }``; ``name_span`` points at the name."""

    kind: str
    name: str
    params: tuple[Param, ...]
    body: tuple[Stmt, ...]
    name_span: Span


@dataclass(frozen=True)
class Alias(Node):
    """``network resnet50 = resnet(block = bottleneck)``."""

    kind: str
    name: str
    value: Expr
    name_span: Span


@dataclass(frozen=True)
class Import(Node):
    target: str  # "std.resnet" or a relative file path
    is_file: bool


@dataclass(frozen=True)
class Module(Node):
    path: str
    items: tuple[Import | Definition | Alias, ...]
