"""Torch back end, as source: a standalone, readable PyTorch file for a checked network.

The file is rendered from the Jinja2 templates in ``templates/torch/``. It holds one
class per block structure, each with its ``forward`` written out, a top-level class for
the network and a constructor function; it imports torch only. Module names, and so
``state_dict`` keys, are the spec's; modules are created in the order the in-process
module (:mod:`resdsl.backends.torch_module`) creates them and initialised the same way,
so for the same seed both give the same weights, and for the same weights the same
outputs.

Blocks become classes by *structure*: instances of one definition whose layers, wiring
and zero-init marks are equal share a class, and the values that differ between them
(channels, stride, drop-path rate…) become constructor parameters, named after the
block's spec arguments where a value equals one (``planes``, ``stride``) or a multiple
of one (``planes * 4``). A definition with several structures (a block with and without
a projection shortcut) gives one class per structure (``Bottleneck``,
``BottleneckDownsample``), so every ``forward`` is straight-line code with no branch
that is dead for some instances.
"""

from __future__ import annotations

import builtins
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from .. import __version__
from ..diagnostics import UsageError
from ..ir import Attr, Network, Op, Scope
from ..resources import data_path
from ..stats import fmt_shape

# ---------------------------------------------------------------- identifiers

#: Module-level names the generated file defines or reads (imports, helpers, builtins such
#: as `isinstance`, `getattr`, `super`, `print`): no class, function, parameter or local
#: variable the spec names may take one, or the file would shadow what it relies on.
MODULE_NAMES = ("DropPath", "drop_path", "zero_pad", "torch", "nn", "F", "camel", "model",
                *dir(builtins))


def is_identifier(name: str) -> bool:
    """A name usable as a Python identifier: not a keyword, soft keyword or builtin constant,
    and not one Python mangles inside a class body (``__x`` becomes ``_Cls__x``)."""
    return name.isidentifier() and not keyword.iskeyword(name) and not keyword.issoftkeyword(name) \
        and not _mangled(name)


def _mangled(name: str) -> bool:
    return name.startswith("__") and not name.endswith("__")


class Namespace:
    """Identifiers in one Python scope: refuses keywords, non-identifiers and clashes."""

    def __init__(self, reserved: tuple[str, ...] = ()):
        self._used: set[str] = set(reserved)

    def __contains__(self, name: str) -> bool:
        return name in self._used

    def used(self) -> frozenset[str]:
        """Every name taken so far (reserved ones included)."""
        return frozenset(self._used)

    def claim(self, name: str) -> str:
        """Take ``name`` exactly; raise ``ValueError`` if it is not a free identifier."""
        if not is_identifier(name):
            raise ValueError(f"`{name}` is not a usable Python identifier")
        if name in self._used:
            raise ValueError(f"`{name}` is already defined")
        self._used.add(name)
        return name

    def fresh(self, base: str) -> str:
        """``base`` made an identifier (``0`` → ``m0``), numbered if taken (``out_2``)."""
        base = re.sub(r"\W", "_", base) or "value"
        if base.startswith("__"):  # `__x` (or `__x___2`) would be `_Cls__x` in a class body
            base = f"p{base}"
        if not is_identifier(base):
            base = f"m{base}" if base[0].isdigit() else f"{base}_"
        name, n = base, 1
        while name in self._used:
            n += 1
            name = f"{base}_{n}"
        return self.claim(name)


def camel(name: str) -> str:
    """``preact_bottleneck`` → ``PreactBottleneck``; a digit-led part keeps its underscore."""
    out = ""
    for part in re.split(r"[^0-9A-Za-z]+", name):
        if not part:
            continue
        out += ("_" + part if part[0].isdigit() and out else part[0].upper() + part[1:])
    return out if out and out[0].isalpha() else f"Net{out}"


def attr_ref(owner: str, name: str) -> str:
    """Attribute access that also works for module names like ``0`` or ``class``."""
    return f"{owner}.{name}" if is_identifier(name) else f"getattr({owner}, {name!r})"


def path_ref(owner: str, path: str) -> str:
    parts = path.split(".")
    if all(is_identifier(p) for p in parts):
        return ".".join([owner, *parts])
    return f"{owner}.get_submodule({path!r})"


