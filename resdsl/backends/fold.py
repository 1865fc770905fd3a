"""Folding a batch normalisation into the convolution before it, and merging parallel
branches into one convolution (inference only): the arithmetic of
:func:`resdsl.passes.reparameterize`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

    from ..passes import Merge


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


def reparameterize_arrays(merges: Sequence[Merge], state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``state_dict`` of the re-parameterised network (:func:`resdsl.passes.reparameterize`)
    from the training form's, as numpy arrays; the tensors no merge touches are passed on.

    Each merged conv's weight is the sum of its branches' kernels, each with its norm
    folded in (:func:`fold_conv_bn_arrays`), placed on the merged kernel's taps (the
    identity as a one-hot centre tap per channel, within its group); its bias the sum of
    theirs. Computed in float64 and cast to the dtype of the branches' tensors. A key a
    merge needs that ``state`` lacks is a ``KeyError`` naming it.
    """

    out: dict[str, np.ndarray] = {}
    gone = {key for m in merges for key in m.removed}
    first = {m.removed[0]: m for m in merges if m.removed}
    for key, value in state.items():
        if key in first:  # the merged conv's tensors take the place of its first branch's
            m = first[key]
            out[f"{m.module}.weight"], out[f"{m.module}.bias"] = _merged(m, state)
        if key not in gone:
            out[key] = value
    missing = [m.module for m in merges if f"{m.module}.weight" not in out]
    if missing:
        raise KeyError(f"the weights lack the tensors of the branches merged into {', '.join(missing)}")
    return out


def _merged(m: Merge, state: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    def get(key: str) -> np.ndarray:
        if key not in state:
            raise KeyError(f"the weights lack `{key}`, a tensor of a branch merged into `{m.module}`")
        return np.asarray(state[key])

    out, per_group = m.weight[0], m.weight[1]
    weight = np.zeros(m.weight, np.float64)
    bias = np.zeros(out, np.float64)
    dtype = None
    for b in m.branches:
        if b.conv is not None:
            w = get(f"{b.conv}.weight")
            dtype = dtype or w.dtype
            w = w.astype(np.float64)
            cb = state.get(f"{b.conv}.bias")
            bb = np.zeros(out, np.float64) if cb is None else np.asarray(cb, np.float64)
        else:  # the input itself: each channel reads its own, the ``i % per_group``-th of its group
            w = np.zeros((out, per_group, 1, 1), np.float64)
            w[np.arange(out), np.arange(out) % per_group, 0, 0] = 1.0
            bb = np.zeros(out, np.float64)
        if b.norm is not None:
            gamma = get(f"{b.norm}.weight")
            dtype = dtype or gamma.dtype
            w, bb = fold_conv_bn_arrays(w, bb, *(get(f"{b.norm}.{k}").astype(np.float64) for k in
                                                 ("weight", "bias", "running_mean", "running_var")), b.eps)
        stop = b.start + b.step * (b.kernel - 1) + 1
        weight[:, :, b.start:stop:b.step, b.start:stop:b.step] += w
        bias += bb
    dtype = dtype or np.dtype(np.float32)
    return weight.astype(dtype), bias.astype(dtype)
