"""Expressions and arguments: evaluating expressions to values, with the checks on
numbers and conditions, and binding a call's arguments to the parameters of a
definition or a primitive (a partial call binds some, ``with`` overrides them)."""

from __future__ import annotations

import math
from collections.abc import Mapping

from .. import limits
from ..diagnostics import Span, did_you_mean
from ..errors import E
from ..primitives import REQUIRED, Primitive
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
from .state import Build
from .values import CURRENT, FAILED, STAGE, Builtin, DefValue, PrimValue, Tensor, Value, type_name

#: Values whose comparison or joining costs steps in proportion to their length.
_SEQ = (tuple, str)
#: The sizes a body reads from its input besides ``in_channels``, in shape order.
SIZE_NAMES = ("in_height", "in_width")


def eval_expr(b: Build, e: Expr, env: Mapping[str, Value]) -> Value:
    """The value of ``e`` in ``env``: a body's :class:`BodyEnv`, or a plain mapping (a
    file's names, for parameter defaults and aliases)."""
    b.steps += 1  # inline `step`: this is the hot path
    if b.steps > limits.MAX_STEPS:
        b.step(e.span)
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
            return unbound(b, e, env)
        if value is FAILED:
            raise Skip()  # the definition's own diagnostics are out
        return value
    if kind is Num:
        if abs(e.value) > limits.MAX_INT:
            raise b.fail(E.TOO_LARGE, "number is too large", e.span,
                         hint=f"numbers are limited to ±{limits.MAX_INT:,}")
        return e.value
    if kind is BinOp:
        return binop(b, e, env)
    if kind is Str or kind is Bool:
        return e.value
    if kind is NoneLit:
        return None
    if kind is ListExpr:
        if len(e.items) > limits.MAX_REPEAT:
            raise b.fail(E.TOO_LARGE, "list is too long", e.span)
        return tuple(eval_expr(b, x, env) for x in e.items)
    if kind is Index:
        base, idx = eval_expr(b, e.base, env), eval_expr(b, e.index, env)
        if isinstance(base, Tensor) and base.op in b.tainted:
            raise Skip()  # a failed split: its error is out
        if not isinstance(base, tuple):
            raise b.fail(E.WRONG_TYPE, f"only lists can be indexed, not {type_name(base)}", e.base.span)
        i = as_int(b, idx, "an index", e.index.span)
        if not -len(base) <= i < len(base):
            raise b.fail(E.EVALUATION, f"index {i} is out of range for a list of {len(base)}",
                         e.index.span)
        return base[i]
    if kind is Cond:
        test = eval_expr(b, e.test, env)
        if test is not True and test is not False:
            truth(b, test, e.test.span)
        return eval_expr(b, e.then if test else e.orelse, env)
    if kind is UnaryOp:
        v = eval_expr(b, e.operand, env)
        if e.op == "not":
            return not truth(b, v, e.operand.span)
        return -number(b, v, e.operand.span)
    if kind is With:
        base = eval_callee(b, e.base, env)
        if not isinstance(base, (DefValue, PrimValue)):
            raise b.fail(E.WRONG_TYPE, f"`with` overrides arguments of a definition, not of "
                         f"{type_name(base)}", e.base.span)
        return partial(b, base, eval_args(b, e.args, env), e.span)
    if kind is Call:
        fn = eval_callee(b, e.func, env)
        args = eval_args(b, e.args, env)
        if isinstance(fn, Builtin):
            if any(k is not None for k, _, _ in args):
                raise b.fail(E.UNKNOWN_PARAMETER, f"`{fn.name}` takes no keyword arguments", e.span)
            wrong = arity_error(fn, len(args))
            if wrong:
                raise b.fail(E.TOO_MANY_ARGUMENTS, wrong, e.span)
            # a built-in walks or builds whole lists: charge for their length
            b.charge(sum(len(v) for _, v, _ in args if isinstance(v, tuple | str)), e.span)
            try:
                result = fn.fn(*[v for _, v, _ in args])
            except BuiltinError as err:
                raise b.fail(err.code, str(err), e.span) from None
            if isinstance(result, tuple):
                b.charge(len(result), e.span)
            return result
        if isinstance(fn, (DefValue, PrimValue)):
            return partial(b, fn, args, e.span)
        if fn is STAGE:
            raise b.fail(E.WRONG_TYPE, "`stage(...)` builds layers; use it in a layer statement",
                         e.span, hint="`layer1: stage(block, 3)`")
        raise b.fail(E.WRONG_TYPE, f"{type_name(fn)} cannot be called", e.func.span,
                     hint="test it first: `x != none`" if fn is None else "")
    raise b.fail(E.SYNTAX, "unsupported expression", e.span)  # unreachable by the grammar


