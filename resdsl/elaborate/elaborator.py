"""The elaborator: builds one network, counts its steps and records its diagnostics.

:class:`Elaborator` is the loader's interface. What one elaboration builds is a
:class:`~resdsl.elaborate.state.Build`, passed explicitly to the functions of
``evaluation``, ``labels``, ``layers`` and ``statements``, which call each other as
expressions, names and bodies nest (a layer evaluates its arguments, an instance runs a
body of layers).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .. import roles
from ..diagnostics import Diagnostic, Span
from ..errors import E
from ..ir import INPUT, Network, Op, Role, Scope
from ..resources import std_root
from ..syntax import Expr, too_deep
from .evaluation import bind, eval_expr
from .frames import Frame, Skip, TooMany
from .state import Build
from .statements import run_body
from .values import FAILED, DefValue, Value, to_attr


class Elaborator:
    """Turns a network value into a :class:`Network`, collecting diagnostics.

    The loader's interface: :meth:`evaluate` (a file-level expression), :meth:`network`
    (the network to build), :meth:`take_diagnostics` and :meth:`unknown_name`. One
    :class:`Build` holds what it has built; every step reads and changes that one object.
    """

    def __init__(self) -> None:
        self.build = Build()

    # ------------------------------------------------------------- the loader's interface

    def evaluate(self, e: Expr, names: Mapping[str, Value]) -> Value:
        """The value of a file-level expression (the right side of an alias) in a file's
        ``names``, which it reads and never writes. :data:`FAILED` when it fails; its
        diagnostics then wait in :meth:`take_diagnostics`."""
        try:
            return eval_expr(self.build, e, names)
        except (Skip, TooMany):
            return FAILED
        except RecursionError:
            too_deep(self.build.diags, e.span)
            return FAILED

    def take_diagnostics(self) -> list[Diagnostic]:
        """The diagnostics recorded so far, in the order found; the elaborator forgets them."""
        diags = self.build.diags
        items, diags.items = diags.items, []
        return items

    def unknown_name(self, d: Diagnostic) -> str | None:
        """The name that ``d``, an `unknown name` diagnostic of this elaborator, is about
        (the loader suggests the import that defines it); ``None`` for any other diagnostic."""
        return self.build.unknown_names.get(d)

    # ------------------------------------------------------------- networks

    def network(self, value: DefValue, span: Span, name: str, source: str) -> Network | None:
        """Instantiate a network value as ``name`` (defined in ``source``); ``None`` if
        diagnostics were recorded."""
        b = self.build
        defn = value.definition
        try:
            args = bind(b, value, (), span)
            frame = Frame("", "network", value.env, {}, INPUT, INPUT)
            frame.tensors["input"] = INPUT
            b.sites.append((value.name, "", span))
            run_body(b, defn, frame, args)
        except Skip:
            return None
        except TooMany:
            return None
        except RecursionError:
            b.diags.items.append(Diagnostic(E.DEFINITIONS_TOO_DEEP, "definitions nest too deeply", span,
                                            hint="look for a definition that instantiates itself"))
            return None
        if frame.input_shape is None and not b.diags:
            b.error(E.NO_NETWORK, f"network `{value.name}` declares no input", defn.name_span,
                    hint="start the body with `input [3, 224, 224]`")
        if b.diags:
            return None
        root = Scope(name, "", Role.NETWORK, value.name,
                     tuple((k, to_attr(v)) for k, v in args.items()), tuple(frame.items),
                     INPUT, frame.current, defn.span)
        dead_layers(b, root, frame.current)
        if b.diags:
            return None
        return roles.assign(Network(name, source, frame.input_shape, tuple(b.ops), root, frame.current,
                                    sized_by_input=b.reads_size))


def dead_layers(b: Build, root: Scope, output: str) -> None:
    """E056 for a layer with weights whose output never reaches the network's output
    (``conv1: conv(…) from x`` meant to redirect the chain leaves a dead side branch).
    Only the first weighted layer of each dead branch is reported."""
    # Fast path: when every op but the output is read by another op, nothing is dead.
    used = set().union(*[op.inputs for op in b.ops])
    if len(used) - (INPUT in used) - (output in used) == len(b.ops) - 1:
        return
    live = {output}
    grow = live.update
    for op in reversed(b.ops):
        if op.name in live:
            grow(op.inputs)
    live_modules = {op.module for op in b.ops if op.name in live and op.module is not None}
    dead_above: set[str] = set()  # dead ops with a dead weighted layer before them
    for op in b.ops:
        if op.name in live or (op.module is not None and op.module in live_modules):
            continue
        if any(i in dead_above for i in op.inputs):
            dead_above.add(op.name)
            continue
        if op.params > 0:
            dead_above.add(op.name)
            span, notes, local = locate(root, op)
            b.diags.items.append(Diagnostic(
                E.OUTPUT_UNUSED, f"the output of `{local}` is never used", span,
                "it does not reach the network's output",
                "a layer written with `from` is a side branch: the running value stays where "
                "it was; use its output (`add(NAME)`, `from NAME`), continue from it with "
                "`current = NAME`, or remove the layer", notes))


def locate(root: Scope, op: Op) -> tuple[Span, tuple[str, ...], str]:
    """Where to report an op after elaboration, as ``Build.error`` would have (at the
    user's line when the op comes from the standard library), and its name in the
    definition that wrote it (the same in every block of a stage, so reported once)."""
    std = str(std_root())
    chain: list[Scope] = []

    def find(scope: Scope) -> bool:
        chain.append(scope)
        for item in scope.items:
            if item == op.name or (isinstance(item, Scope) and find(item)):
                return True
        chain.pop()
        return False

    find(root)
    owner = next((s for s in reversed(chain) if not s.inline), root)
    name = op.module or op.name
    local = name[len(owner.path) + 1:] if owner.path and name.startswith(owner.path + ".") else name
    if not op.span.path.startswith(std):
        # at the call: whether a definition's branch is dead can depend on the call's arguments
        # a `stage(…)` has no body of its own to point into (`stage` is a keyword: no
        # definition of the user's has that name)
        inner = next((s for s in reversed(chain[1:]) if not s.inline
                      and not (s.role is Role.STAGE and s.definition == "stage")), None)
        if inner is None:
            return op.span, (), local
        where = f"{Path(op.span.path).name}:" if op.span.path != inner.span.path else "line "
        return inner.span, (f"`{local}` is written in `{inner.definition}` at {where}{op.span.line}:"
                            f"{op.span.column}; this call makes `{inner.path}`",), local
    user = next((s for s in reversed(chain[1:]) if not s.span.path.startswith(std)), None)
    inner = chain[-1]
    if user is None:
        return op.span, (), local
    where = f"in `{inner.path}`, " if inner.path else ""
    return user.span, (f"{where}inside `{inner.definition}` (std/{op.span.path[len(std) + 1:]}:"
                       f"{op.span.line}:{op.span.column})",), local
