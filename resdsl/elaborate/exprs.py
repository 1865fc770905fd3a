"""Expression trees read without evaluating them: their text for messages, and which
names they read."""

from __future__ import annotations

from ..syntax import BinOp, Bool, Call, Cond, Expr, Index, ListExpr, Name, NoneLit, Num, Str, UnaryOp, With


def uses(e: Expr, name: str) -> bool:
    """Whether an expression reads the name ``name``."""
    if isinstance(e, Name):
        return e.id == name
    if isinstance(e, (Num, Str, Bool, NoneLit)):
        return False
    if isinstance(e, ListExpr):
        return any(uses(x, name) for x in e.items)
    if isinstance(e, (Call, With)):
        return uses(e.func if isinstance(e, Call) else e.base, name) or \
            any(uses(a.value, name) for a in e.args)
    if isinstance(e, Index):
        return uses(e.base, name) or uses(e.index, name)
    if isinstance(e, BinOp):
        return uses(e.left, name) or uses(e.right, name)
    if isinstance(e, UnaryOp):
        return uses(e.operand, name)
    if isinstance(e, Cond):
        return uses(e.then, name) or uses(e.test, name) or uses(e.orelse, name)
    return False


_PRECEDENCE = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
               "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "**": 8}


def unparse(e: Expr, outer: int = 0) -> str:
    """Source-like text of an expression, for diagnostics."""
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Num):
        return repr(e.value)
    if isinstance(e, Str):
        return '"' + e.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(e, Bool):
        return "true" if e.value else "false"
    if isinstance(e, NoneLit):
        return "none"
    if isinstance(e, ListExpr):
        return "[" + ", ".join(unparse(x) for x in e.items) + "]"
    if isinstance(e, (Call, With)):
        args = ", ".join((f"{a.name} = " if a.name else "") + unparse(a.value) for a in e.args)
        if isinstance(e, Call):
            return f"{unparse(e.func, 9)}({args})"
        return f"{unparse(e.base, 9)} with ({args})"
    if isinstance(e, Index):
        return f"{unparse(e.base, 9)}[{unparse(e.index)}]"
    if isinstance(e, BinOp):
        p = _PRECEDENCE[e.op]
        text = f"{unparse(e.left, p)} {e.op} {unparse(e.right, p + 1)}"
    elif isinstance(e, UnaryOp):
        p = 3 if e.op == "not" else 7
        text = f"not {unparse(e.operand, p)}" if e.op == "not" else f"-{unparse(e.operand, p)}"
    elif isinstance(e, Cond):
        p = 0
        text = f"{unparse(e.then, 1)} if {unparse(e.test, 1)} else {unparse(e.orelse)}"
    else:
        return "…"
    return f"({text})" if p < outer else text