# ---------------------------------------------------------------- layer vocabularies

_NODEFAULT = object()

#: op kind → (constructor, [(attribute, keyword or None for positional, torch default)]).
#: ``in_channels``/``num_features``/``in_features`` come from the op's input shape.
CONSTRUCTORS: dict[str, tuple[str, list[tuple[str, str | None, object]]]] = {
    "conv": ("nn.Conv2d", [("in_channels", None, _NODEFAULT), ("out_channels", None, _NODEFAULT),
                           ("kernel_size", "kernel_size", _NODEFAULT), ("stride", "stride", 1),
                           ("padding", "padding", 0), ("dilation", "dilation", 1),
                           ("groups", "groups", 1), ("bias", "bias", True)]),
    "batchnorm": ("nn.BatchNorm2d", [("num_features", None, _NODEFAULT), ("eps", "eps", 1e-5),
                                     ("momentum", "momentum", 0.1)]),
    "linear": ("nn.Linear", [("in_features", None, _NODEFAULT), ("out_features", None, _NODEFAULT),
                             ("bias", "bias", True)]),
    "relu": ("nn.ReLU", []), "relu6": ("nn.ReLU6", []), "gelu": ("nn.GELU", []),
    "silu": ("nn.SiLU", []), "hardswish": ("nn.Hardswish", []), "sigmoid": ("nn.Sigmoid", []),
    "tanh": ("nn.Tanh", []),
    "leaky_relu": ("nn.LeakyReLU", [("negative_slope", None, _NODEFAULT)]),
    "maxpool": ("nn.MaxPool2d", [("kernel_size", None, _NODEFAULT), ("stride", "stride", _NODEFAULT),
                                 ("padding", "padding", 0), ("dilation", "dilation", 1),
                                 ("ceil_mode", "ceil_mode", False)]),
    "avgpool": ("nn.AvgPool2d", [("kernel_size", None, _NODEFAULT), ("stride", "stride", _NODEFAULT),
                                 ("padding", "padding", 0), ("ceil_mode", "ceil_mode", False),
                                 ("count_include_pad", "count_include_pad", True)]),
    "global_avgpool": ("nn.AdaptiveAvgPool2d", [("output_size", None, _NODEFAULT)]),
    "flatten": ("nn.Flatten", [("start_dim", None, _NODEFAULT)]),
    "dropout": ("nn.Dropout", [("p", None, _NODEFAULT)]),
    "drop_path": ("DropPath", [("p", None, _NODEFAULT)]),
    "identity": ("nn.Identity", []),
}

#: Functional (unnamed) ops: op kind → (call, [(attribute, keyword or None, default)]).
#: The call's first argument is the op's input; ``training`` ops also get ``self.training``.
FUNCTIONS: dict[str, tuple[str, list[tuple[str, str | None, object]]]] = {
    "relu": ("F.relu", []), "relu6": ("F.relu6", []), "gelu": ("F.gelu", []),
    "silu": ("F.silu", []), "hardswish": ("F.hardswish", []), "sigmoid": ("torch.sigmoid", []),
    "tanh": ("torch.tanh", []),
    "leaky_relu": ("F.leaky_relu", [("negative_slope", None, _NODEFAULT)]),
    "maxpool": ("F.max_pool2d", CONSTRUCTORS["maxpool"][1]),
    "avgpool": ("F.avg_pool2d", CONSTRUCTORS["avgpool"][1]),
    "global_avgpool": ("F.adaptive_avg_pool2d", [("output_size", None, _NODEFAULT)]),
    "flatten": ("torch.flatten", [("start_dim", None, _NODEFAULT)]),
    "zeropad": ("zero_pad", [("stride", "stride", _NODEFAULT),
                             ("out_channels", "out_channels", _NODEFAULT)]),
    "dropout": ("F.dropout", [("p", None, _NODEFAULT)]),
    "drop_path": ("drop_path", [("p", None, _NODEFAULT)]),
}
_TRAINING = {"dropout", "drop_path"}
_FIXED = {"global_avgpool": {"output_size": 1}, "flatten": {"start_dim": 1}}
_CHANNELS = {"in_channels", "out_channels", "num_features", "in_features", "out_features"}


