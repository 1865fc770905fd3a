"""The op registry: every primitive layer, defined once, and the plugin API.

A :class:`Primitive` is the single source of truth for one kind of layer: its
parameters (types, defaults, ranges), its shape rule (which also counts parameters and
MACs), the tensors it owns (``state_dict`` names and shapes), how diagrams and tables
show it, and its lowerings — the text of the generated PyTorch source (which
``resdsl.build`` also loads) and ONNX nodes per opset range. Back ends look these up in
:data:`PRIMITIVES`; none of them names a kind.

The built-in entries live in :mod:`resdsl.ops`. A lab adds its own with
:func:`register_primitive`, or by declaring an entry point in the group
``resdsl.primitives`` whose object is a :class:`Primitive` (or a function returning one
or several); entry points are loaded on the first lookup. Lowerings import torch and
onnx inside their functions, so checking a spec never imports either.

MACs follow the convention of the published figures (torchvision's GFLOPS, He et al.
2015's FLOPs): multiply-accumulates of convolutions and linear layers only; bias,
normalisation, activations, pooling and element-wise ops count zero.
"""

from __future__ import annotations

import keyword
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import language
from .errors import E
from .ir import Attr, Op, Shape

REQUIRED = object()  # marks a parameter without a default

#: The parameter types a primitive may declare.
PARAM_TYPES = ("int", "int?", "float", "bool", "ints")

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
    type: str  # one of PARAM_TYPES; "int?" is an int or none, "ints" a list of ints
    default: object = REQUIRED
    doc: str = ""
    #: Accepted range, inclusive; checked before anything is built (see :data:`RANGES`).
    lo: float | None = None
    hi: float | None = None


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
          lo: float | None = None, hi: float | None = None) -> PrimParam:
    """A :class:`PrimParam`; its range defaults to the one :data:`RANGES` gives the name."""
    if type_ not in PARAM_TYPES:
        raise ValueError(f"parameter `{name}`: unknown type `{type_}` (one of {', '.join(PARAM_TYPES)})")
    known = RANGES.get(name, (None, None))
    return PrimParam(name, type_, default, doc, known[0] if lo is None else lo, known[1] if hi is None else hi)


# ---------------------------------------------------------------- how back ends see a primitive

#: Marks a source argument without a default: it is always written.
NODEFAULT: Any = object()

#: Source-argument keys that mean the input's channel count.
INPUT_CHANNELS = frozenset({"in_channels", "num_features", "in_features", "num_channels", "channels"})


@dataclass(frozen=True)
class SourceArg:
    """One argument of a constructor or function call in the generated source.

    ``key`` is the op attribute it shows (or one of :data:`INPUT_CHANNELS`: the input's
    channels); ``fixed`` gives a constant instead, ``compute`` a derived value.
    ``keyword`` ``None`` writes it positionally; an argument equal to ``default`` is left out.
    """

    key: str
    keyword: str | None = None
    default: object = NODEFAULT
    fixed: object = NODEFAULT
    #: A value derived from the op and its input shapes (a split's first channel).
    compute: Callable[[Op, list[Shape]], Attr] | None = None

    def value(self, op: Op, shapes: list[Shape]) -> Attr:
        """The argument's value for ``op``."""
        if self.fixed is not NODEFAULT:
            return self.fixed  # type: ignore[return-value]
        if self.compute is not None:
            return self.compute(op, shapes)
        if self.key in INPUT_CHANNELS:
            return shapes[0][0]
        return op.attr(self.key)


