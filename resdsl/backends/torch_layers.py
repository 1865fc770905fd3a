"""Torch modules and functions the registry's lowerings build on, beyond ``torch.nn``.

Each (but :func:`uninitialised`, a build helper) has a twin in ``templates/torch/`` that
the generated source pastes in; the
conformance test (tests/test_registry.py) runs both and compares them. Names and
``state_dict`` keys follow timm's layers (``StdConv2d``, ``LayerNorm2d``, ``BlurPool2d``,
EcaModule's ``conv``), so timm's weights load with ``strict=True``.
"""

from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn


def _keep(*args: object) -> None:
    """A ``reset_parameters`` that leaves the parameters as ``torch.empty`` made them."""


def uninitialised(cls: type[nn.Module], *args: object, **kwargs: object) -> nn.Module:
    """``cls(*args, **kwargs)`` without its ``reset_parameters``: storage as ``torch.empty``
    makes it, on the default device, for an init pass to set every tensor once.

    What ``nn.utils.skip_init`` gives (the generated source uses that), without its round
    trip through the meta device (a default initialisation there, then ``to_empty``), which
    costs more than building the module. Only for kinds whose init pass sets every tensor
    ``reset_parameters`` would have (buffers made in ``__init__`` are kept)."""
    module = cls.__new__(cls)
    object.__setattr__(module, "reset_parameters", _keep)  # found before the class's method
    cls.__init__(module, *args, **kwargs)
    del module.__dict__["reset_parameters"]
    return module


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


class StdConv2d(nn.Conv2d):
    """A convolution with weight standardisation, as timm's ``StdConv2d`` (BiT): each output
    channel's weights are normalised to zero mean and unit variance before use."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, bias: bool = False,
                 eps: float = 1e-6, device: torch.device | str | None = None) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         device=device)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                              training=True, momentum=0.0, eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels at each position of an N×C×H×W tensor (timm's ``LayerNorm2d``)."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ChannelConv(nn.Conv1d):
    """A 1-D convolution across the channel axis at each position (ECA's ``conv``):
    weight 1×1×k, no bias, the channel count kept by padding."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__(1, 1, kernel_size, padding=(kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.permute(0, 2, 3, 1)
        out = self._conv_forward(y.reshape(-1, 1, y.shape[-1]), self.weight, self.bias)
        return out.reshape(y.shape).permute(0, 3, 1, 2)


def blur_filter(filt_size: int) -> torch.Tensor:
    """The normalised binomial filter, filt_size × filt_size (rows of Pascal's triangle)."""
    row = torch.ones(1)
    for _ in range(filt_size - 1):
        row = torch.cat([row, torch.zeros(1)]) + torch.cat([torch.zeros(1), row])
    row = row / 2 ** (filt_size - 1)
    return row[:, None] * row[None, :]


def blur_pool(x: torch.Tensor, filt_size: int, stride: int) -> torch.Tensor:
    """Anti-aliased downsampling without a module: reflect pad, binomial blur, subsample."""
    channels = x.shape[1]
    filt = blur_filter(filt_size).to(x).expand(channels, 1, filt_size, filt_size)
    pad = (stride - 1 + filt_size - 1) // 2
    return F.conv2d(F.pad(x, [pad] * 4, mode="reflect"), filt, stride=stride, groups=channels)


class BlurPool2d(nn.Module):
    """Anti-aliased downsampling as timm's ``BlurPool2d``: reflect padding, a fixed binomial
    depthwise filter (a buffer outside the ``state_dict``), then the stride."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2) -> None:
        super().__init__()
        self.channels, self.filt_size, self.stride = channels, filt_size, stride
        self.padding = [(stride - 1 + filt_size - 1) // 2] * 4
        self.register_buffer("filt", blur_filter(filt_size).repeat(channels, 1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode="reflect")
        return F.conv2d(x, self.filt, stride=self.stride, groups=self.channels)


def group_softmax(x: torch.Tensor, radix: int, cardinality: int) -> torch.Tensor:
    """Softmax across ``radix`` groups, as timm's ``RadixSoftmax``: channels laid out
    [cardinality][radix][rest] in, [radix][cardinality][rest] out; a sigmoid for radix 1."""
    if radix == 1:
        return torch.sigmoid(x)
    y = x.reshape(x.shape[0], cardinality, radix, -1).transpose(1, 2)
    return F.softmax(y, dim=1).reshape(x.shape)


class GroupSoftmax(nn.Module):
    """:func:`group_softmax` as a module (timm's ``rsoftmax``)."""

    def __init__(self, radix: int, cardinality: int = 1) -> None:
        super().__init__()
        self.radix, self.cardinality = radix, cardinality

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_softmax(x, self.radix, self.cardinality)
