"""The op registry: every primitive layer's target-independent facts, and the plugin API.

A :class:`Primitive` is one kind of layer as every back end sees it alike: its parameters
(types, defaults, ranges), its shape rule (which also counts parameters and MACs), the
tensors it owns (``state_dict`` names and shapes), and its :class:`Traits` — what it *is*
(a norm, a pool, a residual merge, subsampling by its ``stride``…), which passes, roles,
weight transplant, the importer and tables read. Nothing here is about one target.

Each back end keeps its own :class:`Lowerings` table and registers there, in its own
module, what it needs for a primitive: the torch source's constructor and function text
(:mod:`resdsl.backends.torch_lowering`), ONNX nodes per opset
(:mod:`resdsl.backends.onnx_graph`), a diagram's look (:mod:`resdsl.looks`), the
importer's recogniser (:mod:`resdsl.importer.recognisers`). Adding a back end touches no
entry; a primitive without a lowering for a target is a clear error for that target only.

The built-in entries live in :mod:`resdsl.ops`. A lab adds its own with
:func:`register_primitive` (and the lowerings it supports), or by declaring an entry point
in the group ``resdsl.primitives`` whose object is a :class:`Primitive` (or a function
returning one or several; lowerings it registers while loading are recorded as the
plugin's); the built-ins and entry points are loaded on the first lookup. Lowerings import
torch and onnx inside their functions, so checking a spec never imports either.

MACs follow the convention of the published figures (torchvision's GFLOPS, He et al.
2015's FLOPs): multiply-accumulates of convolutions and linear layers only; bias,
normalisation, activations, pooling and element-wise ops count zero.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from dataclasses import replace as replace_
from typing import Any, Generic, TypeVar

from . import language
from .ir import Attr, Op, Shape

REQUIRED = object()  # marks a parameter without a default

#: The parameter types a primitive may declare.
PARAM_TYPES = ("int", "int?", "float", "bool", "ints", "str")

#: The entry-point group plugins declare in their package metadata.
ENTRY_POINT_GROUP = "resdsl.primitives"


class ShapeError(Exception):
    """A layer cannot apply to its input; carries the diagnostic's code and wording."""

    def __init__(self, code: str, message: str, label: str = "", hint: str = ""):
        super().__init__(message)
        self.code, self.message, self.label, self.hint = code, message, label, hint


class PluginError(Exception):
    """A plugin primitive's own code failed or broke its contract: it raised (``SystemExit``
    and ``RecursionError`` included), returned the wrong type, or an impossible shape,
    parameter count or MAC count. The message names the primitive, the plugin that
    registered it (distribution and entry point) and what it did; ``span`` is the spec
    position of the layer when the code was given one."""

    def __init__(self, kind: str, origin: str, what: str, detail: str, span: Any = None):
        self.kind, self.origin, self.what, self.detail, self.span = kind, origin, what, detail, span
        where = f"{span.path}:{span.line}:{span.column}: " if span is not None else ""
        super().__init__(f"{where}the primitive `{kind}` from {origin} failed in its {what}: {detail}")


@dataclass(frozen=True)
class PrimParam:
    """One parameter of a primitive, as a spec writes it (``kernel_size = 3``)."""

    name: str
    type: str  # one of PARAM_TYPES; "int?" is an int or none, "ints" a list of ints, "str" a string
    default: object = REQUIRED
    doc: str = ""
    #: Accepted range, inclusive; checked before anything is built (see :data:`RANGES`).
    lo: float | None = None
    hi: float | None = None
    #: For a "str": the values it accepts (a `param`'s `init`).
    choices: tuple[str, ...] = ()
    #: For an "ints": the list is the output's sizes, one per axis, so the expressions a
    #: spec writes for them name the axes (``reshape([heads, -1])``); names change nothing else.
    axes: bool = False


#: The accepted range (inclusive) a parameter gets by its name unless its entry gives one:
#: far above every published ResNet (the widest layer of a shipped spec has 2,048 channels),
#: far below what would exhaust a workstation, so a typo like ``conv(6400000, 3)`` is a
#: diagnostic, not an allocation.
RANGES: dict[str, tuple[float, float]] = {
    "out_channels": (1, 65_536),
    "out_features": (1, 1_000_000),
    "kernel_size": (1, 63),
    "stride": (1, 64),
    "padding": (0, 1_024),
    "dilation": (1, 256),
    "groups": (1, 65_536),
    "p": (0.0, 0.999_999),
    "eps": (1e-12, 1.0),
    "momentum": (0.0, 1.0),
    "negative_slope": (-1e3, 1e3),
}


