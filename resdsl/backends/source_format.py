"""Laying out the generated source's expressions as `ruff format` (black's style) would.

The torch source back end builds a constructor as a small tree — calls, an
``nn.Sequential`` of elements, a repeated element ``*[E for _ in range(n)]`` — and
:func:`layout` writes it at a given indentation: on one line when it fits in
:data:`LINE` columns; else, as black's right-hand split, the arguments on one line of
their own inside the brackets; else one argument a line with a trailing comma (a single
argument is split in turn instead). ``nn.Sequential`` always has one element a line.
So the generated file passes ``ruff format --check`` however long its names are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

#: The line length of the generated file (the project's ruff setting).
LINE = 110


@dataclass(frozen=True)
class Call:
    """``name(arg, …)``; an argument is text or another expression."""

    name: str
    args: tuple[Expr, ...] = ()


@dataclass(frozen=True)
class Repeat:
    """``*[element for _ in range(times)]`` inside an ``nn.Sequential``."""

    element: Expr
    times: int


@dataclass(frozen=True)
class Sequential:
    """``nn.Sequential(…)``, one element a line; equal neighbours become a :class:`Repeat`."""

    elements: tuple[Expr, ...]

    @staticmethod
    def of(elements: list[Expr]) -> Sequential:
        runs: list[tuple[Expr, int]] = []
        for e in elements:
            if runs and runs[-1][0] == e:
                runs[-1] = (e, runs[-1][1] + 1)
            else:
                runs.append((e, 1))
        return Sequential(tuple(e if n == 1 else Repeat(e, n) for e, n in runs))


Expr = Union[str, Call, Repeat, Sequential]


def flat(e: Expr) -> str:
    """``e`` on one line."""
    if isinstance(e, str):
        return e
    if isinstance(e, Call):
        return f"{e.name}({', '.join(flat(a) for a in e.args)})"
    if isinstance(e, Repeat):
        return f"*[{flat(e.element)} for _ in range({e.times})]"
    return f"nn.Sequential({', '.join(flat(x) for x in e.elements)})"


def layout(e: Expr, indent: str, lead: str = "", trail: str = "") -> str:
    """``e`` laid out for a line that starts with ``indent + lead`` and ends with ``trail``.

    The result's first line has no indentation of its own (it follows ``lead``); its other
    lines carry their full indentation.
    """
    inner = indent + "    "
    if isinstance(e, Sequential):
        lines = "".join(f"{inner}{layout(x, inner, '', ',')},\n" for x in e.elements)
        return f"nn.Sequential(\n{lines}{indent})"
    text = flat(e)
    if isinstance(e, str) or len(indent) + len(lead) + len(text) + len(trail) <= LINE:
        return text
    if isinstance(e, Repeat):
        return f"*[\n{inner}{layout(e.element, inner)}\n{inner}for _ in range({e.times})\n{indent}]"
    body = ", ".join(flat(a) for a in e.args)
    if len(inner) + len(body) <= LINE:
        return f"{e.name}(\n{inner}{body}\n{indent})"
    if len(e.args) == 1:
        return f"{e.name}(\n{inner}{layout(e.args[0], inner)}\n{indent})"
    lines = "".join(f"{inner}{layout(a, inner, '', ',')},\n" for a in e.args)
    return f"{e.name}(\n{lines}{indent})"
