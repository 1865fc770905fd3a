"""Small passes over the checked IR, each with its invariant stated."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .ir import INPUT, Network, Op, Scope
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
    than once runs in place only if every application may (it is one module object). And
    no module overwrites the tensor it was given (NF-ResNet's first `act1` on the stem's
    output): a checkpointed block's input is saved for its recomputation, and a forward
    hook or the caller may hold it — the value must be made inside the op's own instance.
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
                and dict(op.attrs).get("constant_at") is None and _made_inside(first, op.name))
        ok[key] = ok.get(key, True) and safe
    return frozenset(op.name for op in net.ops if ok[op.module or op.name])


def _made_inside(value: str, op: str) -> bool:
    """``value`` is made inside the instance that ``op`` belongs to (op names are paths)."""
    instance = op.rpartition(".")[0]
    return not instance or value.startswith(instance + ".")


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


# ---------------------------------------------------------------- re-parameterisation

#: The merged conv of an add of parallel branches whose add the spec left unnamed: timm's
#: name for it (RepVGG, MobileOne, FastViT: ``stages.0.0.reparam_conv``), in the add's scope.
REPARAM_NAME = "reparam_conv"


@dataclass(frozen=True)
class Branch:
    """One linear branch of a :class:`Merge`, as its tensors are found in a ``state_dict``.

    ``conv`` is its conv's module path (``None``: the input itself, the identity); ``norm``
    the module path of the batch norm after it (``None``: none) and ``eps`` that norm's.
    The branch's ``kernel`` × ``kernel`` taps land in the merged kernel at rows and columns
    ``start``, ``start + step``, … (a smaller kernel centred; the identity a one-hot tap).
    """

    conv: str | None
    norm: str | None
    eps: float
    kernel: int
    start: int
    step: int


@dataclass(frozen=True)
class Merge:
    """One conv with bias of the re-parameterised network, and the branches it sums:
    ``module`` is its module path (``module.weight``, ``module.bias``), ``weight`` its
    weight's shape, ``removed`` the ``state_dict`` keys of the training form it replaces."""

    module: str
    weight: tuple[int, ...]
    groups: int
    branches: tuple[Branch, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class Reparameterization:
    """The result of :func:`reparameterize`: the deploy-form ``network`` and the ``merges``
    that map the training form's ``state_dict`` to its own."""

    network: Network
    merges: tuple[Merge, ...]


def _sums(op: Op) -> bool:
    """An element-wise sum of its inputs (the residual add): a node of a branch tree."""
    traits = PRIMITIVES[op.kind].traits
    return traits.residual and traits.merge and dict(op.attrs).get("constant_at") is None


def _passes_through(op: Op) -> bool:
    """The identity at inference (identity, dropout, drop-path): transparent in a branch tree."""
    traits = PRIMITIVES[op.kind].traits
    return (traits.identity or traits.eval_identity) and len(op.inputs) == 1


def reparameterize(net: Network) -> Reparameterization:
    """The inference (deploy) form of ``net``: parallel linear branches summed by an add,
    and batch norms after convs, merged into single convs with bias (RepVGG's
    re-parameterisation; BN folding).

    A *branch tree* is an add whose other readers are none, with the adds (and inference
    identities: dropout, drop-path) under it that only it reads; its leaves are the
    branches. It merges when every leaf is a linear function of one tensor ``x`` — a conv
    of ``x`` (followed by a batch norm that folds into it, :func:`foldable_batchnorms`),
    a batch norm of ``x``, or ``x`` itself — at least one is a conv, the convs share
    stride and groups, and each conv's taps fall on taps of the largest one (a 1×1 on the
    centre of a 3×3; ``x`` is a one-hot centre tap, so it needs as many channels out as
    in). Every conv and norm of a merged tree is read by that tree alone and applied once.
    The merged conv is named by the tree's add if the spec labels it, else
    ``reparam_conv`` (:data:`REPARAM_NAME`) in the add's scope (``_2``, ``_3``… where that
    is taken). Every other foldable batch norm folds into its conv, which keeps its name
    and gains a bias.

    Invariants: the result computes what ``net`` computes in eval mode (inference
    identities are the identity, norms use their running statistics); every value read
    outside a merged tree is kept under its name or replaced by the merged conv's; the
    shapes, parameter counts and MACs of new ops come from the registry's shape rule.
    """
    readers = consumers(net)
    applications = Counter(op.module for op in net.ops if op.module)
    folds = foldable_batchnorms(net)
    scope_of = {item: scope for scope in net.root.walk() for item in scope.items if isinstance(item, str)}
    taken = {op.name for op in net.ops} | {INPUT}
    for op in net.ops:
        parts = (op.module or "").split(".")
        taken.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))

    new_ops: dict[str, Op] = {}    # op name it replaces (the tree's add, a folded conv) → new op
    subst: dict[str, str] = {}     # a removed value → the value that now carries it
    removed: set[str] = set()
    merges: list[Merge] = []
    trees: list[tuple[Op, Merge, Op]] = []
    for op in reversed(net.ops):   # roots first: an add under another add belongs to its tree
        if op.name in removed or not _sums(op):
            continue
        tree = _branch_tree(net, op, readers, applications, folds, removed)
        if tree is None:
            continue
        leaves, internal, x = tree
        merge, new = _merge(net, op, op.name, leaves, x)
        if merge is not None and new is not None:
            trees.append((op, merge, new))
            removed.update(internal)
    for op, merge, new in reversed(trees):  # named in execution order: the first is `reparam_conv`
        name = _merged_name(net, op, scope_of, taken)
        taken.add(name)
        merges.append(replace(merge, module=name))
        new_ops[op.name] = replace(new, name=name, module=name)
        subst[op.name] = name
    for bn, conv_name in folds.items():
        if bn in removed:
            continue
        conv = net.op(conv_name)
        leaf = (conv_name, bn)
        merge, new = _merge(net, conv, conv_name, [leaf], conv.inputs[0], keep=True)
        if merge is not None:
            merges.append(merge)
            new_ops[conv_name] = new
            subst[bn] = conv_name
            removed.add(bn)
    if not merges:
        return Reparameterization(net, ())

    def value(name: str) -> str:
        return subst.get(name, name)

    ops = []
    for op in net.ops:
        if op.name in new_ops:
            op = new_ops[op.name]
        elif op.name in removed:
            continue
        # a merged conv reads a folded norm's value too, where its branches follow conv → norm
        ops.append(replace(op, inputs=tuple(map(value, op.inputs))))

    def rewrite(scope: Scope) -> Scope | None:
        items: list[str | Scope] = []
        for item in scope.items:
            if isinstance(item, Scope):
                kept = rewrite(item)
                if kept is not None:
                    items.append(kept)
            elif item in new_ops:
                items.append(new_ops[item].name)
            elif item not in removed:
                items.append(item)
        if not items:
            return None
        output = value(scope.output)
        if output in removed:  # a value inside a merged tree: the scope now ends at its last item
            output = items[-1] if isinstance(items[-1], str) else items[-1].output
        return replace(scope, items=tuple(items), input=value(scope.input), output=output)

    root = rewrite(net.root)
    assert root is not None
    merged = replace(net, ops=tuple(ops), root=root, output=value(net.output),
                     stem_pool=tuple(value(n) for n in net.stem_pool if value(n) not in removed),
                     stem_feature=None if net.stem_feature is None else value(net.stem_feature))
    return Reparameterization(merged, tuple(merges))


