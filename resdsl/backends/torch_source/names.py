"""Identifiers in the generated file: the names it reserves, a namespace that refuses
keywords, non-identifiers and clashes, class names (``camel``) and references to modules
whose names are not identifiers (``getattr(self, "0")``)."""

from __future__ import annotations

import builtins
import keyword
import re

from ..torch_lowering import TORCH

#: Module-level names the generated file defines or reads (imports, builtins such as
#: `isinstance`, `getattr`, `super`, `print`; the registry's helpers come from
#: `_helper_names`): no class, function, parameter or local variable the spec names may
#: take one, or the file would shadow what it relies on.
MODULE_NAMES = ("torch", "nn", "F", "camel", "model", "checkpoint_blocks", "take_indices", *dir(builtins))


def is_identifier(name: str) -> bool:
    """A name usable as a Python identifier: not a keyword, soft keyword or builtin constant,
    and not one Python mangles inside a class body (``__x`` becomes ``_Cls__x``)."""
    return name.isidentifier() and not keyword.iskeyword(name) and not keyword.issoftkeyword(name) \
        and not _mangled(name) and name != "__class__"  # a method's local `__class__` breaks super()


def _mangled(name: str) -> bool:
    return name.startswith("__") and not name.endswith("__")


class Namespace:
    """Identifiers in one Python scope: refuses keywords, non-identifiers and clashes."""

    def __init__(self, reserved: tuple[str, ...] = ()):
        self._used: set[str] = set(reserved)

    def __contains__(self, name: str) -> bool:
        return name in self._used

    def used(self) -> frozenset[str]:
        """Every name taken so far (reserved ones included)."""
        return frozenset(self._used)

    def claim(self, name: str) -> str:
        """Take ``name`` exactly; raise ``ValueError`` if it is not a free identifier."""
        if not is_identifier(name):
            raise ValueError(f"`{name}` is not a usable Python identifier")
        if name in self._used:
            raise ValueError(f"`{name}` is already defined")
        self._used.add(name)
        return name

    def fresh(self, base: str) -> str:
        """``base`` made an identifier (``0`` → ``m0``), numbered if taken (``out_2``)."""
        base = re.sub(r"\W", "_", base) or "value"
        if base.startswith("__"):  # `__x` (or `__x___2`) would be `_Cls__x` in a class body
            base = f"p{base}"
        if not is_identifier(base):
            base = f"m{base}" if base[0].isdigit() else f"{base}_"
        name, n = base, 1
        while name in self._used:
            n += 1
            name = f"{base}_{n}"
        return self.claim(name)


def camel(name: str) -> str:
    """``preact_bottleneck`` → ``PreactBottleneck``; a digit-led part keeps its underscore."""
    out = ""
    for part in re.split(r"[^0-9A-Za-z]+", name):
        if not part:
            continue
        out += ("_" + part if part[0].isdigit() and out else part[0].upper() + part[1:])
    return out if out and out[0].isalpha() else f"Net{out}"


def attr_ref(owner: str, name: str) -> str:
    """Attribute access that also works for module names like ``0`` or ``class``."""
    return f"{owner}.{name}" if is_identifier(name) else f"getattr({owner}, {_quoted(name)})"


def path_ref(owner: str, path: str) -> str:
    parts = path.split(".")
    if all(is_identifier(p) for p in parts):
        return ".".join([owner, *parts])
    return f"{owner}.get_submodule({_quoted(path)})"


def _quoted(text: str) -> str:
    """A string literal in double quotes, as ruff format writes it."""
    literal = repr(text)
    return f'"{text}"' if literal == f"'{text}'" and '"' not in text else literal


def _helper_names() -> tuple[str, ...]:
    """Names the generated file may define besides its classes: every helper's."""
    out: list[str] = []
    for kind in TORCH.kinds():
        for helper in TORCH.require(kind).helpers:
            out += [n for n in (helper.name, *helper.defines) if n not in out]
    return tuple(out)
