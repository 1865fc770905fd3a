"""Torch back end, in process: the generated source, loaded as a module.

``resdsl.build`` renders the network's PyTorch source (:mod:`resdsl.backends.torch_source`,
the file ``compile --target torch`` writes) in memory, executes it as a module of its own
and calls its constructor, so the model is a real module tree of the generated classes:
replacing ``fc``, converting to SyncBN, hooks on a block, ``torch.jit.script``, pickling
and ``torch.compile`` behave as on torchvision's. There is one torch lowering; nothing
here interprets the IR.

A loaded source is registered in ``sys.modules`` under a name made from its digest
(``resdsl._generated.resnet50_3f2a…``) and its text in :mod:`linecache`, so its classes
have a ``__module__``, ``inspect.getsource`` works and ``torch.save(model)`` loads again
in the same process. The same source is loaded once.

Every model carries the checked network it was built from (:func:`network_of`), for
:func:`fold_batchnorms` and :func:`values`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import linecache
import sys
import threading
import types
from collections.abc import Sequence

import torch
from torch import nn

from ..ir import INPUT, Network
from ..loader import described
from ..passes import foldable_batchnorms
from ..passes import reparameterize as reparameterize_network
from ..roles import FeaturePoint, feature_points
from .fold import fold_conv_bn, reparameterize_arrays
from .torch_lowering import TORCH
from .torch_source import Source, render

__all__ = ["FeatureInfo", "build", "fold_batchnorms", "load_source", "network_of", "reparameterize", "values"]

#: The attribute a built model keeps its network under (a name the language refuses for a
#: layer, so no spec's module can sit there).
NETWORK_ATTR = "resdsl_network"

#: The package the loaded sources are registered under.
PACKAGE = "resdsl._generated"

_loaded: dict[str, types.ModuleType] = {}
_loading = threading.Lock()
#: Seeded builds set torch's global generator for the length of a construction (as the
#: generated constructor does): one at a time, so threads building with seeds at once each
#: get the weights of their seed.
_seeding = threading.Lock()


def load_source(source: str, name: str = "model") -> types.ModuleType:
    """Execute generated source as a module (once per distinct text) and return it."""
    digest = hashlib.sha256(source.encode()).hexdigest()[:20]
    with _loading:
        module = _loaded.get(digest)
        if module is None:
            stem = "".join(c if c.isalnum() else "_" for c in name.lower())
            qualified = f"{PACKAGE}.{stem}_{digest}"
            filename = f"<resdsl-generated {stem}_{digest}.py>"
            module = types.ModuleType(qualified)
            module.__file__ = filename
            linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
            sys.modules[qualified] = module
            exec(compile(source, filename, "exec"), module.__dict__)
            _loaded[digest] = module
    return module


class FeatureInfo:
    """What a feature extractor returns, as timm's ``FeatureInfo``: one entry per output, with
    ``num_chs``, ``reduction`` and ``module`` (the module that makes it), and ``op``, the
    op of the network whose output it is."""

    def __init__(self, points: Sequence[FeaturePoint], out_indices: Sequence[int]):
        self.info = [{"num_chs": points[i].channels, "reduction": points[i].reduction,
                      "module": points[i].module, "index": i, "op": points[i].op} for i in out_indices]
        self.out_indices = tuple(out_indices)

    def get(self, key: str, idx: int | Sequence[int] | None = None):
        if idx is None:
            return [f[key] for f in self.info]
        if isinstance(idx, int):
            return self.info[idx][key]
        return [self.info[i][key] for i in idx]

    def get_dicts(self, keys: Sequence[str] | None = None, idx: int | Sequence[int] | None = None):
        rows = self.info if idx is None else [self.info[idx]] if isinstance(idx, int) else [self.info[i] for i in idx]
        return [dict(r) if keys is None else {k: r[k] for k in keys} for r in rows]

    def channels(self, idx: int | Sequence[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | Sequence[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | Sequence[int] | None = None):
        return self.get("module", idx)

    def __getitem__(self, item: int) -> dict:
        return self.info[item]

    def __len__(self) -> int:
        return len(self.info)

    def __repr__(self) -> str:
        return f"FeatureInfo({self.info!r})"


@functools.lru_cache(maxsize=8)
def _rendered(net: Network, features: tuple[str, ...], inplace: bool) -> Source:
    """The generated source of ``net``, rendered once per process for repeated builds (seeds
    of one network, ``create_model`` in a loop): the IR is frozen, so equal networks give
    equal text."""
    return render(net, features=features, inplace=inplace)


def build(net: Network, *, seed: int | None = None, out_indices: Sequence[int] | None = None,
          inplace: bool = True) -> nn.Module:
    """An instance of ``net``'s generated classes.

    ``seed=None`` draws the initial weights from torch's global random state, as
    torchvision's constructors do; a seed makes them reproducible (the generated file's
    constructor with that seed gives the same ones) and leaves the global state alone.
    ``out_indices`` makes a feature extractor like timm's ``features_only``: 0 is the stem's
    feature map, ``i`` stage ``i``'s output; the module holds only what they need and its
    ``feature_info`` is a :class:`FeatureInfo`. ``inplace=False`` runs every op out of place.
    """
    features: tuple[str, ...] = ()
    points: list[FeaturePoint] = []
    if out_indices is not None:
        try:
            points = feature_points(net)
        except ValueError as err:
            raise ValueError(f"`out_indices`: {err}, so it has no feature maps to take") from None
        for i in out_indices:
            if not -len(points) <= i < len(points):
                raise ValueError(f"`out_indices`: {i} is out of range; {net.name} has "
                                 f"{len(points)} feature points (stem and {len(points) - 1} stages)")
        out_indices = [i % len(points) for i in out_indices]
        features = tuple(points[i].op for i in out_indices)
    source = _rendered(net, features, inplace)
    constructor = getattr(load_source(source.text, net.name), source.function)
    if seed is None:
        model = constructor()
    else:
        with _seeding:  # the constructor seeds torch's global generator for its length
            model = constructor(seed)
    model.__dict__[NETWORK_ATTR] = net
    if features:
        model.feature_info = FeatureInfo(points, out_indices)
    return model


def network_of(model: nn.Module, fn: str = "network_of") -> Network:
    """The checked network ``model`` was built from by ``resdsl.build``; a :class:`TypeError`
    worded for the public function ``fn`` for anything else."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: `model` is a module built by resdsl.build, not {described(model)}")
    net = model.__dict__.get(NETWORK_ATTR)
    if not isinstance(net, Network):
        raise TypeError(f"{fn}: `model` ({type(model).__name__}) was not built by resdsl.build: "
                        "it carries no network")
    return net


