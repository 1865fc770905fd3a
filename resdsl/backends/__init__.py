"""The back ends: one module each, registered here by target name.

A back end is a function ``emit(net: Network, **options) -> bytes | str`` (or an object
with ``write(path)`` for several files) whose keyword options are declared beside it with
:func:`declare`: each :class:`Option` gives the option's name, type, choices, check and help.
The declarations are the one place an option is described: the CLI builds ``compile``'s
and ``diagram``'s flags from them, and the same checks run for a call from Python and for
a flag (``emit(net, opset=12)`` and ``--opset 12`` are refused by the same code).

A back end raises :class:`BackendError` (a bad option: :class:`OptionError`), worded for
the Python API; the CLI shows the same message with the options spelled as its flags.

Adding a back end means one new module (its ``emit``, declared) and one line in
:data:`TARGETS` (or a call to :func:`register`). The CLI imports every back-end module to
read the declarations, so a module must be cheap to import: nothing heavier than the
front end at its top (the ONNX back end keeps ``onnx`` and ``numpy`` in
:mod:`resdsl.backends.onnx_lowering`, imported by ``emit``); ``resdsl check`` never
imports torch or onnx.
"""

from __future__ import annotations

import functools
import importlib
import operator
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..diagnostics import Note, did_you_mean

if TYPE_CHECKING:
    from ..ir import Network
    from ..passes import Reparameterization

# ---------------------------------------------------------------------------------- errors

#: An option named in an error's message or hint: ``{opset}``, or with a value ``{detail=layer}``.
_REFERENCE = re.compile(r"\{([a-z_][a-z0-9_]*)(?:=([^{}\s]+))?\}")


class BackendError(Exception):
    """A back end cannot lower a network as asked: weights that do not fit, an option the
    network cannot honour, a missing program.

    ``message`` and ``hint`` are templates: ``{name}`` is replaced by ``values[name]`` when
    given (user text: paths, names; inserted as is), else it names the option ``name``,
    optionally with a value, ``{detail=layer}``. ``str(err)`` and ``err.hint`` spell options
    as Python keywords (`` `detail="layer"` ``); :meth:`words` spells them another way
    (the CLI: ``--detail layer``).
    """

    def __init__(self, message: str, hint: str = "", **values: object):
        self.template, self.hint_template, self.values = message, hint, values
        text, self.hint = self.words(api_spelling)
        super().__init__(text)

    def words(self, spell: Callable[[str, str | None], str]) -> tuple[str, str]:
        """The message and the hint, with every option written ``spell(name, value)``."""
        return fill(self.template, spell, self.values), fill(self.hint_template, spell, self.values)


class OptionError(BackendError, ValueError):
    """The value given for option ``option`` is not one the back end takes."""

    def __init__(self, option: str, message: str, hint: str = "", **values: object):
        self.option = option
        super().__init__(message, hint, **values)


def fill(template: str, spell: Callable[[str, str | None], str], values: Mapping[str, object] = {}) -> str:
    """``template`` with each ``{name}`` replaced: by ``values[name]`` if given (as is,
    never read again), else by ``spell(name, None)``, an option; ``{name=value}`` by
    ``spell(name, value)``. Other braces stay as they are."""
    def one(m: re.Match) -> str:
        if m[1] in values and m[2] is None:
            return str(values[m[1]])
        return spell(m[1], m[2])

    return _REFERENCE.sub(one, template)


def api_spelling(name: str, value: str | None) -> str:
    """An option as a keyword argument: `` `seed` ``, `` `detail="layer"` ``, `` `fold_bn=True` ``."""
    if value is None:
        return f"`{name}`"
    literal = value in ("True", "False", "None") or re.fullmatch(r"-?[0-9]+", value)
    return f"`{name}={value if literal else repr(value)}`".replace("'", '"')


# ---------------------------------------------------------------------------------- options

@dataclass(frozen=True)
class Option:
    """One keyword option of a back end's ``emit``, and the ``compile`` flag for it.

    - ``name``: the keyword (``static_batch``); the flag is ``--static-batch``.
    - ``type``: command-line text to value (``int``, ``str``, ``str.upper``…); ``bool``
      makes a switch (``--fold-bn``) that sets ``True``.
    - ``choices``: the values allowed (checked for the API and the CLI alike).
    - ``check``: ``value -> value`` that refuses a bad value with :class:`OptionError`
      (a range, a type) and may normalise it (``lr`` to ``LR``); ``choices`` are
      checked after it.
    - ``default``: ``emit``'s default (a conformance test holds the signature to it).
    - ``help`` for ``--help`` (options named as in messages, ``{detail=layer}``);
      ``metavar`` the value's placeholder there.
    """

    name: str
    help: str
    type: Callable[[str], Any] = str
    choices: tuple = ()
    check: Callable[[Any], Any] | None = None
    default: Any = None
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def switch(self) -> bool:
        return self.type is bool

    def validate(self, value: Any) -> Any:
        """``value`` if this option takes it (normalised by ``check``); else :class:`OptionError`."""
        if self.switch and not isinstance(value, bool):
            raise OptionError(self.name, f"{{{self.name}}} is True or False, not {{value}}", value=repr(value))
        if self.check:
            value = self.check(value)
        if self.choices and value not in self.choices:
            shown = ", ".join(map(str, self.choices))
            raise OptionError(self.name, f"unknown {self.name.replace('_', ' ')} `{{value}}`",
                              hint=did_you_mean(str(value), [str(c) for c in self.choices])
                              or f"choose one of: {shown}", value=value)
        return value

    def parse(self, text: str) -> Any:
        """A value from command-line text (``type``, then :meth:`validate`); ``ValueError``
        or :class:`OptionError` if it is not one."""
        try:
            value = self.type(text)
        except (TypeError, ValueError):
            kind = "whole number" if self.type is int else getattr(self.type, "__name__", "value")
            raise OptionError(self.name, f"not a {kind}: {{text}}", text=repr(text)) from None
        return self.validate(value)


