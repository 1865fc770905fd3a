"""The torch back end's lowerings: how a primitive is written in the generated PyTorch source.

The generated file (:mod:`resdsl.backends.torch_source`) is the one torch lowering:
``resdsl.build`` loads that same text. A primitive is written as a constructor call
(``nn.Conv2d(64, 128, 3)``) where a spec names the layer, as a function call
(``F.relu(x)``) where it does not, or both; helper classes and functions the calls need
are pasted into the file once (:class:`SourceHelper`: a template in ``templates/torch/``,
the one definition of each), and a constructor's tensors are initialised by
``reset_parameters`` (:class:`SourceInit`, the one place for initialisation).

Built-in primitives' lowerings are in :mod:`resdsl.backends.torch_builtins`; a plugin
registers its own with :func:`torch_lowering`::

    torch_lowering("channel_scale", module=SourceCall("ChannelScale", (SourceArg("num_channels"),),
                                                      helpers=(SourceHelper("ChannelScale", text=...),)))

A network using a primitive without one cannot be written as torch source: a
:class:`~resdsl.backends.BackendError` names the primitive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ..ir import Attr, Op, Shape
from ..primitives import Lowerings, guarded, lines_result, text_result

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
    #: It shapes the expression (where a number stands in ``1.0 / x``): instances that differ
    #: in it get different classes, so it is always written as its value.
    structural: bool = False

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
    ``templates/torch/`` (the helper's one definition). ``wrap`` lists functions
    ``torch.fx`` must keep as leaf calls; ``functional`` says the text uses ``F``."""

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
    #: and the lowering's :class:`SourceInit` must set every tensor.
    skip_init: bool = False
    #: The constructor makes a tensor attribute (an ``nn.Parameter``), not a module:
    #: ``forward`` reads it as it is (``self.weight``) and never calls it. With ``render``,
    #: the constructor is that expression (given no inputs and the argument texts).
    tensor: bool = False


@dataclass(frozen=True)
class TensorInit:
    """Initialisation of a tensor attribute (:attr:`SourceCall.tensor`) in the generated
    ``reset_parameters``: ``statement(op)`` is the line, ``{tensor}`` where the tensor's
    reference goes (``nn.init.ones_({tensor})``); it depends on the op's attributes."""

    statement: Callable[[Op], str]


@dataclass(frozen=True)
class SourceInit:
    """Initialisation in the generated ``reset_parameters``: for modules that are instances
    of ``cls``, the statements (``module`` names the instance), run in module order."""

    cls: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class TorchLowering:
    """A primitive in the generated source: its constructor (``module``, for a named layer)
    and/or its function (``function``, for an unnamed one), and the initialisation of the
    constructor's tensors (``init``; none keeps torch's default)."""

    module: SourceCall | None = None
    function: SourceCall | None = None
    init: SourceInit | TensorInit | None = None

    @property
    def helpers(self) -> tuple[SourceHelper, ...]:
        """The helpers its calls need, without repeats."""
        out: list[SourceHelper] = []
        for call in (self.module, self.function):
            out += [h for h in (call.helpers if call is not None else ()) if h not in out]
        return tuple(out)


def _guard(lowering: TorchLowering, kind: str, origin: str) -> TorchLowering:
    """A plugin's lowering with its functions :func:`~resdsl.primitives.guarded`."""
    def call(c: SourceCall | None) -> SourceCall | None:
        if c is None:
            return None
        args = tuple(replace(a, compute=guarded(a.compute, kind, origin, f"source argument `{a.key}`"))
                     for a in c.args)
        return replace(c, args=args, render=guarded(c.render, kind, origin, "source rendering", text_result),
                       render_inplace=guarded(c.render_inplace, kind, origin, "in-place source rendering",
                                              lines_result))

    init = lowering.init
    if isinstance(init, TensorInit):
        init = TensorInit(guarded(init.statement, kind, origin, "tensor initialisation", text_result))
    return replace(lowering, module=call(lowering.module), function=call(lowering.function), init=init)


#: kind → :class:`TorchLowering`.
TORCH = Lowerings[TorchLowering]("torch", _guard)


def torch_lowering(kind: str, *, module: SourceCall | None = None, function: SourceCall | None = None,
                   init: SourceInit | TensorInit | None = None, origin: str | None = None,
                   replace: bool = False) -> TorchLowering:
    """Register how the generated source writes primitive ``kind``: ``module``, the
    constructor of a named layer (of a primitive with ``module=True``); ``function``, the
    call of an unnamed one (and of every layer of a ``module=False`` primitive); ``init``,
    the initialisation of the constructor's tensors. A layer whose form is missing cannot
    be written (a :class:`~resdsl.backends.BackendError` when it is). Returns the entry."""
    if module is None and function is None:
        raise ValueError(f"torch lowering for `{kind}`: give a `module` or a `function` call")
    for c in (module, function):
        if c is not None and not isinstance(c, SourceCall):
            raise TypeError(f"torch lowering for `{kind}`: a call is a SourceCall, not {type(c).__name__}")
    return TORCH.register(kind, TorchLowering(module, function, init), origin=origin, replace=replace)