#: A leaf of a branch tree: (conv op or None, norm op or None).
_Leaf = tuple[str | None, str | None]


def _branch_tree(net: Network, root: Op, readers: Counter, applications: Counter, folds: dict[str, str],
                 claimed: set[str]) -> tuple[list[_Leaf], list[str], str] | None:
    """The leaves of the branch tree under ``root``, the ops the merge removes, and the
    tensor every leaf reads; ``None`` if it does not merge."""
    leaves: list[_Leaf] = []
    internal = [root.name]
    sources: set[str] = set()

    def once(name: str) -> bool:  # read by the tree alone, one module applied once
        op = net.op(name)
        return readers[name] == 1 and name not in claimed and (op.module is None or applications[op.module] == 1)

    def walk(value: str) -> None:
        if value != INPUT and once(value):
            op = net.op(value)
            traits = PRIMITIVES[op.kind].traits
            if _sums(op) or _passes_through(op):
                internal.append(value)
                for i in op.inputs:
                    walk(i)
                return
            if value in folds and once(folds[value]):  # conv → norm
                leaves.append((folds[value], value))
                internal.extend((folds[value], value))
                sources.add(net.op(folds[value]).inputs[0])
                return
            if traits.fold_target:  # a conv alone
                leaves.append((value, None))
                internal.append(value)
                sources.add(op.inputs[0])
                return
            if traits.folds:  # a norm of the input alone
                leaves.append((None, value))
                internal.append(value)
                sources.add(op.inputs[0])
                return
        leaves.append((None, None))  # the input itself
        sources.add(value)

    for i in root.inputs:
        walk(i)
    if len(leaves) < 2 or len(sources) != 1 or not any(conv for conv, _ in leaves):
        return None
    (x,) = sources
    return leaves, internal, x