def param(name: str, type_: str, default: object = REQUIRED, doc: str = "", *,
          lo: float | None = None, hi: float | None = None, choices: tuple[str, ...] = (),
          axes: bool = False) -> PrimParam:
    """A :class:`PrimParam`; its range defaults to the one :data:`RANGES` gives the name."""
    if type_ not in PARAM_TYPES:
        raise ValueError(f"parameter `{name}`: unknown type `{type_}` (one of {', '.join(PARAM_TYPES)})")
    known = RANGES.get(name, (None, None))
    return PrimParam(name, type_, default, doc, known[0] if lo is None else lo, known[1] if hi is None else hi,
                     choices, axes)


# ---------------------------------------------------------------- what a primitive is


@dataclass(frozen=True)
class Traits:
    """What a primitive *is*, as passes, roles, weight transplant, the importer, tables and
    figures need to know it. Declared once on the core entry; how a diagram draws the
    primitive (:mod:`resdsl.looks`) never decides any of it.
    """

    #: A 2-D convolution over H×W with ``out_channels``, ``kernel_size`` and ``groups``: a
    #: paper table's line, the input conv whose channels transplant adapts, timm's ``first_conv``.
    conv: bool = False
    #: A fully connected layer: a classifier head's layer.
    classifier: bool = False
    #: A normalisation: its statistics belong to the layer before it; lists fold it onto that line.
    norm: bool = False
    #: An element-wise activation or gate: lists fold it onto the line before it.
    activation: bool = False
    #: A pooling layer: listed as such in tables, part of a stem's final pooling, a head's pool.
    pool: bool = False
    #: Pads its input (before a stem's pool; the zero-padding shortcut).
    pad: bool = False
    #: Joins or cuts tensors (add, concat, split): dataflow, not a layer of its own in lists.
    merge: bool = False
    #: The merge of a residual block: a figure draws the skip edge into it.
    residual: bool = False
    #: Counts towards a paper's depth (ResNet-50's 50).
    depth: bool = False
    #: Left out of layer lists (flatten, identity).
    hidden: bool = False
    #: The attribute holding the factor by which it subsamples H and W (``"stride"``), or
    #: None: it keeps the resolution. :func:`resdsl.passes.reductions` reads only this.
    resolution: str | None = None
    #: A conv that a batch norm right after it folds into (``fold_bn``).
    fold_target: bool = False
    #: The boolean attribute that gives it a bias term (``"bias"``): a fold or a merge that
    #: leaves it with a bias sets it.
    bias_attr: str | None = None
    #: A batch norm that folds into the conv before it.
    folds: bool = False
    #: It returns its input unchanged, always (identity): lowerings may drop it.
    identity: bool = False
    #: It is the identity at inference (dropout, drop-path).
    eval_identity: bool = False
    #: Its output is a learned tensor, the same for every sample (``param``): no batch axis.
    batchless: bool = False
    #: The operand that is its weight, ``[out, in / groups, kh, kw]`` (``conv_with``'s 1): a
    #: convolution whose weight is computed in `.res`, worded as a conv by tables and figures.
    weight_operand: int | None = None


#: ``attrs → the values of parameters left none that follow from the others``.
Fill = Callable[[Mapping[str, Attr]], dict[str, Attr]]