def _value(net: Network, op: Op, key: str) -> Attr:
    if key in ("in_channels", "num_features", "in_features") and op.kind != "zeropad":
        return net.shape_of(op.inputs[0])[0]
    if key in _FIXED.get(op.kind, {}):
        return _FIXED[op.kind][key]
    return op.attr(key)


# ---------------------------------------------------------------- scopes as class bodies


@dataclass
class Item:
    """One statement of a class body: a layer, a re-applied layer, a function, a submodule."""

    kind: str  # "layer" | "call" | "func" | "sub"
    output: str  # the value it produces (an op name)
    inputs: tuple[str, ...]
    op: Op | None = None
    scope: Scope | None = None
    local: str | None = None  # attribute name, for layers and submodules
    role: str | None = None  # a naming hint for the value ("shortcut")
    group: str | None = None  # the moduleless scope it came from (option A's `downsample`)


@dataclass
class Param:
    name: str
    vector: tuple  # one value per instance


@dataclass(eq=False)
class Cls:
    """A generated class: the scopes of one structure."""

    signature: tuple
    definition: str
    kind: str
    instances: list[Scope] = field(default_factory=list)
    name: str = ""
    params: list[Param] = field(default_factory=list)
    #: per position: ("lit", value) or ("param", name, op, k) meaning ``name op k``
    forms: list[tuple] = field(default_factory=list)


def _relative(path: str, base: str) -> str:
    local = path if not base else path[len(base) + 1:]
    if (base and not path.startswith(base + ".")) or "." in local or not local:
        raise ValueError(f"module `{path}` is not a direct child of `{base or 'the network'}`")
    return local


def _has_modules(net: Network, scope: Scope) -> bool:
    return any(net.op(n).module is not None for n in scope.op_names())


