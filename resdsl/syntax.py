"""Front end: source text → Lark tree → a small immutable AST with spans.

The grammar lives in ``grammars/resdsl.lark``. Lark callbacks raise nothing: the
transformer only builds nodes, and every check happens later in the elaborator.
Syntax errors become diagnostics (E001–E004); parsing resumes after an error so that
one run reports several.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Union

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from . import limits
from .diagnostics import Diagnostics, Span, SpecError, did_you_mean
from .errors import E
from .resources import data_path

# ------------------------------------------------------------------------------ AST


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


# ---------------------------------------------------------------------- the parser


@lru_cache(maxsize=1)
def _grammar() -> str:
    return data_path("grammars", "resdsl.lark").read_text(encoding="utf-8")


@dataclass
class _Seen:
    """What the post-lexer has yielded of one file so far: the input of the syntax-error
    hints (an LALR parser does not read past the token it rejects)."""

    opened: list[Token] = field(default_factory=list)  # unclosed ( [ {
    last: Token | None = None  # the last token yielded
    before: Token | None = None  # the one before it
    stray: Token | None = None  # the last ) ] } that closed nothing


class _Layout:
    """Post-lexer: newlines end statements, except inside ( ) [ ] and label braces
    (``layer{i + 1}``), right after ``{`` and at the start of the file.

    It looks only backwards: the contextual lexer picks terminals by parser state, so
    a post-lexer must not read ahead. Newlines before ``}``/``else`` are dropped by the
    ``_NL`` pattern itself.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.seen = _Seen()

    def reset(self) -> None:
        """Forget the last file (not done in ``process``: lark calls it again to resume
        after an error)."""
        self.seen = _Seen()

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        seen = self.seen
        depth = 0  # open ( [ and label-interpolation braces
        braces: list[bool] = []  # one per open `{`: True for a label interpolation
        prev: Token | None = None
        closes = {"RPAR": "LPAR", "RSQB": "LSQB", "RBRACE": "LBRACE"}
        for tok in stream:
            kind = tok.type
            if kind == "_NL" and (depth or prev is None or prev.type in ("_NL", "LBRACE")):
                continue
            if kind in ("LPAR", "LSQB", "LBRACE"):
                seen.opened.append(tok)
            elif kind in closes:
                kinds = [t.type for t in seen.opened]
                if closes[kind] in kinds:  # close it, and whatever was left open inside it
                    del seen.opened[len(kinds) - 1 - kinds[::-1].index(closes[kind]):]
                else:
                    seen.stray = tok
            seen.before, seen.last = prev, tok
            if kind in ("LPAR", "LSQB"):
                depth += 1
            elif kind in ("RPAR", "RSQB"):
                depth = max(depth - 1, 0)
            elif kind == "LBRACE":
                interp = prev is not None and prev.type in ("NAME", "INT") and prev.end_pos == tok.start_pos
                braces.append(interp)
                depth += interp
            elif kind == "RBRACE" and braces and braces.pop():
                depth = max(depth - 1, 0)
            yield tok
            prev = tok
        if prev is not None and prev.type != "_NL":
            yield Token("_NL", "\n", start_pos=prev.end_pos, line=prev.end_line,
                        column=prev.end_column, end_line=prev.end_line,
                        end_column=prev.end_column, end_pos=prev.end_pos)


_IDLE: list[tuple[Lark, _Layout]] = []  # parsers not in use, each with its post-lexer
_BUILDING = threading.Lock()


@contextmanager
def _parser() -> Iterator[tuple[Lark, _Seen]]:
    """A parser for one parse, and the record its post-lexer keeps of the file.

    The post-lexer keeps the state of the file it reads, so no two parses share one:
    each takes an idle parser or builds one, and puts it back when done. Parsing is then
    thread-safe and reentrant, and the hints read that state only as an argument.
    """
    try:
        lark, layout = _IDLE.pop()
    except IndexError:
        # One build at a time: building is rare (the pool grows to the number of parses at
        # once), and Lark's grammar loader calls `ast.literal_eval`, which CPython 3.11 can
        # fail with "AST constructor recursion depth mismatch" when threads run it together
        # (CPython gh-106905; seen once in CI of this test suite).
        with _BUILDING:
            layout = _Layout()
            lark = Lark(_grammar(), parser="lalr", propagate_positions=True, maybe_placeholders=False,
                        postlex=layout, cache=False)
    layout.reset()
    try:
        yield lark, layout.seen
    finally:
        _IDLE.append((lark, layout))


