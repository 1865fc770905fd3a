"""A Pygments lexer for ``.res`` specs, for papers (``minted``), Sphinx and MkDocs.

Installed with resdsl, it is registered under the ``pygments.lexers`` entry point, so
``pygmentize -l resdsl spec.res``, ``\\begin{minted}{resdsl}`` and Sphinx's
``.. code-block:: resdsl`` find it by name (aliases ``resdsl`` and ``res``, files ``*.res``).
The keywords follow ``grammars/resdsl.lark``; the built-in names (primitive layers,
``stage``, ``range``, ``len``…) are the elaborator's, so a new primitive is highlighted
without touching this file.
"""

from __future__ import annotations

from pygments.lexer import RegexLexer, bygroups, words
from pygments.token import (
    Comment,
    Keyword,
    Name,
    Number,
    Operator,
    Punctuation,
    String,
    Text,
    Whitespace,
)

from . import language
from .elaborate import BUILTINS

#: Definition kinds (the grammar's KIND): `block basic(...)`, `network r50 = ...`.
KINDS = language.DEFINITION_KINDS
OPERATOR_WORDS = ("and", "or", "not")
#: The grammar's other keywords (`if`, `for`, `from`, `require`…); `import` and the
#: constants have rules of their own.
KEYWORDS = tuple(sorted(language.KEYWORDS - {*KINDS, *OPERATOR_WORDS, "import", "true", "false", "none"}))

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class ResdslLexer(RegexLexer):
    """Lexer for resdsl ``.res`` architecture specs."""

    name = "resdsl"
    aliases = ["resdsl", "res"]
    filenames = ["*.res"]
    mimetypes = ["text/x-resdsl"]

    tokens = {
        "root": [
            (r"[\t \f]+", Whitespace),
            (r"\r?\n", Whitespace),
            (r"\\[\t \f]*\r?\n", Text),  # line continuation
            (r"#[^\n]*", Comment.Single),
            (r"(import)([\t ]+)(\"(?:[^\"\\\n]|\\.)*\")", bygroups(Keyword.Namespace, Whitespace, String)),
            (rf"(import)([\t ]+)({_NAME}(?:\.{_NAME})*)", bygroups(Keyword.Namespace, Whitespace, Name.Namespace)),
            (rf"({'|'.join(KINDS)})([\t ]+)({_NAME})", bygroups(Keyword.Declaration, Whitespace, Name.Function)),
            (words(KEYWORDS, suffix=r"\b"), Keyword),
            (words(OPERATOR_WORDS, suffix=r"\b"), Operator.Word),
            (words(("true", "false"), suffix=r"\b"), Keyword.Constant),
            (words(tuple(sorted(BUILTINS, key=len, reverse=True)), prefix=r"\b", suffix=r"\b"), Name.Builtin),
            # a layer's name: `conv1: conv(...)`, `0: conv(...)` (not a keyword argument `x = 1`)
            (rf"({_NAME}|[0-9]+)([\t ]*)(:)", bygroups(Name.Label, Whitespace, Punctuation)),
            (rf"({_NAME})([\t ]*)(=)(?!=)", bygroups(Name.Variable, Whitespace, Operator)),
            (_NAME, Name),
            (r"[0-9](?:_?[0-9])*\.[0-9]+(?:[eE][-+]?[0-9]+)?", Number.Float),
            (r"[0-9](?:_?[0-9])*[eE][-+]?[0-9]+", Number.Float),
            (r"[0-9](?:_?[0-9])*", Number.Integer),
            (r"\"(?:[^\"\\\n]|\\.)*\"", String.Double),
            (r"\*\*|//|==|!=|<=|>=|[-+*/%<>=]", Operator),
            (r"[()\[\]{},.:]", Punctuation),
        ],
    }
