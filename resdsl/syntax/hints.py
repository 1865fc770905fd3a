"""Syntax errors as diagnostics: the code, message, span and a hint for a parse error,
worded from the tokens around it."""

from __future__ import annotations

from dataclasses import dataclass, field

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .. import language
from ..diagnostics import Span, did_you_mean
from ..errors import E


@dataclass
class Seen:
    """What the post-lexer has yielded of one file so far: the input of the syntax-error
    hints (an LALR parser does not read past the token it rejects)."""

    opened: list[Token] = field(default_factory=list)  # unclosed ( [ {
    last: Token | None = None  # the last token yielded
    before: Token | None = None  # the one before it
    stray: Token | None = None  # the last ) ] } that closed nothing


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
_KINDS = (*language.DEFINITION_KINDS, "import")  # what a file's items start with


def _unclosed_hint(opened: list[Token]) -> str:
    tok = opened[-1]
    return f"the `{tok.value}` at line {tok.line}, column {tok.column} is never closed"


def _token_hint(tok: Token, expected: set[str], seen: Seen) -> str:
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
    if tok.type == "LBRACE" and before is not None and before.type == "NAME" and before.end_pos == tok.start_pos \
            and "COLON" not in expected:  # `from c1x1_w_s{stride}`: an interpolated label read back
        return (f"a label with an interpolation (`{before.value}{{…}}`) cannot be named again: right after that "
                "layer keep its tensor in a variable (`x = current`) and use the variable, or collect the "
                "tensors in a list")
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


def syntax_diagnostic(err: UnexpectedInput, path: str, text: str,
                       seen: Seen) -> tuple[str, str, Span, str]:
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
