"""Torch back end, in process: a checked network as an ``nn.Module``.

Module paths, and so ``state_dict`` keys, are the spec's names (``layer1.0.conv1``).
The forward pass runs the IR's ops in their (topological) order; ops without a module
(``add``, unnamed activations, option-A padding) run as torch functions. Both the
modules and the functions come from the op registry (:mod:`resdsl.primitives`).

Initialisation follows torchvision: Kaiming-normal (fan_out, ReLU) conv weights, BN
scale 1 and shift 0, a norm marked ``zero_init`` scaled to 0, torch's defaults elsewhere.
With a seed, weights are reproducible and independent of the global RNG. Convolutions
and batch norms are built once: made without torch's default initialisation
(:func:`~resdsl.backends.torch_layers.uninitialised`, on the default device), which
Kaiming-normal and the unit scale would overwrite, then initialised by :func:`init_weights`
(a conv bias starts at zero); the generated source skips the same random draws
(``nn.utils.skip_init`` for convolutions), so both still start from the same weights for
a seed.

Beyond a plain classifier: ``out_indices`` returns stage outputs (as timm's
``features_only``), drop-path ops of the spec give stochastic depth in training mode, and
:func:`fold_batchnorms` folds BNs into the convs before them for inference.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..ir import INPUT, Network, Op, Role
from ..passes import foldable_batchnorms, reductions, with_inplace
from ..primitives import PRIMITIVES
from .fold import fold_conv_bn
from .torch_layers import DropPath, drop_path, zero_pad

# Re-exported: these lived here before the registry, and user code imports them from here.
__all__ = ["ResDSLNetwork", "build", "fold_batchnorms", "feature_points", "init_weights", "make_module",
           "functional", "DropPath", "drop_path", "zero_pad"]


def make_module(op: Op, in_shapes: list[tuple[int, ...]]) -> nn.Module:
    """The torch module for an op (only ops whose ``module`` is set have one). Kinds built
    once (a conv) come uninitialised: :func:`init_weights` initialises them."""
    prim = PRIMITIVES[op.kind]
    if prim.torch_module is None:
        raise ValueError(f"`{op.kind}` has no torch module")  # the registry checks entries
    return prim.torch_module(dict(op.attrs), in_shapes)


def functional(op: Op, xs: list[torch.Tensor], training: bool) -> torch.Tensor:
    """Run an op that has no module."""
    prim = PRIMITIVES[op.kind]
    if prim.torch_function is None:
        raise ValueError(f"`{op.kind}` needs a module")  # layers with weights always have names
    return prim.torch_function(dict(op.attrs), xs, training)


class ResDSLNetwork(nn.Module):
    """A network built from a checked spec; submodules are named as in the spec.

    With ``out_indices``, ``forward`` returns a list of feature maps instead of the
    network output, as timm's ``features_only``: index 0 is the stem's output before its
    final pooling (timm's ``act1``), index ``i`` the output of stage ``i`` (``layer{i}``);
    layers after the last one asked for do not run. ``feature_info`` describes each
    (channels, reduction, op name).

    Activations and residual adds run in place (``ReLU(inplace=True)``, ``out += shortcut``)
    where :func:`resdsl.passes.inplace_ops` finds nothing else reads the value they
    overwrite, as torchvision's do; ``inplace=False`` runs every op out of place.
    """

    def __init__(self, net: Network, out_indices: Sequence[int] | None = None, *, inplace: bool = True):
        super().__init__()
        self.spec_name = net.name
        self.input_shape = net.input_shape
        self._output = net.output
        self._features: tuple[str, ...] = ()
        self.feature_info: list[dict] = []
        if out_indices is not None:
            points = feature_points(net)
            for i in out_indices:
                if not -len(points) <= i < len(points):
                    raise ValueError(f"out_indices: {i} is out of range; {net.name} has "
                                     f"{len(points)} feature points (stem and {len(points) - 1} stages)")
            self._features = tuple(points[i] for i in out_indices)
            reduction = reductions(net)
            self.feature_info = [{"num_chs": net.shape_of(n)[0],
                                  "reduction": reduction[n], "op": n}
                                 for n in self._features]
        if inplace:  # feature outputs are returned, so nothing may overwrite them
            net = with_inplace(net, keep=self._features)
        self._ops = net.ops
        self._inplace = frozenset(op.name for op in net.ops if dict(op.attrs).get("inplace"))
        registered: set[str] = set()
        lists = list_containers(net)
        for op in net.ops:
            if op.module is not None and op.module not in registered:
                _register(self, op.module, make_module(op, [net.shape_of(i) for i in op.inputs]), lists)
                registered.add(op.module)
        self._link()

    def _link(self) -> None:
        """(Re)bind each op to its module; called again after modules are replaced."""
        last = max((i for i, op in enumerate(self._ops) if op.name in self._features), default=None)
        ops = self._ops if last is None else self._ops[:last + 1]
        modules = dict(self.named_modules(remove_duplicate=False))  # one walk, not one per op
        self._steps = [(op, modules[op.module] if op.module else None) for op in ops]
        # the function and attributes of each moduleless op, looked up once
        self._calls = {op.name: (PRIMITIVES[op.kind].torch_function, dict(op.attrs))
                       for op, module in self._steps if module is None}
        # values to drop after each step (their last reader), so that forward holds no more
        # activations than a hand-written network does
        keep = set(self._features) | {self._output}
        last_read = {name: i for i, (op, _) in enumerate(self._steps) for name in op.inputs}
        self._release: list[tuple[str, ...]] = [() for _ in self._steps]
        for name, i in last_read.items():
            if name not in keep:
                self._release[i] += (name,)

    def values(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every op's output by op name (and ``input``): the IR's values, for inspection."""
        values = {INPUT: x}
        for op, module in self._steps:
            xs = [values[i] for i in op.inputs]
            if op.name in self._inplace:  # keep the value it would overwrite, for inspection
                xs[0] = xs[0].clone()
            values[op.name] = self._run(op, module, xs)
        return values

    def _run(self, op: Op, module: nn.Module | None, xs: list[torch.Tensor]) -> torch.Tensor:
        if module is not None:
            return module(*xs)
        function, attrs = self._calls[op.name]
        return function(attrs, xs, self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        values = {INPUT: x}
        for (op, module), release in zip(self._steps, self._release):
            values[op.name] = self._run(op, module, [values[i] for i in op.inputs])
            for name in release:
                del values[name]
        if self._features:
            return [values[n] for n in self._features]
        return values[self._output]

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}, input={'×'.join(map(str, self.input_shape))}"


def feature_points(net: Network) -> list[str]:
    """Op names whose outputs are the feature maps: the stem's, then each stage's.

    The stem's is the one the IR records (``Network.stem_feature``): before the stem's
    last downsampling, as timm's ``act1`` (see :mod:`resdsl.roles`)."""
    from ..stats import sections
    points = []
    for section in sections(net):
        if section.role in (Role.HEAD, Role.NETWORK):  # the head, or a network without stages
            break
        points.append(net.stem_feature if section.role is Role.STEM else section.scope.output)
    if not points or any(s.role is not Role.STAGE for s in sections(net)[1:len(points)]):
        raise ValueError(f"{net.name} has no stem followed by stages")
    return points


def list_containers(net: Network) -> set[str]:
    """Module paths that are only containers (no op or scope of their own) and whose children
    are named 0, 1, …, n-1: built as ``nn.ModuleList`` (``paths.0``, ``convs.1``); other
    containers are plain ``nn.Module`` s. Either way the ``state_dict`` keys are the paths."""
    children: dict[str, set[str]] = {}
    for path in net.modules():
        parts = path.split(".")
        for i in range(1, len(parts)):
            children.setdefault(".".join(parts[:i]), set()).add(parts[i])
    return {path for path, names in children.items()
            if names == {str(i) for i in range(len(names))}}


def _register(root: nn.Module, path: str, module: nn.Module, lists: set[str] = frozenset()) -> None:
    parent = root
    *containers, leaf = path.split(".")
    for i, name in enumerate(containers):
        if name not in parent._modules:
            where = ".".join(containers[:i + 1])
            parent.add_module(name, nn.ModuleList() if where in lists else nn.Module())
        parent = parent._modules[name]
    parent.add_module(leaf, module)


def init_weights(model: nn.Module, net: Network) -> None:
    """Each layer's initialisation from the registry (torchvision's: Kaiming-normal convs,
    unit-scale norms), in module order, then zero scales where the spec asks for them."""
    modules = net.modules()
    for name, m in model.named_modules():
        op = modules.get(name)
        if op is None:
            continue
        prim, attrs = PRIMITIVES[op.kind], dict(op.attrs)
        if prim.init is not None:
            prim.init(m, attrs)
        if prim.zero_init is not None and attrs.get("zero_init"):
            nn.init.zeros_(getattr(m, prim.zero_init))


def build(net: Network, *, seed: int | None = 0,
          out_indices: Sequence[int] | None = None, inplace: bool = True) -> ResDSLNetwork:
    """An ``nn.Module`` for ``net``; ``seed`` makes the initial weights reproducible
    (``None`` draws from torch's global random state). ``out_indices`` makes it a feature
    extractor (see :class:`ResDSLNetwork`); the weights do not depend on it, nor on
    ``inplace`` (``False`` runs every op out of place)."""
    if seed is None:
        model = ResDSLNetwork(net, out_indices, inplace=inplace)
        init_weights(model, net)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResDSLNetwork(net, out_indices, inplace=inplace)
        init_weights(model, net)
    return model


def fold_batchnorms(model: ResDSLNetwork, net: Network) -> ResDSLNetwork:
    """An inference copy of ``model`` with every foldable BN folded into its conv.

    The copy is in eval mode; each folded conv gains a bias and its BN becomes an
    ``nn.Identity`` (so the ``state_dict`` differs from the original's). Outputs equal the
    original's in eval mode up to float rounding. Which BNs fold is
    :func:`resdsl.passes.foldable_batchnorms`' decision.
    """
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
    folded._link()
    return folded


def _replace(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    root.get_submodule(parent).add_module(leaf, module)
