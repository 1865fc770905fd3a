"""Small passes over the checked IR, each with its invariant stated."""

from __future__ import annotations

from collections import Counter

from .ir import Network
from .primitives import PRIMITIVES


def consumers(net: Network) -> Counter:
    """How many ops read each op's output (the network output counts as one reader)."""
    counts: Counter = Counter(i for op in net.ops for i in op.inputs)
    counts[net.output] += 1
    return counts


def foldable_batchnorms(net: Network) -> dict[str, str]:
    """BN op name → the conv op it can fold into.

    Invariant: the BN's only input is a conv applied once, whose output nothing else
    reads; folding then changes no other value in the graph. Which kinds fold is the
    registry's ``fold`` mark (``bn`` into ``conv``).
    """
    readers = consumers(net)
    applications = Counter(op.module for op in net.ops if op.module)
    out = {}
    for op in net.ops:
        if PRIMITIVES[op.kind].fold != "bn" or op.module is None or applications[op.module] != 1:
            continue
        (src,) = op.inputs
        if src == "input":
            continue
        conv = net.op(src)
        if PRIMITIVES[conv.kind].fold == "conv" and readers[conv.name] == 1 and applications[conv.module] == 1:
            out[op.name] = conv.name
    return out


def reductions(net: Network) -> dict[str, int]:
    """Op name → how far its output is subsampled from the input (timm's ``reduction``).

    The product of the strides on the way from the input, the largest over joining
    branches; unlike input size over output size, it does not depend on rounding. An op's
    stride is its ``stride`` attribute, whatever its kind (a pool's is filled in from its
    kernel size by its shape rule).
    """
    out: dict[str, int] = {}
    for op in net.ops:
        before = max((out.get(i, 1) for i in op.inputs), default=1)
        stride = dict(op.attrs).get("stride")
        out[op.name] = before * (stride if isinstance(stride, int) and not isinstance(stride, bool) else 1)
    return out
