"""resdsl: a compiler for ResNet-family architectures.

Write a network as a small ``.res`` spec; load it into a checked IR with :func:`load`
or :func:`loads`; lower it with the back ends (``resdsl compile``).

>>> import resdsl
>>> net = resdsl.loads('import std.resnet\\nnetwork r18 = resnet(block = basic, depths = [2, 2, 2, 2])')
>>> net.params
11689512
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .diagnostics import Diagnostic, SpecError
from .ir import Network, Op, Role, Scope
from .loader import check_arguments, check_out_indices, check_seed, load, loads
from .looks import Look, register_look
from .models import ModelError, create_model, list_models, pretrained_tags, save_pretrained
from .primitives import PRIMITIVES, Primitive, PrimParam, ShapeError, Traits, param, register_primitive
from .resources import shipped_specs
from .version import __version__

#: The back ends' registration API, imported on first use: checking a spec imports no back end.
_LAZY = {**dict.fromkeys(("torch_lowering", "SourceArg", "SourceCall", "SourceHelper", "SourceInit"),
                         "resdsl.backends.torch_lowering"),
         "onnx_lowering": "resdsl.backends.onnx_graph"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resdsl' has no attribute {name!r}")


__all__ = ["load", "loads", "build", "transplant", "from_torch", "list_specs", "values", "fold_batchnorms", "reparameterize", "Network", "Op", "Scope", "Role", "Diagnostic", "SpecError", "__version__",
           # timm's model API (resdsl.models)
           "create_model", "list_models", "pretrained_tags", "save_pretrained", "ModelError",
           # the op registry and the plugin API (resdsl.primitives; docs/language.md, "Your own primitives")
           "PRIMITIVES", "Primitive", "PrimParam", "param", "Traits", "ShapeError", "register_primitive",
           # each back end's lowerings for a primitive (docs/language.md, "Your own primitives")
           "torch_lowering", "SourceArg", "SourceCall", "SourceHelper", "SourceInit", "onnx_lowering", "Look",
           "register_look"]


def list_specs() -> list[str]:
    """The names of the shipped specs, which :func:`load` and :func:`build` take by name."""
    return shipped_specs()


def build(spec: str | Path | Network, *, seed: int | None = None, network: str | None = None,
          out_indices: Sequence[int] | None = None, inplace: bool = True):
    """A torch module for a spec path, a shipped spec's name or a checked :class:`Network`.

    The module is an instance of the classes ``resdsl compile --target torch`` writes,
    loaded in memory (:mod:`resdsl.backends.torch_model`): module names and ``state_dict``
    keys are the spec's, and it behaves as a hand-written module does (replace ``fc``, hook
    a block, script, pickle). ``seed=None`` draws the initial weights from torch's global
    random state, as torchvision's constructors do (``torch.manual_seed`` first for
    reproducible runs); ``seed=N`` gives the weights of the generated file's constructor with
    that seed, and leaves the global state alone. With ``out_indices`` the module is a
    feature extractor like timm's ``features_only``: it returns those feature maps (0: the
    stem before its last pooling, 1…: the stages), holds only what they need, and describes
    them in ``feature_info``. Activations and residual adds run in place where nothing else
    reads what they overwrite; ``inplace=False`` turns that off (the outputs and gradients
    are the same).
    """
    from .backends.torch_model import build as _build

    check_seed(seed)
    check_arguments("build", flags={"inplace": inplace}, network=network)
    if not isinstance(spec, Network):
        check_arguments("build", path=spec)
        if spec is None:
            raise TypeError("build: `spec` is a spec path, a shipped spec's name or a Network, not None")
    if isinstance(spec, Network):
        if network is not None:
            raise TypeError("build: `network` picks a network of a spec file; a Network is already one")
        net = spec
    else:
        net = load(spec, network=network)
    check_out_indices(out_indices)
    return _build(net, seed=seed, out_indices=out_indices, inplace=inplace)






def values(model, x):
    """Every module's output of ``model`` (built by :func:`build`) for input ``x``, by op
    name: the network's intermediate values, for inspection (needs torch)."""
    from .backends.torch_model import values as _values

    return _values(model, x)


def fold_batchnorms(model):
    """An inference copy of ``model`` (built by :func:`build`) with its batch norms folded
    into the convs before them (needs torch); see :mod:`resdsl.backends.torch_model`."""
    from .backends.torch_model import fold_batchnorms as _fold

    return _fold(model)


def reparameterize(model):
    """The inference (deploy) form of ``model``, a module built by :func:`build`: parallel
    conv/norm/identity branches summed by an add (RepVGG's) merged into one conv with bias,
    and each batch norm folded into the conv before it (needs torch).

    Returns a new model of the generated classes of the merged network (what ``resdsl
    compile --reparam`` writes), in eval mode, holding the merged weights; its outputs equal
    ``model.eval()``'s up to float rounding. A merged conv is named ``reparam_conv`` in its
    block (timm's deploy-form name), or by the spec's label on the add. Given a checked
    :class:`Network` instead, returns the merged :class:`Network` (for ``stats``, figures,
    tables). See :func:`resdsl.passes.reparameterize` and docs/language.md,
    "Re-parameterisation".
    """
    if isinstance(model, Network):
        from .passes import reparameterize as _pass

        return _pass(model).network
    from .backends.torch_model import reparameterize as _reparameterize

    return _reparameterize(model)


def from_torch(model, input_size: tuple[int, int, int] = (3, 224, 224), *, name: str | None = None,
               source: str | None = None) -> str:
    """The `.res` spec of an existing torch model of the family, checked (needs torch).

    Traced with torch.fx; each layer becomes the registry primitive whose ``recognise``
    accepts it; the spec is the standard library's call where one builds the same network,
    else one definition per distinct block structure, names kept. Before it is returned the
    spec is built, ``model.state_dict()`` loaded into it with ``strict=True`` and the outputs
    compared. Raises :class:`resdsl.importer.ImportFailure` for what cannot be imported.
    See :mod:`resdsl.importer` and docs/importing.md.
    """
    from .importer import from_torch as _from_torch

    return _from_torch(model, input_size, name=name, source=source)


def transplant(spec: str | Path | Network, checkpoint, *, seed: int | None = 0, network: str | None = None,
               allow_nonfinite: bool = False):
    """Load a checkpoint into a (modified) network by name and shape (needs torch).

    Returns ``(state_dict, report)``: a complete ``state_dict`` that loads with
    ``strict=True`` into ``build(spec)``, and a report naming every tensor copied,
    adapted (the input conv, to another channel count, as timm's ``adapt_input_conv``),
    kept at the spec's seeded initialisation, or left unused, with reasons. ``checkpoint``
    is a safetensors or torch file, or a state_dict. Raises ``resdsl.checkpoints.CheckpointError`` for a
    file that is not a checkpoint, ``OSError`` for one that cannot be read (a missing file).
    See :mod:`resdsl.weight_transplant`.
    """
    from .weight_transplant import transplant as _transplant
    check_seed(seed, "transplant")
    check_arguments("transplant", network=network, flags={"allow_nonfinite": allow_nonfinite})
    if not isinstance(spec, Network):
        check_arguments("transplant", path=spec)
    if not isinstance(checkpoint, str | os.PathLike | Mapping):
        raise TypeError(f"transplant: `checkpoint` is a file name or a state_dict (a mapping of names to "
                        f"tensors), not {type(checkpoint).__name__}")

    return _transplant(spec, checkpoint, seed=seed, network=network, allow_nonfinite=allow_nonfinite)