@dataclass(frozen=True)
class Primitive:
    """One primitive layer's target-independent facts (see the module docstring).

    ``infer(attrs, input_shapes)`` returns ``(shape, params, macs)`` or raises
    :class:`ShapeError`; it reads ``attrs`` and never changes them. ``fill(attrs)`` gives
    the values of parameters a spec left ``none`` that follow from the others (a conv's
    default padding), before the shape rule runs. ``weights(attrs, input_shapes)`` gives the
    ``state_dict`` entries of its module, by suffix (``{"weight": (64, 3, 7, 7)}``),
    buffers included; ``None`` for none. A built-in tensor that is its own entry (``param``:
    its key is the layer's path) has the suffix ``""`` (:func:`state_key`). Lowerings are registered by each back end
    (:class:`Lowerings`), not here.
    """

    kind: str
    params: tuple[PrimParam, ...]
    infer: Callable[[Mapping[str, Attr], list[Shape]], tuple[Shape, int, int]]
    doc: str
    #: None: the positional arguments are the input tensors (add, multiply, concat); 0: it
    #: reads no tensor (``param``: a learned tensor), and leaves the running value as it was.
    arity: int | None = 1
    #: For ``arity=None``: given one tensor, it also reads the running value (``add(x)`` is
    #: ``current + x``); false where one tensor is its whole input (``concat(x)``).
    reads_current: bool = True
    #: For ``arity=None``: the call names between this many tensors (positionally), read
    #: after the running value or the ``from`` tensor, which it always reads first; its
    #: parameters are keyword arguments (``conv_with(w, b, stride = 2)``). None: no such rule.
    operands: tuple[int, int] | None = None
    #: It yields one part of its input per op (``sizes`` and ``index`` attributes): a spec's
    #: ``parts: split(…)`` makes one op per part.
    parts: bool = False
    #: False for ops that are always functional, named or not (add, multiply, zeropad).
    module: bool = True
    weights: Callable[[Mapping, list[Shape]], dict[str, tuple[int, ...]]] | None = None
    #: With a true ``zero_init`` attribute, this tensor of the module starts at zero.
    zero_init: str | None = None
    traits: Traits = Traits()
    fill: Fill | None = None
    #: It can overwrite its first input with its result (``nn.ReLU(inplace=True)``,
    #: ``out += shortcut``): its torch lowerings honour a true ``inplace`` attribute, which
    #: :func:`resdsl.passes.inplace_ops` sets only where the dataflow allows it. Its backward
    #: must not need the input it overwrites.
    inplace: bool = False
    #: Its output is a new tensor that its backward never reads, so the op after it may
    #: overwrite it in place. False, the safe default (and a plugin's unless it says so),
    #: for ops whose autograd saves their output (ReLU, sigmoid, tanh, softmax) and ops
    #: whose output may be their input or a view of it (identity, dropout, flatten, split).
    overwritable: bool = False
    #: Where it came from: "builtin", or the plugin that registered it.
    origin: str = "builtin"

    @property
    def axes_param(self) -> str | None:
        """The parameter whose list names the output's axes (:attr:`PrimParam.axes`), if any."""
        found = self.__dict__.get("_axes_param", ())
        if found == ():
            found = next((p.name for p in self.params if p.axes), None)
            object.__setattr__(self, "_axes_param", found)  # once per entry: a layer asks each time
        return found

    @property
    def has_params(self) -> bool:
        """It owns tensors (weights or buffers), so a layer of this kind needs a name."""
        return self.weights is not None

    def state(self, attrs: Mapping, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
        """The module's ``state_dict`` entries (suffix → shape) for these attributes."""
        return self.weights(attrs, shapes) if self.weights is not None else {}

    def complete(self, attrs: Mapping[str, Attr]) -> dict[str, Attr]:
        """``attrs`` with the values :attr:`fill` derives; a new dict."""
        return {**attrs, **self.fill(attrs)} if self.fill is not None else dict(attrs)


def state_key(module: str, suffix: str) -> str:
    """The ``state_dict`` key of a module's tensor ``suffix``; ``""`` is a tensor held at the
    module's path itself (a ``param``: ``norm1.weight``)."""
    return f"{module}.{suffix}" if suffix else module


# ---------------------------------------------------------------- the registry


class Registry(Mapping[str, Primitive]):
    """kind → :class:`Primitive`. The built-ins register themselves when :mod:`resdsl.ops`
    is imported (the front end imports it); the entry-point plugins are loaded on the first
    lookup."""

    def __init__(self) -> None:
        self._prims: dict[str, Primitive] = {}
        self._state = "empty"  # → "loading" → "loaded"

    def _load(self) -> None:
        if self._state == "empty":
            self._state = "loading"
            try:
                load_entry_points(self)
            finally:
                self._state = "loaded"

    def __getitem__(self, kind: str) -> Primitive:
        if kind not in self._prims:
            self._load()
        return self._prims[kind]

    def __contains__(self, kind: object) -> bool:
        if kind not in self._prims:
            self._load()
        return kind in self._prims

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._prims))

    def __len__(self) -> int:
        self._load()
        return len(self._prims)

    def add(self, prim: Primitive, *, replace: bool = False) -> Primitive:
        _validate(prim)
        if self._state == "empty" and prim.origin != "builtin":
            # the built-ins (registered when resdsl.ops is imported) and the entry-point
            # plugins before a primitive registered from Python: it cannot take their names
            self._load()
        if prim.kind in self._prims and not replace:
            raise ValueError(f"a primitive `{prim.kind}` is already registered "
                             f"(by {self._prims[prim.kind].origin}); pass replace=True to replace it")
        self._prims[prim.kind] = prim
        return prim

    def remove(self, kind: str) -> None:
        """Forget a plugin primitive and every lowering registered for it (a built-in
        cannot be removed)."""
        prim = self._prims.get(kind)
        if prim is None:
            raise KeyError(f"no primitive `{kind}` is registered")
        if prim.origin == "builtin":
            raise ValueError(f"`{kind}` is built in and cannot be removed")
        del self._prims[kind]
        for table in _TABLES:
            table.forget(kind)


