"""The words the ``.res`` language gives its own meaning, in one place.

Its keywords are read from its grammar (``grammars/resdsl.lark``), so a keyword added
there is reserved everywhere; its built-in names are listed here and implemented in
:mod:`resdsl.elaborate.builtins`, which builds its table from this list. The registry
refuses a primitive named by any of them (:data:`RESERVED`): a spec could not call it.
This module imports nothing of resdsl but the data paths, so every layer may read it.
"""

from __future__ import annotations

import re
from functools import lru_cache

from .resources import data_path


@lru_cache(maxsize=1)
def grammar() -> str:
    """The text of the grammar."""
    return data_path("grammars", "resdsl.lark").read_text(encoding="utf-8")


def _rules() -> str:
    """The grammar without its comments."""
    return re.sub(r"//[^\n]*", "", grammar())


def _definition_kinds(rules: str) -> tuple[str, ...]:
    rule = re.search(r"^KIND(?:\.\d+)?:(.*)$", rules, re.M)
    return tuple(re.findall(r'"(\w+)"', rule[1])) if rule else ()


#: The kinds of definition (``network``, ``block``…), the alternatives of the grammar's ``KIND``.
DEFINITION_KINDS: tuple[str, ...] = _definition_kinds(_rules())

#: Every word of the grammar: the quoted words of its rules (``import``, ``from``, ``if``,
#: ``true``…), the kinds of definition among them.
KEYWORDS: frozenset[str] = frozenset(re.findall(r'"([a-z_]+)"', _rules()))

#: The functions every file can call (``range(4)``, ``len(depths)``).
BUILTIN_FUNCTIONS: tuple[str, ...] = ("range", "len", "min", "max", "sum", "abs", "int", "float", "round",
                                      "log", "log2", "ceil", "floor")

#: The other built-in names: ``stage`` (a block repeated) and ``current`` (the running value).
BUILTIN_VALUES: tuple[str, ...] = ("stage", "current")

#: Names a spec gives its own meaning; no primitive may take one.
RESERVED: frozenset[str] = KEYWORDS | set(BUILTIN_FUNCTIONS) | set(BUILTIN_VALUES)
