"""Scopes as class bodies: the analysis that groups a network's scopes into classes by
structure and works out each class's constructor parameters (see the package docstring)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple, Union

from ...ir import Attr, Network, Op, Role, Scope
from .layers import _call, _channels, _inplace_statement, _is_zero_init, _reads_width, _tensor_init, _typed
from .names import MODULE_NAMES, Namespace, _helper_names, camel, is_identifier


class Use(Enum):
    """How a class body uses one of its items."""

    LAYER = "layer"  # creates a layer's module and applies it
    CALL = "call"  # applies a module created earlier in the body again
    FUNC = "func"  # calls a function
    SUB = "sub"  # creates and applies a submodule (a child scope)

    @property
    def builds(self) -> bool:
        """The item creates a module in ``__init__``."""
        return self in (Use.LAYER, Use.SUB)


@dataclass
class Item:
    """One statement of a class body: a layer, a re-applied layer, a function, a submodule."""

    use: Use
    output: str  # the value it produces (an op name)
    inputs: tuple[str, ...]
    op: Op | None = None
    scope: Scope | None = None
    local: str | None = None  # attribute name, for layers and submodules
    shortcut: bool = False  # its value is a shortcut branch's (a naming hint: `shortcut`)
    group: str | None = None  # the moduleless scope it came from (option A's `downsample`)


# A class body's structure: scopes whose signatures are equal share a class.


@dataclass(frozen=True)
class LeafSig:
    """A layer, re-applied layer or function of a body."""

    use: Use
    local: str | None
    kind: str  # the op kind
    refs: tuple[str | int, ...]  # inputs: "input" or the index of the item that makes them
    shortcut: bool
    zero_init: bool
    statement: bool  # `out += y`, not `out = out + y`
    layout: tuple = ()  # the values of its call's structural arguments (`1.0 / x`, not `x / 1.0`)
    init: str | None = None  # a tensor attribute's initialisation (reset_parameters)


@dataclass(frozen=True)
class SubSig:
    """A submodule of a body: an ``nn.Sequential`` or an instance of a class."""

    local: str | None
    sequential: bool
    body: ClassSig
    refs: tuple[str | int, ...]
    shortcut: bool


@dataclass(frozen=True)
class ClassSig:
    role: Role
    definition: str
    items: tuple[LeafSig | SubSig, ...]

    def leaves(self) -> list[str]:
        """The op kinds in the body, nested bodies included, in order."""
        out: list[str] = []
        for item in self.items:
            out.extend(item.body.leaves() if isinstance(item, SubSig) else [item.kind])
        return out


class Position(NamedTuple):
    """A value a class body needs (a constructor or function argument, a submodule's
    parameter), for one instance."""

    value: Attr
    hint: str  # a name for it, should it become a parameter of its own
    channels: bool  # a channel count of a tensor in the dataflow
    input_width: bool  # the channel count of the tensor the instance reads


@dataclass(frozen=True)
class Literal:
    """A position written as a constant."""

    value: Attr


@dataclass(frozen=True)
class ParamRef:
    """A position written as a constructor parameter, ``name`` or ``name op k``."""

    name: str
    op: str | None = None  # "*" or "//"
    k: int | None = None


Form = Union[Literal, ParamRef]


@dataclass
class Param:
    name: str
    vector: tuple  # one value per instance
    channels: bool  # every position it gives is a channel count


@dataclass(eq=False)
class Cls:
    """A generated class: the scopes of one structure."""

    signature: ClassSig
    instances: list[Scope] = field(default_factory=list)
    name: str = ""
    params: list[Param] = field(default_factory=list)
    #: how each position of the body is written, in body order
    forms: list[Form] = field(default_factory=list)

    @property
    def definition(self) -> str:
        return self.signature.definition


def _relative(path: str, base: str) -> str:
    """``path`` below ``base``; dotted (``paths.0``) when it sits in a container."""
    local = path if not base else path[len(base) + 1:]
    if (base and not path.startswith(base + ".")) or not local:
        raise ValueError(f"module `{path}` is not inside `{base or 'the network'}`")
    return local


def _has_modules(net: Network, scope: Scope) -> bool:
    return any(net.op(n).module is not None for n in scope.op_names())


class Lowering:
    """Groups the network's scopes into classes and works out their parameters."""

    def __init__(self, net: Network):
        self.net = net
        self.items: dict[str, list[Item]] = {}  # scope path → its body
        self.classes: dict[ClassSig, Cls] = {}
        self.class_of: dict[str, Cls] = {}  # scope path → class
        self.sequential: dict[str, bool] = {}
        self._signature(net.root)
        self._name_classes()

    # -- bodies and signatures

    def body(self, scope: Scope) -> list[Item]:
        if scope.path not in self.items:
            out: list[Item] = []
            seen: set[str] = set()
            self._flatten(scope, scope.path, out, seen, False, None)
            self._check_reads(scope, out)  # the whole body: inlined scopes read their caller's values
            self.items[scope.path] = out
        return self.items[scope.path]

    def _flatten(self, scope: Scope, base: str, out: list[Item], seen: set[str], shortcut: bool,
                 group: str | None) -> None:
        for entry in scope.items:
            if isinstance(entry, str):
                op = self.net.op(entry)
                sc = shortcut and entry == scope.output
                if op.module is None:
                    out.append(Item(Use.FUNC, op.name, op.inputs, op=op, shortcut=sc, group=group))
                else:
                    local = _relative(op.module, base)
                    out.append(Item(Use.CALL if local in seen else Use.LAYER, op.name, op.inputs, op=op,
                                    local=local, shortcut=sc, group=group))
                    seen.add(local)
            elif entry.inline:  # an unnamed stem: its layers belong to the parent
                self._flatten(entry, base, out, seen, False, group)
            elif not _has_modules(self.net, entry):  # e.g. option A: functions only
                self._flatten(entry, base, out, seen, entry.role is Role.SHORTCUT, entry.name)
            else:
                local = _relative(entry.path, base)
                out.append(Item(Use.SUB, entry.output, (entry.input,), scope=entry, local=local,
                                shortcut=entry.role is Role.SHORTCUT))
                seen.add(local)

    def _check_reads(self, scope: Scope, items: list[Item]) -> None:
        inside = {scope.input} | {i.output for i in items}
        for item in items:
            for name in item.inputs:
                if name not in inside:
                    raise ValueError(f"`{scope.path or scope.name}` reads `{name}`, which is neither its "
                                     "input nor computed inside it; it cannot be a module of its own")

    def is_sequential(self, scope: Scope) -> bool:
        """A chain of submodules named 0, 1, 2…: rendered as ``nn.Sequential``."""
        if scope.path not in self.sequential:
            items = self.body(scope)
            ok = bool(items) and all(i.use.builds for i in items)
            previous = scope.input
            for n, item in enumerate(items if ok else []):
                ok = ok and item.local == str(n) and item.inputs == (previous,)
                previous = item.output
            self.sequential[scope.path] = ok and previous == scope.output
        return self.sequential[scope.path]

    def _signature(self, scope: Scope) -> ClassSig:
        items = self.body(scope)
        index: dict[str, str | int] = {scope.input: "input"} | {item.output: n for n, item in enumerate(items)}
        sig: list[LeafSig | SubSig] = []
        for item in items:
            refs = tuple(index.get(i, i) for i in item.inputs)
            if item.use is Use.SUB:
                child = item.scope
                sig.append(SubSig(item.local, self.is_sequential(child), self._signature(child), refs,
                                  item.shortcut))
            else:
                # `out += y` and `out = out + y` are different statements: different classes
                statement = item.use is Use.FUNC and _inplace_statement(item.op)
                layout = ()
                if item.use is Use.FUNC:
                    shapes = [self.net.shape_of(i) for i in item.op.inputs]
                    layout = tuple(a.value(item.op, shapes) for a in _call(item.op, True).args if a.structural)
                sig.append(LeafSig(item.use, item.local, item.op.kind, refs, item.shortcut,
                                   _is_zero_init(item.op), statement, layout, _tensor_init(item.op)))
        signature = ClassSig(scope.role, scope.definition, tuple(sig))
        if scope is not self.net.root and not self.is_sequential(scope):
            cls = self.classes.setdefault(signature, Cls(signature))
            cls.instances.append(scope)
            self.class_of[scope.path] = cls
        return signature

    # -- names

    def _name_classes(self) -> None:
        by_definition: dict[str, list[Cls]] = {}
        for cls in self.classes.values():
            by_definition.setdefault(cls.definition, []).append(cls)
        names = Namespace((*MODULE_NAMES, *_helper_names()))
        self.names = names
        for definition, group in by_definition.items():
            base = camel(definition)
            locals_ = [self._locals(cls) for cls in group]
            smallest = min(range(len(group)), key=lambda n: (len(locals_[n]), n))
            named: dict[str, Cls] = {}
            for cls, ls in zip(group, locals_):
                name = base + "".join(camel(n) for n in ls if n not in locals_[smallest])
                if name in named:  # same layer names, other layer kinds: say which
                    name += camel(_first_difference(cls.signature, named[name].signature))
                named[name] = cls
                cls.name = names.fresh(name)

    def _locals(self, cls: Cls) -> list[str]:
        """The names a body's layers and submodules go by, to tell structures apart."""
        out: list[str] = []
        for item in self.body(cls.instances[0]):
            name = item.local if item.use.builds else item.group
            if name and name not in out:
                out.append(name)
        return out

    # -- positions (the values a class body needs) and parameters

    def positions(self, scope: Scope) -> list[Position]:
        """Every value ``scope``'s body needs, in order."""
        out: list[Position] = []
        for item in self.body(scope):
            out.extend(self._item_positions(scope, item, ""))
        return out

    def _item_positions(self, scope: Scope, item: Item, prefix: str) -> Iterator[Position]:
        if item.use is Use.CALL:
            return
        if item.use is Use.SUB:
            child = item.scope
            if self.is_sequential(child):
                for sub in self.body(child):
                    yield from self._item_positions(child, sub, f"{prefix}{item.local}_")
            else:
                cls = self.params_of(self.class_of[child.path])
                n = cls.instances.index(child)
                for p in cls.params:
                    yield Position(p.vector[n], f"{prefix}{item.local}_{p.name}", p.channels, False)
            return
        op = item.op
        shapes = [self.net.shape_of(i) for i in op.inputs]
        for arg in _call(op, item.use is Use.FUNC).args:
            value = arg.value(op, shapes)
            width = _reads_width(arg) and op.inputs[0] == scope.input and not prefix
            hint = "in_channels" if width else f"{prefix}{item.local or op.kind}_{arg.key}"
            yield Position(value, hint, _reads_width(arg) or _channels(value, op, shapes), width)

    def params_of(self, cls: Cls) -> Cls:
        if cls.forms or not cls.instances:
            return cls
        per_instance = [self.positions(s) for s in cls.instances]
        first = per_instance[0]
        vectors = [tuple(_typed(p[j].value) for p in per_instance) for j in range(len(first))]
        channels = [all(p[j].channels for p in per_instance) for j in range(len(first))]
        args = _arg_vectors(cls.instances)
        elsewhere = {v for v, pos in zip(vectors, first) if not pos.input_width}
        # constructor parameters must not shadow the module names `__init__` reads (`nn`,
        # the block classes)
        names = Namespace(("self", "x", *self.names.used()))
        chosen: dict[tuple, str] = {}
        params: dict[str, tuple] = {}
        widths: set[str] = set()  # parameters that are the instance's input width
        forms: list[Form] = []

        def param(name: str, vector: tuple) -> str:
            if vector in chosen:
                return chosen[vector]
            if name in names:
                name = names.fresh(name)
            else:
                names.claim(name) if is_identifier(name) else (name := names.fresh(name))
            chosen[vector] = name
            params[name] = vector
            return name

        for vector, pos, channel in zip(vectors, first, channels):
            if len(set(vector)) == 1:
                forms.append(Literal(vector[0][1]))
                continue
            form = None
            if vector in chosen:
                form = ParamRef(chosen[vector])
            for arg, avec in args.items():
                if form is None and avec == vector and is_identifier(arg):
                    form = ParamRef(param(arg, avec))
            if form is None and channel and (not pos.input_width or vector in elsewhere):
                # a block's input width reads better as its own parameter than as `planes * 2`,
                # unless it equals another width of the block (`planes * 4` in a bottleneck)
                form = _multiple(vector, args, param, divide=not pos.input_width)
            if form is None:
                form = ParamRef(param(pos.hint, vector))
                if pos.input_width:
                    widths.add(form.name)
            forms.append(form)
        cls.forms = forms
        # a parameter is a channel count when every position it gives is one
        uses: dict[str, list[bool]] = {}
        for form, channel in zip(forms, channels):
            if isinstance(form, ParamRef):
                uses.setdefault(form.name, []).append(channel)
        order = {a: n for n, a in enumerate(args)}
        ranked = sorted(params, key=lambda n: (-1 if n in widths else order.get(n, len(order)),
                                               list(params).index(n)))
        cls.params = [Param(n, tuple(v for _, v in params[n]), all(uses[n])) for n in ranked]
        return cls


