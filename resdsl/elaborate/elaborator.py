"""The elaborator: builds one network, counts its steps and records its diagnostics.

:class:`Elaborator` is one object whose methods are grouped by concern in the modules
beside this one (evaluation, binding, statements, labels, layers, instances): the parts
call each other recursively (a layer evaluates its arguments, an instance runs a body of
layers), so they share one ``self`` rather than holding references to each other.
"""

from __future__ import annotations

from collections.abc import Mapping

from .. import limits, roles
from ..diagnostics import NO_SPAN, Diagnostic, Diagnostics, Span
from ..errors import E
from ..ir import INPUT, Network, Op, Role, Scope, Shape
from ..resources import std_root
from ..syntax import Expr, too_deep
from .binding import Binding
from .evaluation import Evaluation
from .frames import Frame, Skip, TooMany
from .instances import Instances
from .labels import Labels
from .layers import Layers
from .statements import Statements
from .values import FAILED, DefValue, Value, to_attr


class Elaborator(Evaluation, Binding, Statements, Labels, Layers, Instances):
    """Turns a network value into a :class:`Network`, collecting diagnostics.

    The loader's interface: :meth:`evaluate` (a file-level expression), :meth:`network`
    (the network to build), :meth:`take_diagnostics` and :meth:`unknown_name`.
    """

    def __init__(self) -> None:
        self.diags = Diagnostics()
        self.ops: list[Op] = []
        self.op_by_name: dict[str, Op] = {}
        self.shapes: dict[str, Shape] = {}
        #: (definition name, instance path, call span) of the instances being built
        self.sites: list[tuple[str, str, Span]] = []
        self.missing_input = False
        #: Stand-ins for the outputs of failed statements, and every op computed from one:
        #: errors about their shapes are consequences of an error already reported.
        self.tainted: set[str] = set()
        self.frames: list[Frame] = []  # the bodies being run, innermost last
        self.stmt_span = NO_SPAN  # the layer statement being run (for `from` diagnostics)
        #: evaluation steps taken (expressions, statements, instances), against limits.MAX_STEPS
        self.steps = 0
        self.exhausted = False
        self.next_suffix: dict[str, int] = {}  # op name → last `#k` given to a repeat of it
        #: `unknown name` diagnostics → the name (kept after take_diagnostics: the loader
        #: adds its import hints once every file is loaded)
        self.unknown_names: dict[Diagnostic, str] = {}

    def charge(self, n: int, span: Span) -> None:
        """Count ``n`` steps at once (work proportional to a list's length)."""
        if n:
            self.steps += n - 1
            self.step(span)

    def step(self, span: Span) -> None:
        """Count one evaluation step; past the budget, stop the whole elaboration here."""
        self.steps += 1
        if self.steps > limits.MAX_STEPS:
            if not self.exhausted:  # one diagnostic, where the budget ran out
                self.exhausted = True
                self.error(E.TOO_LARGE, f"the spec takes more than {limits.MAX_STEPS:,} evaluation steps",
                           span, hint="look for nested loops, or stages of definitions that repeat "
                                      "a lot; published networks take a small fraction of this")
            raise TooMany()

    # ------------------------------------------------------------- diagnostics

    def error(self, code: str, message: str, span: Span, *, label: str = "", hint: str = "",
              unknown: str = "") -> None:
        """Record a diagnostic; spans inside the standard library move to the user's call site.
        ``unknown``: the name an `unknown name` diagnostic is about (see :meth:`unknown_name`)."""
        notes: tuple[str, ...] = ()
        std = str(std_root())
        if span.path.startswith(std) and self.sites:
            user = next((site for _, _, site in reversed(self.sites) if not site.path.startswith(std)),
                        None)
            if user is not None:
                name, path, _ = self.sites[-1]
                where = f"in `{path}`, " if path else ""
                notes = (f"{where}inside `{name}` (std/{span.path[len(std) + 1:]}:{span.line}:"
                         f"{span.column})",)
                span = user
        elif self.sites and self.sites[-1][1]:  # inside a named instance of the user's own
            name, path, site = self.sites[-1]
            notes = (f"in `{path}`, an instance of `{name}` (line {site.line})",)
        diagnostic = Diagnostic(code, message, span, label, hint, notes)
        self.diags.items.append(diagnostic)
        if unknown:
            self.unknown_names[diagnostic] = unknown
        if len(self.diags.items) >= self.diags.limit:
            raise TooMany()

    def fail(self, code: str, message: str, span: Span, **kw: str) -> Skip:
        """Record a diagnostic and return what abandons the statement: ``raise self.fail(…)``."""
        self.error(code, message, span, **kw)
        return Skip()

    # ------------------------------------------------------------- the loader's interface

    def evaluate(self, e: Expr, names: Mapping[str, Value]) -> Value:
        """The value of a file-level expression (the right side of an alias) in a file's
        ``names``, which it reads and never writes. :data:`FAILED` when it fails; its
        diagnostics then wait in :meth:`take_diagnostics`."""
        try:
            return self.eval(e, names)
        except (Skip, TooMany):
            return FAILED
        except RecursionError:
            too_deep(self.diags, e.span)
            return FAILED

    def take_diagnostics(self) -> list[Diagnostic]:
        """The diagnostics recorded so far, in the order found; the elaborator forgets them."""
        items, self.diags.items = self.diags.items, []
        return items

    def unknown_name(self, d: Diagnostic) -> str | None:
        """The name that ``d``, an `unknown name` diagnostic of this elaborator, is about
        (the loader suggests the import that defines it); ``None`` for any other diagnostic."""
        return self.unknown_names.get(d)

    # ------------------------------------------------------------- networks

    def network(self, value: DefValue, span: Span, name: str, source: str) -> Network | None:
        """Instantiate a network value as ``name`` (defined in ``source``); ``None`` if
        diagnostics were recorded."""
        defn = value.definition
        try:
            args = self.bind(value, (), span)
            frame = Frame("", "network", value.env, {}, INPUT, INPUT)
            frame.tensors["input"] = INPUT
            self.sites.append((value.name, "", span))
            self.run_body(defn, frame, args)
        except Skip:
            return None
        except TooMany:
            return None
        except RecursionError:
            self.diags.items.append(Diagnostic(E.DEFINITIONS_TOO_DEEP, "definitions nest too deeply", span,
                                               hint="look for a definition that instantiates itself"))
            return None
        if frame.input_shape is None and not self.diags:
            self.error(E.NO_NETWORK, f"network `{value.name}` declares no input", defn.name_span,
                       hint="start the body with `input [3, 224, 224]`")
        if self.diags:
            return None
        root = Scope(name, "", Role.NETWORK, value.name,
                     tuple((k, to_attr(v)) for k, v in args.items()), tuple(frame.items),
                     INPUT, frame.current, defn.span)
        self.dead_layers(root, frame.current)
        if self.diags:
            return None
        return roles.assign(Network(name, source, frame.input_shape, tuple(self.ops), root, frame.current))

    def dead_layers(self, root: Scope, output: str) -> None:
        """E056 for a layer with weights whose output never reaches the network's output
        (``conv1: conv(…) from x`` meant to redirect the chain leaves a dead side branch).
        Only the first weighted layer of each dead branch is reported."""
        # Fast path: when every op but the output is read by another op, nothing is dead.
        used = set().union(*[op.inputs for op in self.ops])
        if len(used) - (INPUT in used) - (output in used) == len(self.ops) - 1:
            return
        live = {output}
        grow = live.update
        for op in reversed(self.ops):
            if op.name in live:
                grow(op.inputs)
        live_modules = {op.module for op in self.ops if op.name in live and op.module is not None}
        dead_above: set[str] = set()  # dead ops with a dead weighted layer before them
        for op in self.ops:
            if op.name in live or (op.module is not None and op.module in live_modules):
                continue
            if any(i in dead_above for i in op.inputs):
                dead_above.add(op.name)
                continue
            if op.params > 0:
                dead_above.add(op.name)
                span, notes, local = self.locate(root, op)
                self.diags.items.append(Diagnostic(
                    E.OUTPUT_UNUSED, f"the output of `{local}` is never used", span,
                    "it does not reach the network's output",
                    "a layer written with `from` is a side branch: the running value stays where "
                    "it was; use its output (`add(NAME)`, `from NAME`), continue from it with "
                    "`current = NAME`, or remove the layer", notes))

    def locate(self, root: Scope, op: Op) -> tuple[Span, tuple[str, ...], str]:
        """Where to report an op after elaboration, as :meth:`error` would have (at the
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
            inner = next((s for s in reversed(chain[1:]) if not s.inline and s.role is not Role.STAGE), None)
            note = (f"in `{inner.path}`, an instance of `{inner.definition}` (line {inner.span.line})",) \
                if inner is not None else ()
            return op.span, note, local
        user = next((s for s in reversed(chain[1:]) if not s.span.path.startswith(std)), None)
        inner = chain[-1]
        if user is None:
            return op.span, (), local
        where = f"in `{inner.path}`, " if inner.path else ""
        return user.span, (f"{where}inside `{inner.definition}` (std/{op.span.path[len(std) + 1:]}:"
                           f"{op.span.line}:{op.span.column})",), local
