"""How diagrams and paper tables show a primitive: its look, and nothing else.

A :class:`Look` is presentation only: the words of a diagram node and of a table line, a
colour category, a merge's symbol. What an op *is* — a norm, a pool, a residual merge,
a layer that counts towards depth — is its primitive's :class:`~resdsl.primitives.Traits`,
which tables and figures read for their structure; a look never decides it, so changing
a look changes no table's rows, no transplant and no statistics.

The built-in looks are in :mod:`resdsl.builtin_looks`; a plugin registers its own with
:func:`register_look`. A primitive without one is drawn with the default look: its kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from .ir import Op
from .primitives import Lowerings, guarded, text_result


@dataclass(frozen=True)
class Look:
    """How diagrams and tables word and colour a primitive.

    ``text`` words a diagram node (``3×3 conv, 64, /2``); ``category`` colours it
    (``conv``, ``norm``, ``act``, ``pool``, ``merge``, ``pad``, ``fc``, ``other``);
    ``symbol`` draws a merge as a small circle (``+``). ``table`` words the op as a line of
    a paper table (``3×3, 64``; ``with_stride`` for the stem), ``head`` as a word of the
    head row; each defaults to ``text``.
    """

    text: Callable[[Op], str]
    category: str = "other"
    symbol: str | None = None
    table: Callable[[Op, bool], str] | None = None
    head: Callable[[Op], str] | None = None

    def table_text(self, op: Op, with_stride: bool = False) -> str:
        """The op as a table line."""
        return self.table(op, with_stride) if self.table is not None else self.text(op)

    def head_text(self, op: Op) -> str:
        """The op as a word of a table's head row."""
        return self.head(op) if self.head is not None else self.text(op)


#: The look of a primitive that registered none: its kind, uncoloured.
DEFAULT_LOOK = Look(lambda op: op.kind)


def fmt_constant(x: float) -> str:
    """A constant as a paper prints it: three significant digits (NF-ResNet's β, ``0.928``),
    a whole number whole (``1024``, never ``1.02e+03``)."""
    if float(x).is_integer():
        return str(int(x))
    digits = max(3, len(str(int(abs(x)))))  # 1234.5 keeps its integer digits
    return f"{x:.{digits}g}"


def _guard(look: Look, kind: str, origin: str) -> Look:
    return replace(look, text=guarded(look.text, kind, origin, "diagram text", text_result),
                   table=guarded(look.table, kind, origin, "table text", text_result),
                   head=guarded(look.head, kind, origin, "head text", text_result))


#: kind → :class:`Look`.
LOOKS = Lowerings[Look]("diagram", _guard)


def register_look(kind: str, look: Look, *, origin: str | None = None, replace: bool = False) -> Look:
    """Register how diagrams and tables show primitive ``kind``. Returns the entry."""
    if not isinstance(look, Look):
        raise TypeError(f"register_look: `look` is a resdsl Look, not {type(look).__name__}")
    return LOOKS.register(kind, look, origin=origin, replace=replace)


def look_of(op: Op) -> Look:
    """How ``op`` is shown: its primitive's registered look, or :data:`DEFAULT_LOOK`."""
    return LOOKS.get(op.kind) or DEFAULT_LOOK