def unbound(b: Build, e: Name, env) -> Value:
    """A name that is neither a variable nor a definition: a label, a built-in, or an error."""
    tensors = getattr(env, "tensors", None)
    if tensors and e.id in tensors:
        value = label_value(tensors, e.id)
        if type(value) is Tensor and value.op in b.tainted and value.op not in b.shapes:
            raise Skip()
        return value
    size = getattr(env, "size", None)
    if size is not None and e.id in SIZE_NAMES:
        # a body that reads its input's height or width builds modules for that size: the
        # network is tied to its input size (timm's fixed_input_size)
        b.reads_size = True
        return size[SIZE_NAMES.index(e.id)]
    value = BUILTINS.lookup(e.id)
    if value is MISSING:
        names = [*env, *(tensors or ()), *(SIZE_NAMES if size is not None else ()), *BUILTINS]
        raise b.fail(E.UNKNOWN_NAME, f"unknown name `{e.id}`", e.span,
                     hint=did_you_mean(e.id, [k for k in names if "." not in k]), unknown=e.id)
    if value is CURRENT:
        if type(env) is not BodyEnv:  # a default or an alias: there is no running value here
            raise b.fail(E.WRONG_TYPE, "`current` is the running value of a body, and there is "
                         "none here", e.span, hint="use `current` in a definition's body")
        return current_value(b, e.span)
    return value


def eval_callee(b: Build, e: Expr, env) -> Value:
    """A value being called: as :meth:`eval`, but a name that is a label (a tensor) and
    also a primitive is the callable (``relu: relu()`` … ``relu()``)."""
    value = eval_expr(b, e, env)
    if type(value) is not Tensor and type(value) is not tuple:
        return value
    if isinstance(e, Name) and (isinstance(value, Tensor) or (
            type(value) is tuple and value and isinstance(value[0], Tensor))):
        found = BUILTINS.lookup(e.id)  # labels come after variables and definitions
        if found is not MISSING and found is not CURRENT:
            return found
    return value


def current_value(b: Build, span: Span) -> Value:
    """The built-in ``current``: the running value of the innermost body."""
    if not b.frames:
        raise b.fail(E.UNKNOWN_NAME, "`current` is the running value of a body; there is none here",
                     span)
    frame = b.frames[-1]
    if frame.split is not None:
        return label_value(frame.tensors, frame.split[0])
    if frame.current in b.tainted and frame.current not in b.shapes:
        raise Skip()
    return Tensor(frame.current, "current")


def partial(b: Build, fn: DefValue | PrimValue, args, span: Span) -> DefValue | PrimValue:
    bound = bind(b, fn, args, span, complete=False)
    items = tuple(bound.items())
    return DefValue(fn.definition, fn.env, items, fn.as_kind) if isinstance(fn, DefValue) else PrimValue(fn.prim, items)


def number(b: Build, v: Value, span: Span) -> int | float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise b.fail(E.WRONG_TYPE, f"expected a number, got {type_name(v)}", span)
    return v


def truth(b: Build, v: Value, span: Span) -> bool:
    if not isinstance(v, bool):
        raise b.fail(E.WRONG_TYPE, f"a condition must be true or false, got {type_name(v)}", span,
                     hint="compare explicitly, e.g. `x != 0`")
    return v


