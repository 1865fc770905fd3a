"""ONNX back end: a ``ModelProto`` built directly from the checked IR with ``onnx.helper``.

The graph is written op by op from the IR, not traced from a torch module, so it holds
only the operators the network needs: no Identity chains, no Shape/Gather/Cast plumbing.

- Nodes follow the IR's topological order and are named by the op's spec path
  (``layer1.0.conv1``); an op that lowers to several nodes names its helpers
  ``<path>/<step>`` and its last node ``<path>``. Tensors carry the same names; the graph
  reads ``input`` (N×C×H×W, N symbolic as ``batch`` unless fixed) and writes ``output``.
- Initializers are named exactly like the torch back end's ``state_dict`` keys
  (``layer1.0.bn1.running_mean``); constants the lowering needs are named ``<path>/<what>``
  or ``const/<what>``, which no ``state_dict`` key can be (spec names have no ``/``).
- Each op's nodes come from the lowering registered for its primitive (:func:`onnx_lowering`;
  the built-ins' are in :mod:`resdsl.backends.onnx_builtins`): the one for the newest
  opset at or below the target's, so a lowering spells out a decomposition where an older
  opset lacks the operator (GELU, GroupNormalization…). A primitive without one is an
  error naming it, and nothing is written.
- Dropout, drop-path and identity are the identity at inference: they emit no node.
- Weights come from the torch back end's seeded initialisation (same seed, same tensors),
  from a safetensors file read as numpy arrays (torch is then never imported), or from a
  torch ``state_dict`` file loaded with ``weights_only=True``.
- With ``fold_bn`` every BN the IR marks foldable (:func:`resdsl.passes.foldable_batchnorms`)
  is folded into its convolution; otherwise there is one BatchNormalization per spec BN.
- With ``reparam`` the graph is that of the inference form (:func:`resdsl.passes.reparameterize`:
  RepVGG's parallel branches merged into one conv, batch norms folded), the weights merged.
- With ``dynamic_size`` the input's height and width are symbolic (``height``, ``width``)
  as well as its batch: lowerings that need a spatial size read it from the graph
  (``Shape``) where it depends on the input, and every Reshape is written with 0 / -1.
- Models past protobuf's 2 GB limit need ``external_data``: the tensors then go to a file
  beside the ``.onnx``, named by its content (:class:`ExternalDataModel`): the pair is
  published as one unit.

This module declares the options and checks them; the lowering itself is in
:mod:`resdsl.backends.onnx_lowering` (imported when a model is made), so reading the
options, as the CLI does for ``--help``, imports neither ``onnx`` nor ``numpy``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..ir import Network
from . import (  # noqa: F401  (onnx_builtins registers the built-ins' lowerings)
    REPARAM,
    SEED,
    BackendError,
    Option,
    OptionError,
    declare,
    onnx_builtins,
    reparameterized,
    whole_number,
)

# the registry's names, public here: a plugin registers with `onnx_graph.onnx_lowering`
from .onnx_registry import (  # noqa: F401
    ONNX,
    OnnxLowering,
    data_files,
    expected_state,
    lowering_for,
    onnx_lowering,
)

if TYPE_CHECKING:
    import onnx

    from .onnx_lowering import ExternalDataModel, Lowering

#: Opsets this back end emits and is tested at: 13 is the oldest still common (TensorRT,
#: mobile runtimes); 21 is the newest that onnxruntime ≥ 1.18 and onnx ≥ 1.16 both know.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 21, 17

#: protobuf refuses to serialise a message of 2 GiB or more.
PROTOBUF_LIMIT = 2**31 - 1

# ---------------------------------------------------------------------------------- options

WEIGHTS = Option("weights", "a state_dict to use as weights: .safetensors, or a torch file (.pt/.pth)",
                 metavar="FILE")
OPSET = Option("opset", f"ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})", type=int,
               default=DEFAULT_OPSET, metavar="N",
               check=whole_number("opset", MIN_OPSET, MAX_OPSET, "opset {value} is not supported by the onnx target",
                                  hint=f"choose {{opset}} between {MIN_OPSET} and {MAX_OPSET} "
                                       f"(default {DEFAULT_OPSET})"))
STATIC_BATCH = Option("static_batch", "fix the batch dimension to N (default: symbolic)", type=int, metavar="N",
                      check=whole_number("static_batch", 1, 2**31 - 1,
                                         "a batch size lies between 1 and 2**31 - 1, not {value}",
                                         hint="leave {static_batch} out for a symbolic batch dimension"))
DYNAMIC_SIZE = Option("dynamic_size", "symbolic input height and width (default: the spec's declared size)",
                      type=bool, default=False)
# The torch source carries no weights, so it has nothing to fold; in process, see
# resdsl.fold_batchnorms(model).
FOLD_BN = Option("fold_bn", "fold batch norms into the convolutions before them (inference)", type=bool,
                 default=False)
EXTERNAL_DATA = Option("external_data", "write the tensors to FILE.<digest>.data beside the model, named by their content (needed past 2 GB)",
                       type=bool, default=False)
ALLOW_NONFINITE = Option("allow_nonfinite", "accept NaN or infinite values in the weights", type=bool,
                         default=False)
OPTIONS = (SEED, WEIGHTS, OPSET, STATIC_BATCH, DYNAMIC_SIZE, FOLD_BN, REPARAM, EXTERNAL_DATA, ALLOW_NONFINITE)


@declare(*OPTIONS)
def emit(net: Network, *, seed: int | None = None, weights: str | Path | Mapping | None = None,
         opset: int = DEFAULT_OPSET, static_batch: int | None = None, dynamic_size: bool = False,
         fold_bn: bool = False, reparam: bool = False, external_data: bool = False,
         allow_nonfinite: bool = False) -> bytes | ExternalDataModel:
    """The serialised ONNX model for ``net``.

    ``weights`` is a path to a state_dict file (``.safetensors``, ``.pt``/``.pth``) or a
    mapping of tensors; without it the weights are the torch back end's for ``seed``
    (default 0). With ``reparam`` the graph is the inference form
    (:func:`resdsl.passes.reparameterize`): the weights, given for ``net`` as it is
    written, are merged. With ``external_data`` the result is an
    :class:`~resdsl.backends.onnx_lowering.ExternalDataModel`, which writes the ``.onnx``
    and its tensor file together. With ``dynamic_size`` the input's height and width are
    symbolic (the graph runs at any size the network accepts). Raises
    :class:`~resdsl.backends.OptionError` for bad options or weights and
    :class:`~resdsl.backends.BackendError` for a network the options cannot express,
    before anything is written.
    """
    from .onnx_lowering import ExternalDataModel

    lowering, provenance = _lower(net, seed, weights, opset, fold_bn, external_data, allow_nonfinite,
                                  dynamic_size, reparam)
    if external_data:
        return ExternalDataModel(lowering.model(static_batch, provenance))
    return lowering.serialize(static_batch, provenance)


@declare(*OPTIONS)
def build_model(net: Network, *, seed: int | None = None, weights: str | Path | Mapping | None = None,
                opset: int = DEFAULT_OPSET, static_batch: int | None = None, dynamic_size: bool = False,
                fold_bn: bool = False, reparam: bool = False, external_data: bool = False,
                allow_nonfinite: bool = False) -> onnx.ModelProto:
    """The ONNX ``ModelProto`` for ``net`` (see :func:`emit` for the options).

    Without ``external_data`` a model too large for protobuf is refused with a
    :class:`~resdsl.backends.BackendError` that says to use it.
    """
    lowering, provenance = _lower(net, seed, weights, opset, fold_bn, external_data, allow_nonfinite,
                                  dynamic_size, reparam)
    return lowering.model(static_batch, provenance)


def _lower(net: Network, seed: int | None, weights: str | Path | Mapping | None, opset: int,
           fold_bn: bool, external_data: bool, allow_nonfinite: bool = False,
           dynamic_size: bool = False, reparam: bool = False) -> tuple[Lowering, str]:
    from .fold import reparameterize_arrays
    from .onnx_lowering import Lowering, load_weights, seeded_state

    if weights is not None and seed is not None:
        raise OptionError("weights", "{seed} and {weights} exclude each other",
                          hint="a seed chooses initial weights; {weights} gives them")
    if weights is None:
        seed = 0 if seed is None else seed
        # a network without weights needs no torch to initialise them
        state, provenance = (seeded_state(net, seed) if expected_state(net) else {}), f"seed {seed}"
    else:
        state, provenance = load_weights(net, weights, allow_nonfinite)
    plan = reparameterized(net, reparam)
    if plan.merges:  # the training form's weights (checked against it above), merged
        state, net = reparameterize_arrays(plan.merges, state), plan.network
        provenance += ", re-parameterised"
    lowering = Lowering(net, state, opset, fold_bn, dynamic=bool(dynamic_size))
    lowering.run()
    if not external_data:
        # The tensors, and a generous kilobyte for each node's and tensor's description.
        size = sum(t.nbytes for t in lowering.initializers) + 1024 * (len(lowering.nodes) +
                                                                     len(lowering.initializers))
        if size > PROTOBUF_LIMIT:
            raise BackendError(f"the model's tensors take {size / 2**30:.2f} GiB, over protobuf's 2 GiB "
                               "limit for one .onnx file",
                               hint="use {external_data=True} to write the tensors to a file beside the .onnx")
    return lowering, provenance
