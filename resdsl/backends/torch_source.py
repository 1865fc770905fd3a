"""Torch back end, as source: a standalone, readable PyTorch file for a checked network.

The file is rendered from the Jinja2 templates in ``templates/torch/``. It holds one
class per block structure, each with its ``forward`` written out, a top-level class for
the network and a constructor function; it imports torch only. Module names, and so
``state_dict`` keys, are the spec's. It is the one torch lowering: ``resdsl.build`` loads
this same text in memory (:mod:`resdsl.backends.torch_model`), so the file and the
in-process model are the same classes, with the same weights for a seed.

Blocks become classes by *structure*: instances of one definition whose layers, wiring
and zero-init marks are equal share a class, and the values that differ between them
(channels, stride, drop-path rate…) become constructor parameters, named after the
block's spec arguments where a value equals one (``planes``, ``stride``) or, for a
channel count, a multiple or a fraction of one (``planes * 4``, ``planes // 2``); values
the same in every instance are written as constants. What is a channel count comes from
the dataflow (the value is the channel count of a tensor the layer reads or writes),
never from the words a spec uses, so a block of one's own lowers as the same block in
the standard library does. A definition with several structures (a block with and
without a projection shortcut) gives one class per structure (``Bottleneck``,
``BottleneckDownsample``), so every ``forward`` is straight-line code with no branch
that is dead for some instances.
"""

from __future__ import annotations

import builtins
import functools
import keyword
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import NamedTuple, Union

import jinja2

from ..ir import INPUT, Attr, Network, Op, Role, Scope, Shape
from ..passes import features_only, with_inplace
from ..primitives import PRIMITIVES, NoLowering
from ..resources import data_path
from ..roles import feature_points, head_of
from ..stats import fmt_shape
from ..version import __version__
from . import SEED, BackendError, declare, torch_builtins  # noqa: F401  (registers the built-ins' lowerings)
from .source_format import Call, Expr, Sequential, layout
from .torch_lowering import INPUT_CHANNELS, NODEFAULT, TORCH, SourceArg, SourceCall, SourceHelper, SourceInit

# ---------------------------------------------------------------- identifiers

#: Module-level names the generated file defines or reads (imports, builtins such as
#: `isinstance`, `getattr`, `super`, `print`; the registry's helpers come from
#: `_helper_names`): no class, function, parameter or local variable the spec names may
#: take one, or the file would shadow what it relies on.
MODULE_NAMES = ("torch", "nn", "F", "camel", "model", "checkpoint_blocks", "take_indices", *dir(builtins))


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
    return f"{owner}.{name}" if is_identifier(name) else f"getattr({owner}, {_quoted(name)})"


def path_ref(owner: str, path: str) -> str:
    parts = path.split(".")
    if all(is_identifier(p) for p in parts):
        return ".".join([owner, *parts])
    return f"{owner}.get_submodule({_quoted(path)})"


def _quoted(text: str) -> str:
    """A string literal in double quotes, as ruff format writes it."""
    literal = repr(text)
    return f'"{text}"' if literal == f"'{text}'" and '"' not in text else literal


# ---------------------------------------------------------------- layer vocabularies


def _call(op: Op, functional: bool) -> SourceCall:
    """The registered source text for ``op``: its function, or its module's constructor."""
    try:
        lowering = TORCH.require(op.kind)
    except NoLowering as err:
        raise BackendError("{what}", what=err, hint="register one with "
                           "resdsl.backends.torch_lowering.torch_lowering, or leave the layer out") from None
    call = lowering.function if functional else lowering.module
    if call is None:
        form = "function (for an unnamed layer)" if functional else "module (for a named layer)"
        raise BackendError("no torch {form} for `{kind}` (a primitive registered by {origin})",
                           hint="name the layer" if functional else "leave the layer unnamed",
                           form=form, kind=op.kind, origin=PRIMITIVES[op.kind].origin)
    return call


def _inplace_statement(op: Op) -> bool:
    """The op runs in place as a statement of its own (``out += shortcut``)."""
    call = TORCH.require(op.kind).function
    return bool(dict(op.attrs).get("inplace")) and call is not None and call.render_inplace is not None