def whole_number(name: str, lo: int, hi: int, message: str, hint: str = "") -> Callable[[Any], int]:
    """A check for an ``int`` option in ``[lo, hi]`` (``bool`` is no number here; any other
    integer type, such as numpy's, is taken as the ``int`` it is); ``message`` and ``hint``
    say what is wrong, ``{value}`` the value."""
    def check(value: Any) -> int:
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise OptionError(name, f"{{{name}}} must be a whole number, got {{value}}", hint=hint,
                              value=repr(value)) from None
        if not lo <= value <= hi:
            raise OptionError(name, message, hint=hint, value=value)
        return value

    return check


#: The seed of the initial weights, shared by the back ends that make weights.
SEED = Option("seed", "seed for the initial weights", type=int, metavar="SEED",
              check=whole_number("seed", 0, 2**63 - 1, "a seed lies between 0 and 2**63 - 1, not {value}"))


#: The deploy form (:func:`resdsl.passes.reparameterize`), for the back ends that lower a
#: network for inference: the torch source and ONNX.
REPARAM = Option("reparam", "lower the inference (deploy) form: parallel conv/norm/identity branches summed "
                 "by an add (RepVGG's) merged into one conv with bias named `reparam_conv`, batch norms "
                 "folded into the convs before them; with {weights}, the weights are merged too",
                 type=bool, default=False)


def reparameterized(net: Network, reparam: bool) -> Reparameterization:
    """``net``'s re-parameterisation if ``reparam`` (none otherwise), and a note where it
    changes nothing."""
    from ..passes import Reparameterization, reparameterize

    if not reparam:
        return Reparameterization(net, ())
    plan = reparameterize(net)
    if not plan.merges:
        warnings.warn(Note(f"re-parameterisation: `{net.name}` has nothing to re-parameterise (no batch norm "
                           "after a conv, no parallel conv branches summed by an add)"), stacklevel=3)
    return plan


def declare(*options: Option) -> Callable[[Callable], Callable]:
    """Declare a back-end function's keyword options: each one given is checked by its
    :class:`Option` (and normalised) before the call; ``None`` stands for an option not
    given (its declared default), as an absent flag does. The function gets ``.options``."""
    by_name = {o.name: o for o in options}

    def wrap(function: Callable) -> Callable:
        @functools.wraps(function)
        def checked(*args: Any, **kwargs: Any) -> Any:
            for name, value in kwargs.items():
                if name in by_name:
                    option = by_name[name]
                    kwargs[name] = option.default if value is None else option.validate(value)
            return function(*args, **kwargs)

        checked.options = tuple(options)  # type: ignore[attr-defined]
        return checked

    return wrap


# ---------------------------------------------------------------------------------- targets

@dataclass(frozen=True)
class Target:
    """A ``--target``: its back end's module and function, and how its output is written."""

    name: str
    module: str  # resdsl.backends.<module>, or a dotted module path outside the package
    function: str
    extension: str
    binary: bool  # bytes that do not belong on a terminal
    help: str

    def load(self) -> Callable:
        """The back end's (declared) emit function; imports its module."""
        module = self.module if "." in self.module else f"resdsl.backends.{self.module}"
        return getattr(importlib.import_module(module), self.function)

    @property
    def options(self) -> tuple[Option, ...]:
        """The options its function declares (:func:`declare`)."""
        return getattr(self.load(), "options", ())


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("torch", "torch_source", "emit", ".py", False, "standalone PyTorch source"),
    Target("onnx", "onnx_graph", "emit", ".onnx", True, "ONNX model (weights included)"),
    Target("dot", "dot", "emit", ".dot", False, "Graphviz DOT text of the diagram"),
    Target("svg", "dot", "emit_svg", ".svg", False, "diagram as SVG (needs Graphviz's dot)"),
    Target("pdf", "dot", "emit_pdf", ".pdf", True, "diagram as PDF (needs Graphviz's dot)"),
    Target("png", "dot", "emit_png", ".png", True, "diagram as PNG, 200 dpi (needs Graphviz's dot)"),
]}


def register(target: Target) -> Target:
    """Add (or replace) a target: the one line a new back end needs besides its module."""
    TARGETS[target.name] = target
    return target


def target_options(targets: Iterable[Target] | None = None) -> dict[str, tuple[Option, tuple[str, ...]]]:
    """Every option of ``targets`` (default: all), with the targets that take it, in
    declaration order. Targets that share an option name must share its declaration."""
    out: dict[str, tuple[Option, tuple[str, ...]]] = {}
    for target in TARGETS.values() if targets is None else targets:
        for option in target.options:
            known, names = out.get(option.name, (option, ()))
            if known != option:
                raise TypeError(f"targets {', '.join(names)} and {target.name} declare option "
                                f"`{option.name}` differently")
            out[option.name] = (known, (*names, target.name))
    return out

