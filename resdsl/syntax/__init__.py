"""Front end: source text → Lark tree → a small immutable syntax tree with spans.

The grammar lives in ``grammars/resdsl.lark``. Lark callbacks raise nothing: the
transformer only builds nodes, and every check happens later in the elaborator.
Syntax errors become diagnostics (E001–E004); parsing resumes after an error so that
one run reports several.

The modules, one concern each: ``nodes`` (the syntax tree), ``parser`` (the Lark parser,
its post-lexer and :func:`parse`), ``hints`` (syntax errors worded from the tokens around
them), ``nesting`` (the limits on nesting and size, checked around parsing) and
``transform`` (Lark tree → syntax tree).
"""

from .nesting import too_deep
from .nodes import (
    Alias,
    Arg,
    Assign,
    BinOp,
    Bool,
    Call,
    Cond,
    Definition,
    Expr,
    For,
    If,
    Import,
    Index,
    InputDecl,
    Label,
    Layer,
    ListExpr,
    Module,
    Name,
    Node,
    NoneLit,
    Num,
    Param,
    Require,
    Reuse,
    Stmt,
    Str,
    UnaryOp,
    With,
)
from .parser import parse

__all__ = ["Alias", "Arg", "Assign", "BinOp", "Bool", "Call", "Cond", "Definition", "Expr", "For", "If",
           "Import", "Index", "InputDecl", "Label", "Layer", "ListExpr", "Module", "Name", "Node", "NoneLit",
           "Num", "Param", "Require", "Reuse", "Stmt", "Str", "UnaryOp", "With", "parse", "too_deep"]
