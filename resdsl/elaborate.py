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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Union

from . import limits
from .diagnostics import NO_SPAN, Diagnostic, Diagnostics, Span, did_you_mean
from .ir import INPUT, Attr, Network, Op, Scope, Shape
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
    Num,
    Require,
    Reuse,
    Str,
    UnaryOp,
    With,
)

# ----------------------------------------------------------------------- values


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
    def param_names(self) -> list[str]:
        return [p.name for p in self.definition.params]


@dataclass(frozen=True)
class PrimValue:
    """A primitive layer, with the arguments bound so far."""

    prim: Primitive
    bound: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return self.prim.kind

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.prim.params]


@dataclass(frozen=True)
class Builtin:
    name: str
    fn: Callable[..., Any]


class _Stage:
    """The built-in ``stage(block, depth, stride = 1, ...)``: a block repeated."""

    name = "stage"


STAGE = _Stage()
Value = Union[int, float, bool, str, tuple, DefValue, PrimValue, Builtin, _Stage]


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
    if isinstance(v, tuple):
        return tuple(to_attr(x) for x in v)
    if isinstance(v, (DefValue, PrimValue, Builtin, _Stage)):
        return v.name
    return v


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")

#: Layer names become ``nn.Module`` attribute names, so they may not shadow what every
#: torch module already has (``forward``, ``training``…). Names with a leading ``_`` are
#: torch's and the generated code's.
RESERVED_LABELS = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda
    double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half ipu load_state_dict modules mtia named_buffers named_children
    named_modules named_parameters parameters register_backward_hook register_buffer
    register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
    set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