def _is_zero_init(op: Op) -> bool:
    return PRIMITIVES[op.kind].zero_init is not None and bool(dict(op.attrs).get("zero_init"))


def _reads_width(arg: SourceArg) -> bool:
    """The argument is, by the registry's contract, the channel count of the op's input."""
    return arg.key in INPUT_CHANNELS and arg.fixed is NODEFAULT and arg.compute is None


def _channels(value: Attr, op: Op, shapes: list[Shape]) -> bool:
    """``value`` is the channel count of a tensor ``op`` reads or writes."""
    return type(value) is int and value in {s[0] for s in (*shapes, op.shape) if s}


# ---------------------------------------------------------------- scopes as class bodies


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
                sig.append(LeafSig(item.use, item.local, item.op.kind, refs, item.shortcut,
                                   _is_zero_init(item.op), statement))
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


def _typed(value: Attr) -> tuple[str, Attr]:
    # True == 1 in Python: compare values with their types
    return (type(value).__name__, value)


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

    @property
    def signature(self) -> str:
        """``__init__(self, …)``, laid out as ruff format does after ``    def``."""
        return layout(Call("__init__", ("self", *self.params)), "    ", "def ", " -> None:")


#: The methods and attributes of timm's model interface on the network's class: no
#: top-level layer of a spec may take one of these names.
INTERFACE_NAMES = ("forward_features", "forward_head", "forward_intermediates", "prune_intermediate_layers",
                   "get_classifier", "reset_classifier", "set_grad_checkpointing", "group_matcher",
                   "no_weight_decay", "num_classes", "num_features", "head_hidden_size", "global_pool",
                   "grad_checkpointing", "feature_info", "pretrained_cfg", "default_cfg", "forward_norm",
                   "stage_paths")


@dataclass
class TopView:
    """The network's class, split as timm's model interface needs it.

    ``forward_features`` is ``stem``, the ``stages`` and ``post`` (a final norm);
    ``forward_head`` is ``pool`` (global pooling up to the classifier's input, which
    ``pre_logits`` returns) and ``logits``. Without stages (``stages`` empty) the whole
    forward is ``stem``; without a head (``classifier`` empty), ``forward_head`` returns its
    input. ``intermediates`` is the stem again, keeping its feature map in ``stem_feature``.
    """

    name: str
    init: list[str]
    stem: list[str]
    stages: list[str] = field(default_factory=list)
    stage_paths: list[str] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)
    pre_logits: str = "x"
    logits: list[str] = field(default_factory=list)
    intermediates: list[str] = field(default_factory=list)
    stem_feature: str = "x"
    stem_out: list[str] = field(default_factory=list)
    stem_modules: list[str] = field(default_factory=list)
    classifier: str = ""  # the classifier's module path
    new_classifier: Call | None = None  # its constructor for `num_classes` classes (timm's reset_classifier)
    post_modules: list[str] = field(default_factory=list)  # what prune_norm replaces

    @property
    def forward(self) -> list[str]:
        """Every line of the forward methods."""
        return [*self.stem, *self.post, *self.pool, *self.logits, *self.intermediates, *self.stem_out]


def _contained(items: list[Item], source: str) -> bool:
    """Every item reads only ``source`` or what an earlier item of ``items`` computes."""
    seen = {source}
    for item in items:
        if any(i not in seen for i in item.inputs):
            return False
        seen.add(item.output)
    return True


