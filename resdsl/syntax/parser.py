"""The parser: Lark's LALR parser on ``grammars/resdsl.lark`` with a post-lexer for
newlines, a pool of parsers so that parses may run at once, and :func:`parse`, which
turns a file into a :class:`~resdsl.syntax.nodes.Module` or raises :class:`SpecError`
with its syntax errors (parsing resumes after an error, so one run reports several)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedEOF, UnexpectedInput, VisitError

from .. import language, limits
from ..diagnostics import Diagnostics, Span, SpecError
from ..errors import E
from .hints import Seen, syntax_diagnostic
from .nesting import bracket_depth, count_tokens, deepest_bracket, too_deep, tree_depth
from .nodes import Module
from .transform import ToAst


class _Layout:
    """Post-lexer: newlines end statements, except inside ( ) [ ] and label braces
    (``layer{i + 1}``), right after ``{`` and at the start of the file.

    It looks only backwards: the contextual lexer picks terminals by parser state, so
    a post-lexer must not read ahead. Newlines before ``}``/``else`` are dropped by the
    ``_NL`` pattern itself.
    """

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.seen = Seen()

    def reset(self) -> None:
        """Forget the last file (not done in ``process``: lark calls it again to resume
        after an error)."""
        self.seen = Seen()

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
def _parser() -> Iterator[tuple[Lark, Seen]]:
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
            lark = Lark(language.grammar(), parser="lalr", propagate_positions=True, maybe_placeholders=False,
                        postlex=layout, cache=False)
    layout.reset()
    try:
        yield lark, layout.seen
    finally:
        _IDLE.append((lark, layout))


def parse(text: str, path: str) -> Module:
    """Parse source text into a :class:`Module`, or raise :class:`SpecError`."""
    diags = Diagnostics()
    tokens = count_tokens(text)
    if tokens > limits.MAX_TOKENS:  # parsing costs tens of µs a token: refuse before it starts
        diags.error(E.TOO_LARGE, f"the file has more than {limits.MAX_TOKENS:,} tokens ({tokens:,})",
                    Span(path, 1, 1, 1, 2), hint="split the spec into files that import each other, "
                    "or use `for` loops and stages instead of repeated lines")
        raise SpecError(diags.items)
    if bracket_depth(text)[0] > limits.MAX_BRACKET_DEPTH:  # LALR on deep nesting is slow, then recurses
        too_deep(diags, deepest_bracket(text, path), f"brackets nest more than {limits.MAX_BRACKET_DEPTH} deep")
        raise SpecError(diags.items)
    try:
        tree = _parse_tree(text, path, diags)
        depth, deepest = tree_depth(tree)
        if depth > limits.MAX_TREE_DEPTH:  # the transformer and the evaluator recurse per level
            meta = deepest.meta
            span = Span(path, meta.line, meta.column, meta.line, meta.column + 1) \
                if not getattr(meta, "empty", True) else deepest_bracket(text, path)
            too_deep(diags, span, f"the expression nests more than {limits.MAX_TREE_DEPTH} deep",
                     hint="split long operator chains and nested conditions into named values")
            raise SpecError(diags.items)
        items = ToAst(path).transform(tree)
    except (RecursionError, VisitError) as err:
        # lark wraps what a transformer callback raises, a RecursionError included
        if isinstance(err, VisitError) and not isinstance(err.orig_exc, RecursionError):
            raise
        too_deep(diags, deepest_bracket(text, path))
        raise SpecError(diags.items) from None
    return Module(Span(path, 1, 1, 1, 1), path, tuple(items.children))


def _parse_tree(text: str, path: str, diags: Diagnostics) -> Tree:
    """The Lark tree, or :class:`SpecError` with up to ten syntax errors in ``diags``."""
    last_line = [0]
    with _parser() as (lark, seen):
        def on_error(err: UnexpectedInput) -> bool:
            code, msg, span, hint = syntax_diagnostic(err, path, text, seen)
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
                code, msg, span, hint = syntax_diagnostic(err, path, text, seen)
                diags.error(code, msg, span, hint=hint)
            raise SpecError(diags.items) from None
    diags.raise_if_any()
    return tree