class Lowering:
    """Groups the network's scopes into classes and works out their parameters."""

    def __init__(self, net: Network):
        self.net = net
        self.items: dict[str, list[Item]] = {}  # scope path → its body
        self.classes: dict[tuple, Cls] = {}
        self.class_of: dict[str, Cls] = {}  # scope path → class
        self.sequential: dict[str, bool] = {}
        self._signature(net.root)
        self._name_classes()

    # -- bodies and signatures

    def body(self, scope: Scope) -> list[Item]:
        if scope.path not in self.items:
            out: list[Item] = []
            seen: set[str] = set()
            self._flatten(scope, scope.path, out, seen, None, None)
            self._check_reads(scope, out)  # the whole body: inlined scopes read their caller's values
            self.items[scope.path] = out
        return self.items[scope.path]

    def _flatten(self, scope: Scope, base: str, out: list[Item], seen: set[str], role: str | None,
                 group: str | None) -> None:
        for entry in scope.items:
            if isinstance(entry, str):
                op = self.net.op(entry)
                r = role if entry == scope.output else None
                if op.module is None:
                    out.append(Item("func", op.name, op.inputs, op=op, role=r, group=group))
                else:
                    local = _relative(op.module, base)
                    out.append(Item("call" if local in seen else "layer", op.name, op.inputs, op=op,
                                    local=local, role=r, group=group))
                    seen.add(local)
            elif entry.inline:  # an unnamed stem: its layers belong to the parent
                self._flatten(entry, base, out, seen, None, group)
            elif not _has_modules(self.net, entry):  # e.g. option A: functions only
                self._flatten(entry, base, out, seen, "shortcut" if entry.kind == "shortcut" else None,
                              entry.name)
            else:
                local = _relative(entry.path, base)
                out.append(Item("sub", entry.output, (entry.input,), scope=entry, local=local,
                                role="shortcut" if entry.kind == "shortcut" else None))
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
            ok = bool(items) and all(i.kind in ("layer", "sub") for i in items)
            previous = scope.input
            for n, item in enumerate(items if ok else []):
                ok = ok and item.local == str(n) and item.inputs == (previous,)
                previous = item.output
            self.sequential[scope.path] = ok and previous == scope.output
        return self.sequential[scope.path]

    def _signature(self, scope: Scope) -> tuple:
        items = self.body(scope)
        index = {scope.input: "input"} | {item.output: n for n, item in enumerate(items)}
        sig = []
        for item in items:
            refs = tuple(index.get(i, i) for i in item.inputs)
            if item.kind == "sub":
                child = item.scope
                inner = ("seq" if self.is_sequential(child) else "cls", self._signature(child))
                sig.append(("sub", item.local, inner, refs, item.role))
            else:
                zero = item.op.kind == "batchnorm" and bool(item.op.attr("zero_init"))
                sig.append((item.kind, item.local, item.op.kind, refs, item.role, zero))
        signature = (scope.kind, scope.definition, tuple(sig))
        if scope is not self.net.root and not self.is_sequential(scope):
            cls = self.classes.setdefault(signature, Cls(signature, scope.definition, scope.kind))
            cls.instances.append(scope)
            self.class_of[scope.path] = cls
        return signature

    # -- names

    def _name_classes(self) -> None:
        by_definition: dict[str, list[Cls]] = {}
        for cls in self.classes.values():
            by_definition.setdefault(cls.definition, []).append(cls)
        names = Namespace(MODULE_NAMES)
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
            name = item.local if item.kind in ("layer", "sub") else item.group
            if name and name not in out:
                out.append(name)
        return out

    # -- positions (the values a class body needs) and parameters

    def positions(self, scope: Scope) -> list[tuple[Attr, str, bool]]:
        """(value, hint name, channel-like) of every value ``scope``'s body needs, in order."""
        out: list[tuple[Attr, str, bool]] = []
        for item in self.body(scope):
            out.extend(self._item_positions(scope, item, ""))
        return out

    def _item_positions(self, scope: Scope, item: Item, prefix: str) -> Iterator[tuple[Attr, str, bool]]:
        if item.kind == "call":
            return
        if item.kind == "sub":
            child = item.scope
            if self.is_sequential(child):
                for sub in self.body(child):
                    yield from self._item_positions(child, sub, f"{prefix}{item.local}_")
            else:
                cls = self.params_of(self.class_of[child.path])
                n = cls.instances.index(child)
                for p in cls.params:
                    yield p.vector[n], f"{prefix}{item.local}_{p.name}", _is_channels(p.name)
            return
        op = item.op
        table = FUNCTIONS if item.kind == "func" else CONSTRUCTORS
        if op.kind not in table:
            if item.kind == "func" and op.kind in ("add", "multiply", "identity"):
                return
            raise ValueError(f"no torch {'function' if item.kind == 'func' else 'module'} for `{op.kind}`")
        for key, _, _ in table[op.kind][1]:
            reads_input = key in ("in_channels", "num_features", "in_features") and op.inputs[0] == scope.input
            hint = "in_channels" if reads_input and not prefix else f"{prefix}{item.local or op.kind}_{key}"
            yield _value(self.net, op, key), hint, key in _CHANNELS

    def params_of(self, cls: Cls) -> Cls:
        if cls.forms or not cls.instances:
            return cls
        per_instance = [self.positions(s) for s in cls.instances]
        hints = [(h, ch) for _, h, ch in per_instance[0]]
        vectors = [tuple(_typed(p[j][0]) for p in per_instance) for j in range(len(hints))]
        args = _arg_vectors(cls.instances)
        elsewhere = {v for v, (h, _) in zip(vectors, hints) if h != "in_channels"}
        # constructor parameters must not shadow the module names `__init__` reads (`nn`,
        # the block classes)
        names = Namespace(("self", "x", *self.names.used()))
        chosen: dict[tuple, str] = {}
        params: dict[str, tuple] = {}
        forms: list[tuple] = []

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

        for vector, (hint, channels) in zip(vectors, hints):
            if len(set(vector)) == 1:
                forms.append(("lit", vector[0][1]))
                continue
            form = None
            if vector in chosen:
                form = ("param", chosen[vector], None, None)
            for arg, avec in args.items():
                if form is None and avec == vector and is_identifier(arg):
                    form = ("param", param(arg, avec), None, None)
            if form is None and channels and (hint != "in_channels" or vector in elsewhere):
                # a block's input width reads better as its own parameter than as `planes * 2`,
                # unless it equals another width of the block (`planes * 4` in a bottleneck)
                form = _multiple(vector, args, chosen, param, divide=hint != "in_channels")
            if form is None:
                form = ("param", param(hint, vector), None, None)
            forms.append(form)
        cls.forms = forms
        order = {"in_channels": -1} | {a: n for n, a in enumerate(args)}
        ranked = sorted(params, key=lambda n: (order.get(n, len(order)), list(params).index(n)))
        cls.params = [Param(n, tuple(v for _, v in params[n])) for n in ranked]
        return cls