def _first_difference(a: ClassSig, b: ClassSig) -> str:
    for x, y in zip(a.leaves(), b.leaves()):
        if x != y:
            return x
    return "variant"


def _arg_vectors(instances: list[Scope]) -> dict[str, tuple]:
    out = {}
    for key, _ in instances[0].args:
        values = [dict(s.args).get(key) for s in instances]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = tuple(_typed(v) for v in values)
    return out


def _multiple(vector: tuple, args: dict[str, tuple], param, divide: bool) -> ParamRef | None:
    """``arg * k`` or ``arg // k`` when every instance's value is that multiple of a varying arg."""
    if not all(t == "int" for t, _ in vector):
        return None
    values = [v for _, v in vector]
    for arg, avec in args.items():
        base = [v for _, v in avec]
        if not is_identifier(arg) or len(set(base)) == 1 or not all(isinstance(b, int) and b > 0 for b in base):
            continue
        if values[0] % base[0] == 0:
            k = values[0] // base[0]
            if k > 1 and all(v == b * k for v, b in zip(values, base)):
                return ParamRef(param(arg, avec), "*", k)
        elif divide and base[0] % values[0] == 0:
            k = base[0] // values[0]
            if k > 1 and all(v * k == b for v, b in zip(values, base)):
                return ParamRef(param(arg, avec), "//", k)
    return None


def _dependency_order(low: Lowering, root: Scope) -> list[Cls]:
    """Classes in first-use order, each after the classes it builds (children first)."""
    out: list[Cls] = []

    def visit(scope: Scope) -> None:
        for item in low.body(scope):
            if item.use is Use.SUB:
                visit(item.scope)
        cls = low.class_of.get(scope.path)
        if cls is not None and all(c is not cls for c in out):
            out.append(cls)

    visit(root)
    return out
