"""The importer's recognisers, by primitive kind: how a traced torch call is known for one.

A recogniser receives one traced call (a :class:`resdsl.importer.calls.Call`: a leaf module,
a function or a method) and returns the op's attributes if its primitive computes that
call (a dict), a chain ``[(kind, attrs), …]`` when a module computes several ops in turn (a
norm with its activation), or ``None``. Calls are offered to the recognisers in the
registry's order; the first that accepts names the op.

The built-ins' are in :mod:`resdsl.importer.builtin_recognisers`; a plugin registers its
own with :func:`register_recogniser`. A primitive without one is never recognised: a model
that uses it cannot be imported, and the importer says which call it could not name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..primitives import Lowerings, guarded

#: ``call → attrs | [(kind, attrs), …] | None``.
Recogniser = Callable[[Any], Any]

#: kind → its :data:`Recogniser`.
RECOGNISERS = Lowerings[Recogniser]("importer", lambda fn, kind, origin: guarded(fn, kind, origin, "recogniser"))


def register_recogniser(kind: str, recogniser: Recogniser, *, origin: str | None = None,
                        replace: bool = False) -> Recogniser:
    """Register how the importer recognises a call computed by primitive ``kind``."""
    if not callable(recogniser):
        raise TypeError(f"register_recogniser: a recogniser is a function, not {type(recogniser).__name__}")
    return RECOGNISERS.register(kind, recogniser, origin=origin, replace=replace)
