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

The work is split by responsibility: :mod:`.names` (identifiers), :mod:`.layers` (what
the lowering registry says about an op), :mod:`.classes` (scopes grouped into classes and
their parameters), :mod:`.render` (each class's lines), :mod:`.interface` (timm's model
interface), :mod:`.helpers` (pasted helpers and ``reset_parameters``) and
:mod:`.templates` (the Jinja2 environment); this module puts them together.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from ...ir import Network
from ...passes import features_only, with_inplace
from ...stats import fmt_shape
from ...version import __version__
from .. import REPARAM, SEED, BackendError, declare, reparameterized, torch_builtins  # noqa: F401  (registers the built-ins' lowerings)
from .classes import Literal, Lowering, _dependency_order
from .helpers import _helper_text, _in_registry_order, _inits, _tensor_inits, _zero_init
from .interface import DEFAULT_CFG, INTERFACE_NAMES, TopView, _feature_ops, _interface, _interface_texts
from .names import MODULE_NAMES, Namespace, _helper_names, attr_ref, camel, is_identifier, path_ref
from .render import ClassView, Renderer, _annotation, _instances_doc
from .templates import _environment

__all__ = ["DEFAULT_CFG", "INTERFACE_NAMES", "MODULE_NAMES", "ClassView", "Namespace", "Source", "TopView",
           "_helper_names", "attr_ref", "camel", "emit", "is_identifier", "path_ref", "render"]


@declare(SEED, REPARAM)
def emit(net: Network, *, seed: int | None = None, reparam: bool = False) -> str:
    """Standalone PyTorch source for ``net`` (see the module docstring).

    ``seed`` becomes the default seed of the generated constructor function. With
    ``reparam`` it is the source of the inference form
    (:func:`resdsl.passes.reparameterize`), whose ``state_dict`` is what
    ``resdsl.reparameterize(model)`` holds. A network
    whose layers cannot be laid out as nested modules (a block reading a value computed
    inside another block) raises :class:`~resdsl.backends.BackendError`.
    """
    return render(reparameterized(net, reparam).network, seed=seed).text


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
        inits=_inits(net), zero_init=_zero_init(low, net, ordered), tensor_inits=_tensor_inits(low, net, ordered),
        api=api,
        **(_interface_texts(top) if not features else {}))
    return Source(text, top_name, function)