""".split())

# -------------------------------------------------------------------- frames


@dataclass
class Frame:
    """The running state of one definition instance."""

    path: str
    kind: str
    module: ModuleEnv
    vars: dict[str, Value]
    input: str
    current: str
    tensors: dict[str, str] = field(default_factory=dict)  # local name → op name
    layers: dict[str, Op] = field(default_factory=dict)  # label → op, for re-application
    labels: dict[str, Span] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)  # labels whose statement failed
    items: list = field(default_factory=list)
    input_shape: Shape | None = None  # networks: the declared input


class Elaborator:
    """Turns a network value into a :class:`Network`, collecting diagnostics."""

    def __init__(self) -> None:
        self.diags = Diagnostics()
        self.ops: list[Op] = []
        self.op_by_name: dict[str, Op] = {}
        self.shapes: dict[str, Shape] = {}
        #: (definition name, instance path, call span) of the instances being built
        self.sites: list[tuple[str, str, Span]] = []
        self.shape_errors_muted = False
        self.missing_input = False
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
        if code in ("E012", "E013", "E016", "E051", "E014"):
            if self.shape_errors_muted:
                return
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
        root = Scope(name, "", "network", value.name,
                     tuple((k, to_attr(v)) for k, v in args.items()), tuple(frame.items),
                     INPUT, frame.current, defn.span)
        return Network(name, source, frame.input_shape, tuple(self.ops), root, frame.current)

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
            if p.type in ("int", "int?"):
                if v is None and p.type == "int?":
                    out[p.name] = None
                    continue
                v = self.as_int(v, f"`{p.name}` of `{prim.kind}`", where)
            elif p.type == "float":
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise self.fail("E023", f"`{p.name}` of `{prim.kind}` must be a number, got "
                                    f"{type_name(v)}", where)
                v = float(v)
            elif p.type == "bool" and not isinstance(v, bool):
                raise self.fail("E023", f"`{p.name}` of `{prim.kind}` must be true or false, got "
                                f"{type_name(v)}", where)
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
            raise self.no_input(self.sites[-1][2])  # the body would only cascade
        frame.vars.update(args)
        shape = self.shapes.get(frame.input)
        if shape is not None and len(shape) == 3:
            frame.vars.update(in_channels=shape[0], in_height=shape[1], in_width=shape[2])
        self.run(defn.body, frame)

    def run(self, stmts, frame: Frame) -> None:
        for st in stmts:
            try:
                self.stmt(st, frame)
            except _Abort:
                raise
            except _Skip:
                continue

    def env_of(self, frame: Frame) -> ChainMap:
        """Names visible in a body: its variables over its file's definitions (no copy)."""
        return ChainMap(frame.vars, frame.module.names)

    def stmt(self, st, frame: Frame) -> None:
        self.step(st.span)
        if isinstance(st, Layer):
            self.layer(st, frame)
        elif isinstance(st, Reuse):
            self.reuse(st, frame)
        elif isinstance(st, Assign):
            frame.vars[st.name] = self.eval(st.value, self.env_of(frame))
        elif isinstance(st, If):
            for test, body in st.branches:
                if self.truth(self.eval(test, self.env_of(frame)), test.span):
                    self.run(body, frame)
                    return
            self.run(st.orelse, frame)
        elif isinstance(st, For):
            items = self.eval(st.iterable, self.env_of(frame))
            if not isinstance(items, tuple):
                raise self.fail("E023", f"`for` needs a list, got {type_name(items)}", st.iterable.span,
                                hint="use `range(n)` or a list literal")
            for item in items:
                self.step(st.span)  # an empty body still costs an iteration
                frame.vars[st.var] = item
                self.run(st.body, frame)
        elif isinstance(st, Require):
            if not self.truth(self.eval(st.test, self.env_of(frame)), st.test.span):
                self.error("E041", st.message or "requirement not met", st.span,
                           label="this `require` does not hold")
                raise _Abort()
        elif isinstance(st, InputDecl):
            self.input_decl(st, frame)

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
        if not _LABEL.fullmatch(name):
            raise self.fail("E054", f"`{name}` is not a valid layer name", label.span,
                            hint="names are identifiers (letters, digits, `_`) or whole numbers")
        if name == "input":
            raise self.fail("E011", "`input` names the block's input and cannot name a layer",
                            label.span, hint="choose another name")
        if keyword.iskeyword(name):  # torch.fx writes module paths into Python code as `self.NAME`
            raise self.fail("E054", f"`{name}` cannot name a layer: it is a Python keyword",
                            label.span, hint=f"choose another name, e.g. `{name}_`; torch.fx "
                            "writes layer names into Python code")
        if name in RESERVED_LABELS or name.startswith("_"):
            raise self.fail("E054", f"`{name}` cannot name a layer: torch modules reserve it",
                            label.span, hint=f"choose another name, e.g. `{name.strip('_')}_`"
                            if name.strip("_") else "choose another name")
        if name in frame.labels:
            first = frame.labels[name]
            raise self.fail("E011", f"duplicate layer name `{name}`", label.span,
                            label=f"first defined at line {first.line}",
                            hint="every layer in a definition needs its own name")
        frame.labels[name] = label.span
        return name

    def source(self, src: Name | None, frame: Frame) -> str:
        if src is None:
            return frame.current
        if src.id not in frame.tensors:
            raise self.fail("E010", f"unknown tensor `{src.id}`", src.span,
                            hint=did_you_mean(src.id, frame.tensors) or
                            "name a layer defined earlier in this definition, or `input`")
        return frame.tensors[src.id]

    def layer(self, st: Layer, frame: Frame) -> None:
        name = self.label(st.label, frame) if st.label else None
        env = self.env_of(frame)
        callee = self.eval(st.call.func, env)
        try:
            if isinstance(callee, PrimValue):
                self.primitive(st, callee, name, frame, env)
            elif isinstance(callee, DefValue):
                self.definition(st, callee, name, frame, env)
            elif callee is STAGE:
                self.stage(st, name, frame, env)
            else:
                raise self.fail("E023", f"{type_name(callee)} is not a layer", st.call.func.span,
                                hint="a layer statement calls a primitive, a definition or `stage`")
        except _Skip:
            if name is not None:  # keep later references from cascading
                frame.tensors.setdefault(name, frame.current)
                frame.failed.add(name)
            raise

    def eval_args(self, args: tuple[Arg, ...], env) -> tuple[tuple[str | None, Value, Span], ...]:
        return tuple((a.name, self.eval(a.value, env), a.span) for a in args)

    def primitive(self, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
        prim = callee.prim
        if prim.arity is None:  # add(x): the running value + x; add(a, b, …): the named tensors
            inputs = []
            for a in st.call.args:
                if a.name is not None or not isinstance(a.value, Name):
                    raise self.fail("E023", f"the arguments of `{prim.kind}` are tensor names",
                                    a.span, hint=f"e.g. `{prim.kind}(downsample)` or `{prim.kind}(a, b)`")
                inputs.append(self.source(a.value, frame))
            if len(inputs) < 2 or st.source is not None:
                inputs.insert(0, self.source(st.source, frame))
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
            frame.tensors[name] = op.name
            frame.layers[name] = op
        frame.items.append(op.name)
        if st.source is None:  # a `from` branch leaves the running value where it was
            frame.current = op.name

    def add_op(self, prim: Primitive, attrs: dict, inputs: list[str], name: str,
               module: str | None, span: Span, *, count_params: bool) -> Op:
        if any(i not in self.shapes for i in inputs):
            raise self.no_input(span)
        shapes = [self.shapes[i] for i in inputs]
        attrs = dict(attrs)
        try:
            shape, params, macs = prim.infer(attrs, shapes)
        except ShapeError as e:
            self.error(e.code, e.message, span, label=e.label, hint=e.hint)
            self.shape_errors_muted = True
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
        op = Op(unique, prim.kind, tuple((p.name, to_attr(attrs[p.name])) for p in prim.params),
                tuple(inputs), shape, params if count_params else 0, macs, module, span)
        self.ops.append(op)
        self.op_by_name[unique] = op
        self.shapes[unique] = shape
        return op

    def reuse(self, st: Reuse, frame: Frame) -> None:
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
            raise self.fail("E055", f"`{st.name}` is applied to {now[0]} channels here but was made for "
                            f"{was[0]}", st.span, label=f"first applied at line {first.span.line}",
                            hint=f"a layer applied again shares its weights, so it needs the same input "
                                 f"width; for a new layer write `name: {first.kind}(...)`")
        op = self.add_op(prim, dict(first.attrs), inputs, first.name, first.module, st.span,
                         count_params=False)  # shared weights count once
        frame.items.append(op.name)
        if st.source is None:
            frame.current = op.name

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
            frame.tensors[name] = scope.output
        if not branch:
            frame.current = scope.output

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
        return Scope(name or callee.name, path, callee.kind, callee.name,
                     tuple((k, to_attr(v)) for k, v in bound.items()), tuple(frame.items), src,
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
        keywords = {a.name: a for a in st.call.args if a.name is not None}
        if len(positional) > 2:
            raise self.fail("E022", "`stage` takes 2 positional arguments (block, depth)",
                            positional[2].span, hint="pass the rest by keyword: "
                            "`stage(block, depth, stride = 2, planes = 64)`")
        fixed: dict[str, Any] = {}
        for key, arg in zip(("block", "depth"), positional):
            if key in keywords:
                raise self.fail("E024", f"argument `{key}` given twice", keywords[key].span)
            fixed[key] = arg
        for key in ("block", "depth", "stride"):
            if key in keywords:
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
        src = self.source(st.source, frame)
        sub = Frame(_join(frame.path, name), "stage", frame.module, {}, src, src)
        for i in range(depth):
            block_env = ChainMap({"index": i}, env)
            args = [(k, self.eval(a.value, block_env), a.span) for k, a in keywords.items()]
            if has_stride:
                args.append(("stride", stride if i == 0 else 1, fixed.get("stride", st.call).span))
            scope = self.instantiate(block, tuple(args), str(i), sub.current, sub, st.call.span,
                                     st.span)
            self.attach(scope, str(i), sub)
        scope = Scope(name, sub.path, "stage", "stage",
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
            try:
                value = env[e.id]
            except KeyError:
                if e.id in BUILTINS:
                    return BUILTINS[e.id]
                raise self.fail("E010", f"unknown name `{e.id}`", e.span,
                                hint=did_you_mean(e.id, [*env, *BUILTINS])) from None
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
        if isinstance(e, (Str, Bool)):
            return e.value
        if isinstance(e, ListExpr):
            if len(e.items) > limits.MAX_REPEAT:
                raise self.fail("E017", "list is too long", e.span)
            return tuple(self.eval(x, env) for x in e.items)
        if isinstance(e, Index):
            base, idx = self.eval(e.base, env), self.eval(e.index, env)
            if not isinstance(base, tuple):
                raise self.fail("E023", f"only lists can be indexed, not {type_name(base)}", e.base.span)
            i = self.as_int(idx, "an index", e.index.span)
            if not -len(base) <= i < len(base):
                raise self.fail("E040", f"index {i} is out of range for a list of {len(base)}",
                                e.index.span)
            return base[i]
        if isinstance(e, Cond):
            test = self.truth(self.eval(e.test, env), e.test.span)
            return self.eval(e.then if test else e.orelse, env)
        if isinstance(e, UnaryOp):
            v = self.eval(e.operand, env)
            if e.op == "not":
                return not self.truth(v, e.operand.span)
            return -self.number(v, e.operand.span)
        if isinstance(e, With):
            base = self.eval(e.base, env)
            if not isinstance(base, (DefValue, PrimValue)):
                raise self.fail("E023", f"`with` overrides arguments of a definition, not of "
                                f"{type_name(base)}", e.base.span)
            return self.partial(base, self.eval_args(e.args, env), e.span)
        if isinstance(e, Call):
            fn = self.eval(e.func, env)
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
            raise self.fail("E023", f"{type_name(fn)} cannot be called", e.func.span)
        raise self.fail("E001", "unsupported expression", e.span)  # unreachable by the grammar

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
        if op in ("and", "or"):
            left = self.truth(self.eval(e.left, env), e.left.span)
            if (op == "and") != left:
                return left
            return self.truth(self.eval(e.right, env), e.right.span)
        a, b = self.eval(e.left, env), self.eval(e.right, env)
        if isinstance(a, tuple | str) and isinstance(b, tuple | str):  # comparing or joining copies them
            self.charge(len(a) + len(b), e.span)
        if op in ("==", "!="):
            same = a == b and type(a) is type(b) or (
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
        x, y = self.number(a, e.left.span), self.number(b, e.right.span)
        if op in ("<", "<=", ">", ">="):
            return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
        if op in ("/", "//", "%") and y == 0:
            raise self.fail("E040", "division by zero", e.right.span)
        if op == "**" and (abs(y) > 64 or (isinstance(y, int) and y < 0 and isinstance(x, int))):
            if abs(y) > 64:
                raise self.fail("E017", f"exponent {y} is too large", e.right.span)
        try:
            r = {"+": lambda: x + y, "-": lambda: x - y, "*": lambda: x * y, "/": lambda: x / y,
                 "//": lambda: x // y, "%": lambda: x % y, "**": lambda: x ** y}[op]()
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
    _check(isinstance(v, (int, float)) and not isinstance(v, bool),
           f"`{fn}` expects numbers, got {type_name(v)}", "E023")
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
    _check(isinstance(v, (tuple, str)), f"`len` needs a list, got {type_name(v)}", "E023")
    return len(v)


def _minmax(fn: Callable, name: str) -> Callable:
    def run(*args: Value) -> Value:
        items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
        _check(len(items) > 0, f"`{name}` needs at least one value")
        return fn(_num(v, name) for v in items)
    return run


def _sum(v: Value) -> Value:
    _check(isinstance(v, tuple), f"`sum` needs a list, got {type_name(v)}", "E023")
    return sum(_num(x, "sum") for x in v)


def _int(v: Value) -> int:
    x = _num(v, "int")
    _check(math.isfinite(x), "`int` needs a finite number")
    return int(x)


BUILTINS: dict[str, Value] = {
    **{k: PrimValue(p) for k, p in PRIMITIVES.items()},
    "stage": STAGE,
    "range": Builtin("range", _range),
    "len": Builtin("len", _len),
    "min": Builtin("min", _minmax(min, "min")),
    "max": Builtin("max", _minmax(max, "max")),
    "sum": Builtin("sum", _sum),
    "abs": Builtin("abs", lambda v: abs(_num(v, "abs"))),
    "int": Builtin("int", _int),
    "float": Builtin("float", lambda v: float(_num(v, "float"))),
    "round": Builtin("round", lambda v: round(_num(v, "round"))),
}

__all__ = ["Elaborator", "ModuleEnv", "DefValue", "PrimValue", "BUILTINS", "NO_SPAN"]