def _leaves(signature: tuple) -> list[str]:
    """The op kinds in a class signature, nested bodies included, in order."""
    out: list[str] = []
    for item in signature[2]:
        if item[0] == "sub":
            out.extend(_leaves(item[2][1]))
        else:
            out.append(item[2])
    return out


def _first_difference(a: tuple, b: tuple) -> str:
    for x, y in zip(_leaves(a), _leaves(b)):
        if x != y:
            return x
    return "variant"


def _typed(value: Attr) -> tuple[str, Attr]:
    # True == 1 in Python: compare values with their types
    return (type(value).__name__, value)


def _is_channels(name: str) -> bool:
    return name.endswith(("channels", "features", "planes", "width"))


def _arg_vectors(instances: list[Scope]) -> dict[str, tuple]:
    out = {}
    for key, _ in instances[0].args:
        values = [dict(s.args).get(key) for s in instances]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = tuple(_typed(v) for v in values)
    return out


def _multiple(vector: tuple, args: dict[str, tuple], chosen: dict, param, divide: bool) -> tuple | None:
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
                return ("param", param(arg, avec), "*", k)
        elif divide and base[0] % values[0] == 0:
            k = base[0] // values[0]
            if k > 1 and all(v * k == b for v, b in zip(values, base)):
                return ("param", param(arg, avec), "//", k)
    return None


# ---------------------------------------------------------------- rendering


@dataclass
class ClassView:
    """What the template needs for one class."""

    name: str
    doc: str
    params: list[str]
    init: list[str]
    forward: list[str]
    returns: str


