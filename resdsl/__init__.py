"""resdsl: a compiler for ResNet-family architectures.

Write a network as a small ``.res`` spec; load it into a checked IR with :func:`load`
or :func:`loads`; lower it with the back ends (``resdsl compile``).

>>> import resdsl
>>> net = resdsl.loads('import std.resnet\\nnetwork r18 = resnet(block = basic, depths = [2, 2, 2, 2])')
>>> net.params
11689512
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .diagnostics import Diagnostic, SpecError
from .ir import Network, Op, Role, Scope
from .loader import Loader
from .primitives import (
    PRIMITIVES,
    Look,
    Primitive,
    PrimParam,
    ShapeError,
    SourceArg,
    SourceCall,
    SourceHelper,
    SourceInit,
    param,
    register_primitive,
)

__version__ = "0.1.0"

__all__ = ["load", "loads", "build", "transplant", "Network", "Op", "Scope", "Role", "Diagnostic", "SpecError", "__version__",
           # the op registry and the plugin API (resdsl.primitives; docs/language.md, "Your own primitives")
           "PRIMITIVES", "Primitive", "PrimParam", "param", "Look", "ShapeError", "SourceArg", "SourceCall",
           "SourceHelper", "SourceInit", "register_primitive"]


def load(path: str | Path, *, network: str | None = None, allow_large: bool = False) -> Network:
    """Load the spec at ``path`` and return its checked network.

    The network is the last one the file defines, or the one named ``network``.
    Networks over the size budget (``resdsl.limits``) are refused unless ``allow_large``.
    Raises :class:`SpecError` with every diagnostic found.
    """
    return Loader(allow_large=allow_large).load(path, network=network)


def loads(text: str, path: str | Path | None = None, *, network: str | None = None,
          allow_large: bool = False) -> Network:
    """Like :func:`load`, for spec text; ``path`` names it in diagnostics.

    Imports of files resolve relative to ``path``'s folder; without a path the text has no
    folder (the current one is never assumed), so only the standard library can be imported.
    """
    loader = Loader(allow_large=allow_large)
    if path is None:
        path, loader.has_folder = "<string>", False
    return loader.load(path, text=text, network=network)


def build(spec: str | Path | Network, *, seed: int | None = 0, network: str | None = None,
          out_indices: Sequence[int] | None = None, inplace: bool = True):
    """An ``nn.Module`` for a spec path or a checked :class:`Network` (needs torch).

    Module names and ``state_dict`` keys are the spec's names; ``seed`` makes the
    initial weights reproducible (``None`` uses torch's global random state). With
    ``out_indices`` the module returns those feature maps (0: the stem before its last
    pooling, 1…: the stages), like timm's ``features_only``. Activations and residual adds
    run in place where nothing else reads what they overwrite; ``inplace=False`` turns
    that off (the outputs and gradients are the same).
    """
    from .backends.torch_module import build as _build

    net = spec if isinstance(spec, Network) else load(spec, network=network)
    return _build(net, seed=seed, out_indices=out_indices, inplace=inplace)


def transplant(spec: str | Path | Network, checkpoint, *, seed: int | None = 0, network: str | None = None):
    """Load a checkpoint into a (modified) network by name and shape (needs torch).

    Returns ``(state_dict, report)``: a complete ``state_dict`` that loads with
    ``strict=True`` into ``build(spec)``, and a report naming every tensor copied,
    adapted (the input conv, to another channel count, as timm's ``adapt_input_conv``),
    kept at the spec's seeded initialisation, or left unused, with reasons. ``checkpoint``
    is a safetensors or torch file, or a state_dict. See :mod:`resdsl.weight_transplant`.
    """
    from .weight_transplant import transplant as _transplant

    return _transplant(spec, checkpoint, seed=seed, network=network)