@dataclass(frozen=True)
class SourceHelper:
    """Code the generated file needs once: a function or class, as text or a template in
    ``templates/torch/``. ``wrap`` lists functions ``torch.fx`` must keep as leaf calls;
    ``functional`` says the text uses ``F``."""

    name: str
    text: str | None = None
    template: str | None = None
    wrap: tuple[str, ...] = ()
    functional: bool = False
    #: Every top-level name the text defines (besides ``name``): kept free of class names.
    defines: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceCall:
    """A constructor (``nn.Conv2d``) or function (``F.relu``) in the generated source.

    The op's input goes first for a function; ``training`` adds ``self.training`` last.
    ``render`` writes an expression that is not a plain call (``a + b``); it receives the
    input variables and the argument texts.
    """

    name: str
    args: tuple[SourceArg, ...] = ()
    training: bool = False
    helpers: tuple[SourceHelper, ...] = ()
    render: Callable[[list[str], list[str]], str] | None = None
    #: The statements that run it in place, overwriting the first input's variable
    #: (``out += shortcut``), for an op whose in-place form is not a call with
    #: ``inplace=True``; they receive the input variables.
    render_inplace: Callable[[list[str]], list[str]] | None = None
    #: The constructor is called through the ``skip_init`` helper (the module's own
    #: ``reset_parameters`` shadowed for its constructor, on the default device), so torch's
    #: default initialisation is not run only to be overwritten; the call lists that helper,
    #: and the kind's :class:`SourceInit` must set every tensor.
    skip_init: bool = False


@dataclass(frozen=True)
class SourceInit:
    """Initialisation in the generated ``reset_parameters``: for modules that are instances
    of ``cls``, the statements (``module`` names the instance), run in module order."""

    cls: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Look:
    """How diagrams and tables show a primitive.

    ``category`` colours a diagram node; ``norm`` and ``act`` layers fold onto the line of
    the layer before them (``BN, ReLU``). ``symbol`` draws a merge as a small circle.
    ``table`` writes the op as a line of a paper table (``3×3, 64``; ``with_stride`` for
    the stem), ``head`` as a word of the head row. ``hidden`` ops are left out of
    layer lists (flatten, identity); ``depth`` ops count towards the paper's depth.
    """

    text: Callable[[Op], str]
    category: str = "other"
    symbol: str | None = None
    residual: bool = False  # the merge of a residual block (a figure draws its skip edge into it)
    table: Callable[[Op, bool], str] | None = None
    pool: bool = False  # listed in tables as a pooling layer, and kept off feature points
    head: Callable[[Op], str] | None = None
    hidden: bool = False
    depth: bool = False


#: ``(opset it needs, lowering)``: the lowering with the largest opset not above the
#: target's is used; a lowering is ``fn(g, op, inputs, out)`` on an ONNX graph builder.
OnnxLowering = tuple[int, Callable[..., None]]


@dataclass(frozen=True)
class Primitive:
    """One primitive layer: its facts and lowerings (see the module docstring).

    ``infer(attrs, input_shapes)`` returns ``(shape, params, macs)`` or raises
    :class:`ShapeError`; it may fill in derived attributes (a default padding).
    ``weights(attrs, input_shapes)`` gives the ``state_dict`` entries of its module, by
    suffix (``{"weight": (64, 3, 7, 7)}``), buffers included; ``None`` for none. Its torch
    lowering is the generated source's text (``source_module`` for a named layer,
    ``source_function`` without one), which ``resdsl.build`` also loads: one torch lowering.
    """

    kind: str
    params: tuple[PrimParam, ...]
    infer: Callable[[dict[str, Attr], list[Shape]], tuple[Shape, int, int]]
    doc: str
    #: None: the positional arguments are the input tensors (add, multiply).
    arity: int | None = 1
    #: False for ops that are always functional, named or not (add, multiply, zeropad).
    module: bool = True
    look: Look | None = None
    weights: Callable[[dict, list[Shape]], dict[str, tuple[int, ...]]] | None = None
    #: With a true ``zero_init`` attribute, this tensor of the module starts at zero.
    zero_init: str | None = None
    source_module: SourceCall | None = None
    source_function: SourceCall | None = None
    source_init: SourceInit | None = None
    onnx: tuple[OnnxLowering, ...] = ()
    #: The op passes its input through: "always" (identity), or "eval" (dropout, drop-path):
    #: the generated source drops the former, ONNX both.
    passthrough: str | None = None
    #: BN folding: "conv" for a conv a following BN folds into, "bn" for the BN itself.
    fold: str | None = None
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
    #: Importing a torch model (``resdsl.from_torch``): given one traced call (a
    #: :class:`resdsl.ops.recognise.Call`: a leaf module, a function or a method), the op's
    #: attributes if this primitive computes it (a dict), a chain ``[(kind, attrs), …]`` when
    #: a module computes several ops in turn (a norm with its activation), or ``None``.
    recognise: Callable[[Any], Any] | None = None

    @property
    def has_params(self) -> bool:
        """It owns tensors (weights or buffers), so a layer of this kind needs a name."""
        return self.weights is not None

    def state(self, attrs: dict, shapes: list[Shape]) -> dict[str, tuple[int, ...]]:
        """The module's ``state_dict`` entries (suffix → shape) for these attributes."""
        return self.weights(attrs, shapes) if self.weights is not None else {}

    def onnx_lowering(self, opset: int) -> Callable[..., None] | None:
        """The ONNX lowering for ``opset``: the one needing the newest opset not above it."""
        usable = [(need, fn) for need, fn in self.onnx if need <= opset]
        return max(usable, key=lambda t: t[0])[1] if usable else None


