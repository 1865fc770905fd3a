"""Binding a call's arguments to the parameters of a definition or a primitive."""

from __future__ import annotations

from ..diagnostics import Span, did_you_mean
from ..errors import E
from ..primitives import REQUIRED, Primitive
from .values import DefValue, PrimValue, Tensor, Value, type_name


class Binding:
    """The part of :class:`~resdsl.elaborate.Elaborator` that binds arguments."""

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
                    raise self.fail(E.TOO_MANY_ARGUMENTS, f"`{value.name}` takes {len(names)} positional "
                                    f"argument{'s' if len(names) != 1 else ''}, got more", aspan,
                                    hint=f"its parameters: {', '.join(names) or 'none'}")
                key = names[pos]
                pos += 1
            elif key not in names:
                hint = did_you_mean(key, names) or (
                    f"`{value.name}` takes: {', '.join(names)}" if names else
                    f"`{value.name}` takes no arguments")
                raise self.fail(E.UNKNOWN_PARAMETER, f"`{value.name}` has no parameter `{key}`", aspan, hint=hint)
            if key in given:
                raise self.fail(E.ARGUMENT_TWICE, f"argument `{key}` given twice", aspan)
            if is_def and (type(v) is Tensor or (type(v) is tuple and v and type(v[0]) is Tensor)):
                raise self.fail(E.WRONG_TYPE, f"`{value.name}` cannot take a tensor as an argument", aspan,
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
                raise self.fail(E.MISSING_ARGUMENT, f"`{value.name}` needs the argument `{p.name}`", span,
                                hint=f"pass it: `{value.name}(..., {p.name} = ...)`")
            env[p.name] = out[p.name]
        return out

    def bind_prim(self, prim: Primitive, bound: dict[str, Value], given: dict[str, Span],
                  span: Span) -> dict[str, Value]:
        """A primitive's arguments checked against its parameters' types and ranges, with
        defaults for the rest."""
        out: dict[str, Value] = {}
        for p in prim.params:
            where = given.get(p.name, span)
            if p.name not in bound:
                if p.default is REQUIRED:
                    raise self.fail(E.MISSING_ARGUMENT, f"`{prim.kind}` needs the argument `{p.name}`", span,
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
                    raise self.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be a number, got "
                                    f"{type_name(v)}", where)
                v = float(v)
            elif p.type == "bool" and not isinstance(v, bool):
                raise self.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be true or false, got "
                                f"{type_name(v)}", where)
            elif p.type == "ints":  # a list of integers (split's sizes)
                if not isinstance(v, tuple):
                    raise self.fail(E.WRONG_TYPE, f"`{p.name}` of `{prim.kind}` must be a list of integers, "
                                    f"got {type_name(v)}", where)
                v = tuple(self.as_int(x, f"an entry of `{p.name}`", where) for x in v)
            if p.type == "ints":
                out[p.name] = v
                continue
            if p.lo is not None and not (p.lo <= v <= p.hi):
                code = E.OUT_OF_RANGE if v < p.lo else E.TOO_LARGE
                what = "too small" if v < p.lo else "too large"
                raise self.fail(code, f"`{p.name}` of `{prim.kind}` is {what}: {v}", where,
                                hint=f"it must lie between {p.lo:g} and {p.hi:g}")
            out[p.name] = v
        return out