def as_int(b: Build, v: Value, what: str, span: Span) -> int:
    if isinstance(v, float) and not isinstance(v, bool) and v.is_integer():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        extra = f" ({v:g})" if isinstance(v, float) else ""
        raise b.fail(E.WRONG_TYPE, f"{what} must be an integer, got {type_name(v)}{extra}", span,
                     hint="use `//` for integer division or `int(...)`"
                     if isinstance(v, float) else "")
    return v


def eval_args(b: Build, args: tuple[Arg, ...], env) -> tuple[tuple[str | None, Value, Span], ...]:
    return tuple([(a.name, eval_expr(b, a.value, env), a.span) for a in args])


def binop(b: Build, e: BinOp, env) -> Value:
    op = e.op
    if op == "and" or op == "or":
        left = eval_expr(b, e.left, env)
        if left is not True and left is not False:
            truth(b, left, e.left.span)
        if (op == "and") != left:
            return left
        right = eval_expr(b, e.right, env)
        if right is not True and right is not False:
            truth(b, right, e.right.span)
        return right
    x, y = eval_expr(b, e.left, env), eval_expr(b, e.right, env)
    if x is None or y is None:  # `x != none`: only none equals none
        if op == "==":
            return x is y
        if op == "!=":
            return x is not y
    ta, tb = type(x), type(y)
    if ta is int and tb is int:  # the common case: integer arithmetic and comparisons
        if op == "==":
            return x == y
        if op == "!=":
            return x != y
        if op == "<":
            return x < y
        if op == "<=":
            return x <= y
        if op == ">":
            return x > y
        if op == ">=":
            return x >= y
        if op == "+":
            r = x + y
        elif op == "-":
            r = x - y
        elif op == "*":
            r = x * y
        elif op == "//" and y != 0:
            r = x // y
        elif op == "%" and y != 0:
            r = x % y
        else:
            return _arith(b, e, op, x, y)
        if abs(r) > limits.MAX_INT:
            raise b.fail(E.TOO_LARGE, "number is too large", e.span)
        return r
    if isinstance(x, _SEQ) and isinstance(y, _SEQ):  # comparing or joining copies them
        b.charge(len(x) + len(y), e.span)
    if op == "==" or op == "!=":
        same = x == y and ta is tb or (
            isinstance(x, (int, float)) and isinstance(y, (int, float))
            and not isinstance(x, bool) and not isinstance(y, bool) and x == y)
        return same if op == "==" else not same
    if op == "+" and isinstance(x, tuple) and isinstance(y, tuple):
        if len(x) + len(y) > limits.MAX_REPEAT:
            raise b.fail(E.TOO_LARGE, "list is too long", e.span)
        return x + y
    if op == "+" and isinstance(x, str) and isinstance(y, str):
        if len(x) + len(y) > limits.MAX_STRING:
            raise b.fail(E.TOO_LARGE, f"the string is longer than {limits.MAX_STRING:,} characters",
                         e.span)
        return x + y
    return _arith(b, e, op, number(b, x, e.left.span), number(b, y, e.right.span))


def _arith(b: Build, e: BinOp, op: str, x: int | float, y: int | float) -> Value:
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
        raise b.fail(E.EVALUATION, "division by zero", e.right.span)
    if op == "**" and (abs(y) > 64 or (isinstance(y, int) and y < 0 and isinstance(x, int))):
        if abs(y) > 64:
            raise b.fail(E.TOO_LARGE, f"exponent {y} is too large", e.right.span)
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
        raise b.fail(E.EVALUATION, "arithmetic overflow", e.span) from None
    if isinstance(r, complex):
        raise b.fail(E.EVALUATION, "the result is not a real number", e.span)
    if abs(r) > limits.MAX_INT or (isinstance(r, float) and not math.isfinite(r)):
        raise b.fail(E.TOO_LARGE, "number is too large", e.span)
    return r

