"""Small passes over the checked IR, each with its invariant stated."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

from .ir import INPUT, Network, Scope
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
    registry's say: traits ``folds`` (the BN) and ``fold_target`` (the conv).
    """
    readers = consumers(net)
    applications = Counter(op.module for op in net.ops if op.module)
    out = {}
    for op in net.ops:
        if not PRIMITIVES[op.kind].traits.folds or op.module is None or applications[op.module] != 1:
            continue
        (src,) = op.inputs
        if src == "input":
            continue
        conv = net.op(src)
        if PRIMITIVES[conv.kind].traits.fold_target and readers[conv.name] == 1 and applications[conv.module] == 1:
            out[op.name] = conv.name
    return out


def reductions(net: Network) -> dict[str, int]:
    """Op name → how far its output is subsampled from the input (timm's ``reduction``).

    The product of the resolution factors on the way from the input, the largest over
    joining branches; unlike input size over output size, it does not depend on rounding.
    An op's factor is the attribute its primitive declares (``Traits.resolution``: a conv's
    ``stride``; a pool's, filled in from its kernel size); an op that declares none keeps
    the resolution, whatever attributes it has.
    """
    out: dict[str, int] = {}
    for op in net.ops:
        before = max((out.get(i, 1) for i in op.inputs), default=1)
        attr = PRIMITIVES[op.kind].traits.resolution
        factor = dict(op.attrs).get(attr) if attr is not None else None
        out[op.name] = before * (factor if isinstance(factor, int) and not isinstance(factor, bool) else 1)
    return out


def inplace_ops(net: Network, keep: Iterable[str] = ()) -> frozenset[str]:
    """Ops that may overwrite their first input with their result (``ReLU(inplace=True)``,
    ``out += shortcut``), as torchvision's ResNets do.

    Invariant: the value overwritten is read by that op alone — the network input and
    output and the values in ``keep`` (feature outputs) count as read elsewhere —, has the
    result's shape (not a broadcast operand), and was
    made by an op whose registry entry says it may be overwritten (a fresh tensor its
    backward never reads: not a ReLU's or a sigmoid's output, not a view or an alias). So
    no op, and no backward, sees a value after it is overwritten. A module applied more
    than once runs in place only if every application may (it is one module object).
    """
    readers = consumers(net)
    for name in keep:
        readers[name] += 1
    ok: dict[str, bool] = {}  # module path (or op name) → every application may run in place
    for op in net.ops:
        key = op.module or op.name
        first = op.inputs[0] if op.inputs else INPUT
        # the result must fit the overwritten tensor (a broadcast one is larger), and a number
        # among the operands (`constant_at`: `1.0 - x`) is written in the expression form only
        safe = (PRIMITIVES[op.kind].inplace and first != INPUT and readers[first] == 1
                and PRIMITIVES[net.op(first).kind].overwritable
                and net.op(first).shape == op.shape and net.op(first).batched == op.batched
                and dict(op.attrs).get("constant_at") is None)
        ok[key] = ok.get(key, True) and safe
    return frozenset(op.name for op in net.ops if ok[op.module or op.name])


def with_inplace(net: Network, keep: Iterable[str] = ()) -> Network:
    """``net`` with ``inplace = true`` on the ops :func:`inplace_ops` allows: what the torch
    back ends (in process and source) lower. Shapes, names and weights are unchanged."""
    chosen = inplace_ops(net, keep)
    if not chosen:
        return net
    ops = tuple(replace(op, attrs=(*op.attrs, ("inplace", True))) if op.name in chosen else op
                for op in net.ops)
    return replace(net, ops=ops)


def features_only(net: Network, points: Iterable[str]) -> Network:
    """``net`` cut down to what computing the values ``points`` needs, as timm's
    ``features_only`` model holds no head and no stage after the last feature asked for.

    Invariant: every op kept is one that some point depends on; each scope keeps its kept
    items in order and ends at its last kept item (an emptied scope is dropped); the
    network's output is the last point in execution order. Names, shapes and weights of
    what is kept are unchanged, so a checkpoint of the whole network loads into it by name.
    """
    points = tuple(points)
    need = set(points)
    for op in reversed(net.ops):
        if op.name in need:
            need.update(op.inputs)
    order = {op.name: n for n, op in enumerate(net.ops)}

    def prune(scope: Scope) -> Scope | None:
        items: list[str | Scope] = []
        for item in scope.items:
            kept = prune(item) if isinstance(item, Scope) else item if item in need else None
            if kept is not None:
                items.append(kept)
        if not items:
            return None
        last = items[-1] if isinstance(items[-1], str) else items[-1].output
        return replace(scope, items=tuple(items), output=scope.output if scope.output in need else last)

    root = prune(net.root)
    output = max(points, key=order.__getitem__)
    return replace(net, ops=tuple(op for op in net.ops if op.name in need), root=replace(root, output=output),
                   output=output, stem_pool=tuple(n for n in net.stem_pool if n in need))