class Renderer:
    def __init__(self, net: Network, low: Lowering):
        self.net = net
        self.low = low
        self.uses: set[str] = set()

    def position(self, form: tuple, ref) -> str:
        if form[0] == "lit":
            return repr(form[1])
        _, name, op, k = form
        return ref(name) if op is None else f"{ref(name)} {op} {k}"

    def call_args(self, spec: list, forms: Iterator[tuple], ref) -> list[str]:
        parts = []
        for (_, kw, default), form in zip(spec, forms):
            if kw is not None and default is not _NODEFAULT and form[0] == "lit" and \
                    _typed(form[1]) == _typed(default):
                continue
            text = self.position(form, ref)
            parts.append(text if kw is None else f"{kw}={text}")
        return parts

    def constructor(self, scope: Scope, item: Item, forms: Iterator[tuple], ref, indent: str) -> str:
        """The expression that builds ``item``'s module, consuming its positions from ``forms``."""
        if item.kind == "sub":
            child = item.scope
            if self.low.is_sequential(child):
                elements = [self.constructor(child, sub, forms, ref, indent + "    ")
                            for sub in self.low.body(child)]
                return _sequential(elements, indent)
            cls = self.low.class_of[child.path]
            args = [f"{p.name}={self.position(next(forms), ref)}" for p in cls.params]
            return f"{cls.name}({', '.join(args)})"
        name, spec = CONSTRUCTORS[item.op.kind]
        if item.op.kind == "drop_path":
            self.uses.add("drop_path")
        args = ", ".join(self.call_args(spec, forms, ref))
        if len(indent) + len(item.local) + len(name) + len(args) + 10 > 110:  # as `ruff format` wraps
            return f"{name}(\n{indent}    {args}\n{indent})"
        return f"{name}({args})"

    def render_class(self, scope: Scope, name: str, forms: list[tuple], params: list[str],
                     doc: str) -> ClassView:
        items = self.low.body(scope)
        attrs = Namespace(("training",))
        for item in items:
            if item.local is not None and is_identifier(item.local) and item.local not in attrs:
                attrs.claim(item.local)
        stored: dict[str, str] = {}

        def init_ref(p: str) -> str:
            return p

        def forward_ref(p: str) -> str:
            if p not in stored:
                stored[p] = attrs.fresh(p)
            return f"self.{stored[p]}"

        # positions are consumed in body order: constructors in __init__, function
        # arguments in forward
        it = iter(forms)
        init: list[str] = []
        calls: dict[int, list[str]] = {}
        for n, item in enumerate(items):
            if item.kind in ("layer", "sub"):
                expr = self.constructor(scope, item, it, init_ref, "        ")
                if is_identifier(item.local):
                    init.append(f"self.{item.local} = {expr}")
                else:
                    init.append(f"self.add_module({item.local!r}, {expr})")
            elif item.kind == "func" and item.op.kind in FUNCTIONS:
                spec = FUNCTIONS[item.op.kind][1]
                calls[n] = self.call_args(spec, it, forward_ref)
        forward = self.forward(scope, items, calls)
        init = [f"self.{attr} = {p}" for p, attr in stored.items()] + init
        return ClassView(name, doc, params, init, forward[0], forward[1])

    def forward(self, scope: Scope, items: list[Item], calls: dict[int, list[str]]) -> tuple[list[str], str]:
        alias: dict[str, str] = {}

        def resolve(v: str) -> str:
            while v in alias:
                v = alias[v]
            return v

        for item in items:
            if item.kind == "func" and item.op.kind == "identity":
                alias[item.output] = item.inputs[0]
        last_use: dict[str, int] = {}
        for n, item in enumerate(items):
            for v in item.inputs:
                last_use[resolve(v)] = n
        last_use[resolve(scope.output)] = len(items)
        var = {scope.input: "x"}
        live = {"x": scope.input}
        lines = []
        for n, item in enumerate(items):
            if item.output in alias:
                continue
            ins = [var[resolve(v)] for v in item.inputs]
            for name, value in list(live.items()):
                if last_use.get(value, -1) <= n:
                    del live[name]
            first = resolve(item.inputs[0])
            if item.role == "shortcut":
                target = _fresh_var("shortcut", live, self.low.names)
            elif var[first] not in live:
                target = var[first]
            elif "out" not in live:
                target = "out"
            else:
                target = _fresh_var(item.local or item.op.kind, live, self.low.names)
            live[target] = item.output
            var[item.output] = target
            lines.append(f"{target} = {self.expression(item, ins, calls.get(n, []))}")
        return lines, var[resolve(scope.output)]

    def expression(self, item: Item, ins: list[str], args: list[str]) -> str:
        if item.kind in ("layer", "call", "sub"):
            return f"{attr_ref('self', item.local)}({ins[0]})"
        kind = item.op.kind
        if kind == "add":
            return " + ".join(ins)
        if kind == "multiply":
            return " * ".join(ins)
        function = FUNCTIONS[kind][0]
        if kind in ("zeropad", "drop_path"):
            self.uses.add(kind)
        if kind in ("zeropad", "drop_path", "dropout", "maxpool", "avgpool", "leaky_relu",
                    "global_avgpool", "flatten", "relu", "relu6", "gelu", "silu", "hardswish",
                    "sigmoid", "tanh"):
            extra = ["self.training"] if kind in _TRAINING else []
            return f"{function}({', '.join([ins[0], *args, *extra])})"
        raise ValueError(f"no torch function for `{kind}`")


def _annotation(values: tuple) -> str:
    types = sorted({type(v).__name__ for v in values})
    return types[0] if len(types) == 1 else " | ".join(types)


def _fresh_var(base: str, live: dict[str, str], module: Namespace) -> str:
    # a local named `F`, `torch` or after a block class would hide it from later lines
    ns = Namespace((*live, "self", *module.used()))
    return ns.fresh(base)


def _sequential(elements: list[str], indent: str) -> str:
    """``nn.Sequential(...)``, one element a line, runs of equal elements as a loop."""
    runs: list[tuple[str, int]] = []
    for e in elements:
        if runs and runs[-1][0] == e:
            runs[-1] = (e, runs[-1][1] + 1)
        else:
            runs.append((e, 1))
    parts = [e if count == 1 else f"*[{e} for _ in range({count})]" for e, count in runs]
    inner = indent + "    "
    return "nn.Sequential(\n" + "".join(f"{inner}{p},\n" for p in parts) + f"{indent})"


