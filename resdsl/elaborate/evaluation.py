"""Expressions: evaluating them to values, with the checks on numbers and conditions."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .. import limits
from ..diagnostics import Span, did_you_mean
from ..errors import E
from ..syntax import (
    Arg,
    BinOp,
    Bool,
    Call,
    Cond,
    Expr,
    Index,
    ListExpr,
    Name,
    NoneLit,
    Num,
    Str,
    UnaryOp,
    With,
)
from .builtins import BUILTINS, MISSING, BuiltinError, arity_error
from .frames import BodyEnv, Skip, label_value
from .values import CURRENT, FAILED, STAGE, Builtin, DefValue, PrimValue, Tensor, Value, type_name

#: Values whose comparison or joining costs steps in proportion to their length.
_SEQ = (tuple, str)


class Evaluation:
    """The part of :class:`~resdsl.elaborate.Elaborator` that evaluates expressions."""

    def eval(self, e: Expr, env: Mapping[str, Value]) -> Value:
        """The value of ``e`` in ``env``: a body's :class:`BodyEnv`, or a plain mapping (a
        file's names, for parameter defaults and aliases)."""
        self.steps += 1  # inline `step`: this is the hot path
        if self.steps > limits.MAX_STEPS:
            self.step(e.span)
        kind = type(e)  # names and numbers first: they are most of what a spec evaluates
        if kind is Name:
            key = e.id
            if type(env) is BodyEnv:  # a body: no exceptions on the way to a definition or primitive
                for m in env.maps:
                    value = m.get(key, MISSING)
                    if value is not MISSING:
                        break
            else:
                value = env.get(key, MISSING)
            if value is MISSING:
                return self.unbound(e, env)
            if value is FAILED:
                raise Skip()  # the definition's own diagnostics are out
            return value
        if kind is Num:
            if abs(e.value) > limits.MAX_INT:
                raise self.fail(E.TOO_LARGE, "number is too large", e.span,
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
                raise self.fail(E.TOO_LARGE, "list is too long", e.span)
            return tuple(self.eval(x, env) for x in e.items)
        if kind is Index:
            base, idx = self.eval(e.base, env), self.eval(e.index, env)
            if isinstance(base, Tensor) and base.op in self.tainted:
                raise Skip()  # a failed split: its error is out
            if not isinstance(base, tuple):
                raise self.fail(E.WRONG_TYPE, f"only lists can be indexed, not {type_name(base)}", e.base.span)
            i = self.as_int(idx, "an index", e.index.span)
            if not -len(base) <= i < len(base):
                raise self.fail(E.EVALUATION, f"index {i} is out of range for a list of {len(base)}",
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
                raise self.fail(E.WRONG_TYPE, f"`with` overrides arguments of a definition, not of "
                                f"{type_name(base)}", e.base.span)
            return self.partial(base, self.eval_args(e.args, env), e.span)
        if kind is Call:
            fn = self.eval_callee(e.func, env)
            args = self.eval_args(e.args, env)
            if isinstance(fn, Builtin):
                if any(k is not None for k, _, _ in args):
                    raise self.fail(E.UNKNOWN_PARAMETER, f"`{fn.name}` takes no keyword arguments", e.span)
                wrong = arity_error(fn, len(args))
                if wrong:
                    raise self.fail(E.TOO_MANY_ARGUMENTS, wrong, e.span)
                # a built-in walks or builds whole lists: charge for their length
                self.charge(sum(len(v) for _, v, _ in args if isinstance(v, tuple | str)), e.span)
                try:
                    result = fn.fn(*[v for _, v, _ in args])
                except BuiltinError as err:
                    raise self.fail(err.code, str(err), e.span) from None
                if isinstance(result, tuple):
                    self.charge(len(result), e.span)
                return result
            if isinstance(fn, (DefValue, PrimValue)):
                return self.partial(fn, args, e.span)
            if fn is STAGE:
                raise self.fail(E.WRONG_TYPE, "`stage(...)` builds layers; use it in a layer statement",
                                e.span, hint="`layer1: stage(block, 3)`")
            raise self.fail(E.WRONG_TYPE, f"{type_name(fn)} cannot be called", e.func.span,
                            hint="test it first: `x != none`" if fn is None else "")
        raise self.fail(E.SYNTAX, "unsupported expression", e.span)  # unreachable by the grammar

    def unbound(self, e: Name, env) -> Value:
        """A name that is neither a variable nor a definition: a label, a built-in, or an error."""
        tensors = getattr(env, "tensors", None)
        if tensors and e.id in tensors:
            value = label_value(tensors, e.id)
            if type(value) is Tensor and value.op in self.tainted and value.op not in self.shapes:
                raise Skip()
            return value
        value = BUILTINS.lookup(e.id)
        if value is MISSING:
            names = [*env, *(tensors or ()), *BUILTINS]
            raise self.fail(E.UNKNOWN_NAME, f"unknown name `{e.id}`", e.span,
                            hint=did_you_mean(e.id, [k for k in names if "." not in k]), unknown=e.id)
        if value is CURRENT:
            if type(env) is not BodyEnv:  # a default or an alias: there is no running value here
                raise self.fail(E.WRONG_TYPE, "`current` is the running value of a body, and there is "
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
            if found is not MISSING and found is not CURRENT:
                return found
        return value

    def current(self, span: Span) -> Value:
        """The built-in ``current``: the running value of the innermost body."""
        if not self.frames:
            raise self.fail(E.UNKNOWN_NAME, "`current` is the running value of a body; there is none here",
                            span)
        frame = self.frames[-1]
        if frame.split is not None:
            return label_value(frame.tensors, frame.split[0])
        if frame.current in self.tainted and frame.current not in self.shapes:
            raise Skip()
        return Tensor(frame.current, "current")

    def partial(self, fn: DefValue | PrimValue, args, span: Span) -> DefValue | PrimValue:
        bound = self.bind(fn, args, span, complete=False)
        items = tuple(bound.items())
        return DefValue(fn.definition, fn.env, items) if isinstance(fn, DefValue) else PrimValue(fn.prim, items)

    def number(self, v: Value, span: Span) -> int | float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(E.WRONG_TYPE, f"expected a number, got {type_name(v)}", span)
        return v

    def truth(self, v: Value, span: Span) -> bool:
        if not isinstance(v, bool):
            raise self.fail(E.WRONG_TYPE, f"a condition must be true or false, got {type_name(v)}", span,
                            hint="compare explicitly, e.g. `x != 0`")
        return v

    def as_int(self, v: Value, what: str, span: Span) -> int:
        if isinstance(v, float) and not isinstance(v, bool) and v.is_integer():
            return int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            extra = f" ({v:g})" if isinstance(v, float) else ""
            raise self.fail(E.WRONG_TYPE, f"{what} must be an integer, got {type_name(v)}{extra}", span,
                            hint="use `//` for integer division or `int(...)`"
                            if isinstance(v, float) else "")
        return v

    def eval_args(self, args: tuple[Arg, ...], env) -> tuple[tuple[str | None, Value, Span], ...]:
        ev = self.eval
        return tuple([(a.name, ev(a.value, env), a.span) for a in args])

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
                raise self.fail(E.TOO_LARGE, "number is too large", e.span)
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
                raise self.fail(E.TOO_LARGE, "list is too long", e.span)
            return a + b
        if op == "+" and isinstance(a, str) and isinstance(b, str):
            if len(a) + len(b) > limits.MAX_STRING:
                raise self.fail(E.TOO_LARGE, f"the string is longer than {limits.MAX_STRING:,} characters",
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
            raise self.fail(E.EVALUATION, "division by zero", e.right.span)
        if op == "**" and (abs(y) > 64 or (isinstance(y, int) and y < 0 and isinstance(x, int))):
            if abs(y) > 64:
                raise self.fail(E.TOO_LARGE, f"exponent {y} is too large", e.right.span)
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
            raise self.fail(E.EVALUATION, "arithmetic overflow", e.span) from None
        if isinstance(r, complex):
            raise self.fail(E.EVALUATION, "the result is not a real number", e.span)
        if abs(r) > limits.MAX_INT or (isinstance(r, float) and not math.isfinite(r)):
            raise self.fail(E.TOO_LARGE, "number is too large", e.span)
        return r
