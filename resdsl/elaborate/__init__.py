"""Elaboration: run a parsed spec to build the checked IR.

The elaborator is a small interpreter. Expressions evaluate to plain values (numbers,
booleans, strings, lists as tuples) or to *callables*: definitions and primitive layers,
possibly with some arguments already bound (``resnet50 with (groups = 32)``). A layer
statement instantiates a callable: a primitive becomes one :class:`~resdsl.ir.Op` whose
shape, parameters and MACs are inferred on the spot; a definition becomes a
:class:`~resdsl.ir.Scope` whose body runs with its arguments bound.

Errors never escape as exceptions: each becomes a diagnostic and elaboration goes on
with the next statement, so one run reports several. A problem found inside a standard
library definition is reported at the user's line that instantiated it, with a note
pointing into the library.

The modules here, one concern each: ``values`` (what expressions evaluate to),
``builtins`` (the names every file sees), ``exprs`` (expression trees read without
evaluating them), ``frames`` (the state of a running body), ``state`` (:class:`Build`,
the state of one elaboration), then functions that take that state explicitly as their
first argument: ``evaluation`` (expressions and argument binding), ``labels`` (layer
names and the tensors a layer reads), ``layers`` (primitive layers become ops) and
``statements`` (bodies, definition instances and stages, which contain each other); and
``elaborator`` (the loader's interface, :class:`Elaborator`, which owns one ``Build``).
"""

from .. import ops  # noqa: F401  (registers the built-in primitives)
from ..diagnostics import NO_SPAN
from .builtins import BUILTINS
from .elaborator import Elaborator
from .statements import IMPLICIT_NAMES
from .values import FAILED, DefValue, ModuleEnv, PrimValue, Tensor, Value, show, to_attr, type_name

__all__ = ["BUILTINS", "FAILED", "IMPLICIT_NAMES", "NO_SPAN", "DefValue", "Elaborator", "ModuleEnv",
           "PrimValue", "Tensor", "Value", "show", "to_attr", "type_name"]
