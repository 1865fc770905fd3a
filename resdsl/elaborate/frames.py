"""The running state of the bodies being elaborated, and how their statements stop.

A statement that fails records its diagnostic and raises :class:`Skip`; the body goes on
with its next statement. These exceptions never leave the elaborator.
"""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any

from ..diagnostics import Span
from ..ir import Op, Shape
from .values import ModuleEnv, Tensor, Value


class Skip(Exception):
    """Abandon the current statement; its diagnostic is already recorded."""


class Abort(Skip):
    """Abandon the whole definition instance: a `require` failed, and going on would only
    report the failure's consequences (an index out of range, a shape mismatch)."""


class TooMany(Exception):
    """Stop elaborating: the diagnostic limit or the step budget is reached."""


class BodyEnv(ChainMap):
    """The names a body sees: its variables over its file's definitions; ``tensors`` (the
    body's labels) are consulted after both, before the built-ins (see ``evaluation.unbound``).
    Labels are kept out of the chain itself so that looking up a definition or a primitive
    costs no extra miss."""

    tensors: dict[str, Any] = {}
    #: the height and width of the tensor the body reads (``in_height``, ``in_width``)
    size: tuple[int, int] | None = None

    def new_child(self, m=None, **kwargs):  # type: ignore[override]
        child = super().new_child(m, **kwargs)
        child.tensors = self.tensors
        child.size = self.size
        return child


def label_value(tensors: dict[str, Any], key: str) -> Value:
    """A label's value: a :class:`Tensor`, or a tuple of them (a split, a container).
    Single tensors are stored as their op name, to build no object per layer."""
    value = tensors[key]
    return Tensor(value, key) if type(value) is str else value


@dataclass
class Frame:
    """The running state of one definition instance."""

    path: str
    kind: str
    module: ModuleEnv
    vars: dict[str, Value]
    input: str
    current: str
    #: label → op name, or a tuple of Tensors for a split or a numbered container
    tensors: dict[str, Any] = field(default_factory=dict)
    layers: dict[str, Op] = field(default_factory=dict)  # label → op, for re-application
    #: label → where it was defined; ``"a."`` keys mark ``a`` as a container of dotted labels
    labels: dict[str, Span] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)  # labels whose statement failed
    items: list = field(default_factory=list)
    input_shape: Shape | None = None  # networks: the declared input
    #: After ``parts: split(…)`` there is no single running value: (label, span, parts).
    split: tuple[str, Span, int] | None = None
    params: tuple[str, ...] = ()  # the definition's parameter names (for hints)
    env: Any = None  # the body's names (see env_of), made once
    size: tuple[int, int] | None = None  # its input's height and width, when a feature map


def env_of(frame: Frame) -> BodyEnv:
    """Names visible in a body: its variables, then its file's definitions, then its
    labels (no copy; made once per frame)."""
    env = frame.env
    if env is None:
        env = frame.env = BodyEnv(frame.vars, frame.module.names)
        env.tensors = frame.tensors
        env.size = frame.size
    return env