class Containers:
    """The containers a class body needs for dotted module names: ``paths.0`` and
    ``paths.1`` live in ``self.paths``, an ``nn.ModuleList`` (children 0…n-1) or else a
    plain ``nn.Module``, created where its first child is, so modules are built in the
    order the in-process module builds them."""

    def __init__(self, locals_: list[str]):
        children: dict[str, list[str]] = {}
        for local in locals_:
            parts = local.split(".")
            for i in range(1, len(parts)):
                names = children.setdefault(".".join(parts[:i]), [])
                if parts[i] not in names:
                    names.append(parts[i])
        # appended in order, so `self.paths[i]` is `paths.i`
        self.lists = {p for p, names in children.items() if names == [str(i) for i in range(len(names))]}
        self.made: set[str] = set()

    def ref(self, owner: str, local: str) -> str:
        """The expression for the module at ``local``: ``self.paths[0].conv``."""
        out, parts = owner, local.split(".")
        for i, part in enumerate(parts):
            out = f"{out}[{part}]" if i and ".".join(parts[:i]) in self.lists else attr_ref(out, part)
        return out

    def assign(self, owner: str, local: str, expr: Expr, indent: str) -> list[str]:
        """Statements that create the containers above ``local`` (once) and put ``expr`` there,
        laid out for ``indent``."""
        lines: list[str] = []
        parts = local.split(".")
        for i in range(1, len(parts)):
            path = ".".join(parts[:i])
            if path not in self.made:
                self.made.add(path)
                lines.append(self._set(owner, path, "nn.ModuleList()" if path in self.lists else "nn.Module()", indent))
        return [*lines, self._set(owner, local, expr, indent)]

    def _set(self, owner: str, path: str, expr: Expr, indent: str) -> str:
        parent, _, leaf = path.rpartition(".")
        if parent in self.lists:
            return layout(Call(f"{self.ref(owner, parent)}.append", (expr,)), indent)
        target = self.ref(owner, parent) if parent else owner
        if is_identifier(leaf):
            lead = f"{target}.{leaf} = "
            return lead + layout(expr, indent, lead)
        return layout(Call(f"{target}.add_module", (_quoted(leaf), expr)), indent)


