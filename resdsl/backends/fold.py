"""Folding a batch normalisation into the convolution before it (inference only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch


def fold_conv_bn(weight: torch.Tensor, bias: torch.Tensor | None, gamma: torch.Tensor,
                 beta: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of a conv equal to ``bn(conv(x))`` in eval mode.

    Computed in float64 and cast back, so folding adds no error of its own.
    """
    import torch

    dtype = weight.dtype
    scale = gamma.double() / torch.sqrt(var.double() + eps)
    b = bias.double() if bias is not None else torch.zeros_like(mean, dtype=torch.float64)
    w = weight.double() * scale.reshape(-1, *([1] * (weight.dim() - 1)))
    return w.to(dtype), ((b - mean.double()) * scale + beta.double()).to(dtype)


def fold_conv_bn_arrays(weight: np.ndarray, bias: np.ndarray | None, gamma: np.ndarray,
                        beta: np.ndarray, mean: np.ndarray, var: np.ndarray,
                        eps: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`fold_conv_bn` on numpy arrays (the ONNX back end's, which needs no torch); the
    same float64 operations, each correctly rounded, so the same float32 results."""
    import numpy as np

    dtype = weight.dtype
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    b = bias.astype(np.float64) if bias is not None else np.zeros(mean.shape, np.float64)
    w = weight.astype(np.float64) * scale.reshape(-1, *([1] * (weight.ndim - 1)))
    return w.astype(dtype), ((b - mean.astype(np.float64)) * scale + beta.astype(np.float64)).astype(dtype)