def _instances_doc(cls: Cls) -> str:
    paths = [s.path for s in cls.instances]
    shown = ", ".join(paths[:3]) + (f" … ({len(paths)} in all)" if len(paths) > 3 else "")
    return shown


def _zero_init(low: Lowering, net: Network, ordered: list[Cls]) -> list[tuple[list[str], str]]:
    """Zero-init BNs: ([] for the network itself, or the classes that hold it; its path)."""
    found: dict[tuple[bool, str], list[str]] = {}
    for cls in [None, *ordered]:
        scope = net.root if cls is None else cls.instances[0]
        for item in low.body(scope):
            subs = [(f"{item.local}.{s.local}", s) for s in low.body(item.scope)] \
                if item.kind == "sub" and low.is_sequential(item.scope) else [(item.local, item)]
            for path, leaf in subs:
                if leaf.kind == "layer" and leaf.op.kind == "batchnorm" and leaf.op.attr("zero_init"):
                    found.setdefault((cls is None, path), []).extend([] if cls is None else [cls.name])
    return [(classes, path) for (_, path), classes in found.items()]


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_path("templates", "torch"))),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["path_ref"] = path_ref
    return env


def emit(net: Network, *, seed: int | None = None) -> str:
    """Standalone PyTorch source for ``net`` (see the module docstring).

    ``seed`` becomes the default seed of the generated constructor function. A network
    whose layers cannot be laid out as nested modules (a block reading a value computed
    inside another block) raises :class:`~resdsl.diagnostics.UsageError`.
    """
    try:
        low = Lowering(net)
    except ValueError as err:
        raise UsageError(f"cannot write `{net.name}` as PyTorch source: {err}",
                         hint="the in-process module, resdsl.build(spec), runs any checked network") from err
    renderer = Renderer(net, low)
    ordered = _dependency_order(low, net.root)
    views = []
    for cls in ordered:
        low.params_of(cls)
        doc = f"The spec's `{cls.definition}` {cls.kind}, used as {_instances_doc(cls)}."
        views.append(renderer.render_class(cls.instances[0], cls.name, cls.forms,
                                           [f"{p.name}: {_annotation(p.vector)}" for p in cls.params], doc))
    top_name = low.names.fresh(camel(net.name))
    root_forms = [("lit", v) for v, _, _ in low.positions(net.root)]
    top = renderer.render_class(net.root, top_name, root_forms, [], "")
    # a top-level layer called `reset_parameters` would be found before the method
    reset = Namespace(("training", *(i.local for i in low.body(net.root) if i.local))).fresh(
        "reset_parameters")
    function = net.name if is_identifier(net.name) and net.name not in low.names else "build_model"
    function = low.names.fresh(function)
    # The file name is the one thing here a spec does not constrain: keep it printable and
    # harmless inside the module docstring.
    source = "".join(c if c.isprintable() and c not in '\\"' else "?" for c in Path(net.source).name)
    text = _environment().get_template("model.py.j2").render(
        version=__version__, source=source, network=net.name, top=top, classes=views,
        function=function, seed=seed, reset=reset, params=f"{net.params:,}",
        input_shape=fmt_shape(net.input_shape), output_shape=fmt_shape(net.output_shape),
        input_dims=", ".join(map(str, net.input_shape)),
        uses_zero_pad="zeropad" in renderer.uses, uses_drop_path="drop_path" in renderer.uses,
        uses_functional=any("F." in line for v in [*views, top] for line in v.forward),
        zero_init=_zero_init(low, net, ordered))
    return text


def _dependency_order(low: Lowering, root: Scope) -> list[Cls]:
    """Classes in first-use order, each after the classes it builds (children first)."""
    out: list[Cls] = []

    def visit(scope: Scope) -> None:
        for item in low.body(scope):
            if item.kind == "sub":
                visit(item.scope)
        cls = low.class_of.get(scope.path)
        if cls is not None and all(c is not cls for c in out):
            out.append(cls)

    visit(root)
    return out
