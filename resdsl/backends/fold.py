"""Folding a batch normalisation into the convolution before it (inference only)."""

from __future__ import annotations

import torch


def fold_conv_bn(weight: torch.Tensor, bias: torch.Tensor | None, gamma: torch.Tensor,
                 beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv equal to ``bn(conv(x))`` in eval mode.

    Computed in float64 and cast back, so folding adds no error of its own.
    """
    dtype = weight.dtype
    scale = gamma.double() / torch.sqrt(var.double() + eps)
    b = bias.double() if bias is not None else torch.zeros_like(mean, dtype=torch.float64)
    w = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w.to(dtype), ((b - mean.double()) * scale + beta.double()).to(dtype)
