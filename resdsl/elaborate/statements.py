"""Bodies: running a definition's statements (assignments, `if`, `for`, `require`,
`input`, layers) in its frame."""

from __future__ import annotations

from collections import ChainMap

from .. import limits
from ..diagnostics import Span
from ..errors import E
from ..ir import INPUT
from ..syntax import (
    Assign,
    BinOp,
    Bool,
    Definition,
    Expr,
    For,
    If,
    InputDecl,
    Layer,
    NoneLit,
    Num,
    Require,
    Reuse,
    Str,
    UnaryOp,
)
from .exprs import unparse
from .frames import Abort, BodyEnv, Frame, Skip, TooMany
from .values import Value, show, type_name

#: The names every definition body gets from its input (so no parameter may take them).
IMPLICIT_NAMES = {"in_channels": "channel count", "in_height": "height", "in_width": "width"}


class Statements:
    """The part of :class:`~resdsl.elaborate.Elaborator` that runs bodies statement by
    statement."""

    def no_input(self, span: Span) -> Skip:
        """Only the input of a network that declares none has no shape; say so once."""
        if not self.missing_input:
            self.missing_input = True
            self.error(E.NO_NETWORK, "the network uses its input before declaring it", span,
                       hint="start the network's body with `input [3, 224, 224]`")
        return Skip()

    def run_body(self, defn: Definition, frame: Frame, args: dict[str, Value]) -> None:
        """Run a definition's body in ``frame``, its arguments and input sizes bound."""
        if frame.kind != "network" and frame.input not in self.shapes:
            if frame.input in self.tainted:
                raise Skip()  # fed by a failed statement: already reported
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
            raise self.fail(E.WRONG_TYPE, f"the body ends with the split `{label}`: {n} tensors, not one",
                            span, hint=f"end with one tensor, e.g. `concat({label})`")

    def run(self, stmts, frame: Frame) -> None:
        for st in stmts:
            try:
                self.stmt(st, frame)
            except Abort:
                raise
            except Skip:
                continue

    def env_of(self, frame: Frame) -> ChainMap:
        """Names visible in a body: its variables, then its file's definitions, then its
        labels (no copy)."""
        env = frame.env
        if env is None:
            env = frame.env = BodyEnv(frame.vars, frame.module.names)
            env.tensors = frame.tensors
        return env

    def stmt(self, st, frame: Frame) -> None:
        """Run one statement (each costs a step)."""
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
                raise self.fail(E.DEFINED_TWICE, "`current` cannot be a loop variable: it is the running value",
                                st.span, hint="name the loop variable otherwise")
            items = self.eval(st.iterable, self.env_of(frame))
            if not isinstance(items, tuple):
                raise self.fail(E.WRONG_TYPE, f"`for` needs a list, got {type_name(items)}", st.iterable.span,
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
                    raise Abort()  # it may only fail because an earlier statement did
                why = self.explain(st.test, env)
                self.error(E.REQUIREMENT_FAILED, st.message or "requirement not met", st.span,
                           label="this `require` does not hold" + (f": {why}" if why else ""))
                raise Abort()
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
        except (Skip, TooMany, RecursionError):
            pass
        return ""

    def input_decl(self, st: InputDecl, frame: Frame) -> None:
        if frame.kind != "network":
            raise self.fail(E.MISPLACED_INPUT, "only a network declares an input", st.span,
                            hint="a definition takes its input from where it is used")
        if frame.input_shape is not None or frame.items:
            raise self.fail(E.MISPLACED_INPUT, "the input must be declared once, before any layer", st.span)
        v = self.eval(st.shape, self.env_of(frame))
        if not isinstance(v, tuple) or len(v) != 3:
            got = f"a list of {len(v)}" if isinstance(v, tuple) else type_name(v)
            raise self.fail(E.WRONG_TYPE, f"the input must be a list [channels, height, width], got "
                            f"{got}", st.shape.span, hint="e.g. `input [3, 224, 224]`")
        dims = tuple(self.as_int(x, "an input size", st.shape.span) for x in v)
        if min(dims) < 1:
            raise self.fail(E.OUT_OF_RANGE, f"input sizes must be positive, got {list(dims)}", st.shape.span)
        if dims[0] > limits.MAX_INPUT_CHANNELS or max(dims[1:]) > limits.MAX_INPUT_SIZE:
            raise self.fail(E.TOO_LARGE, f"input {'×'.join(map(str, dims))} is too large", st.shape.span,
                            hint=f"at most {limits.MAX_INPUT_CHANNELS} channels and "
                                 f"{limits.MAX_INPUT_SIZE} pixels a side")
        frame.input_shape = dims
        self.shapes[INPUT] = dims
