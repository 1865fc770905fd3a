"""The state of one elaboration: :class:`Build`, passed explicitly (as ``b``) to every
function of the elaborator.

Everything an elaboration builds or counts lives here and nowhere else: the ops made so
far with their shapes, the diagnostics, the instances and bodies being run, the failed
statements' stand-ins and the step budget. The functions in ``evaluation``, ``labels``,
``layers`` and ``statements`` read and change it; none keeps state of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import limits
from ..diagnostics import NO_SPAN, Diagnostic, Diagnostics, Span
from ..errors import E
from ..ir import Op, Shape
from ..resources import std_root
from .frames import Frame, Skip, TooMany


@dataclass(eq=False)
class Build:
    """What one elaboration has built so far, and what it is building."""

    diags: Diagnostics = field(default_factory=Diagnostics)
    ops: list[Op] = field(default_factory=list)
    op_by_name: dict[str, Op] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    #: (definition name, instance path, call span) of the instances being built
    sites: list[tuple[str, str, Span]] = field(default_factory=list)
    missing_input: bool = False
    #: Stand-ins for the outputs of failed statements, and every op computed from one:
    #: errors about their shapes are consequences of an error already reported.
    tainted: set[str] = field(default_factory=set)
    frames: list[Frame] = field(default_factory=list)  # the bodies being run, innermost last
    #: the paths of the stages being built, outermost first: a stage may not nest
    stages: list[str] = field(default_factory=list)
    stmt_span: Span = NO_SPAN  # the layer statement being run (for `from` diagnostics)
    #: evaluation steps taken (expressions, statements, instances), against limits.MAX_STEPS
    steps: int = 0
    #: a body read its input's height or width (``Network.sized_by_input``)
    reads_size: bool = False
    exhausted: bool = False
    next_suffix: dict[str, int] = field(default_factory=dict)  # op name → last `#k` given to a repeat of it
    #: `unknown name` diagnostics → the name (kept after the loader takes the diagnostics:
    #: it adds its import hints once every file is loaded)
    unknown_names: dict[Diagnostic, str] = field(default_factory=dict)

    # ------------------------------------------------------------- the step budget

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
        ``unknown``: the name an `unknown name` diagnostic is about (see ``unknown_names``)."""
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
        """Record a diagnostic and return what abandons the statement: ``raise b.fail(…)``."""
        self.error(code, message, span, **kw)
        return Skip()

    def no_input(self, span: Span) -> Skip:
        """Only the input of a network that declares none has no shape; say so once."""
        if not self.missing_input:
            self.missing_input = True
            self.error(E.NO_NETWORK, "the network uses its input before declaring it", span,
                       hint="start the network's body with `input [3, 224, 224]`")
        return Skip()