def values(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` and return the output of every op that has a module, by op
    name (a module applied twice gives ``relu`` and ``relu#2``), with ``input``: the IR's
    values, taken by forward hooks on the real modules (copies, so in-place layers after
    them do not change them); a learned tensor's is the parameter (no batch axis)."""
    net = network_of(model, "values")
    if not isinstance(x, torch.Tensor) or x.dim() != len(net.input_shape) + 1 or x.shape[1] != net.input_shape[0]:
        what = f"a tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else described(x)
        raise TypeError(f"values: `x` is a batch of {net.name}'s input, a tensor (N, "
                        f"{', '.join(map(str, net.input_shape))}), not {what}")
    uses: dict[str, list[str]] = {}
    found: dict[str, torch.Tensor] = {INPUT: x}
    for op in net.ops:
        if op.module is not None and TORCH.require(op.kind).module.tensor:
            # a learned tensor (`param`): its value is the parameter itself, no batch axis
            found[op.name] = model.get_parameter(op.module).detach().clone()
        elif op.module is not None:
            uses.setdefault(op.module, []).append(op.name)
    handles = []
    for path, names in uses.items():
        calls = iter(names)

        def hook(module, args, output, calls=calls):
            found[next(calls)] = output.detach().clone()

        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()
    return found


def fold_batchnorms(model: nn.Module) -> nn.Module:
    """An inference copy of ``model`` (built by ``resdsl.build``) with every foldable BN
    folded into its conv.

    The copy is in eval mode; each folded conv gains a bias and its BN becomes an
    ``nn.Identity`` (so the ``state_dict`` differs from the original's). Outputs equal the
    original's in eval mode up to float rounding. Which BNs fold is
    :func:`resdsl.passes.foldable_batchnorms`' decision: a BN right after a conv whose output
    nothing else reads (in a pre-activation block, only the BNs that follow a conv).
    """
    net = network_of(model, "fold_batchnorms")
    folded = copy.deepcopy(model).eval()
    for bn_name, conv_name in foldable_batchnorms(net).items():
        bn_path, conv_path = net.op(bn_name).module, net.op(conv_name).module
        conv, bn = folded.get_submodule(conv_path), folded.get_submodule(bn_path)
        if getattr(bn, "running_mean", None) is None:  # batch statistics even in eval: nothing to fold
            continue
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, conv.dilation, conv.groups, bias=True,
                          device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            w, b = fold_conv_bn(conv.weight, conv.bias, bn.weight, bn.bias, bn.running_mean,
                                bn.running_var, bn.eps)
            fused.weight.copy_(w)
            fused.bias.copy_(b)
        _replace(folded, conv_path, fused)
        _replace(folded, bn_path, nn.Identity())
    return folded


def reparameterize(model: nn.Module) -> nn.Module:
    """The deploy form of ``model`` (built by ``resdsl.build``): a new model of the generated
    classes of :func:`resdsl.passes.reparameterize`'s network, in eval mode, holding the
    merged weights (:func:`resdsl.backends.fold.reparameterize_arrays`), on the model's
    device and in its dtype. A feature extractor stays one, with the same ``out_indices``.
    Its outputs equal ``model.eval()``'s up to float rounding; ``model`` is left as it is.
    """
    net = network_of(model, "reparameterize")
    plan = reparameterize_network(net)
    state = model.state_dict()
    arrays = {k: v.detach().to("cpu", torch.float64).numpy() if v.is_floating_point() else v.detach().cpu().numpy()
              for k, v in state.items()}
    features = getattr(model, "feature_info", None)
    out_indices = features.out_indices if isinstance(features, FeatureInfo) else None
    # a feature extractor holds only the branches its features need: merge those
    merges = tuple(m for m in plan.merges if any(k in arrays for k in m.removed)) if out_indices else plan.merges
    try:
        merged = reparameterize_arrays(merges, arrays)
    except KeyError as err:
        raise ValueError(f"reparameterize: {err.args[0]}: was a layer of the model replaced?") from None
    deploy = build(plan.network, seed=0, out_indices=out_indices)
    dtype = {k: v.dtype for k, v in state.items()}
    floating = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    tensors = {k: torch.from_numpy(v).to(dtype.get(k, floating)) for k, v in merged.items()}
    deploy.to(dtype=floating)  # load_state_dict copies into the tensors' own dtype
    try:
        deploy.load_state_dict(tensors, strict=True)
    except RuntimeError as err:
        raise ValueError(f"reparameterize: the weights of `model` do not fit its network ({err}); "
                         "was a layer of the model replaced?") from None
    device = next((v.device for v in state.values()), None)
    if device is not None:
        deploy.to(device=device)
    return deploy.eval()


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    root.get_submodule(parent).add_module(leaf, module)