def bind(b: Build, value: DefValue | PrimValue, args: tuple[tuple[str | None, Value, Span], ...],
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
                raise b.fail(E.TOO_MANY_ARGUMENTS, f"`{value.name}` takes {len(names)} positional "
                             f"argument{'s' if len(names) != 1 else ''}, got more", aspan,
                             hint=f"its parameters: {', '.join(names) or 'none'}")
            key = names[pos]
            pos += 1
        elif key not in names:
            hint = did_you_mean(key, names) or (
                f"`{value.name}` takes: {', '.join(names)}" if names else
                f"`{value.name}` takes no arguments")
            raise b.fail(E.UNKNOWN_PARAMETER, f"`{value.name}` has no parameter `{key}`", aspan, hint=hint)
        if key in given:
            raise b.fail(E.ARGUMENT_TWICE, f"argument `{key}` given twice", aspan)
        if is_def and (type(v) is Tensor or (type(v) is tuple and v and type(v[0]) is Tensor)):
            raise b.fail(E.WRONG_TYPE, f"`{value.name}` cannot take a tensor as an argument", aspan,
                         hint=f"feed it with `from`: `name: {value.name}(...) from x`")
        given[key] = aspan
        bound[key] = v
    if not complete:
        return bound
    if isinstance(value, PrimValue):
        return bind_prim(b, value.prim, bound, given, span)
    out: dict[str, Value] = {}
    env = dict(value.env.names)
    for p in value.definition.params:
        if p.name in bound:
            out[p.name] = bound[p.name]
        elif p.default is not None:
            out[p.name] = eval_expr(b, p.default, env)
        else:
            raise b.fail(E.MISSING_ARGUMENT, f"`{value.name}` needs the argument `{p.name}`", span,
                         hint=f"pass it: `{value.name}(..., {p.name} = ...)`")
        env[p.name] = out[p.name]
    return out


def bind_prim(b: Build, prim: Primitive, bound: dict[str, Value], given: dict[str, Span],
              span: Span) -> dict[str, Value]:
    """A primitive's arguments checked against its parameters' types and ranges, with
    defaults for the rest."""
    out: dict[str, Value] = {}
    for p in prim.params:
        where = given.get(p.name, span)
        if p.name not in bound:
            if p.default is REQUIRED:
                raise b.fail(E.MISSING_ARGUMENT, f"`{prim.kind}` needs the argument `{p.name}`", span,
                             hint=f"`{prim.kind}({', '.join(q.name for q in prim.params if q.default is REQUIRED)})`")
            out[p.name] = p.default
            continue
        v = bound[p.name]
        if p.type == "int" or p.type == "int?":
            if v is None and p.type == "int?":
                out[p.name] = None
                continue
            if type(v) is not int:
                v = as_int(b, v, f"`{p.name}` of `{prim.kind}`", where)
        elif p.type == "float":
            if type(v) is float:
                pass
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise b.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be a number, got "
                             f"{type_name(v)}", where)
            v = float(v)
        elif p.type == "bool" and not isinstance(v, bool):
            raise b.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be true or false, got "
                         f"{type_name(v)}", where)
        elif p.type == "ints":  # a list of integers (split's sizes)
            if not isinstance(v, tuple):
                raise b.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be a list of integers, "
                             f"got {type_name(v)}", where)
            v = tuple(as_int(b, x, f"an entry of `{p.name}`", where) for x in v)
        elif p.type == "str":
            if not isinstance(v, str):
                raise b.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be a string, got {type_name(v)}",
                             where, hint=f"one of: {', '.join(repr(c) for c in p.choices)}" if p.choices else "")
            if p.choices and v not in p.choices:
                raise b.fail(E.OUT_OF_RANGE, f"`{p.name}` of `{prim.kind}` cannot be {v!r}", where,
                             hint=did_you_mean(v, p.choices) or
                             f"one of: {', '.join(repr(c) for c in p.choices)}")
        if p.type == "ints" or p.type == "str":
            out[p.name] = v
            continue
        if p.lo is not None and not (p.lo <= v <= p.hi):
            code = E.OUT_OF_RANGE if v < p.lo else E.TOO_LARGE
            what = "too small" if v < p.lo else "too large"
            raise b.fail(code, f"`{p.name}` of `{prim.kind}` is {what}: {v}", where,
                         hint=f"it must lie between {p.lo:g} and {p.hi:g}")
        out[p.name] = v
    return out