class Renderer:
    def __init__(self, net: Network, low: Lowering):
        self.net = net
        self.low = low
        self.uses: set[SourceHelper] = set()

    def position(self, form: Form, ref) -> str:
        if isinstance(form, Literal):
            return repr(form.value)
        return ref(form.name) if form.op is None else f"{ref(form.name)} {form.op} {form.k}"

    def call_args(self, call: SourceCall, forms: Iterator[Form], ref) -> list[str]:
        self.uses.update(call.helpers)
        parts = []
        for arg, form in zip(call.args, forms):
            if arg.keyword is not None and arg.default is not NODEFAULT and isinstance(form, Literal) and \
                    _typed(form.value) == _typed(arg.default):
                continue
            text = self.position(form, ref)
            parts.append(text if arg.keyword is None else f"{arg.keyword}={text}")
        return parts

    def constructor(self, scope: Scope, item: Item, forms: Iterator[Form], ref) -> Expr:
        """The expression that builds ``item``'s module, consuming its positions from ``forms``."""
        if item.use is Use.SUB:
            child = item.scope
            if self.low.is_sequential(child):
                return Sequential.of([self.constructor(child, sub, forms, ref) for sub in self.low.body(child)])
            cls = self.low.class_of[child.path]
            return Call(cls.name, tuple(f"{p.name}={self.position(next(forms), ref)}" for p in cls.params))
        call = _call(item.op, functional=False)
        if call.skip_init:  # built once: reset_parameters initialises it (the `skip_init` helper)
            return Call("skip_init", (call.name, *self.call_args(call, forms, ref)))
        return Call(call.name, tuple(self.call_args(call, forms, ref)))

    def render_class(self, scope: Scope, name: str, forms: list[Form], params: list[str],
                     doc: str, features: tuple[str, ...] = ()) -> ClassView:
        items, calls, init, _ = self.prepare(scope, forms)
        if features:
            items, calls = self.inline(items, calls, features)
        forward = self.forward(scope, items, calls, features)
        return ClassView(name, doc, params, init, forward[0], forward[1])

    def prepare(self, scope: Scope, forms: list[Form]) -> tuple[list[Item], dict[int, list[str]], list[str], Namespace]:
        """A class body's items, the argument texts of its function calls (by item index),
        its ``__init__`` lines and the attribute names it takes."""
        items = self.low.body(scope)
        attrs = Namespace(("training",))
        for item in items:
            top = item.local.split(".")[0] if item.local is not None else None
            if top is not None and is_identifier(top) and top not in attrs:
                attrs.claim(top)
        self.containers = Containers([i.local for i in items if i.use.builds])
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
            if item.use.builds:
                expr = self.constructor(scope, item, it, init_ref)
                init += self.containers.assign("self", item.local, expr, "        ")
            elif item.use is Use.FUNC:
                calls[n] = self.call_args(_call(item.op, functional=True), it, forward_ref)
        init = [f"self.{attr} = {p}" for p, attr in stored.items()] + init
        return items, calls, init, attrs

    def segment(self, scope: Scope, items: list[Item], calls: dict[int, list[str]], start: int, end: int,
                source: str, target: str, features: tuple[str, ...] = ()) -> tuple[list[str], str]:
        """Lines computing ``target`` from ``source`` (as ``x``) with ``items[start:end]``, and
        the variable that holds it; ``self.vars`` also gives the features'."""
        part = items[start:end]
        part_calls = {n - start: c for n, c in calls.items() if start <= n < end}
        if features:
            part, part_calls = self.inline(part, part_calls, features)
        lines, _ = self.forward(replace(scope, input=source, output=target), part, part_calls, features)
        return lines, self.vars[target]

    def render_top(self, scope: Scope, name: str, forms: list[Form]) -> TopView:
        """The network's class (see :class:`TopView`)."""
        net = self.net
        items, calls, init, attrs = self.prepare(scope, forms)
        taken = [n for n in INTERFACE_NAMES if n in attrs]
        if taken:
            raise ValueError(f"the top-level layer `{taken[0]}` takes the name of a method or attribute of "
                             "timm's model interface, which the network's class has")
        at = {item.output: n for n, item in enumerate(items)}
        head = head_of(net)
        if head is not None and not (head.pool in at and head.classifier in at
                                     and items[at[head.classifier]].use is Use.LAYER):
            head = None  # a head inside a module of its own: forward runs it whole
        end = at[head.pool] if head is not None else len(items)
        target = net.op(head.pool).inputs[0] if head is not None else scope.output
        if head is not None and not (_contained(items[:end], scope.input)
                                     and _contained(items[end:at[head.classifier]], target)
                                     and _contained(items[at[head.classifier]:], head.pre_logits)):
            head = None  # something after the pooling reads an earlier value: no head to split off
            end, target = len(items), scope.output
        stages = [n for n, i in enumerate(items[:end]) if i.use is Use.SUB and i.scope.role is Role.STAGE]
        if stages:
            first, last = stages[0], stages[-1]
            if not (stages == list(range(first, last + 1)) and net.stem_feature is not None
                    and all(items[n].inputs == (items[n - 1].output,) for n in stages[1:])
                    and _contained(items[:first], scope.input)
                    and _contained(items[last + 1:end], items[last].output)):
                stages = []  # not a stem, a chain of stages and what follows: no feature maps
        view = TopView(name, init, [])
        if stages:
            source, features = items[first].inputs[0], items[last].output
            lines, out = self.segment(scope, items, calls, 0, first, scope.input, source)
            view.stem = lines + _rename(out)
            lines, out = self.segment(scope, items, calls, 0, first, scope.input, source, (net.stem_feature,))
            # the feature is taken before `x` is set to the stem's output, which may overwrite it
            view.intermediates, view.stem_feature, view.stem_out = lines, self.vars[net.stem_feature], _rename(out)
            view.stages = [self.containers.ref("self", items[n].local) for n in stages]
            view.stage_paths = [items[n].local for n in stages]
            view.stem_modules = list(dict.fromkeys(i.local.split(".")[0] for i in items[:first] if i.local))
            lines, out = self.segment(scope, items, calls, last + 1, end, features, target)
            view.post = lines + _rename(out)
            view.post_modules = [i.local for i in items[last + 1:end] if i.use.builds]
        else:
            lines, out = self.segment(scope, items, calls, 0, end, scope.input, target)
            view.stem = lines + _rename(out)
        if head is not None:
            cls_at = at[head.classifier]
            lines, out = self.segment(scope, items, calls, end, cls_at, target, head.pre_logits)
            view.pool = lines + _rename(out)
            view.pre_logits = "x" if len(net.shape_of(head.pre_logits)) == 1 else "x.flatten(1)"
            lines, out = self.segment(scope, items, calls, cls_at, len(items), head.pre_logits, scope.output)
            view.logits = lines + _rename(out)
            op = net.op(head.classifier)
            view.classifier = op.module
            view.new_classifier = _new_classifier(op, [net.shape_of(i) for i in op.inputs])
        return view

    def inline(self, items: list[Item], calls: dict[int, list[str]],
               features: tuple[str, ...]) -> tuple[list[Item], dict[int, list[str]]]:
        """``items`` with each submodule that computes a feature inside it (not as its
        output) written out as calls of its layers, so ``forward`` can return that value
        (as timm's feature extractors flatten the stem: ``stem.conv``'s output)."""
        out: list[Item] = []
        out_calls: dict[int, list[str]] = {}
        for n, item in enumerate(items):
            inner = item.use is Use.SUB and any(f in set(item.scope.op_names()) - {item.output} for f in features)
            if not inner:
                if n in calls:
                    out_calls[len(out)] = calls[n]
                out.append(item)
                continue
            body = [Item(Use.FUNC if sub.use is Use.FUNC else Use.CALL if sub.use is not Use.SUB else Use.SUB,
                         sub.output, sub.inputs, op=sub.op, scope=sub.scope,
                         local=None if sub.local is None else f"{item.local}.{sub.local}",
                         shortcut=sub.shortcut, group=sub.group)
                    for sub in self.low.body(item.scope)]
            # the layers' arguments as the instance has them: constants here
            sub_calls = {}
            for m, sub in enumerate(body):
                if sub.use is Use.FUNC:
                    shapes = [self.net.shape_of(i) for i in sub.op.inputs]
                    call = _call(sub.op, functional=True)
                    sub_calls[m] = self.call_args(call, iter([Literal(a.value(sub.op, shapes)) for a in call.args]),
                                                  repr)
                elif sub.use is Use.SUB:  # a module of its own: called, not rebuilt
                    body[m] = Item(Use.CALL, sub.output, sub.inputs, scope=sub.scope, local=sub.local,
                                   shortcut=sub.shortcut)
            body, sub_calls = self.inline(body, sub_calls, features)
            for m, sub in enumerate(body):
                if m in sub_calls:
                    out_calls[len(out)] = sub_calls[m]
                out.append(sub)
        return out, out_calls

    def forward(self, scope: Scope, items: list[Item], calls: dict[int, list[str]],
                features: tuple[str, ...] = ()) -> tuple[list[str], str]:
        alias: dict[str, str] = {}

        def resolve(v: str) -> str:
            while v in alias:
                v = alias[v]
            return v

        for item in items:
            if item.use is Use.FUNC and PRIMITIVES[item.op.kind].traits.identity:
                alias[item.output] = item.inputs[0]
        # a function whose value nothing reads is left out (a module call stays: it may
        # update state, as a BN in training does)
        needed = {resolve(scope.output), *map(resolve, features)}
        dead: set[int] = set()
        for n in range(len(items) - 1, -1, -1):
            item = items[n]
            if item.use is Use.FUNC and resolve(item.output) not in needed:
                dead.add(n)
            else:
                needed.update(resolve(v) for v in item.inputs)
        last_use: dict[str, int] = {}
        for n, item in enumerate(items):
            if n in dead:
                continue
            for v in item.inputs:
                last_use[resolve(v)] = n
        for value in (scope.output, *features):  # returned: kept to the end
            last_use[resolve(value)] = len(items)
        var = {scope.input: "x"}
        live = {"x": scope.input}
        lines = []
        for n, item in enumerate(items):
            if item.output in alias or n in dead:
                continue
            ins = [var[resolve(v)] for v in item.inputs]
            for name, value in list(live.items()):
                if last_use.get(value, -1) <= n:
                    del live[name]
            first = resolve(item.inputs[0])
            if resolve(item.output) not in needed:  # run for its effect only: no name to leave unused
                lines.append(self.expression(item, ins, calls.get(n, [])))
                continue
            if item.use is Use.FUNC and _inplace_statement(item.op):  # overwrites its first input
                target = var[first]
                live[target] = item.output
                var[item.output] = target
                lines += _call(item.op, functional=True).render_inplace(ins)
                continue
            if item.shortcut:
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
        #: the variables holding the output and the features at the end (for segments)
        self.vars = {v: var[resolve(v)] for v in (scope.output, *features)}
        if features:
            return lines, "[" + ", ".join(var[resolve(f)] for f in features) + "]"
        return lines, var[resolve(scope.output)]

    def expression(self, item: Item, ins: list[str], args: list[str]) -> str:
        if item.use is not Use.FUNC:
            return f"{self.containers.ref('self', item.local)}({', '.join(ins)})"
        call = _call(item.op, functional=True)
        if call.render is not None:
            return call.render(ins, args)
        extra = ["self.training"] if call.training else []
        return f"{call.name}({', '.join([ins[0], *args, *extra])})"


