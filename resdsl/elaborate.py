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
"""

from __future__ import annotations

import keyword
import math
import re
from collections import ChainMap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from . import limits, roles
from .diagnostics import NO_SPAN, Diagnostic, Diagnostics, Span, did_you_mean
from .ir import INPUT, Attr, Network, Op, Role, Scope, Shape
from .primitives import PRIMITIVES, REQUIRED, Primitive, ShapeError
from .resources import std_root
from .syntax import (
    Arg,
    Assign,
    BinOp,
    Bool,
    Call,
    Cond,
    Definition,
    Expr,
    For,
    If,
    Index,
    InputDecl,
    Label,
    Layer,
    ListExpr,
    Name,
    NoneLit,
    Num,
    Require,
    Reuse,
    Str,
    UnaryOp,
    With,
)
from .torch_names import RESERVED_LABELS

# ----------------------------------------------------------------------- values


def _param_names(owner) -> tuple[str, ...]:
    """The parameter names of a definition or primitive, computed once per object (kept in
    its ``__dict__``: both are frozen dataclasses, compared and hashed by their fields)."""
    names = owner.__dict__.get("_param_names")
    if names is None:
        names = tuple(p.name for p in owner.params)
        object.__setattr__(owner, "_param_names", names)
    return names


@dataclass(frozen=True)
class DefValue:
    """A definition, with the arguments bound so far (by ``with`` or a partial call)."""

    definition: Definition
    env: ModuleEnv
    bound: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def kind(self) -> str:
        return self.definition.kind

    @property
    def param_names(self) -> tuple[str, ...]:
        return _param_names(self.definition)


@dataclass(frozen=True)
class PrimValue:
    """A primitive layer, with the arguments bound so far."""

    prim: Primitive
    bound: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.prim.kind

    @property
    def param_names(self) -> tuple[str, ...]:
        return _param_names(self.prim)


@dataclass(frozen=True)
class Builtin:
    name: str
    fn: Callable[..., Any]


class Tensor:
    """A tensor a body can name: the output of the op ``op`` (``label`` for messages).

    Labels evaluate to tensors, so tensors can be stored in variables and lists and
    passed to ``from`` and to the tensor arguments of ``add``, ``concat``… (A plain
    class: one is made each time a label is read, and a frozen dataclass is slow to make.)
    """

    __slots__ = ("op", "label")

    def __init__(self, op: str, label: str) -> None:
        self.op = op
        self.label = label

    def __eq__(self, other: object) -> bool:
        return type(other) is Tensor and other.op == self.op

    def __hash__(self) -> int:
        return hash(self.op)

    def __repr__(self) -> str:
        return f"Tensor({self.op!r}, {self.label!r})"

    @property
    def name(self) -> str:
        return self.label


class _Current:
    """The built-in ``current``: the running value of the body being run."""

    name = "current"


CURRENT = _Current()


class _Stage:
    """The built-in ``stage(block, depth, stride = 1, ...)``: a block repeated."""

    name = "stage"


STAGE = _Stage()
Value = Union[int, float, bool, str, None, tuple, DefValue, PrimValue, Builtin, _Stage, Tensor]


@dataclass
class ModuleEnv:
    """One loaded ``.res`` file: its own definitions and every name it can see."""

    path: str
    is_std: bool
    own: dict[str, tuple[Value, Span]] = field(default_factory=dict)
    names: dict[str, Value] = field(default_factory=dict)
    networks: list[str] = field(default_factory=list)  # own networks, in file order
    #: Where a definition is instantiated from when built as the main network: the
    #: right side of an alias, or a definition's name.
    sites: dict[str, Span] = field(default_factory=dict)


class _Skip(Exception):
    """Abandon the current statement; its diagnostic is already recorded."""


class _Failed:
    """The value of a definition that failed: its diagnostics are out, so a use of its
    name stays quiet instead of adding an `unknown name` error."""

    name = "<failed>"


FAILED = _Failed()


class _Abort(_Skip):
    """Abandon the whole definition instance: a `require` failed, and going on would only
    report the failure's consequences (an index out of range, a shape mismatch)."""


def type_name(v: Value) -> str:
    if v is None:
        return "none"
    if isinstance(v, Tensor):
        return f"the tensor `{v.label}`"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, tuple):
        return "a list"
    if isinstance(v, DefValue):
        return f"the {v.kind} `{v.name}`"
    if isinstance(v, PrimValue):
        return f"the layer `{v.name}`"
    return f"the function `{v.name}`"


def to_attr(v: Value) -> Attr:
    """IR-friendly form of a value: callables by name, lists as tuples."""
    t = type(v)
    if t is int or t is str or t is float or t is bool or v is None:
        return v
    if isinstance(v, tuple):
        return tuple(to_attr(x) for x in v)
    if isinstance(v, (DefValue, PrimValue, Builtin, _Stage, _Current)):
        return v.name
    return v.op if type(v) is Tensor else v


def _attrs(bound: dict[str, Value]) -> tuple[tuple[str, Attr], ...]:
    """``(name, to_attr(value))`` for each argument (plain values kept as they are)."""
    out = []
    for k, v in bound.items():
        t = type(v)
        out.append((k, v if t is int or t is str or t is float or t is bool or v is None
                    else to_attr(v)))
    return tuple(out)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


#: The names every definition body gets from its input (so no parameter may take them).
IMPLICIT_NAMES = {"in_channels": "channel count", "in_height": "height", "in_width": "width"}

_SEQ = (tuple, str)

#: Layer names that passed the checks of ``Elaborator.label`` → their components
_LABELS_OK: dict[str, tuple[str, ...]] = {}

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")

# -------------------------------------------------------------------- frames


class _Env(ChainMap):
    """The names a body sees: its variables over its file's definitions; ``tensors`` (the
    body's labels) are consulted after both, before the built-ins (see ``Elaborator.eval``).
    Labels are kept out of the chain itself so that looking up a definition or a primitive
    costs no extra miss."""

    tensors: dict[str, Any] = {}

    def new_child(self, m=None, **kwargs):  # type: ignore[override]
        child = super().new_child(m, **kwargs)
        child.tensors = self.tensors
        return child


def _tensor_value(tensors: dict[str, Any], key: str) -> Value:
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
    env: Any = None  # the body's names (see Elaborator.env_of), made once


