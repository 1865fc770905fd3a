"""The catalogue of diagnostic codes: every code resdsl reports, its title and where the
documentation explains it, in one place.

A raise site names the code by what is wrong, never by its number::

    raise ShapeError(E.GROUPS_NOT_DIVIDING, f"groups = {g} does not divide {c} channels")
    raise self.fail(E.UNKNOWN_NAME, f"unknown name `{name}`", span, hint=hint)

:class:`E` is a string enum, so ``E.UNKNOWN_NAME == "E010"`` and it prints as ``E010``:
the rendered diagnostics, JSON output and a plugin's ``ShapeError("E015", …)`` are as
before. ``docs/language.md`` (spec diagnostics, one section each) and
``docs/importing.md`` (``resdsl import``'s) are checked against this list by
``tests/test_invalid.py``. This module imports nothing of resdsl: every layer may use it.
"""

from __future__ import annotations

import re
from enum import StrEnum

#: Where the spec diagnostics are documented, one section (``### `E001` — title``) each.
LANGUAGE_DOC = "docs/language.md"
#: Where ``resdsl import``'s diagnostics are documented, in one table.
IMPORTING_DOC = "docs/importing.md"


class E(StrEnum):
    """A diagnostic code: ``E.NAME`` is the string ``"Ennn"``, with its title and docs."""

    summary: str
    doc: str

    def __new__(cls, code: str, summary: str, doc: str = LANGUAGE_DOC) -> E:
        member = str.__new__(cls, code)
        member._value_ = code
        member.summary = summary
        member.doc = doc
        return member

    @property
    def heading(self) -> str:
        """The documentation's heading for this code (its section in ``docs/language.md``)."""
        return f"`{self.value}` — {self.summary}"

    @property
    def anchor(self) -> str:
        """The link to the documentation, ``docs/language.md#e001--syntax-error``: the
        heading's anchor as GitHub makes it (lower case, punctuation dropped, spaces to ``-``)."""
        if self.doc == IMPORTING_DOC:
            return f"{IMPORTING_DOC}#when-it-cannot"
        slug = re.sub(r"[^\w\- ]", "", self.heading.lower()).replace(" ", "-")
        return f"{self.doc}#{slug}"

    # ------------------------------------------------------------ the parser
    SYNTAX = "E001", "syntax error"
    UNEXPECTED_CHARACTER = "E002", "unexpected character"
    NOT_UTF8 = "E003", "not UTF-8"
    NESTING_TOO_DEEP = "E004", "nesting too deep"
    # ------------------------------------------------------------ names and shapes
    UNKNOWN_NAME = "E010", "unknown name"
    DEFINED_TWICE = "E011", "defined twice"
    CHANNEL_MISMATCH = "E012", "residual add of different channel counts"
    SIZE_MISMATCH = "E013", "residual add of different sizes"
    GROUPS_NOT_DIVIDING = "E014", "groups do not divide the channels"
    OUT_OF_RANGE = "E015", "too small or out of range"
    SHRINKS_TO_NOTHING = "E016", "the feature map shrinks to nothing"
    TOO_LARGE = "E017", "too large"
    OVER_BUDGET = "E018", "over the size budget"
    # ------------------------------------------------------------ arguments
    UNKNOWN_PARAMETER = "E020", "unknown parameter"
    MISSING_ARGUMENT = "E021", "missing argument"
    TOO_MANY_ARGUMENTS = "E022", "too many positional arguments"
    WRONG_TYPE = "E023", "wrong type"
    ARGUMENT_TWICE = "E024", "argument given twice"
    # ------------------------------------------------------------ imports of files
    IMPORT_CYCLE = "E030", "import cycle"
    IMPORT_NOT_FOUND = "E031", "import not found"
    IMPORT_OUTSIDE_FOLDER = "E032", "import outside the folder"
    IMPORT_NOT_A_SPEC = "E033", "an import that is not a spec"
    # ------------------------------------------------------------ evaluation
    EVALUATION = "E040", "evaluation error"
    REQUIREMENT_FAILED = "E041", "a requirement does not hold"
    # ------------------------------------------------------------ networks and layers
    NO_NETWORK = "E050", "no network, or no input"
    WRONG_TENSOR_KIND = "E051", "wrong kind of tensor"
    NEEDS_A_NAME = "E052", "a layer needs a name"
    MISPLACED_INPUT = "E053", "`input` in the wrong place"
    BAD_LAYER_NAME = "E054", "bad layer name"
    REAPPLIED_TO_OTHER_WIDTH = "E055", "a layer applied again to another width"
    OUTPUT_UNUSED = "E056", "a layer whose output is never used"
    PATH_TOO_DEEP = "E057", "a layer path with too many parts"
    PLUGIN_FAILED = "E058", "a plugin primitive failed"
    DEFINITIONS_TOO_DEEP = "E060", "definitions nest too deeply"
    STAGE_IN_STAGE = "E061", "a stage inside a stage"
    # ------------------------------------------------------------ `resdsl import` (not a spec's)
    TORCH_UNSUPPORTED = "E070", "no primitive computes it", IMPORTING_DOC
    TORCH_UNTRACEABLE = "E071", "cannot trace or run", IMPORTING_DOC
    TORCH_NOT_FAITHFUL = "E072", "other weights or outputs", IMPORTING_DOC
    TORCH_NOT_WRITABLE = "E073", "cannot be written as a spec", IMPORTING_DOC
    TORCH_NO_MODEL = "E074", "no such model", IMPORTING_DOC