_TOKEN_WORDS = {
    "_NL": "end of line", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`",
    "LBRACE": "`{`", "RBRACE": "`}`", "COMMA": "`,`", "COLON": "`:`", "EQUAL": "`=`",
    "NAME": "a name", "INT": "an integer", "FLOAT": "a number", "STRING": "a string",
    "KIND": "a definition keyword", "$END": "end of file", "DOT": "`.`",
}


def _describe(token_type: str) -> str:
    if token_type in _TOKEN_WORDS:
        return _TOKEN_WORDS[token_type]
    if token_type.startswith("__ANON") or not token_type.isupper():
        return f"`{token_type}`"
    return f"`{token_type.lower()}`"


_EXPR_START = {"NAME", "INT", "FLOAT", "STRING", "LPAR", "LSQB", "TRUE", "FALSE", "NONE", "NOT"}
_EXPR_END = {"NAME", "INT", "FLOAT", "STRING", "RPAR", "RSQB", "TRUE", "FALSE", "NONE"}
_KINDS = ("network", "block", "shortcut", "stem", "head", "module", "import")


def _unclosed_hint(opened: list[Token]) -> str:
    tok = opened[-1]
    return f"the `{tok.value}` at line {tok.line}, column {tok.column} is never closed"


def _token_hint(tok: Token, expected: set[str], seen: _Seen) -> str:
    """Why a token is unexpected, from the tokens around it (LALR's ``expected`` sets
    merge the lookaheads of several contexts, so they are only a fallback)."""
    opened = seen.opened
    # The contextual lexer rejects some tokens itself, before the post-lexer sees them.
    yielded = seen.last is not None and seen.last.start_pos == tok.start_pos
    before = seen.before if yielded else seen.last
    if tok.type == "NAME" and "KIND" in expected and (hint := did_you_mean(tok.value, _KINDS)):
        return hint
    if tok.type == "EQUAL" and "COMP_OP" in expected:
        return "compare with `==`"
    if tok is seen.stray:
        return f"this `{tok.value}` closes nothing"
    if (opened and opened[-1].type in ("LPAR", "LSQB") and opened[-1].line < tok.line
            and tok.type not in ("RPAR", "RSQB")):
        return _unclosed_hint(opened)
    if tok.type in _EXPR_START and before is not None and before.type in _EXPR_END \
            and before.end_line == tok.line:
        if opened and opened[-1].type in ("LPAR", "LSQB"):
            return "is a `,` missing before this?"
        if before.type == "NAME" and "COLON" in expected:
            return "a layer's name is followed by `:`, as in `conv1: conv(64, 7)`"
        return "put each statement on its own line"
    if tok.type in ("COMMA", "RPAR", "RSQB", "RBRACE") and "NAME" in expected:
        return "a value is missing before this"
    if tok.type == "_NL" and "NAME" in expected and "RBRACE" not in expected:
        return "a value is missing at the end of this line"
    names = sorted({_describe(t) for t in expected if not t.startswith("__")})
    return "expected " + ", ".join(names) if names and len(names) <= 6 else ""


def _syntax_diagnostic(err: UnexpectedInput, path: str, text: str,
                       seen: _Seen) -> tuple[str, str, Span, str]:
    """The diagnostic for a parse error: code, message, span and hint. ``seen`` is what the
    post-lexer of this parse had yielded when the error came."""
    line, col = max(err.line, 1), max(err.column, 1)
    if isinstance(err, UnexpectedCharacters):
        ch = text[err.pos_in_stream] if 0 <= err.pos_in_stream < len(text) else "?"
        hint = ""
        if ch == "'":
            hint = 'strings use double quotes: "text"'
        elif ch == "\t":
            hint = "remove the tab character"
        return E.UNEXPECTED_CHARACTER, f"unexpected character `{ch}`", Span(path, line, col, line, col + 1), hint
    eof_hint = _unclosed_hint(seen.opened) if seen.opened else "the file ends in the middle of a statement"
    if isinstance(err, UnexpectedEOF):
        lines = text.splitlines() or [""]
        return (E.SYNTAX, "unexpected end of file", Span(path, len(lines), len(lines[-1]) + 1,
                                                       len(lines), len(lines[-1]) + 2), eof_hint)
    assert isinstance(err, UnexpectedToken)
    tok = err.token
    if tok.type == "$END":
        lines = text.splitlines() or [""]
        span = Span(path, len(lines), len(lines[-1]) + 1, len(lines), len(lines[-1]) + 2)
        return E.SYNTAX, "unexpected end of file", span, eof_hint
    what = "end of line" if tok.type == "_NL" else f"`{tok.value}`"
    end_col = (tok.end_column or col + 1) if tok.end_line == tok.line else col + 1
    hint = _token_hint(tok, set(err.expected), seen)
    return E.SYNTAX, f"unexpected {what}", Span(path, line, col, line, max(end_col, col + 1)), hint


# ------------------------------------------------------------------ nesting (E004)

# Strings and comments as the grammar lexes them: the scans below skip their insides.
_STRING_OR_COMMENT = r'"(?:[^"\\\n]|\\.)*"|#[^\n]*'
_BRACKETS = re.compile(_STRING_OR_COMMENT + r"|(?P<open>[(\[{])|(?P<close>[)\]}])")


def _nesting(text: str) -> tuple[int, int]:
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


def _deepest(text: str, path: str) -> Span:
    """Where brackets nest deepest, if they nest past the limit; else the start of the file
    (then long operator chains, not brackets, are the likely cause)."""
    best, at = _nesting(text)
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


def _count_tokens(text: str) -> int:
    """About how many tokens the lexer will make (a string or a comment is one)."""
    return sum(1 for _ in _TOKEN.finditer(text))


def _tree_depth(tree: Tree) -> tuple[int, Tree]:
    """How deep the parse tree is, and its deepest subtree (walked without recursion)."""
    best, where = 0, tree
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > best:
            best, where = depth, node
        stack.extend((c, depth + 1) for c in node.children if isinstance(c, Tree))
    return best, where


def parse(text: str, path: str) -> Module:
    """Parse source text into a :class:`Module`, or raise :class:`SpecError`."""
    diags = Diagnostics()
    tokens = _count_tokens(text)
    if tokens > limits.MAX_TOKENS:  # parsing costs tens of µs a token: refuse before it starts
        diags.error(E.TOO_LARGE, f"the file has more than {limits.MAX_TOKENS:,} tokens ({tokens:,})",
                    Span(path, 1, 1, 1, 2), hint="split the spec into files that import each other, "
                    "or use `for` loops and stages instead of repeated lines")
        raise SpecError(diags.items)
    if _nesting(text)[0] > limits.MAX_BRACKET_DEPTH:  # LALR on deep nesting is slow, then recurses
        too_deep(diags, _deepest(text, path), f"brackets nest more than {limits.MAX_BRACKET_DEPTH} deep")
        raise SpecError(diags.items)
    try:
        tree = _parse_tree(text, path, diags)
        depth, deepest = _tree_depth(tree)
        if depth > limits.MAX_TREE_DEPTH:  # the transformer and the evaluator recurse per level
            meta = deepest.meta
            span = Span(path, meta.line, meta.column, meta.line, meta.column + 1) \
                if not getattr(meta, "empty", True) else _deepest(text, path)
            too_deep(diags, span, f"the expression nests more than {limits.MAX_TREE_DEPTH} deep",
                     hint="split long operator chains and nested conditions into named values")
            raise SpecError(diags.items)
        items = _ToAst(path).transform(tree)
    except (RecursionError, VisitError) as err:
        # lark wraps what a transformer callback raises, a RecursionError included
        if isinstance(err, VisitError) and not isinstance(err.orig_exc, RecursionError):
            raise
        too_deep(diags, _deepest(text, path))
        raise SpecError(diags.items) from None
    return Module(Span(path, 1, 1, 1, 1), path, tuple(items.children))


def _parse_tree(text: str, path: str, diags: Diagnostics) -> Tree:
    """The Lark tree, or :class:`SpecError` with up to ten syntax errors in ``diags``."""
    last_line = [0]
    with _parser() as (lark, seen):
        def on_error(err: UnexpectedInput) -> bool:
            code, msg, span, hint = _syntax_diagnostic(err, path, text, seen)
            token = getattr(err, "token", None)
            # After an error, a `}` or the end of the file is rejected only because the
            # broken statement left the parser mid-way: an echo.
            echo = bool(diags) and token is not None and token.type in ("RBRACE", "$END")
            if span.line != last_line[0] and not echo:  # one error per line: the rest are echoes
                diags.error(code, msg, span, hint=hint)
                last_line[0] = span.line
            # Past a bracket left open, or an item that does not start with a keyword, every
            # later line would be an echo of this error.
            lost = "is never closed" in hint or (
                token is not None and token.type == "NAME" and "KIND" in err.expected)
            return len(diags.items) < 10 and not isinstance(err, UnexpectedEOF) and not lost

        try:
            tree = lark.parse(text, on_error=on_error)
        except UnexpectedInput as err:
            if not diags:
                code, msg, span, hint = _syntax_diagnostic(err, path, text, seen)
                diags.error(code, msg, span, hint=hint)
            raise SpecError(diags.items) from None
    diags.raise_if_any()
    return tree


# ------------------------------------------------------------------- tree → AST


def _span(path: str, meta) -> Span:
    if getattr(meta, "empty", True):
        return Span(path, 0, 0, 0, 0)
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line, tok.column, tok.end_line or tok.line,
                tok.end_column or tok.column + len(tok))


@v_args(meta=True)
class _ToAst(Transformer):
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