class Elaborator:
    """Turns a network value into a :class:`Network`, collecting diagnostics."""

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
                self.error("E017", f"the spec takes more than {limits.MAX_STEPS:,} evaluation steps",
                           span, hint="look for nested loops, or stages of definitions that repeat "
                                      "a lot; published networks take a small fraction of this")
            raise _TooMany()

    # ------------------------------------------------------------- diagnostics

    def error(self, code: str, message: str, span: Span, *, label: str = "", hint: str = "") -> None:
        """Record a diagnostic; spans inside the standard library move to the user's call site."""
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
        self.diags.items.append(Diagnostic(code, message, span, label, hint, notes))
        if len(self.diags.items) >= self.diags.limit:
            raise _TooMany()

    def fail(self, code: str, message: str, span: Span, **kw: str) -> _Skip:
        self.error(code, message, span, **kw)
        return _Skip()

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
        except _Skip:
            return None
        except _TooMany:
            return None
        except RecursionError:
            self.diags.items.append(Diagnostic("E060", "definitions nest too deeply", span,
                                               hint="look for a definition that instantiates itself"))
            return None
        if frame.input_shape is None and not self.diags:
            self.error("E050", f"network `{value.name}` declares no input", defn.name_span,
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
                    "E056", f"the output of `{local}` is never used", span,
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
            inner = next((s for s in reversed(chain[1:]) if not s.inline and s.kind != "stage"), None)
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

    # ------------------------------------------------------------- binding

    def bind(self, value: DefValue | PrimValue, args: tuple[tuple[str | None, Value, Span], ...],
             span: Span, *, complete: bool = True) -> dict[str, Value]:
        """Bind arguments to parameters: positional in order, then keywords.

        With ``complete``, missing parameters take their defaults (definitions evaluate
        default expressions in order, so a default may use earlier parameters).
        """
        names = value.param_names
        bound = dict(value.bound)
        given: dict[str, Span] = {}
        pos = 0
        is_def = type(value) is DefValue
        for key, v, aspan in args:
            if key is None:
                if pos >= len(names):
                    raise self.fail("E022", f"`{value.name}` takes {len(names)} positional "
                                    f"argument{'s' if len(names) != 1 else ''}, got more", aspan,
                                    hint=f"its parameters: {', '.join(names) or 'none'}")
                key = names[pos]
                pos += 1
            elif key not in names:
                hint = did_you_mean(key, names) or (
                    f"`{value.name}` takes: {', '.join(names)}" if names else
                    f"`{value.name}` takes no arguments")
                raise self.fail("E020", f"`{value.name}` has no parameter `{key}`", aspan, hint=hint)
            if key in given:
                raise self.fail("E024", f"argument `{key}` given twice", aspan)
            if is_def and (type(v) is Tensor or (type(v) is tuple and v and type(v[0]) is Tensor)):
                raise self.fail("E023", f"`{value.name}` cannot take a tensor as an argument", aspan,
                                hint=f"feed it with `from`: `name: {value.name}(...) from x`")
            given[key] = aspan
            bound[key] = v
        if not complete:
            return bound
        if isinstance(value, PrimValue):
            return self.bind_prim(value.prim, bound, given, span)
        out: dict[str, Value] = {}
        env = dict(value.env.names)
        for p in value.definition.params:
            if p.name in bound:
                out[p.name] = bound[p.name]
            elif p.default is not None:
                out[p.name] = self.eval(p.default, env)
            else:
                raise self.fail("E021", f"`{value.name}` needs the argument `{p.name}`", span,
                                hint=f"pass it: `{value.name}(..., {p.name} = ...)`")
            env[p.name] = out[p.name]
        return out

    def bind_prim(self, prim: Primitive, bound: dict[str, Value], given: dict[str, Span],
                  span: Span) -> dict[str, Value]:
        out: dict[str, Value] = {}
        for p in prim.params:
            where = given.get(p.name, span)
            if p.name not in bound:
                if p.default is REQUIRED:
                    raise self.fail("E021", f"`{prim.kind}` needs the argument `{p.name}`", span,
                                    hint=f"`{prim.kind}({', '.join(q.name for q in prim.params if q.default is REQUIRED)})`")
                out[p.name] = p.default
                continue
            v = bound[p.name]
            if p.type == "int" or p.type == "int?":
                if v is None and p.type == "int?":
                    out[p.name] = None
                    continue
                if type(v) is not int:
                    v = self.as_int(v, f"`{p.name}` of `{prim.kind}`", where)
            elif p.type == "float":
                if type(v) is float:
                    pass
                elif isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise self.fail("E023", f"`{p.name}` of `{prim.kind}` must be a number, got "
                                    f"{type_name(v)}", where)
                v = float(v)
            elif p.type == "bool" and not isinstance(v, bool):
                raise self.fail("E023", f"`{p.name}` of `{prim.kind}` must be true or false, got "
                                f"{type_name(v)}", where)
            elif p.type == "ints":  # a list of integers (split's sizes)
                if not isinstance(v, tuple):
                    raise self.fail("E023", f"`{p.name}` of `{prim.kind}` must be a list of integers, "
                                    f"got {type_name(v)}", where)
                v = tuple(self.as_int(x, f"an entry of `{p.name}`", where) for x in v)
            if p.type == "ints":
                out[p.name] = v
                continue
            if p.lo is not None and not (p.lo <= v <= p.hi):
                code = "E015" if v < p.lo else "E017"
                what = "too small" if v < p.lo else "too large"
                raise self.fail(code, f"`{p.name}` of `{prim.kind}` is {what}: {v}", where,
                                hint=f"it must lie between {p.lo:g} and {p.hi:g}")
            out[p.name] = v
        return out

    def as_int(self, v: Value, what: str, span: Span) -> int:
        if isinstance(v, float) and not isinstance(v, bool) and v.is_integer():
            return int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            extra = f" ({v:g})" if isinstance(v, float) else ""
            raise self.fail("E023", f"{what} must be an integer, got {type_name(v)}{extra}", span,
                            hint="use `//` for integer division or `int(...)`"
                            if isinstance(v, float) else "")
        return v

    # ------------------------------------------------------------- bodies

    def no_input(self, span: Span) -> _Skip:
        """Only the input of a network that declares none has no shape; say so once."""
        if not self.missing_input:
            self.missing_input = True
            self.error("E050", "the network uses its input before declaring it", span,
                       hint="start the network's body with `input [3, 224, 224]`")
        return _Skip()

    def run_body(self, defn: Definition, frame: Frame, args: dict[str, Value]) -> None:
        if frame.kind != "network" and frame.input not in self.shapes:
            if frame.input in self.tainted:
                raise _Skip()  # fed by a failed statement: already reported
            raise self.no_input(self.sites[-1][2])  # the body would only cascade
        frame.vars.update(args)
        frame.params = tuple(args)
        shape = self.shapes.get(frame.input)
        # A definition cannot declare parameters with these names (the loader says so), so
        # nothing the spec wrote is overwritten here.
        if shape is not None and len(shape) == 3:
            frame.vars.update(in_channels=shape[0], in_height=shape[1], in_width=shape[2])
        self.frames.append(frame)
        try:
            self.run(defn.body, frame)
        finally:
            self.frames.pop()
        if frame.split is not None:
            label, span, n = frame.split
            raise self.fail("E023", f"the body ends with the split `{label}`: {n} tensors, not one",
                            span, hint=f"end with one tensor, e.g. `concat({label})`")

    def run(self, stmts, frame: Frame) -> None:
        for st in stmts:
            try:
                self.stmt(st, frame)
            except _Abort:
                raise
            except _Skip:
                continue

    def env_of(self, frame: Frame) -> ChainMap:
        """Names visible in a body: its variables, then its file's definitions, then its
        labels (no copy)."""
        env = frame.env
        if env is None:
            env = frame.env = _Env(frame.vars, frame.module.names)
            env.tensors = frame.tensors
        return env

    def stmt(self, st, frame: Frame) -> None:
        if self.steps >= limits.MAX_STEPS:
            self.step(st.span)
        else:  # inline `step`
            self.steps += 1
        kind = type(st)
        if kind is Layer:
            self.layer(st, frame)
        elif kind is Reuse:
            self.reuse(st, frame)
        elif kind is Assign:
            if st.name == "current":  # `current = x`: the next layer reads x
                self.stmt_span = st.span
                frame.current = self.tensor(st.value, frame, "`current`")
                frame.split = None
                return
            frame.vars[st.name] = self.eval(st.value, self.env_of(frame))
        elif kind is If:
            for test, body in st.branches:
                v = self.eval(test, self.env_of(frame))
                if v is True or (v is not False and self.truth(v, test.span)):
                    self.run(body, frame)
                    return
            self.run(st.orelse, frame)
        elif kind is For:
            if st.var == "current":
                raise self.fail("E011", "`current` cannot be a loop variable: it is the running value",
                                st.span, hint="name the loop variable otherwise")
            items = self.eval(st.iterable, self.env_of(frame))
            if not isinstance(items, tuple):
                raise self.fail("E023", f"`for` needs a list, got {type_name(items)}", st.iterable.span,
                                hint="use `range(n)` or a list literal")
            for item in items:
                self.step(st.span)  # an empty body still costs an iteration
                frame.vars[st.var] = item
                self.run(st.body, frame)
        elif kind is Require:
            env = self.env_of(frame)
            v = self.eval(st.test, env)
            if v is not True and not self.truth(v, st.test.span):
                if frame.input in self.tainted:
                    raise _Abort()  # it may only fail because an earlier statement did
                why = self.explain(st.test, env)
                self.error("E041", st.message or "requirement not met", st.span,
                           label="this `require` does not hold" + (f": {why}" if why else ""))
                raise _Abort()
        elif kind is InputDecl:
            self.input_decl(st, frame)

    def explain(self, test: Expr, env) -> str:
        """The values that make a failed ``require`` test false: ``len(depths)` is 3``."""
        try:
            if isinstance(test, BinOp) and test.op in ("and", "or"):
                left = self.eval(test.left, env)
                if test.op == "and" and left is False:
                    return self.explain(test.left, env)
                if test.op == "and":
                    return self.explain(test.right, env)
                return "; ".join(x for x in (self.explain(test.left, env),
                                             self.explain(test.right, env)) if x)
            if isinstance(test, UnaryOp) and test.op == "not":
                return self.explain(test.operand, env) or \
                    f"`{unparse(test.operand)}` is {show(self.eval(test.operand, env))}"
            if isinstance(test, BinOp):
                sides = [x for x in (test.left, test.right) if not isinstance(x, (Num, Str, Bool, NoneLit))]
                return ", ".join(f"`{unparse(x)}` is {show(self.eval(x, env))}" for x in sides)
            if not isinstance(test, (Num, Str, Bool, NoneLit)):
                return f"`{unparse(test)}` is {show(self.eval(test, env))}"
        except (_Skip, _TooMany, RecursionError):
            pass
        return ""

    def truth(self, v: Value, span: Span) -> bool:
        if not isinstance(v, bool):
            raise self.fail("E023", f"a condition must be true or false, got {type_name(v)}", span,
                            hint="compare explicitly, e.g. `x != 0`")
        return v

    def input_decl(self, st: InputDecl, frame: Frame) -> None:
        if frame.kind != "network":
            raise self.fail("E053", "only a network declares an input", st.span,
                            hint="a definition takes its input from where it is used")
        if frame.input_shape is not None or frame.items:
            raise self.fail("E053", "the input must be declared once, before any layer", st.span)
        v = self.eval(st.shape, self.env_of(frame))
        if not isinstance(v, tuple) or len(v) != 3:
            got = f"a list of {len(v)}" if isinstance(v, tuple) else type_name(v)
            raise self.fail("E023", f"the input must be a list [channels, height, width], got "
                            f"{got}", st.shape.span, hint="e.g. `input [3, 224, 224]`")
        dims = tuple(self.as_int(x, "an input size", st.shape.span) for x in v)
        if min(dims) < 1:
            raise self.fail("E015", f"input sizes must be positive, got {list(dims)}", st.shape.span)
        if dims[0] > limits.MAX_INPUT_CHANNELS or max(dims[1:]) > limits.MAX_INPUT_SIZE:
            raise self.fail("E017", f"input {'×'.join(map(str, dims))} is too large", st.shape.span,
                            hint=f"at most {limits.MAX_INPUT_CHANNELS} channels and "
                                 f"{limits.MAX_INPUT_SIZE} pixels a side")
        frame.input_shape = dims
        self.shapes[INPUT] = dims

    # ------------------------------------------------------------- layers

    def label(self, label: Label, frame: Frame) -> str:
        parts = []
        for part in label.parts:
            if isinstance(part, str):
                parts.append(part)
                continue
            v = self.eval(part, self.env_of(frame))
            if isinstance(v, bool) or not isinstance(v, (int, str)):
                raise self.fail("E023", f"a name part must be an integer or a string, got "
                                f"{type_name(v)}", part.span)
            parts.append(str(v))
        name = "".join(parts)
        if label.gap is not None:
            raise self.fail("E054", f"the layer name `{name}` has a space in it", label.gap,
                            hint="write a name without spaces: `conv{i}`, `paths.{i}`")
        components = _LABELS_OK.get(name)
        if components is None:  # not checked yet (the check depends on the name alone)
            components = name.split(".") if "." in name else (name,)
            for component in components:
                if not _LABEL.fullmatch(component):
                    raise self.fail("E054", f"`{name}` is not a valid layer name", label.span,
                                    hint="names are identifiers (letters, digits, `_`) or whole numbers, "
                                         "joined by `.`")
            if name == "input":
                raise self.fail("E011", "`input` names the block's input and cannot name a layer",
                                label.span, hint="choose another name")
            for component in components:
                if keyword.iskeyword(component):  # torch.fx writes module paths into Python code
                    raise self.fail("E054", f"`{component}` cannot name a layer: it is a Python keyword",
                                    label.span, hint=f"choose another name, e.g. `{component}_`; torch.fx "
                                    "writes layer names into Python code")
                if component in RESERVED_LABELS or component.startswith("_"):
                    raise self.fail("E054", f"`{component}` cannot name a layer: torch modules reserve it",
                                    label.span, hint=f"choose another name, e.g. `{component.strip('_')}_`"
                                    if component.strip("_") else "choose another name")
            if len(_LABELS_OK) >= 4096:
                _LABELS_OK.clear()
            _LABELS_OK[name] = components
        if not frame.path and components[0].lower() == "self":
            # torch.fx names a value after its module path, snake-cased: a top-level `self`
            # (`Self`, `SELF`) would rebind the traced forward's own `self` (`layer1.0.self` is fine)
            raise self.fail("E054", f"`{components[0]}` cannot name a top-level layer: torch.fx code calls "
                            "the module `self`", label.span,
                            hint=f"choose another name, e.g. `{components[0]}_`, or put it inside a named block")
        labels = frame.labels
        if name in labels:
            first = labels[name]
            raise self.fail("E011", f"duplicate layer name `{name}`", label.span,
                            label=f"first defined at line {first.line}",
                            hint="every layer in a definition needs its own name")
        if name + "." in labels:  # `paths` after `paths.0`
            first = labels[name + "."]
            raise self.fail("E011", f"`{name}` already holds the layers named `{name}.…`", label.span,
                            label=f"first used at line {first.line}",
                            hint="a name is either a layer or a container of layers: rename one")
        if len(components) > 1:
            for k in range(1, len(components)):
                prefix = ".".join(components[:k])
                if prefix in labels:  # `attn.fc` after the layer `attn`
                    raise self.fail("E011", f"`{prefix}` is a layer, so `{name}` cannot be named "
                                    f"below it", label.span,
                                    label=f"`{prefix}` defined at line {labels[prefix].line}",
                                    hint="a name is either a layer or a container of layers: rename one")
            for k in range(1, len(components)):
                labels.setdefault(".".join(components[:k]) + ".", label.span)
        labels[name] = label.span
        return name

    def bind_label(self, frame: Frame, name: str, value: str | tuple) -> None:
        """Bind a label to its tensor (or parts); a dotted label also updates the numbered
        containers above it, so that ``paths`` evaluates to ``[paths.0, paths.1]``."""
        tensors = frame.tensors
        tensors[name] = value
        if "." not in name:
            return
        components = name.split(".")
        for k in range(len(components) - 1, 0, -1):
            prefix = ".".join(components[:k])
            items: list = []
            while f"{prefix}.{len(items)}" in tensors:
                items.append(_tensor_value(tensors, f"{prefix}.{len(items)}"))
            tensors.pop(prefix, None)
            if items and not any(key.startswith(prefix + ".") and not
                                 key[len(prefix) + 1:].split(".")[0].isdigit() for key in tensors):
                tensors[prefix] = tuple(items)

    def source(self, src: Expr | None, frame: Frame) -> str:
        """The op a layer reads: the running value, or its `from` tensor."""
        if src is None:
            if frame.split is not None:
                label, _, n = frame.split
                raise self.fail("E023", f"after the split `{label}` there is no running value",
                                self.stmt_span, label=f"`{label}` is {n} tensors",
                                hint=f"continue from one part with `current = {label}[0]`, or read "
                                     f"it in this layer with `from {label}[0]`")
            return frame.current
        if type(src) is Name and type(frame.tensors.get(src.id)) is str:  # the common `from x`
            return frame.tensors[src.id]
        return self.tensor(src, frame, "`from`")

    def tensor(self, e: Expr, frame: Frame, what: str) -> str:
        """The op that a tensor expression names (a label, `input`, `parts[1]`, a variable)."""
        value = self.tensor_value(e, frame)
        if isinstance(value, Tensor):
            return value.op
        if isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
            raise self.fail("E023", f"{what} needs one tensor, got a list of {len(value)}", e.span,
                            hint="pick one: `parts[0]`")
        raise self.fail("E023", f"{what} needs a tensor, got {type_name(value)}", e.span,
                        hint="name a layer defined earlier in this definition, or `input`")

    def tensor_value(self, e: Expr, frame: Frame) -> Value:
        if isinstance(e, Name):
            if e.id in frame.tensors:  # a label wins over a variable here (`from se`, `add(relu)`)
                return _tensor_value(frame.tensors, e.id)
            env = self.env_of(frame)
            if e.id not in env and e.id not in BUILTINS:
                names = [k for k in (*frame.tensors, *frame.vars) if "." not in k]
                container = [k[:-1] for k in frame.labels if k.endswith(".") and k[:-1] == e.id]
                raise self.fail("E010", f"unknown tensor `{e.id}`", e.span,
                                hint=f"`{e.id}` holds named layers, not a numbered list: name one "
                                     f"of them" if container else did_you_mean(e.id, names) or
                                "name a layer defined earlier in this definition, or `input`")
        value = self.eval(e, self.env_of(frame))
        if isinstance(value, Tensor) and value.op in self.tainted and value.op not in self.shapes:
            raise _Skip()
        return value

    def tensor_args(self, st: Layer, prim: Primitive, frame: Frame) -> list[str]:
        """The inputs of ``add``, ``multiply``, ``subtract``, ``concat``: the tensors named as
        arguments (lists expanded), after the running value or the `from` tensor where the
        call names a single tensor (``add(downsample)``)."""
        inputs: list[str] = []
        single = False
        for a in st.call.args:
            if a.name is not None:
                raise self.fail("E023", f"the arguments of `{prim.kind}` are tensors, not keywords",
                                a.span, hint=f"e.g. `{prim.kind}(downsample)` or `{prim.kind}(a, b)`")
            op = frame.tensors.get(a.value.id) if type(a.value) is Name else None
            if type(op) is str:  # the common `add(downsample)`: a label
                inputs.append(op)
                single = len(st.call.args) == 1
                continue
            value = self.tensor_value(a.value, frame)
            if isinstance(value, Tensor):
                inputs.append(value.op)
                single = len(st.call.args) == 1
            elif isinstance(value, tuple) and all(isinstance(v, Tensor) for v in value):
                inputs.extend(v.op for v in value)
            else:
                raise self.fail("E023", f"the arguments of `{prim.kind}` are tensors, got "
                                f"{type_name(value)}", a.value.span,
                                hint=f"e.g. `{prim.kind}(downsample)` or `{prim.kind}(a, b)`")
        if st.source is not None or (prim.kind != "concat" and (single or not inputs)):
            inputs.insert(0, self.source(st.source, frame))
        return inputs

    def stand_in(self, frame: Frame, reads: str) -> str:
        """A name for the output of a failed statement: later statements read it as if the
        failed layer had kept its input's shape, and their errors about it stay quiet."""
        name = f"<failed {len(self.tainted)}>"
        self.tainted.add(name)
        if reads in self.shapes:
            self.shapes[name] = self.shapes[reads]
        return name

    def layer(self, st: Layer, frame: Frame) -> None:
        self.stmt_span = st.span
        name = None
        try:
            name = self.label(st.label, frame) if st.label else None
            env = self.env_of(frame)
            callee = self.eval(st.call.func, env)
            if type(callee) is Tensor or type(callee) is tuple:  # `relu: relu()` … `relu()`
                callee = self.eval_callee(st.call.func, env)
            if isinstance(callee, PrimValue):
                self.primitive(st, callee, name, frame, env)
            elif isinstance(callee, DefValue):
                self.definition(st, callee, name, frame, env)
            elif callee is STAGE:
                self.stage(st, name, frame, env)
            elif callee is None:  # `attn = none` is not a layer: building nothing is a choice to write
                what = unparse(st.call.func)
                if what == "none":
                    raise self.fail("E023", "`none` is not a layer", st.call.func.span)
                raise self.fail("E023", f"`{what}` is none, not a layer", st.call.func.span,
                                hint=f"leave the layer out with a test: `if {what} != none {{ ... }}`")
            else:
                raise self.fail("E023", f"{type_name(callee)} is not a layer", st.call.func.span,
                                hint="a layer statement calls a primitive, a definition or `stage`")
        except _Skip:
            # Later statements read a stand-in, so what follows from this failure is quiet.
            failed = self.stand_in(frame, frame.current)
            if name is not None:
                self.bind_label(frame, name, failed)
                frame.failed.add(name)
            if st.source is None:
                frame.current = failed
                frame.split = None
            raise

    def eval_args(self, args: tuple[Arg, ...], env) -> tuple[tuple[str | None, Value, Span], ...]:
        ev = self.eval
        return tuple([(a.name, ev(a.value, env), a.span) for a in args])

    def primitive(self, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
        prim = callee.prim
        if prim.kind == "split":
            return self.split(st, callee, name, frame, env)
        if prim.arity is None:  # add(x): the running value + x; add(a, b, …): the named tensors
            inputs = self.tensor_args(st, prim, frame)
            attrs: dict[str, Value] = {}
        else:
            inputs = [self.source(st.source, frame)]
            attrs = self.bind(callee, self.eval_args(st.call.args, env), st.call.span)
        if name is None and prim.has_params:
            raise self.fail("E052", f"a `{prim.kind}` layer has weights, so it needs a name",
                            st.span, hint=f"write `name: {prim.kind}(...)`; the name becomes its "
                                          "state_dict key")
        op = self.add_op(prim, attrs, inputs, _join(frame.path, name or prim.kind),
                         _join(frame.path, name) if name and prim.module else None, st.span,
                         count_params=True)
        if name is not None:
            if "." in name:
                self.bind_label(frame, name, op.name)
            else:
                frame.tensors[name] = op.name
            frame.layers[name] = op
        frame.items.append(op.name)
        if st.source is None:  # a `from` branch leaves the running value where it was
            frame.current = op.name
            frame.split = None

    def split(self, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
        """``parts: split(4)`` or ``split([a, b])``: one ``split`` op per part (``parts.0``…),
        each with the attributes ``sizes`` and ``index``. The label names the tuple of parts,
        and there is no running value until a layer says which part it reads."""
        if name is None:
            raise self.fail("E052", "a `split` gives several tensors, so it needs a name", st.span,
                            hint="write `parts: split(...)`, then use `parts[0]`, `parts[1]`…")
        bound = self.bind(callee, self.eval_args(st.call.args, env), st.call.span, complete=False)
        if "index" in bound:
            raise self.fail("E020", "`index` of a split is not an argument: every part is built",
                            st.call.span, hint=f"use `{name}[i]` for one part")
        if "sizes" not in bound:
            raise self.fail("E021", "`split` needs the number of parts or their sizes", st.call.span,
                            hint="`split(4)` (equal parts) or `split([32, 32, 64])`")
        where = next((a.span for a in st.call.args), st.call.span)
        src = self.source(st.source, frame)
        shape = self.shapes.get(src)
        if shape is None:
            raise _Skip() if src in self.tainted else self.no_input(st.span)
        sizes = bound["sizes"]
        if isinstance(sizes, tuple):
            sizes = tuple(self.as_int(x, "a split size", where) for x in sizes)
            if not sizes or min(sizes) < 1:
                raise self.fail("E015", f"split sizes must be positive, got {list(sizes)}", where)
        else:
            n = self.as_int(sizes, "the number of parts of a split", where)
            if n < 1:
                raise self.fail("E015", f"a split needs at least one part, got {n}", where)
            if shape[0] % n:
                if src in self.tainted:
                    raise _Skip()
                raise self.fail("E014", f"{shape[0]} channels do not split into {n} equal parts",
                                where, hint="choose a number of parts that divides the channels, "
                                            "or give the sizes: `split([a, b, …])`")
            sizes = (shape[0] // n,) * n
        if len(sizes) > limits.MAX_REPEAT:
            raise self.fail("E017", f"a split is limited to {limits.MAX_REPEAT:,} parts", where)
        parts = []
        for i in range(len(sizes)):
            op = self.add_op(callee.prim, {"sizes": sizes, "index": i}, [src],
                             _join(frame.path, f"{name}.{i}"), None, st.span, count_params=True)
            frame.items.append(op.name)
            parts.append(Tensor(op.name, f"{name}[{i}]"))
        self.bind_label(frame, name, tuple(parts))
        if st.source is None:
            frame.split = (name, st.span, len(sizes))

    def add_op(self, prim: Primitive, attrs: dict, inputs: list[str], name: str,
               module: str | None, span: Span, *, count_params: bool) -> Op:
        tainted = self.tainted and any(i in self.tainted for i in inputs)
        known = self.shapes
        shapes = []
        for i in inputs:
            shape = known.get(i)
            if shape is None:
                if tainted:
                    raise _Skip()
                raise self.no_input(span)
            shapes.append(shape)
        attrs = dict(attrs)
        try:
            shape, params, macs = prim.infer(attrs, shapes)
        except ShapeError as e:
            if tainted:  # a consequence of an error already reported
                raise _Skip() from None
            self.error(e.code, e.message, span, label=e.label, hint=self.adjust_hint(e))
            raise _Skip() from None
        if len(self.ops) >= limits.MAX_OPS:
            raise self.fail("E017", f"the network has more than {limits.MAX_OPS:,} layers", span,
                            hint="check the depths and repeat counts")
        unique = name
        if unique in self.op_by_name or unique == INPUT:
            # repeats of a name (`relu`, `relu#2`…): start after the last one given, so that
            # thousands of unnamed layers are named in linear time
            k = self.next_suffix.get(name, 1)
            while unique in self.op_by_name or unique == INPUT:
                k += 1
                unique = f"{name}#{k}"
            self.next_suffix[name] = k
        items = []
        for p in prim.params:
            v = attrs[p.name]
            t = type(v)
            items.append((p.name, v if t is int or t is str or t is float or t is bool or v is None
                          else to_attr(v)))
        op = Op(unique, prim.kind, tuple(items),
                tuple(inputs), shape, params if count_params else 0, macs, module, span)
        self.ops.append(op)
        self.op_by_name[unique] = op
        self.shapes[unique] = shape
        if tainted:
            self.tainted.add(unique)
        return op

    def adjust_hint(self, e: ShapeError) -> str:
        """The add rule suggests a `shortcut =` argument; only a definition that has such a
        parameter can take one."""
        if "shortcut =" not in e.hint or not self.frames or "shortcut" in self.frames[-1].params:
            return e.hint
        if e.code == "E012":
            return ("give the skip path a projection to the new width (a 1×1 `conv` and a "
                    "`batchnorm` `from input`, as std.resnet's `option_b`), or keep the width")
        return ("the skip path must downsample too: give it a projection with the block's stride "
                "(a 1×1 `conv` and a `batchnorm` `from input`, as std.resnet's `option_b`)")

    def reuse(self, st: Reuse, frame: Frame) -> None:
        self.stmt_span = st.span
        try:
            self.reapply(st, frame)
        except _Skip:
            if st.source is None:
                frame.current = self.stand_in(frame, frame.current)
                frame.split = None
            raise

    def reapply(self, st: Reuse, frame: Frame) -> None:
        first = frame.layers.get(st.name)
        if first is None and st.name in frame.failed:
            raise _Skip()  # the layer's own statement failed and was reported
        if first is None and st.name in frame.labels:
            raise self.fail("E023", f"`{st.name}` is not a primitive layer, so it cannot be applied "
                            "again", st.span, hint="instantiate the definition again under a new name")
        if first is None:
            hint = did_you_mean(st.name, frame.layers)
            if not hint and st.name in PRIMITIVES:
                hint = f"to add a layer, call it: `{st.name}()` or `name: {st.name}()`"
            raise self.fail("E010", f"unknown layer `{st.name}`", st.span,
                            hint=hint or "only a layer defined earlier in this definition can be applied again")
        inputs = [self.source(st.source, frame)]
        prim = PRIMITIVES[first.kind]
        was, now = self.shapes[first.inputs[0]], self.shapes.get(inputs[0])
        if prim.has_params and now is not None and (len(now), now[0]) != (len(was), was[0]):
            if inputs[0] in self.tainted:
                raise _Skip()
            raise self.fail("E055", f"`{st.name}` is applied to {now[0]} channels here but was made for "
                            f"{was[0]}", st.span, label=f"first applied at line {first.span.line}",
                            hint=f"a layer applied again shares its weights, so it needs the same input "
                                 f"width; for a new layer write `name: {first.kind}(...)`")
        op = self.add_op(prim, dict(first.attrs), inputs, first.name, first.module, st.span,
                         count_params=False)  # shared weights count once
        frame.items.append(op.name)
        if st.source is None:
            frame.current = op.name
            frame.split = None

    def definition(self, st: Layer, callee: DefValue, name: str | None, frame: Frame, env) -> None:
        """A named instance becomes a module (``downsample``); an unnamed one is inlined:
        its layers join the caller's namespace (a stem's ``conv1`` stays ``conv1``)."""
        if callee.kind == "network":
            raise self.fail("E023", f"the network `{callee.name}` cannot be used as a layer",
                            st.call.func.span, hint="define the part you need as a `module`")
        src = self.source(st.source, frame)
        scope = self.instantiate(callee, self.eval_args(st.call.args, env), name, src, frame,
                                 st.call.span, st.span)
        self.attach(scope, name, frame, branch=st.source is not None)

    def attach(self, scope: Scope, name: str | None, frame: Frame, branch: bool = False) -> None:
        """Record a child instance; a `from` branch leaves the running value where it was."""
        if scope.items:  # an empty instance (an identity shortcut) leaves no module behind
            frame.items.append(scope)
        if name is not None:
            self.bind_label(frame, name, scope.output)
        if not branch:
            frame.current = scope.output
            frame.split = None

    def instantiate(self, callee: DefValue, args, name: str | None, src: str, parent: Frame,
                    call_span: Span, span: Span) -> Scope:
        if len(self.sites) >= limits.MAX_NESTING:
            raise self.fail("E060", f"definitions nest more than {limits.MAX_NESTING} deep", span,
                            hint=f"does `{callee.name}` instantiate itself?")
        self.charge(10, span)  # an instance costs about ten steps' time, even with an empty body
        bound = self.bind(callee, args, call_span)
        path = parent.path if name is None else _join(parent.path, name)
        frame = Frame(path, callee.kind, callee.env, {}, src, src)
        if name is None:  # inlined: layer names must not clash with the caller's
            frame.labels = parent.labels
        frame.tensors["input"] = src
        self.sites.append((callee.name, path, span))
        try:
            self.run_body(callee.definition, frame, bound)
        except _Abort:
            raise _Skip() from None  # the instance fails; its caller goes on
        finally:
            self.sites.pop()
        return Scope(name or callee.name, path, roles.role_of(callee.kind), callee.name,
                     _attrs(bound), tuple(frame.items), src,
                     frame.current, span, inline=name is None)

    def stage(self, st: Layer, name: str | None, frame: Frame, env) -> None:
        """``stage(block, depth, stride = 1, **kw)``: ``depth`` blocks; the first takes the stride.

        The other keyword arguments go to every block and are evaluated once per block
        with ``index`` (the block's position in the stage) in scope.
        """
        if name is None:
            raise self.fail("E052", "a stage builds modules, so it needs a name", st.span,
                            hint="write `layer1: stage(...)`")
        positional = [a for a in st.call.args if a.name is None]
        keywords: dict[str, Arg] = {}
        for a in st.call.args:
            if a.name is not None:
                if a.name in keywords:
                    raise self.fail("E024", f"argument `{a.name}` given twice", a.span)
                keywords[a.name] = a
        if len(positional) > 2:
            raise self.fail("E022", "`stage` takes 2 positional arguments (block, depth)",
                            positional[2].span, hint="pass the rest by keyword: "
                            "`stage(block, depth, stride = 2, planes = 64)`")
        # `block` and `depth` are the stage's when not given positionally; given positionally,
        # keywords of those names go to the block (a block parameter named `depth` works).
        fixed: dict[str, Any] = dict(zip(("block", "depth"), positional))
        for key in ("block", "depth", "stride"):
            if key in keywords and key not in fixed:
                fixed[key] = keywords.pop(key)
        for key in ("block", "depth"):
            if key not in fixed:
                raise self.fail("E021", f"`stage` needs the argument `{key}`", st.call.span,
                                hint="`stage(block, depth, stride = 1, ...)`")
        block = self.eval(fixed["block"].value, env)
        if not isinstance(block, DefValue) or block.kind == "network":
            raise self.fail("E023", f"`stage` repeats a block definition, got {type_name(block)}",
                            fixed["block"].span)
        depth = self.as_int(self.eval(fixed["depth"].value, env), "the depth of a stage",
                            fixed["depth"].span)
        if not 1 <= depth <= limits.MAX_REPEAT:
            code = "E015" if depth < 1 else "E017"
            raise self.fail(code, f"a stage needs 1 to {limits.MAX_REPEAT:,} blocks, got {depth}",
                            fixed["depth"].span)
        stride = self.as_int(self.eval(fixed["stride"].value, env), "`stride`",
                             fixed["stride"].span) if "stride" in fixed else 1
        has_stride = "stride" in block.param_names
        if stride != 1 and not has_stride:
            raise self.fail("E020", f"`{block.name}` has no parameter `stride`", fixed["stride"].span,
                            hint="add a `stride` parameter to the block")
        if ("index" in env or "index" in frame.tensors) and any(_uses(a.value, "index") for a in keywords.values()):
            used = next(a for a in keywords.values() if _uses(a.value, "index"))
            raise self.fail("E011", "`index` in a stage's arguments is the block's position, which "
                            "hides your `index`", used.span,
                            hint="rename your variable: in a stage's keyword arguments `index` is "
                                 "0, 1, … along the stage")
        src = self.source(st.source, frame)
        sub = Frame(_join(frame.path, name), "stage", frame.module, {}, src, src)
        for i in range(depth):
            block_env = env.new_child({"index": i})
            args = [(k, self.eval(a.value, block_env), a.span) for k, a in keywords.items()]
            if has_stride:
                args.append(("stride", stride if i == 0 else 1, fixed.get("stride", st.call).span))
            scope = self.instantiate(block, tuple(args), str(i), sub.current, sub, st.call.span,
                                     st.span)
            self.attach(scope, str(i), sub)
        scope = Scope(name, sub.path, Role.STAGE, "stage",
                      (("block", block.name), ("depth", depth), ("stride", stride)),
                      tuple(sub.items), src, sub.current, st.span)
        self.attach(scope, name, frame, branch=st.source is not None)

    # ------------------------------------------------------------- expressions

    def eval(self, e: Expr, env: dict[str, Value]) -> Value:
        self.steps += 1  # inline `step`: this is the hot path
        if self.steps > limits.MAX_STEPS:
            self.step(e.span)
        kind = type(e)  # names and numbers first: they are most of what a spec evaluates
        if kind is Name:
            key = e.id
            if type(env) is _Env:  # a body: no exceptions on the way to a definition or primitive
                for m in env.maps:
                    value = m.get(key, _MISSING)
                    if value is not _MISSING:
                        break
            else:
                value = env.get(key, _MISSING)
            if value is _MISSING:
                return self.unbound(e, env)
            if value is FAILED:
                raise _Skip()  # the definition's own diagnostics are out
            return value
        if kind is Num:
            if abs(e.value) > limits.MAX_INT:
                raise self.fail("E017", "number is too large", e.span,
                                hint=f"numbers are limited to ±{limits.MAX_INT:,}")
            return e.value
        if kind is BinOp:
            return self.binop(e, env)
        if kind is Str or kind is Bool:
            return e.value
        if kind is NoneLit:
            return None
        if kind is ListExpr:
            if len(e.items) > limits.MAX_REPEAT:
                raise self.fail("E017", "list is too long", e.span)
            return tuple(self.eval(x, env) for x in e.items)
        if kind is Index:
            base, idx = self.eval(e.base, env), self.eval(e.index, env)
            if isinstance(base, Tensor) and base.op in self.tainted:
                raise _Skip()  # a failed split: its error is out
            if not isinstance(base, tuple):
                raise self.fail("E023", f"only lists can be indexed, not {type_name(base)}", e.base.span)
            i = self.as_int(idx, "an index", e.index.span)
            if not -len(base) <= i < len(base):
                raise self.fail("E040", f"index {i} is out of range for a list of {len(base)}",
                                e.index.span)
            return base[i]
        if kind is Cond:
            test = self.eval(e.test, env)
            if test is not True and test is not False:
                self.truth(test, e.test.span)
            return self.eval(e.then if test else e.orelse, env)
        if kind is UnaryOp:
            v = self.eval(e.operand, env)
            if e.op == "not":
                return not self.truth(v, e.operand.span)
            return -self.number(v, e.operand.span)
        if kind is With:
            base = self.eval_callee(e.base, env)
            if not isinstance(base, (DefValue, PrimValue)):
                raise self.fail("E023", f"`with` overrides arguments of a definition, not of "
                                f"{type_name(base)}", e.base.span)
            return self.partial(base, self.eval_args(e.args, env), e.span)
        if kind is Call:
            fn = self.eval_callee(e.func, env)
            args = self.eval_args(e.args, env)
            if isinstance(fn, Builtin):
                if any(k is not None for k, _, _ in args):
                    raise self.fail("E020", f"`{fn.name}` takes no keyword arguments", e.span)
                # a built-in walks or builds whole lists: charge for their length
                self.charge(sum(len(v) for _, v, _ in args if isinstance(v, tuple | str)), e.span)
                try:
                    result = fn.fn(*[v for _, v, _ in args])
                except _BuiltinError as err:
                    raise self.fail(err.code, str(err), e.span) from None
                if isinstance(result, tuple):
                    self.charge(len(result), e.span)
                return result
            if isinstance(fn, (DefValue, PrimValue)):
                return self.partial(fn, args, e.span)
            if fn is STAGE:
                raise self.fail("E023", "`stage(...)` builds layers; use it in a layer statement",
                                e.span, hint="`layer1: stage(block, 3)`")
            raise self.fail("E023", f"{type_name(fn)} cannot be called", e.func.span,
                            hint="test it first: `x != none`" if fn is None else "")
        raise self.fail("E001", "unsupported expression", e.span)  # unreachable by the grammar

    def unbound(self, e: Name, env) -> Value:
        """A name that is neither a variable nor a definition: a label, a built-in, or an error."""
        tensors = getattr(env, "tensors", None)
        if tensors and e.id in tensors:
            value = _tensor_value(tensors, e.id)
            if type(value) is Tensor and value.op in self.tainted and value.op not in self.shapes:
                raise _Skip()
            return value
        value = BUILTINS.lookup(e.id)
        if value is _MISSING:
            names = [*env, *(tensors or ()), *BUILTINS]
            raise self.fail("E010", f"unknown name `{e.id}`", e.span,
                            hint=did_you_mean(e.id, [k for k in names if "." not in k]))
        if value is CURRENT:
            if type(env) is not _Env:  # a default or an alias: there is no running value here
                raise self.fail("E023", "`current` is the running value of a body, and there is "
                                "none here", e.span, hint="use `current` in a definition's body")
            return self.current(e.span)
        return value

    def eval_callee(self, e: Expr, env) -> Value:
        """A value being called: as :meth:`eval`, but a name that is a label (a tensor) and
        also a primitive is the callable (``relu: relu()`` … ``relu()``)."""
        value = self.eval(e, env)
        if type(value) is not Tensor and type(value) is not tuple:
            return value
        if isinstance(e, Name) and (isinstance(value, Tensor) or (
                type(value) is tuple and value and isinstance(value[0], Tensor))):
            found = BUILTINS.lookup(e.id)  # labels come after variables and definitions
            if found is not _MISSING and found is not CURRENT:
                return found
        return value

    def current(self, span: Span) -> Value:
        """The built-in ``current``: the running value of the innermost body."""
        if not self.frames:
            raise self.fail("E010", "`current` is the running value of a body; there is none here",
                            span)
        frame = self.frames[-1]
        if frame.split is not None:
            return _tensor_value(frame.tensors, frame.split[0])
        if frame.current in self.tainted and frame.current not in self.shapes:
            raise _Skip()
        return Tensor(frame.current, "current")

    def partial(self, fn: DefValue | PrimValue, args, span: Span) -> DefValue | PrimValue:
        bound = self.bind(fn, args, span, complete=False)
        items = tuple(bound.items())
        return DefValue(fn.definition, fn.env, items) if isinstance(fn, DefValue) else PrimValue(fn.prim, items)

    def number(self, v: Value, span: Span) -> int | float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail("E023", f"expected a number, got {type_name(v)}", span)
        return v

    def binop(self, e: BinOp, env) -> Value:
        op = e.op
        if op == "and" or op == "or":
            left = self.eval(e.left, env)
            if left is not True and left is not False:
                self.truth(left, e.left.span)
            if (op == "and") != left:
                return left
            right = self.eval(e.right, env)
            if right is not True and right is not False:
                self.truth(right, e.right.span)
            return right
        a, b = self.eval(e.left, env), self.eval(e.right, env)
        if a is None or b is None:  # `x != none`: only none equals none
            if op == "==":
                return a is b
            if op == "!=":
                return a is not b
        ta, tb = type(a), type(b)
        if ta is int and tb is int:  # the common case: integer arithmetic and comparisons
            if op == "==":
                return a == b
            if op == "!=":
                return a != b
            if op == "<":
                return a < b
            if op == "<=":
                return a <= b
            if op == ">":
                return a > b
            if op == ">=":
                return a >= b
            if op == "+":
                r = a + b
            elif op == "-":
                r = a - b
            elif op == "*":
                r = a * b
            elif op == "//" and b != 0:
                r = a // b
            elif op == "%" and b != 0:
                r = a % b
            else:
                return self._arith(e, op, a, b)
            if abs(r) > limits.MAX_INT:
                raise self.fail("E017", "number is too large", e.span)
            return r
        if isinstance(a, _SEQ) and isinstance(b, _SEQ):  # comparing or joining copies them
            self.charge(len(a) + len(b), e.span)
        if op == "==" or op == "!=":
            same = a == b and ta is tb or (
                isinstance(a, (int, float)) and isinstance(b, (int, float))
                and not isinstance(a, bool) and not isinstance(b, bool) and a == b)
            return same if op == "==" else not same
        if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
            if len(a) + len(b) > limits.MAX_REPEAT:
                raise self.fail("E017", "list is too long", e.span)
            return a + b
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            if len(a) + len(b) > limits.MAX_STRING:
                raise self.fail("E017", f"the string is longer than {limits.MAX_STRING:,} characters",
                                e.span)
            return a + b
        return self._arith(e, op, self.number(a, e.left.span), self.number(b, e.right.span))

    def _arith(self, e: BinOp, op: str, x: int | float, y: int | float) -> Value:
        """Comparisons and arithmetic on two numbers (checked by the caller)."""
        if op == "<":
            return x < y
        if op == "<=":
            return x <= y
        if op == ">":
            return x > y
        if op == ">=":
            return x >= y
        if op in ("/", "//", "%") and y == 0:
            raise self.fail("E040", "division by zero", e.right.span)
        if op == "**" and (abs(y) > 64 or (isinstance(y, int) and y < 0 and isinstance(x, int))):
            if abs(y) > 64:
                raise self.fail("E017", f"exponent {y} is too large", e.right.span)
        try:
            if op == "+":
                r = x + y
            elif op == "-":
                r = x - y
            elif op == "*":
                r = x * y
            elif op == "/":
                r = x / y
            elif op == "//":
                r = x // y
            elif op == "%":
                r = x % y
            elif op == "**":
                r = x ** y
            else:
                raise KeyError(op)
        except (OverflowError, ZeroDivisionError):
            raise self.fail("E040", "arithmetic overflow", e.span) from None
        if isinstance(r, complex):
            raise self.fail("E040", "the result is not a real number", e.span)
        if abs(r) > limits.MAX_INT or (isinstance(r, float) and not math.isfinite(r)):
            raise self.fail("E017", "number is too large", e.span)
        return r


class _TooMany(Exception):
    """Stop elaborating: the diagnostic limit is reached."""


class _BuiltinError(Exception):
    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def _check(cond: bool, message: str, code: str = "E040") -> None:
    """E040 for a bad value by default; E023 for a value of the wrong type."""
    if not cond:
        raise _BuiltinError(message, code)


def _num(v: Value, fn: str) -> int | float:
    t = type(v)
    if t is not int and t is not float and (not isinstance(v, (int, float)) or isinstance(v, bool)):
        raise _BuiltinError(f"`{fn}` expects numbers, got {type_name(v)}", "E023")
    return v


def _range(*args: Value) -> tuple:
    _check(1 <= len(args) <= 3, "`range` takes 1 to 3 integers", "E022")
    _check(all(isinstance(a, int) and not isinstance(a, bool) for a in args), "`range` takes integers", "E023")
    _check(len(args) < 3 or args[2] != 0, "`range` step must not be zero")
    r = range(*args)
    try:
        n = len(r)
    except OverflowError:  # more items than a machine word counts
        n = limits.MAX_REPEAT + 1
    _check(n <= limits.MAX_REPEAT, f"`range` is limited to {limits.MAX_REPEAT:,} items", "E017")
    return tuple(r)


def _len(v: Value) -> int:
    if not isinstance(v, (tuple, str)):
        raise _BuiltinError(f"`len` needs a list, got {type_name(v)}", "E023")
    return len(v)


def _minmax(fn: Callable, name: str) -> Callable:
    def run(*args: Value) -> Value:
        items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
        _check(len(items) > 0, f"`{name}` needs at least one value")
        return fn(_num(v, name) for v in items)
    return run


def _sum(v: Value) -> Value:
    if not isinstance(v, tuple):
        raise _BuiltinError(f"`sum` needs a list, got {type_name(v)}", "E023")
    return sum(_num(x, "sum") for x in v)


def _int(v: Value) -> int:
    x = _num(v, "int")
    _check(math.isfinite(x), "`int` needs a finite number")
    return int(x)


def _log(*args: Value) -> float:
    _check(1 <= len(args) <= 2, "`log` takes a number and an optional base", "E022")
    x = _num(args[0], "log")
    _check(x > 0, f"`log` needs a positive number, got {x:g}")
    if len(args) == 1:
        return math.log(x)
    base = _num(args[1], "log")
    _check(base > 0 and base != 1, f"`log` needs a positive base other than 1, got {base:g}")
    return math.log(x, base)


def _log2(v: Value) -> float:
    x = _num(v, "log2")
    _check(x > 0, f"`log2` needs a positive number, got {x:g}")
    return math.log2(x)


def _rounding(fn: Callable, name: str) -> Callable:
    def run(v: Value) -> int:
        x = _num(v, name)
        _check(math.isfinite(x), f"`{name}` needs a finite number")
        return int(fn(x))
    return run


_MISSING = object()


class _Builtins(Mapping):
    """The names every file sees: the built-in functions, `stage`, `current`, and the
    primitive layers, looked up in the registry when used (so that primitives registered
    after import are visible)."""

    def __init__(self, fixed: dict[str, Value]) -> None:
        self.fixed = fixed
        self.prims: dict[str, PrimValue] = {}  # cache: kind → PrimValue of the registered entry
        self.known: dict | None = None

    def __getitem__(self, key: str) -> Value:
        value = self.lookup(key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def lookup(self, key: str) -> Any:
        """The value of a built-in name, or ``_MISSING`` (the fast path of every lookup)."""
        value = self.fixed.get(key, _MISSING)
        if value is not _MISSING:
            return value
        known = self.known
        if known is None:  # the registry's own dict: a lookup that loads no plugins
            known = self.known = getattr(PRIMITIVES, "_prims", {})
        prim = known.get(key)
        if prim is None:
            prim = PRIMITIVES.get(key)  # may load entry-point plugins
            if prim is None:
                return _MISSING
        cached = self.prims.get(key)
        if cached is None or cached.prim is not prim:
            cached = self.prims[key] = PrimValue(prim)
        return cached

    def get(self, key: str, default: Any = None) -> Any:
        value = self.lookup(key)
        return default if value is _MISSING else value

    def __contains__(self, key: object) -> bool:
        return key in self.fixed or key in PRIMITIVES

    def __iter__(self) -> Iterator[str]:
        yield from PRIMITIVES
        yield from (k for k in self.fixed if k not in PRIMITIVES)

    def __len__(self) -> int:
        return len(set(self.fixed) | set(PRIMITIVES))


BUILTINS = _Builtins({
    "stage": STAGE,
    "current": CURRENT,
    "range": Builtin("range", _range),
    "len": Builtin("len", _len),
    "min": Builtin("min", _minmax(min, "min")),
    "max": Builtin("max", _minmax(max, "max")),
    "sum": Builtin("sum", _sum),
    "abs": Builtin("abs", lambda v: abs(_num(v, "abs"))),
    "int": Builtin("int", _int),
    "float": Builtin("float", lambda v: float(_num(v, "float"))),
    "round": Builtin("round", lambda v: round(_num(v, "round"))),
    "log": Builtin("log", _log),
    "log2": Builtin("log2", _log2),
    "ceil": Builtin("ceil", _rounding(math.ceil, "ceil")),
    "floor": Builtin("floor", _rounding(math.floor, "floor")),
})


def _uses(e: Expr, name: str) -> bool:
    """Whether an expression reads the name ``name``."""
    if isinstance(e, Name):
        return e.id == name
    if isinstance(e, (Num, Str, Bool, NoneLit)):
        return False
    if isinstance(e, ListExpr):
        return any(_uses(x, name) for x in e.items)
    if isinstance(e, (Call, With)):
        return _uses(e.func if isinstance(e, Call) else e.base, name) or \
            any(_uses(a.value, name) for a in e.args)
    if isinstance(e, Index):
        return _uses(e.base, name) or _uses(e.index, name)
    if isinstance(e, BinOp):
        return _uses(e.left, name) or _uses(e.right, name)
    if isinstance(e, UnaryOp):
        return _uses(e.operand, name)
    if isinstance(e, Cond):
        return _uses(e.then, name) or _uses(e.test, name) or _uses(e.orelse, name)
    return False


_PRECEDENCE = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, "<=": 4, ">": 4, ">=": 4,
               "+": 5, "-": 5, "*": 6, "/": 6, "//": 6, "%": 6, "**": 8}


def unparse(e: Expr, outer: int = 0) -> str:
    """Source-like text of an expression, for diagnostics."""
    if isinstance(e, Name):
        return e.id
    if isinstance(e, Num):
        return repr(e.value)
    if isinstance(e, Str):
        return '"' + e.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(e, Bool):
        return "true" if e.value else "false"
    if isinstance(e, NoneLit):
        return "none"
    if isinstance(e, ListExpr):
        return "[" + ", ".join(unparse(x) for x in e.items) + "]"
    if isinstance(e, (Call, With)):
        args = ", ".join((f"{a.name} = " if a.name else "") + unparse(a.value) for a in e.args)
        if isinstance(e, Call):
            return f"{unparse(e.func, 9)}({args})"
        return f"{unparse(e.base, 9)} with ({args})"
    if isinstance(e, Index):
        return f"{unparse(e.base, 9)}[{unparse(e.index)}]"
    if isinstance(e, BinOp):
        p = _PRECEDENCE[e.op]
        text = f"{unparse(e.left, p)} {e.op} {unparse(e.right, p + 1)}"
    elif isinstance(e, UnaryOp):
        p = 3 if e.op == "not" else 7
        text = f"not {unparse(e.operand, p)}" if e.op == "not" else f"-{unparse(e.operand, p)}"
    elif isinstance(e, Cond):
        p = 0
        text = f"{unparse(e.then, 1)} if {unparse(e.test, 1)} else {unparse(e.orelse)}"
    else:
        return "…"
    return f"({text})" if p < outer else text


def show(v: Value) -> str:
    """A value as a spec would write it."""
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        text = "[" + ", ".join(show(x) for x in v[:8]) + (", …" if len(v) > 8 else "") + "]"
        return text
    if isinstance(v, (DefValue, PrimValue, Builtin, Tensor)):
        return f"`{v.name}`"
    return str(v)

__all__ = ["Elaborator", "ModuleEnv", "DefValue", "PrimValue", "BUILTINS", "NO_SPAN"]
