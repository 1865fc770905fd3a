"""Lark tree → syntax tree. The transformer raises nothing: every value is already
well-formed by the grammar, and every check happens later in the elaborator."""

from __future__ import annotations

from lark import Token, Transformer, v_args

from ..diagnostics import Span
from .nodes import (
    Alias,
    Arg,
    Assign,
    BinOp,
    Bool,
    Call,
    Cond,
    Definition,
    For,
    If,
    Import,
    Index,
    InputDecl,
    Label,
    Layer,
    ListExpr,
    Name,
    NoneLit,
    Num,
    Param,
    Require,
    Reuse,
    Str,
    UnaryOp,
    With,
)


def _span(path: str, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(path, 0, 0, 0, 0)
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column or tok.column + len(tok))


@v_args(meta=True)
class ToAst(Transformer):
    """Builds AST nodes. Raises nothing: every value is already well-formed by the grammar."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _s(self, meta) -> Span:
        return _span(self.path, meta)

    # items
    def import_std(self, meta, c):
        return Import(self._s(meta), c[0], False)

    def import_file(self, meta, c):
        return Import(self._s(meta), _unquote(c[0]), True)

    def module_path(self, meta, c):
        return ".".join(str(t) for t in c)

    def definition(self, meta, c):
        kind, name = c[0], c[1]
        params = c[2] if len(c) == 4 else ()
        body = c[-1]
        return Definition(self._s(meta), str(kind), str(name), params, body,
                          _tok_span(self.path, name))

    def alias(self, meta, c):
        return Alias(self._s(meta), str(c[0]), str(c[1]), c[2], _tok_span(self.path, c[1]))

    def params(self, meta, c):
        return tuple(p for p in c if p is not None)

    def param(self, meta, c):
        return Param(self._s(meta), str(c[0]), c[1] if len(c) > 1 else None)

    def body(self, meta, c):
        return tuple(c)

    # statements
    def layer(self, meta, c):
        label = c[0] if isinstance(c[0], Label) else None
        rest = c[1:] if label else c
        call = rest[0]
        source = rest[1] if len(rest) > 1 else None
        return Layer(self._s(meta), label, call, source)

    def label(self, meta, c):
        parts: list = []
        gap = None
        for i, (component, start, _end, inner_gap) in enumerate(c):
            if i:
                parts.append(".")
                if start != c[i - 1][2] + 1:  # `a. b`, `a .b`: the name has a space in it
                    gap = gap or self._pos_span(meta, c[i - 1][2])
            gap = gap or inner_gap
            parts.extend(component)
        return Label(self._s(meta), tuple(parts), gap)

    def _label_part(self, meta, c):
        """A component of a label: its pieces, where it starts and ends, and a gap inside it."""
        pieces, gap, end = [], None, None
        for part in c:
            if isinstance(part, Token):
                start, stop, piece = part.start_pos, part.end_pos, str(part)
            else:  # an interpolation: (expression, start, end) with the braces
                piece, start, stop = part
            if end is not None and start != end and gap is None:
                gap = self._pos_span(meta, end)
            pieces.append(piece)
            end = stop
        first = c[0].start_pos if isinstance(c[0], Token) else c[0][1]
        return pieces, first, end, gap

    label_name = label_int = label_interp = _label_part

    def _pos_span(self, meta, pos: int) -> Span:
        # only used for a diagnostic: the column of `pos` on the label's line
        col = meta.column + (pos - meta.start_pos)
        return Span(self.path, meta.line, col, meta.line, col + 1)

    def interp(self, meta, c):
        return (c[0], meta.start_pos, meta.end_pos)

    def call(self, meta, c):
        return c[0]

    def source(self, meta, c):
        return c[0]

    def reuse(self, meta, c):
        return Reuse(self._s(meta), str(c[0]), c[1] if len(c) > 1 else None)

    def assign(self, meta, c):
        return Assign(self._s(meta), str(c[0]), c[1])

    def if_stmt(self, meta, c):
        branches = [(c[0], c[1])]
        orelse: tuple = ()
        for extra in c[2:]:
            if extra[0] == "elif":
                branches.append((extra[1], extra[2]))
            else:
                orelse = extra[1]
        return If(self._s(meta), tuple(branches), orelse)

    def elif_clause(self, meta, c):
        return ("elif", c[0], c[1])

    def else_clause(self, meta, c):
        return ("else", c[0])

    def for_stmt(self, meta, c):
        return For(self._s(meta), str(c[0]), c[1], c[2])

    def require(self, meta, c):
        return Require(self._s(meta), c[0], _unquote(c[1]) if len(c) > 1 else "")

    def input_decl(self, meta, c):
        return InputDecl(self._s(meta), c[0])

    # expressions
    def cond(self, meta, c):
        return Cond(self._s(meta), c[0], c[1], c[2])

    def or_(self, meta, c):
        return BinOp(self._s(meta), "or", c[0], c[1])

    def and_(self, meta, c):
        return BinOp(self._s(meta), "and", c[0], c[1])

    def not_(self, meta, c):
        return UnaryOp(self._s(meta), "not", c[0])

    def compare(self, meta, c):
        return BinOp(self._s(meta), str(c[1]), c[0], c[2])

    def binop(self, meta, c):
        return BinOp(self._s(meta), str(c[1]), c[0], c[2])

    def neg(self, meta, c):
        return UnaryOp(self._s(meta), "-", c[0])

    def pow(self, meta, c):
        return BinOp(self._s(meta), "**", c[0], c[1])

    def index(self, meta, c):
        return Index(self._s(meta), c[0], c[1])

    def with_(self, meta, c):
        return With(self._s(meta), c[0], c[1])

    def expr_call(self, meta, c):
        return Call(self._s(meta), c[0], c[1])

    def args(self, meta, c):
        return tuple(a for a in c if a is not None)

    def positional(self, meta, c):
        return Arg(self._s(meta), None, c[0])

    def keyword(self, meta, c):
        return Arg(self._s(meta), str(c[0]), c[1])

    def int_lit(self, meta, c):
        digits = str(c[0]).replace("_", "")
        # Past 30 digits the value only matters as "too large" (the elaborator says so);
        # this also keeps clear of Python's limit on converting very long digit strings.
        return Num(self._s(meta), int(digits) if len(digits) <= 30 else 10**31)

    def float_lit(self, meta, c):
        return Num(self._s(meta), float(str(c[0]).replace("_", "")))

    def str_lit(self, meta, c):
        return Str(self._s(meta), _unquote(c[0]))

    def true_lit(self, meta, c):
        return Bool(self._s(meta), True)

    def false_lit(self, meta, c):
        return Bool(self._s(meta), False)

    def none_lit(self, meta, c):
        return NoneLit(self._s(meta))

    def name(self, meta, c):
        return Name(self._s(meta), str(c[0]))

    def list_lit(self, meta, c):
        return ListExpr(self._s(meta), tuple(x for x in c if x is not None))


def _unquote(tok) -> str:
    raw = str(tok)[1:-1]
    out, i = [], 0
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            out.append(escapes.get(raw[i + 1], raw[i + 1]))
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)