def _rename(var: str) -> list[str]:
    """The line that leaves a segment's result in ``x``, if it is elsewhere."""
    return [] if var == "x" else [f"x = {var}"]


def _new_classifier(op: Op, shapes: list[Shape]) -> Call:
    """The constructor of ``op``'s module for ``num_classes`` outputs reading
    ``self.head_hidden_size`` features, with torch's default initialisation (timm's
    ``reset_classifier``): the output width is the argument equal to the op's output
    channels, the input width the one the registry says reads them."""
    call = _call(op, functional=False)
    parts, placed = [], False
    for arg in call.args:
        value = arg.value(op, shapes)
        if _reads_width(arg):
            text = "self.head_hidden_size"
        elif not placed and type(value) is int and value == op.shape[0]:
            text, placed = "num_classes", True
        elif arg.keyword is not None and arg.default is not NODEFAULT and _typed(value) == _typed(arg.default):
            continue
        else:
            text = repr(value)
        parts.append(text if arg.keyword is None else f"{arg.keyword}={text}")
    return Call(call.name, tuple(parts))


def _annotation(values: tuple) -> str:
    types = sorted({type(v).__name__ for v in values})
    return types[0] if len(types) == 1 else " | ".join(types)


def _fresh_var(base: str, live: dict[str, str], module: Namespace) -> str:
    # a local named `F`, `torch` or after a block class would hide it from later lines
    ns = Namespace((*live, "self", *module.used()))
    return ns.fresh(base)


