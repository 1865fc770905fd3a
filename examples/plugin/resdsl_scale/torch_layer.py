"""The torch module of ``channel_scale``; imported only when a network is built."""

from __future__ import annotations

import torch
from torch import nn


class ChannelScale(nn.Module):
    """A learnable scale per channel (LayerScale)."""

    def __init__(self, num_channels: int, init_value: float = 1.0) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((num_channels,), init_value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.reshape([-1] + [1] * (x.dim() - 2))
