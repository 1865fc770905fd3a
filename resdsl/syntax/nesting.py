"""How deep a file nests, checked before and after parsing (E004), and how many tokens it
has (E017): LALR on deep nesting is slow, and the transformer and evaluator recurse."""

from __future__ import annotations

import re

from lark import Tree

from .. import limits
from ..diagnostics import Diagnostics, Span
from ..errors import E

# Strings and comments as the grammar lexes them: the scans below skip their insides.
_STRING_OR_COMMENT = r'"(?:[^"\\\n]|\\.)*"|#[^\n]*'
_BRACKETS = re.compile(_STRING_OR_COMMENT + r"|(?P<open>[(\[{])|(?P<close>[)\]}])")


def bracket_depth(text: str) -> tuple[int, int]:
    """How deep ( [ { nest outside strings and comments, and the offset of the first
    bracket at that depth (-1 when there are none). A cheap scan, run before parsing."""
    depth = best = 0
    at = -1
    for m in _BRACKETS.finditer(text):
        if m.group("open"):
            depth += 1
            if depth > best:
                best, at = depth, m.start()
        elif m.group("close"):
            depth = max(depth - 1, 0)
    return best, at


def deepest_bracket(text: str, path: str) -> Span:
    """Where brackets nest deepest, if they nest past the limit; else the start of the file
    (then long operator chains, not brackets, are the likely cause)."""
    best, at = bracket_depth(text)
    if best < limits.MAX_BRACKET_DEPTH:
        return Span(path, 1, 1, 1, 2)
    line = text.count("\n", 0, at) + 1
    col = at - text.rfind("\n", 0, at)
    return Span(path, line, col, line, col + 1)


def too_deep(diags: Diagnostics, span: Span, message: str = "the expression nests too deeply",
             hint: str = "split deeply nested expressions into named values") -> None:
    """Record E004, nesting too deep: the one place it is reported, by the parser's limits
    and wherever Python's own stack runs out (a :class:`RecursionError`) on a spec."""
    diags.error(E.NESTING_TOO_DEEP, message, span, hint=hint)


_TOKEN = re.compile(_STRING_OR_COMMENT + r"|\w+|[^\w\s]")


def count_tokens(text: str) -> int:
    """About how many tokens the lexer will make (a string or a comment is one)."""
    return sum(1 for _ in _TOKEN.finditer(text))


def tree_depth(tree: Tree) -> tuple[int, Tree]:
    """How deep the parse tree is, and its deepest subtree (walked without recursion)."""
    best, where = 0, tree
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > best:
            best, where = depth, node
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return best, where
