"""Torch back end, in process: a checked network as an ``nn.Module``.

Module paths, and so ``state_dict`` keys, are the spec's names (``layer1.0.conv1``).
The forward pass runs the IR's ops in their (topological) order; ops without a module
(``add``, unnamed activations, option-A padding) run as torch functions.

Initialisation follows torchvision: Kaiming-normal (fan_out, ReLU) conv weights, BN
scale 1 and shift 0, a BN marked ``zero_init`` scaled to 0, torch's defaults elsewhere.
With a seed, weights are reproducible and independent of the global RNG.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..ir import INPUT, Network, Op

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
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    return x * mask / keep


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
        s = a["stride"]
        extra = a["out_channels"] - x.shape[1]
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, extra // 2, extra - extra // 2))
    if k == "relu":
        return F.relu(x)
    if k == "relu6":
        return F.relu6(x)
    if k == "gelu":
        return F.gelu(x)
    if k == "silu":
        return F.silu(x)
    if k == "hardswish":
        return F.hardswish(x)
    if k == "sigmoid":
        return torch.sigmoid(x)
    if k == "tanh":
        return torch.tanh(x)
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
    """A network built from a checked spec; submodules are named as in the spec."""

    def __init__(self, net: Network):
        super().__init__()
        self.spec_name = net.name
        self.input_shape = net.input_shape
        steps = []
        for op in net.ops:
            if op.module is not None and not _has(self, op.module):
                _register(self, op.module, make_module(op, net.shape_of(op.inputs[0])))
            steps.append((op, self.get_submodule(op.module) if op.module else None))
        self._steps = steps
        self._output = net.output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {INPUT: x}
        for op, module in self._steps:
            xs = [values[i] for i in op.inputs]
            values[op.name] = module(xs[0]) if module is not None else functional(op, xs, self.training)
        return values[self._output]

    def extra_repr(self) -> str:
        return f"spec={self.spec_name!r}, input={'×'.join(map(str, self.input_shape))}"


def _has(root: nn.Module, path: str) -> bool:
    try:
        root.get_submodule(path)
        return True
    except AttributeError:
        return False


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


def build(net: Network, *, seed: int | None = 0) -> ResDSLNetwork:
    """An ``nn.Module`` for ``net``; ``seed`` makes the initial weights reproducible
    (``None`` draws from torch's global random state)."""
    if seed is None:
        model = ResDSLNetwork(net)
        init_weights(model, net)
        return model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ResDSLNetwork(net)
        init_weights(model, net)
    return model
