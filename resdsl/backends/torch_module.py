"""Torch back end, in process: a checked network as an ``nn.Module``.

Module paths, and so ``state_dict`` keys, are the spec's names (``layer1.0.conv1``).
The forward pass runs the IR's ops in their (topological) order; ops without a module
(``add``, unnamed activations, option-A padding) run as torch functions.

Initialisation follows torchvision: Kaiming-normal (fan_out, ReLU) conv weights, BN
scale 1 and shift 0, a BN marked ``zero_init`` scaled to 0, torch's defaults elsewhere.
With a seed, weights are reproducible and independent of the global RNG.

Beyond a plain classifier: ``out_indices`` returns stage outputs (as timm's
``features_only``), drop-path ops of the spec give stochastic depth in training mode, and
:func:`fold_batchnorms` folds BNs into the convs before them for inference.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from ..ir import INPUT, Network, Op
from ..passes import foldable_batchnorms, reductions
from .fold import fold_conv_bn

#: Unnamed activations run as functions (named ones are the modules in _ACTIVATIONS).
_FUNCTIONAL_ACTIVATIONS = {
    "relu": F.relu, "relu6": F.relu6, "gelu": F.gelu, "silu": F.silu,
    "hardswish": F.hardswish, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}

_ACTIVATIONS = {
    "relu": nn.ReLU, "relu6": nn.ReLU6, "gelu": nn.GELU, "silu": nn.SiLU,
    "hardswish": nn.Hardswish, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
}


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch per sample, rescale the survivors."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole samples with probability ``p`` in training, scaling the rest by 1 / (1 - p)."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


def zero_pad(x: torch.Tensor, stride: int, out_channels: int) -> torch.Tensor:
    """The option-A shortcut: subsample, then pad the new channels with zeros (half before)."""
    x = x[:, :, ::stride, ::stride]
    extra = out_channels - x.shape[1]
    return F.pad(x, (0, 0, 0, 0, extra // 2, extra - extra // 2))


# Both read the tensor's shape as Python numbers: torch.fx keeps them as leaf calls.
torch.fx.wrap("drop_path")
torch.fx.wrap("zero_pad")


def make_module(op: Op, in_shape: tuple[int, ...]) -> nn.Module:
    """The torch module for an op (only ops whose ``module`` is set have one)."""
    a = dict(op.attrs)
    k = op.kind
    if k == "conv":
        return nn.Conv2d(in_shape[0], a["out_channels"], a["kernel_size"], a["stride"], a["padding"],
                         a["dilation"], a["groups"], a["bias"])
    if k == "batchnorm":
        return nn.BatchNorm2d(in_shape[0], eps=a["eps"], momentum=a["momentum"])
    if k in _ACTIVATIONS:
        return _ACTIVATIONS[k]()
    if k == "leaky_relu":
        return nn.LeakyReLU(a["negative_slope"])
    if k == "maxpool":
        return nn.MaxPool2d(a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                            ceil_mode=a["ceil_mode"])
    if k == "avgpool":
        return nn.AvgPool2d(a["kernel_size"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                            count_include_pad=a["count_include_pad"])
    if k == "global_avgpool":
        return nn.AdaptiveAvgPool2d(1)
    if k == "flatten":
        return nn.Flatten(1)
    if k == "linear":
        return nn.Linear(in_shape[0], a["out_features"], a["bias"])
    if k == "dropout":
        return nn.Dropout(a["p"])
    if k == "drop_path":
        return DropPath(a["p"])
    if k == "identity":
        return nn.Identity()
    raise ValueError(f"no torch module for `{k}`")  # the IR marks these ops functional


def functional(op: Op, xs: list[torch.Tensor], training: bool) -> torch.Tensor:
    """Run an op that has no module."""
    a = dict(op.attrs)
    k, x = op.kind, xs[0]
    if k == "add":
        out = xs[0] + xs[1]
        for y in xs[2:]:
            out = out + y
        return out
    if k == "multiply":
        out = xs[0] * xs[1]
        for y in xs[2:]:
            out = out * y
        return out
    if k == "zeropad":
        return zero_pad(x, a["stride"], a["out_channels"])
    if k in _FUNCTIONAL_ACTIVATIONS:
        return _FUNCTIONAL_ACTIVATIONS[k](x)
    if k == "leaky_relu":
        return F.leaky_relu(x, a["negative_slope"])
    if k == "maxpool":
        return F.max_pool2d(x, a["kernel_size"], a["stride"], a["padding"], a["dilation"],
                            ceil_mode=a["ceil_mode"])
    if k == "avgpool":
        return F.avg_pool2d(x, a["kernel_size"], a["stride"], a["padding"], ceil_mode=a["ceil_mode"],
                            count_include_pad=a["count_include_pad"])
    if k == "global_avgpool":
        return F.adaptive_avg_pool2d(x, 1)
    if k == "flatten":
        return torch.flatten(x, 1)
    if k == "dropout":
        return F.dropout(x, a["p"], training)
    if k == "drop_path":
        return drop_path(x, a["p"], training)
    if k == "identity":
        return x
    raise ValueError(f"`{k}` needs a module")  # conv, batchnorm and linear always have names


class ResDSLNetwork(nn.Module):
    """A network built from a checked spec; submodules are named as in the spec.

    With ``out_indices``, ``forward`` returns a list of feature maps instead of the
    network output, as timm's ``features_only``: index 0 is the stem's output before its
    final pooling (timm's ``act1``), index ``i`` the output of stage ``i`` (``layer{i}``);
    layers after the last one asked for do not run. ``feature_info`` describes each
    (channels, reduction, op name).
    """

    def __init__(self, net: Network, out_indices: Sequence[int] | None = None):
        super().__init__()
        self.spec_name = net.name
        self.input_shape = net.input_shape
        self._ops = net.ops
        registered: set[str] = set()
        for op in net.ops:
            if op.module is not None and op.module not in registered:
                _register(self, op.module, make_module(op, net.shape_of(op.inputs[0])))
                registered.add(op.module)
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
        self._link()

    def _link(self) -> None:
        """(Re)bind each op to its module; called again after modules are replaced."""
        last = max((i for i, op in enumerate(self._ops) if op.name in self._features), default=None)
        ops = self._ops if last is None else self._ops[:last + 1]
        self._steps = [(op, self.get_submodule(op.module) if op.module else None) for op in ops]
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
            values[op.name] = module(xs[0]) if module is not None else functional(op, xs, self.training)
        return values

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        values = {INPUT: x}
        for (op, module), release in zip(self._steps, self._release):
            xs = [values[i] for i in op.inputs]
            values[op.name] = module(xs[0]) if module is not None else functional(op, xs, self.training)
            for name in release:
                del values[name]
        if self._features:
            return [values[n] for n in self._features]
        return values[self._output]

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}, input={'×'.join(map(str, self.input_shape))}"


def feature_points(net: Network) -> list[str]:
    """Op names whose outputs are the feature maps: the stem's (before its trailing pooling,
    as timm), then each stage's."""
    from ..stats import sections
    points = []
    for section in sections(net):
        if section.kind == "head":
            break
        if section.kind == "stem":
            ops = list(section.ops)
            while len(ops) > 1 and net.op(ops[-1]).kind in ("maxpool", "avgpool"):
                ops.pop()
            points.append(ops[-1])
        else:
            points.append(section.scope.output)
    if not points or any(s.kind != "stage" for s in sections(net)[1:len(points)]):
        raise ValueError(f"{net.name} has no stem followed by stages")
    return points


def _register(root: nn.Module, path: str, module: nn.Module) -> None:
    parent = root
    *containers, leaf = path.split(".")
    for name in containers:
        if name not in parent._modules:
            parent.add_module(name, nn.Module())
        parent = parent._modules[name]
    parent.add_module(leaf, module)


def init_weights(model: nn.Module, net: Network) -> None:
    """torchvision's initialisation, plus zero-init of BNs the spec marks."""
    zero = {op.module for op in net.ops if op.kind == "batchnorm" and op.attr("zero_init")}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 0.0 if name in zero else 1.0)
            nn.init.zeros_(m.bias)


def build(net: Network, *, seed: int | None = 0,
          out_indices: Sequence[int] | None = None) -> ResDSLNetwork:
    """An ``nn.Module`` for ``net``; ``seed`` makes the initial weights reproducible
    (``None`` draws from torch's global random state). ``out_indices`` makes it a feature
    extractor (see :class:`ResDSLNetwork`); the weights do not depend on it."""
    if seed is None:
        model = ResDSLNetwork(net, out_indices)
        init_weights(model, net)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResDSLNetwork(net, out_indices)
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
        if bn.running_mean is None:  # track_running_stats=False: batch statistics even in eval
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
