"""A back end written for the tests: a text summary of a network.

It shows what a new back end needs: this module, with its options declared beside its
``emit``, and one registry line (``tests/test_backends.py``). It has one option of each
kind: a choice, a bounded whole number, free text and a switch; and an error worded for
Python that the CLI spells with its flags.
"""

from __future__ import annotations

from resdsl.backends import BackendError, Option, declare, whole_number
from resdsl.ir import Network

UNITS = Option("units", "parameters as plain numbers (default) or in millions", choices=("plain", "millions"),
               default="plain")
DEPTH = Option("depth", "how many levels of the hierarchy to list, 0 to 3 (default 1)", type=int, default=1,
               metavar="N", check=whole_number("depth", 0, 3, "a depth lies between 0 and 3, not {value}"))
TITLE = Option("title", "a first line", metavar="TEXT")
TOTALS = Option("totals", "end with the totals (needs {units=plain})", type=bool, default=False)


@declare(UNITS, DEPTH, TITLE, TOTALS)
def emit(net: Network, *, units: str = "plain", depth: int = 1, title: str | None = None,
         totals: bool = False) -> str:
    """The network's scopes to ``depth`` levels, with their parameter counts."""
    if totals and units != "plain":
        raise BackendError("{totals} counts in plain numbers", hint="leave {totals} out, or give {units=plain}")
    lines = [title] if title is not None else []
    for scope in net.root.walk():
        level = scope.path.count(".") + 1 if scope.path else 0
        if 0 < level <= depth:
            params = sum(net.op(n).params for n in scope.op_names())
            lines.append(f"{'  ' * (level - 1)}{scope.path}: "
                         + (f"{params / 1e6:.2f}M" if units == "millions" else f"{params:,}"))
    if totals:
        lines.append(f"total: {net.params:,}")
    return "\n".join(lines) + "\n"