def _merged_name(net: Network, add: Op, scope_of: dict[str, Scope], taken: set[str]) -> str:
    """The merged conv's name: the add's label, or ``reparam_conv`` in its scope."""
    kind = add.kind
    last = add.name.rpartition(".")[2]
    if last != kind and not (last.startswith(kind + "#") and last[len(kind) + 1:].isdigit()):
        return add.name  # labelled in the spec: the spec's name for the merged layer
    scope = scope_of.get(add.name)
    path = scope.path if scope is not None else add.name.rpartition(".")[0]
    base = f"{path}.{REPARAM_NAME}" if path else REPARAM_NAME
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def _merge(net: Network, at: Op, name: str, leaves: list[_Leaf], x: str,
           keep: bool = False) -> tuple[Merge | None, Op | None]:
    """The merge of ``leaves`` (all reading ``x``) into one conv named ``name``, which
    takes the place of ``at``; ``(None, None)`` where their geometry does not allow it."""
    convs = [net.op(c) for c, _ in leaves if c is not None]
    attrs = [dict(c.attrs) for c in convs]
    if len({(a["stride"], a["groups"]) for a in attrs}) != 1:
        return None, None
    # the merged kernel: the widest span, and of those the densest (a 5×5 holds a dilated 3×3)
    reach = [((a["kernel_size"] - 1) * a["dilation"], -a["dilation"]) for a in attrs]
    template = convs[reach.index(max(reach))]
    t = dict(template.attrs)
    big, dil, pad = t["kernel_size"], t["dilation"], t["padding"]
    out_shape = at.shape
    in_shape = net.shape_of(x)
    branches = []
    removed: list[str] = []
    for conv_name, norm_name in leaves:
        if conv_name is None:  # the input, or a norm of it: a one-hot centre tap
            if t["stride"] != 1 or in_shape != out_shape:
                return None, None
            k, d, p = 1, 1, 0
        else:
            a = dict(net.op(conv_name).attrs)
            k, d, p = a["kernel_size"], a["dilation"], a["padding"]
        # tap i of the branch reads offset i·d − p; tap j of the merged conv j·dil − pad
        if (pad - p) % dil or (k > 1 and d % dil):
            return None, None
        start, step = (pad - p) // dil, (d // dil if k > 1 else 1)
        if start < 0 or start + step * (k - 1) >= big:
            return None, None
        eps = 0.0
        for part in (conv_name, norm_name):
            if part is None:
                continue
            op = net.op(part)
            prim = PRIMITIVES[op.kind]
            removed.extend(f"{op.module}.{key}" for key in
                           prim.state(dict(op.attrs), [net.shape_of(i) for i in op.inputs]))
        if norm_name is not None:
            eps = float(net.op(norm_name).attr("eps"))
        branches.append(Branch(None if conv_name is None else net.op(conv_name).module,
                               None if norm_name is None else net.op(norm_name).module, eps, k, start, step))
    prim = PRIMITIVES[template.kind]
    if prim.traits.bias_attr is None:  # the merged conv needs a bias its kind cannot say it has
        return None, None
    new_attrs = tuple((key, True if key == prim.traits.bias_attr else v) for key, v in template.attrs)
    shape, params, macs = prim.infer(dict(new_attrs), [in_shape])
    if shape != out_shape:  # the taps line up but the sizes do not (padding past the input)
        return None, None
    new = replace(template, name=name, attrs=new_attrs, inputs=(x,), shape=shape, params=params, macs=macs,
                  module=name, span=template.span if keep else at.span)
    weight = prim.state(dict(new_attrs), [in_shape])["weight"]
    return Merge(name, weight, t["groups"], tuple(branches), tuple(removed)), new