def missing_lowerings(prim: Primitive) -> list[str]:
    """What ``prim`` lacks for every back end to handle it; empty when complete."""
    out = []
    if prim.look is None:
        out.append("look (diagram and table text)")
    if prim.module and prim.source_module is None:
        out.append("source_module")
    if not prim.has_params and prim.source_function is None:
        out.append("source_function")
    if not prim.onnx:
        out.append("onnx")
    if prim.has_params and not prim.module:
        out.append("module (a primitive with weights needs one)")
    if prim.passthrough not in (None, "always", "eval"):
        out.append('a valid passthrough (None, "always" or "eval")')
    if prim.inplace and not prim.has_params and prim.source_function is not None and \
            prim.source_function.render is not None and prim.source_function.render_inplace is None:
        out.append("render_inplace (its source is an expression, and it may run in place)")
    if prim.fold not in (None, "conv", "bn"):
        out.append('a valid fold (None, "conv" or "bn")')
    return out


# ---------------------------------------------------------------- the registry


class Registry(Mapping[str, Primitive]):
    """kind → :class:`Primitive`; entry-point plugins are loaded on the first lookup."""

    def __init__(self) -> None:
        self._prims: dict[str, Primitive] = {}
        self._plugins_loaded = False
        self._loading = False

    def _plugins(self) -> None:
        if not self._plugins_loaded and not self._loading:
            self._loading = True
            try:
                load_entry_points(self)
            finally:
                self._loading = False
                self._plugins_loaded = True

    def __getitem__(self, kind: str) -> Primitive:
        if kind not in self._prims:
            self._plugins()
        return self._prims[kind]

    def __contains__(self, kind: object) -> bool:
        if kind not in self._prims:
            self._plugins()
        return kind in self._prims

    def __iter__(self) -> Iterator[str]:
        self._plugins()
        return iter(list(self._prims))

    def __len__(self) -> int:
        self._plugins()
        return len(self._prims)

    def add(self, prim: Primitive, *, replace: bool = False) -> Primitive:
        _validate(prim)
        if prim.kind in self._prims and not replace:
            raise ValueError(f"a primitive `{prim.kind}` is already registered "
                             f"(by {self._prims[prim.kind].origin}); pass replace=True to replace it")
        self._prims[prim.kind] = prim
        return prim

    def remove(self, kind: str) -> None:
        """Forget a plugin primitive (a built-in cannot be removed)."""
        prim = self._prims.get(kind)
        if prim is None:
            raise KeyError(f"no primitive `{kind}` is registered")
        if prim.origin == "builtin":
            raise ValueError(f"`{kind}` is built in and cannot be removed")
        del self._prims[kind]


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
    missing = missing_lowerings(prim)
    if missing:
        raise ValueError(f"primitive `{prim.kind}` is incomplete: it lacks {', '.join(missing)}")


def register_primitive(prim: Primitive, *, replace: bool = False) -> Primitive:
    """Add ``prim`` to the registry, so specs can use it and every back end lowers it.

    The entry must be complete — a look, torch module and/or function, source text and an
    ONNX lowering — or :class:`ValueError` says what is missing. A kind that exists already
    is refused unless ``replace``. Returns ``prim``.
    """
    if not isinstance(prim, Primitive):
        raise TypeError(f"register_primitive: `prim` is a resdsl Primitive, not {type(prim).__name__}")
    if not isinstance(replace, bool):
        raise TypeError(f"register_primitive: `replace` is True or False, not {type(replace).__name__}")
    if prim.origin == "builtin":
        prim = _with_origin(prim, "register_primitive")
    else:
        prim = _guard(prim)
    return PRIMITIVES.add(prim, replace=replace)