def _instances_doc(cls: Cls) -> str:
    paths = [s.path for s in cls.instances]
    shown = ", ".join(paths[:3]) + (f" … ({len(paths)} in all)" if len(paths) > 3 else "")
    return shown


def _zero_init(low: Lowering, net: Network, ordered: list[Cls]) -> list[tuple[list[str], str, str]]:
    """Zero-init norms: ([] for the network itself, or the classes that hold it; its path;
    the tensor to zero)."""
    found: dict[tuple[bool, str], list[str]] = {}
    for cls in [None, *ordered]:
        scope = net.root if cls is None else cls.instances[0]
        for item in low.body(scope):
            subs = [(f"{item.local}.{s.local}", s) for s in low.body(item.scope)] \
                if item.use is Use.SUB and low.is_sequential(item.scope) else [(item.local, item)]
            for path, leaf in subs:
                if leaf.use is Use.LAYER and _is_zero_init(leaf.op):
                    found.setdefault((cls is None, path, PRIMITIVES[leaf.op.kind].zero_init), []) \
                        .extend([] if cls is None else [cls.name])
    return [(_instance_test(classes) if classes else "", path, tensor) for (_, path, tensor), classes in found.items()]


def _instance_test(classes: list[str]) -> str:
    """``isinstance(module, A)`` or ``isinstance(module, (A, B))``, laid out after ``if``."""
    kinds = classes[0] if len(classes) == 1 else Call("", tuple(classes))
    return layout(Call("isinstance", ("module", kinds)), " " * 12, "if ", ":")