#: Every primitive by kind: the built-ins of :mod:`resdsl.ops`, then plugins.
PRIMITIVES = Registry()

#: Names a spec uses for other things (the language's keywords and built-ins); a plugin
#: primitive may not take them.
RESERVED = language.RESERVED


def _validate(prim: Primitive) -> None:
    if not prim.kind.isidentifier() or keyword.iskeyword(prim.kind) or prim.kind.startswith("_"):
        raise ValueError(f"`{prim.kind}` cannot name a primitive: use a lower-case identifier")
    if prim.kind in RESERVED:
        raise ValueError(f"`{prim.kind}` is a built-in name of the language and cannot name a primitive")
    names = [p.name for p in prim.params]
    if len(set(names)) != len(names):
        raise ValueError(f"`{prim.kind}` declares a parameter twice")
    for p in prim.params:
        if p.type not in PARAM_TYPES:
            raise ValueError(f"`{prim.kind}`: parameter `{p.name}` has unknown type `{p.type}`")
    if not isinstance(prim.traits, Traits):
        raise ValueError(f"primitive `{prim.kind}`: `traits` is a resdsl Traits, not {type(prim.traits).__name__}")
    if prim.has_params and not prim.module:
        raise ValueError(f"primitive `{prim.kind}` is incomplete: a primitive with weights needs `module=True`")


def register_primitive(prim: Primitive, *, replace: bool = False) -> Primitive:
    """Add ``prim`` to the registry, so specs can use it.

    Only the core entry is needed: each back end that is to lower it needs its lowering
    registered too (:func:`resdsl.backends.torch_lowering.torch_lowering`,
    :func:`resdsl.backends.onnx_graph.onnx_lowering`; :func:`resdsl.looks.register_look`
    for a diagram look other than the default). A back end without one says so when the
    primitive is used. A kind that exists already is refused unless ``replace``. Returns
    the registered entry.
    """
    if not isinstance(prim, Primitive):
        raise TypeError(f"register_primitive: `prim` is a resdsl Primitive, not {type(prim).__name__}")
    if not isinstance(replace, bool):
        raise TypeError(f"register_primitive: `replace` is True or False, not {type(replace).__name__}")
    if prim.origin == "builtin":
        prim = replace_(prim, origin="register_primitive")
    return PRIMITIVES.add(_guard(prim), replace=replace)


# ---------------------------------------------------------------- lowerings, by back end

#: The plugin whose entry point is loading: what registrations made meanwhile come from.
_LOADING: ContextVar[str | None] = ContextVar("resdsl_plugin_loading", default=None)

T = TypeVar("T")


def registration_origin(origin: str | None = None) -> str:
    """Who a registration is recorded as coming from: ``origin`` if given, else the plugin
    whose entry point is loading, else ``"register"`` (a call from Python)."""
    return origin or _LOADING.get() or "register"


#: Every back end's table, so that removing a primitive removes its lowerings too.
_TABLES: list[Lowerings] = []


