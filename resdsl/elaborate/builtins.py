"""The names every file sees without defining them: the built-in functions (``range``,
``len``, ``min``…), ``stage``, ``current`` and the primitive layers of the registry."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from .. import language, limits
from ..errors import E
from ..primitives import PRIMITIVES
from .values import CURRENT, STAGE, Builtin, PrimValue, Value, type_name


class BuiltinError(Exception):
    """A built-in function refused its arguments; the caller reports it at the call."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def _check(cond: bool, message: str, code: str = E.EVALUATION) -> None:
    """E040 for a bad value by default; E023 for a value of the wrong type."""
    if not cond:
        raise BuiltinError(message, code)


def _num(v: Value, fn: str) -> int | float:
    t = type(v)
    if t is not int and t is not float and (not isinstance(v, (int, float)) or isinstance(v, bool)):
        raise BuiltinError(f"`{fn}` expects numbers, got {type_name(v)}", E.WRONG_TYPE)
    return v


def _range(*args: Value) -> tuple:
    _check(1 <= len(args) <= 3, "`range` takes 1 to 3 integers", E.TOO_MANY_ARGUMENTS)
    _check(all(isinstance(a, int) and not isinstance(a, bool) for a in args), "`range` takes integers", E.WRONG_TYPE)
    _check(len(args) < 3 or args[2] != 0, "`range` step must not be zero")
    r = range(*args)
    try:
        n = len(r)
    except OverflowError:  # more items than a machine word counts
        n = limits.MAX_REPEAT + 1
    _check(n <= limits.MAX_REPEAT, f"`range` is limited to {limits.MAX_REPEAT:,} items", E.TOO_LARGE)
    return tuple(r)


def _len(v: Value) -> int:
    if not isinstance(v, (tuple, str)):
        raise BuiltinError(f"`len` needs a list, got {type_name(v)}", E.WRONG_TYPE)
    return len(v)


def _minmax(fn: Callable, name: str) -> Callable:
    def run(*args: Value) -> Value:
        items = args[0] if len(args) == 1 and isinstance(args[0], tuple) else args
        _check(len(items) > 0, f"`{name}` needs at least one value")
        return fn(_num(v, name) for v in items)
    return run


def _sum(v: Value) -> Value:
    if not isinstance(v, tuple):
        raise BuiltinError(f"`sum` needs a list, got {type_name(v)}", E.WRONG_TYPE)
    return sum(_num(x, "sum") for x in v)


def _int(v: Value) -> int:
    x = _num(v, "int")
    _check(math.isfinite(x), "`int` needs a finite number")
    return int(x)


def _log(*args: Value) -> float:
    _check(1 <= len(args) <= 2, "`log` takes a number and an optional base", E.TOO_MANY_ARGUMENTS)
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


#: What ``lookup`` returns for a name that is not built in (``none`` is a value).
MISSING = object()


class BuiltinNames(Mapping):
    """The names every file sees: the built-in functions, `stage`, `current`, and the
    primitive layers, looked up in the registry when used (so that primitives registered
    after import are visible)."""

    def __init__(self, fixed: dict[str, Value]) -> None:
        self.fixed = fixed
        self.prims: dict[str, PrimValue] = {}  # cache: kind → PrimValue of the registered entry
        self.known: dict | None = None

    def __getitem__(self, key: str) -> Value:
        value = self.lookup(key)
        if value is MISSING:
            raise KeyError(key)
        return value

    def lookup(self, key: str) -> Any:
        """The value of a built-in name, or ``MISSING`` (the fast path of every lookup)."""
        value = self.fixed.get(key, MISSING)
        if value is not MISSING:
            return value
        known = self.known
        if known is None:  # the registry's own dict: a lookup that loads no plugins
            known = self.known = getattr(PRIMITIVES, "_prims", {})
        prim = known.get(key)
        if prim is None:
            prim = PRIMITIVES.get(key)  # may load entry-point plugins
            if prim is None:
                return MISSING
        cached = self.prims.get(key)
        if cached is None or cached.prim is not prim:
            cached = self.prims[key] = PrimValue(prim)
        return cached

    def get(self, key: str, default: Any = None) -> Any:
        value = self.lookup(key)
        return default if value is MISSING else value

    def __contains__(self, key: object) -> bool:
        return key in self.fixed or key in PRIMITIVES

    def __iter__(self) -> Iterator[str]:
        yield from PRIMITIVES
        yield from (k for k in self.fixed if k not in PRIMITIVES)

    def __len__(self) -> int:
        return len(set(self.fixed) | set(PRIMITIVES))


def _builtin(name: str, fn: Callable, arity: tuple[int, int | None] | None = None) -> Builtin:
    """A built-in whose arity is declared, or read from ``fn``'s signature: the evaluator
    checks it before every call, so no built-in can be called with the wrong number."""
    if arity is None:
        params = inspect.signature(fn).parameters.values()
        if any(p.kind is p.VAR_POSITIONAL for p in params):
            raise TypeError(f"built-in `{name}` takes *args: declare its arity")
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        arity = (sum(p.default is p.empty for p in positional), len(positional))
    return Builtin(name, fn, arity)


def arity_error(fn: Builtin, given: int) -> str | None:
    """The message for calling ``fn`` with ``given`` arguments, or None if it takes them."""
    least, most = fn.arity
    if least <= given and (most is None or given <= most):
        return None
    if most is None:
        wants = f"at least {least}"
    elif least == most:
        wants = f"{least}"
    else:
        wants = f"{least} to {most}"
    plural = "s" * (wants != "1")
    return f"`{fn.name}` takes {wants} argument{plural}, got {given}"


#: The built-ins' values, by name.
_VALUES: dict[str, Value] = {
    "stage": STAGE,
    "current": CURRENT,
    "range": _builtin("range", _range, (1, 3)),
    "len": _builtin("len", _len),
    # min(list) or min(a, b, …)
    "min": _builtin("min", _minmax(min, "min"), (1, None)),
    "max": _builtin("max", _minmax(max, "max"), (1, None)),
    "sum": _builtin("sum", _sum),
    "abs": _builtin("abs", lambda v: abs(_num(v, "abs"))),
    "int": _builtin("int", _int),
    "float": _builtin("float", lambda v: float(_num(v, "float"))),
    "round": _builtin("round", lambda v: round(_num(v, "round"))),
    "log": _builtin("log", _log, (1, 2)),
    "log2": _builtin("log2", _log2),
    "ceil": _builtin("ceil", _rounding(math.ceil, "ceil")),
    "floor": _builtin("floor", _rounding(math.floor, "floor")),
}

# The names are the language's (resdsl.language, which the registry reserves): a name
# listed there without a value here fails at import, one here without the name is unused.
BUILTINS = BuiltinNames({name: _VALUES[name] for name in (*language.BUILTIN_VALUES, *language.BUILTIN_FUNCTIONS)})
