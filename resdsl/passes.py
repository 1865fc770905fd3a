"""Small passes over the checked IR, each with its invariant stated."""

from __future__ import annotations

from collections import Counter

from .ir import Network


def consumers(net: Network) -> Counter:
    """How many ops read each op's output (the network output counts as one reader)."""
    counts: Counter = Counter(i for op in net.ops for i in op.inputs)
    counts[net.output] += 1
    return counts


def foldable_batchnorms(net: Network) -> dict[str, str]:
    """BN op name → the conv op it can fold into.

    Invariant: the BN's only input is a conv applied once, whose output nothing else
    reads; folding then changes no other value in the graph.
    """
    readers = consumers(net)
    applications = Counter(op.module for op in net.ops if op.module)
    out = {}
    for op in net.ops:
        if op.kind != "batchnorm" or op.module is None or applications[op.module] != 1:
            continue
        (src,) = op.inputs
        if src == "input":
            continue
        conv = net.op(src)
        if conv.kind == "conv" and readers[conv.name] == 1 and applications[conv.module] == 1:
            out[op.name] = conv.name
    return out