class NoLowering(LookupError):
    """A back end has no lowering for a primitive a network uses."""

    def __init__(self, target: str, kind: str, origin: str):
        self.target, self.kind, self.origin = target, kind, origin
        super().__init__(f"no {target} lowering for `{kind}` (a primitive registered by {origin})")


class Lowerings(Generic[T]):
    """One back end's lowerings by primitive kind: what its own module registers for the
    built-ins, and what plugins register for theirs (:meth:`register`). A primitive without
    one is not refused when registered; the back end says so when it meets it
    (:meth:`require`). Entries a plugin registers pass through ``guard(entry, kind,
    origin)``, which wraps its functions so that their failures name the plugin
    (:class:`PluginError`)."""

    def __init__(self, target: str, guard: Callable[[T, str, str], T] | None = None):
        self.target = target  # as messages name it: "ONNX", "torch"
        self._guard = guard
        self._entries: dict[str, tuple[T, str]] = {}
        _TABLES.append(self)

    def register(self, kind: str, entry: T, *, origin: str | None = None, replace: bool = False) -> T:
        """Register ``entry`` for ``kind``. ``origin`` defaults to the plugin being loaded
        (an entry point), else ``"register"``; ``"builtin"`` is resdsl's own. An entry
        another origin registered is replaced only with ``replace`` (the same origin may
        register again: a plugin module imported anew)."""
        if not isinstance(kind, str) or not kind.isidentifier():
            raise ValueError(f"{self.target} lowering: `{kind}` is not a primitive's name")
        origin = registration_origin(origin)
        if origin == "builtin" and kind in self._entries and self._entries[kind][1] != "builtin":
            # a plugin replaced this built-in before the built-ins' module was imported: it stays
            return self._entries[kind][0]
        if kind in self._entries and not replace and self._entries[kind][1] != origin:
            raise ValueError(f"a {self.target} lowering for `{kind}` is already registered "
                             f"(by {self._entries[kind][1]}); pass replace=True to replace it")
        if origin != "builtin" and self._guard is not None:
            entry = self._guard(entry, kind, origin)
        self._entries[kind] = (entry, origin)
        return entry

    def registered(self, kind: str) -> tuple[T, str] | None:
        """The entry registered so far for ``kind`` (plugins not loaded for it) and its
        origin, or None."""
        return self._entries.get(kind)

    def get(self, kind: str) -> T | None:
        """The entry for ``kind``, or None."""
        if kind not in self._entries:
            PRIMITIVES.get(kind)  # loads the plugins, which register their lowerings
        found = self._entries.get(kind)
        return found[0] if found is not None else None

    def require(self, kind: str) -> T:
        """The entry for ``kind``, or :class:`NoLowering` naming the primitive and the target."""
        found = self.get(kind)
        if found is None:
            prim = PRIMITIVES.get(kind)
            raise NoLowering(self.target, kind, prim.origin if prim is not None else "no one")
        return found

    def origin(self, kind: str) -> str | None:
        """Who registered the entry for ``kind``."""
        self.get(kind)
        found = self._entries.get(kind)
        return found[1] if found is not None else None

    def __contains__(self, kind: object) -> bool:
        return isinstance(kind, str) and self.get(kind) is not None

    def forget(self, kind: str) -> None:
        """Drop the entry for ``kind`` unless it is a built-in one."""
        found = self._entries.get(kind)
        if found is not None and found[1] != "builtin":
            del self._entries[kind]

    def kinds(self) -> list[str]:
        """The kinds with an entry, in the registry's order (then any others)."""
        known = list(PRIMITIVES)
        return [k for k in known if k in self._entries] + [k for k in self._entries if k not in known]


# ---------------------------------------------------------------- guarding a plugin's code