def _with_origin(prim: Primitive, origin: str) -> Primitive:
    return _guard(replace(prim, origin=origin))


def _guard(prim: Primitive) -> Primitive:
    """``prim`` with every function of the plugin's wrapped, so that whatever it does —
    raise, exit, recurse forever, return nonsense — becomes a :class:`PluginError` that names
    it, instead of a resdsl traceback, an exit of the caller, or a wrong network."""
    kind, origin = prim.kind, prim.origin

    def wrap(fn, what, check=None):
        if fn is None or getattr(fn, "_resdsl_guarded", False):
            return fn

        def run(*args, **kwargs):
            span = next((a.span for a in args if isinstance(a, Op)), None)
            try:
                result = fn(*args, **kwargs)
            except ShapeError:  # the contract's way to refuse an input: a diagnostic already
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

        run._resdsl_guarded = True
        return run

    def call(c: SourceCall | None) -> SourceCall | None:
        if c is None:
            return None
        args = tuple(replace(a, compute=wrap(a.compute, f"source argument `{a.key}`")) for a in c.args)
        return replace(c, args=args, render=wrap(c.render, "source rendering", _text),
                       render_inplace=wrap(c.render_inplace, "in-place source rendering", _lines))

    look = prim.look
    if look is not None:
        look = replace(look, text=wrap(look.text, "diagram text", _text), table=wrap(look.table, "table text", _text),
                       head=wrap(look.head, "head text", _text))
    return replace(prim, infer=wrap(prim.infer, "shape rule", _inferred),
                   weights=wrap(prim.weights, "weights", _weights), look=look,
                   source_module=call(prim.source_module), source_function=call(prim.source_function),
                   onnx=tuple((need, wrap(fn, f"ONNX lowering (opset {need})")) for need, fn in prim.onnx))


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


def _text(result: object) -> str:
    return "" if isinstance(result, str) else f"it returned {type(result).__name__}, not text (str)"


def _lines(result: object) -> str:
    ok = isinstance(result, list | tuple) and all(isinstance(x, str) for x in result)
    return "" if ok else f"it returned {type(result).__name__}, not a list of lines of source"


def load_entry_points(registry: Registry) -> None:
    """Register the primitives plugins declare in the ``resdsl.primitives`` entry-point group.

    An entry point names a :class:`Primitive`, or a function returning one or an iterable
    of them. A plugin that fails to load is reported as a warning and skipped, so one broken
    package does not stop every spec from loading.
    """
    import warnings
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(getattr(ep, "dist", None), "name", None) or "an unknown distribution"
        origin = f"the plugin `{ep.name}` (entry point {ep.value} of {dist})"
        try:
            obj = ep.load()
            found = obj() if callable(obj) and not isinstance(obj, Primitive) else obj
            prims = [found] if isinstance(found, Primitive) else list(found)
            for prim in prims:
                if not isinstance(prim, Primitive):
                    raise TypeError(f"got {type(prim).__name__}, not a resdsl Primitive")
                registry.add(_with_origin(prim, origin))
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # SystemExit, recursion too: a plugin's bug must not break every spec
            detail = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
            warnings.warn(f"resdsl: {origin} was not loaded: {type(err).__name__}"
                          + (f": {detail}" if detail else ""), stacklevel=2)


def split_sizes(channels: int, chunks: int) -> tuple[int, ...]:
    """The sizes of ``split(chunks)`` of ``channels`` channels: equal chunks, or ShapeError."""
    if chunks < 1 or channels % chunks:
        raise ShapeError(E.GROUPS_NOT_DIVIDING, f"{channels} channels do not split into {chunks} equal chunks",
                         hint="give the sizes instead: `split([a, b, …])`")
    return (channels // chunks,) * chunks


def _register_builtins() -> None:
    from .ops import BUILTINS

    for prim in BUILTINS:
        PRIMITIVES.add(prim)


_register_builtins()