@functools.cache
def _environment() -> jinja2.Environment:
    # one environment per process: it keeps the compiled templates (compiling model.py.j2
    # cost as much as the rest of a render, on every `resdsl.build`)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_path("templates", "torch"))),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["path_ref"] = path_ref
    return env


@declare(SEED)
def emit(net: Network, *, seed: int | None = None) -> str:
    """Standalone PyTorch source for ``net`` (see the module docstring).

    ``seed`` becomes the default seed of the generated constructor function. A network
    whose layers cannot be laid out as nested modules (a block reading a value computed
    inside another block) raises :class:`~resdsl.backends.BackendError`.
    """
    return render(net, seed=seed).text


class Source(NamedTuple):
    """Generated source, and the names in it that build the network."""

    text: str
    top: str  # the network's class
    function: str  # its constructor function, ``function(seed=None)``


def render(net: Network, *, seed: int | None = None, features: tuple[str, ...] = (),
           inplace: bool = True) -> Source:
    """The source :func:`emit` writes, and what ``resdsl.build`` loads.

    With ``features`` (op names), the network is cut down to what those values need
    (:func:`resdsl.passes.features_only`) and its ``forward`` returns them as a list, as
    timm's ``features_only`` models do. ``inplace=False`` runs every op out of place.
    """
    if features:
        net = features_only(net, features)
    if inplace:  # in place where the dataflow allows (`nn.ReLU(inplace=True)`, `out += shortcut`)
        # (never over a feature map: forward_intermediates returns them)
        net = with_inplace(net, keep=features or _feature_ops(net))
    try:
        low = Lowering(net)
    except ValueError as err:
        raise BackendError("cannot write `{network}` as PyTorch source: {reason}", network=net.name, reason=err,
                           hint="give each block the values it reads as its input") from err
    renderer = Renderer(net, low)
    ordered = _dependency_order(low, net.root)
    views = []
    for cls in ordered:
        low.params_of(cls)
        doc = f"The spec's `{cls.definition}` {cls.signature.role.value}, used as {_instances_doc(cls)}."
        views.append(renderer.render_class(cls.instances[0], cls.name, cls.forms,
                                           [f"{p.name}: {_annotation(p.vector)}" for p in cls.params], doc))
    top_name = low.names.fresh(camel(net.name))
    root_forms = [Literal(p.value) for p in low.positions(net.root)]
    api: dict = {}
    if features:
        top = renderer.render_class(net.root, top_name, root_forms, [], "", features)
    else:
        try:
            top = renderer.render_top(net.root, top_name, root_forms)
        except ValueError as err:
            raise BackendError("cannot write `{network}` as PyTorch source: {reason}", network=net.name,
                               reason=err, hint="rename the layer") from err
        api = _interface(net, top)
    helpers = _in_registry_order(renderer.uses)
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
        input_dims=", ".join(map(str, net.input_shape)), features=bool(features),
        helpers=[_helper_text(h) for h in helpers], wrapped=[n for h in helpers for n in h.wrap],
        uses_functional=any(h.functional for h in helpers)
        or any("F." in line for v in [*views, top] for line in v.forward),
        inits=_inits(net), zero_init=_zero_init(low, net, ordered), api=api,
        **(_interface_texts(top) if not features else {}))
    return Source(text, top_name, function)


#: timm's defaults for ImageNet models (`timm.data.IMAGENET_DEFAULT_MEAN`, …): the data
#: configuration a model states until pretrained weights bring their own.
DEFAULT_CFG = {"crop_pct": 0.875, "interpolation": "bilinear", "mean": (0.485, 0.456, 0.406),
               "std": (0.229, 0.224, 0.225)}