def guarded(fn: Callable | None, kind: str, origin: str, what: str,
            check: Callable[[object], str] | None = None) -> Callable | None:
    """``fn`` wrapped so that whatever it does — raise, exit, recurse forever, return what
    ``check`` refuses — becomes a :class:`PluginError` naming ``kind`` and ``origin``, not a
    resdsl traceback, an exit of the caller or a wrong network. :class:`ShapeError` (the
    contract's way to refuse an input) passes through."""
    if fn is None or getattr(fn, "_resdsl_guarded", False):
        return fn

    def run(*args, **kwargs):
        span = next((a.span for a in args if isinstance(a, Op)), None)
        try:
            result = fn(*args, **kwargs)
        except ShapeError:
            raise
        except KeyboardInterrupt:
            raise
        except RecursionError:
            raise PluginError(kind, origin, what, "it recursed without end (RecursionError)", span) from None
        except BaseException as err:  # SystemExit too: a plugin never ends the caller's process
            detail = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            raise PluginError(kind, origin, what, f"{type(err).__name__}" + (f": {detail}" if detail else ""),
                              span) from None
        if check is not None:
            wrong = check(result)
            if wrong:
                raise PluginError(kind, origin, what, wrong, span)
        return result

    run._resdsl_guarded = True  # type: ignore[attr-defined]
    return run


def _guard(prim: Primitive) -> Primitive:
    """``prim`` with each of its functions :func:`guarded`."""
    kind, origin = prim.kind, prim.origin
    return replace_(prim, infer=guarded(prim.infer, kind, origin, "shape rule", _inferred),
                    weights=guarded(prim.weights, kind, origin, "weights", _weights),
                    fill=guarded(prim.fill, kind, origin, "default values", _filled))


def _positive_ints(shape: object) -> bool:
    return isinstance(shape, tuple | list) and len(shape) > 0 and \
        all(type(n) is int and 0 < n <= 2**53 for n in shape)


def _inferred(result: object) -> str:
    """What is wrong with a shape rule's result, or ""."""
    if not isinstance(result, tuple) or len(result) != 3:
        return f"it returned {type(result).__name__} {str(result)[:60]}, not (shape, params, macs)"
    shape, params, macs = result
    if not _positive_ints(shape) or len(shape) not in (1, 3):
        return (f"it returned the shape {shape!r}: a shape is (channels, height, width) or (features,), "
                "of positive integers")
    for name, n in (("parameter count", params), ("MAC count", macs)):
        if isinstance(n, bool) or not isinstance(n, int | float) or not math.isfinite(n) or n < 0 or n != int(n):
            return f"it returned the {name} {n!r}: a whole number, 0 or more"
    return ""


def _weights(result: object) -> str:
    if not isinstance(result, Mapping) or not all(isinstance(k, str) and k.isidentifier() and
                                                  _positive_ints(v) for k, v in result.items()):
        return f"it returned {str(result)[:80]}, not a mapping of tensor names to shapes of positive integers"
    return ""


def _filled(result: object) -> str:
    ok = isinstance(result, Mapping) and all(isinstance(k, str) for k in result)
    return "" if ok else f"it returned {type(result).__name__}, not a mapping of parameter names to values"


def text_result(result: object) -> str:
    """A :func:`guarded` check: the function returns text."""
    return "" if isinstance(result, str) else f"it returned {type(result).__name__}, not text (str)"


def lines_result(result: object) -> str:
    """A :func:`guarded` check: the function returns lines of text."""
    ok = isinstance(result, list | tuple) and all(isinstance(x, str) for x in result)
    return "" if ok else f"it returned {type(result).__name__}, not a list of lines of source"


def load_entry_points(registry: Registry) -> None:
    """Register the primitives plugins declare in the ``resdsl.primitives`` entry-point group.

    An entry point names a :class:`Primitive`, or a function returning one or an iterable
    of them; lowerings the plugin registers while it loads (on import, or in that function)
    are recorded as its. A plugin that fails to load is reported as a warning and skipped,
    so one broken package does not stop every spec from loading.
    """
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
        origin = f"the plugin `{ep.name}` (entry point {ep.value} of {dist})"
        token = _LOADING.set(origin)
        try:
            obj = ep.load()
            found = obj() if callable(obj) and not isinstance(obj, Primitive) else obj
            prims = [found] if isinstance(found, Primitive) else list(found)
            for prim in prims:
                if not isinstance(prim, Primitive):
                    raise TypeError(f"got {type(prim).__name__}, not a resdsl Primitive")
                registry.add(_guard(replace_(prim, origin=origin)))
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # SystemExit, recursion too: a plugin's bug must not break every spec
            detail = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            warnings.warn(f"resdsl: {origin} was not loaded: {type(err).__name__}"
                          + (f": {detail}" if detail else ""), stacklevel=2)
        finally:
            _LOADING.reset(token)