def _interface(net: Network, top: TopView) -> dict:
    """The values of timm's model interface: class count, feature widths, feature_info and
    pretrained_cfg (as lines of source)."""
    head = head_of(net) if top.classifier else None
    if head is not None:
        features = net.op(head.pool).inputs[0]
        num_classes, pre_logits = net.op(head.classifier).shape[0], head.pre_logits
    else:
        features = pre_logits = net.output
        num_classes = net.output_shape[0]
    points = feature_points(net) if top.stages else []
    first_conv = next((op.module for op in net.ops if op.inputs and op.inputs[0] == INPUT and op.module
                       and PRIMITIVES[op.kind].traits.conv), None)
    cfg: dict = {"architecture": net.name, "num_classes": num_classes, "input_size": tuple(net.input_shape)}
    shape = net.shape_of(features)
    if len(shape) == 3:
        cfg["pool_size"] = tuple(shape[1:])
    cfg |= DEFAULT_CFG
    cfg |= {"first_conv": first_conv or "", "classifier": top.classifier}
    if head is None:  # the output's size follows the input's only through global pooling
        cfg["fixed_input_size"] = True
    return {
        "num_classes": num_classes, "num_features": shape[0], "head_hidden_size": net.shape_of(pre_logits)[0],
        "points": len(points),
        "feature_info": [f'{{"num_chs": {p.channels}, "reduction": {p.reduction}, "module": {_quoted(p.module)}}}'
                         for p in points],
        "cfg": [f"{_quoted(k)}: {_quoted(v) if isinstance(v, str) else repr(v)}" for k, v in cfg.items()],
    }


def _tuple(texts: list[str], indent: str, lead: str) -> str:
    """A tuple of ``texts``, laid out as ruff format does."""
    if len(texts) == 1:
        return f"({texts[0]},)"
    return layout(Call("", tuple(texts)), indent, lead)


def _interface_texts(top: TopView) -> dict:
    """Source fragments of the interface's methods."""
    target = ""
    if top.classifier:  # the statement that puts `classifier` in the classifier's place
        parent, _, leaf = top.classifier.rpartition(".")
        if all(is_identifier(p) for p in top.classifier.split(".")):
            target = f"self.{top.classifier} = classifier"
        else:
            target = f"setattr({path_ref('self', parent) if parent else 'self'}, {_quoted(leaf)}, classifier)"
    stem = "|".join(re.escape(m) for m in top.stem_modules)
    return {
        "stage_paths": _tuple([_quoted(p) for p in top.stage_paths], "    ", "stage_paths = "),
        "stem_regex": f'r"^(?:{stem})\\."' if stem else "None",
        "post_regex": f'r"^(?:{"|".join(re.escape(m) for m in top.post_modules)})\\."',
        "classifier_target": target,
        "new_classifier": layout(top.new_classifier, " " * 12, "classifier = ") if top.new_classifier else "",
        "post_paths": _tuple([_quoted(p) for p in top.post_modules], "            ", "for path in ") if top.post_modules else "()",
    }


def _feature_ops(net: Network) -> tuple[str, ...]:
    try:
        return tuple(p.op for p in feature_points(net))
    except ValueError:  # no stem followed by stages
        return ()


def _helper_names() -> tuple[str, ...]:
    """Names the generated file may define besides its classes: every helper's."""
    out: list[str] = []
    for kind in TORCH.kinds():
        for helper in TORCH.require(kind).helpers:
            out += [n for n in (helper.name, *helper.defines) if n not in out]
    return tuple(out)


def _in_registry_order(used: set[SourceHelper]) -> list[SourceHelper]:
    out: list[SourceHelper] = []
    for kind in TORCH.kinds():
        out += [h for h in TORCH.require(kind).helpers if h in used and h not in out]
    return out


def _helper_text(helper: SourceHelper) -> str:
    if helper.text is not None:
        return helper.text.strip("\n")
    return _environment().get_template(helper.template).render().rstrip("\n")


def _inits(net: Network) -> list[SourceInit]:
    """The ``reset_parameters`` clauses of the kinds the network has modules of, in registry
    order, one per class (a std_conv is initialised as the nn.Conv2d it is)."""
    kinds = {op.kind for op in net.ops if op.module is not None}
    out: list[SourceInit] = []
    for kind in TORCH.kinds():
        init = TORCH.require(kind).init
        if kind in kinds and init is not None and all(i.cls != init.cls for i in out):
            out.append(init)
    return out


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
