"""What the parts of a network are, worked out once from the spec's structure.

Each instance's :class:`~resdsl.ir.Role` is its definition's kind (``role_of``), set by
the elaborator as it builds the scope. :func:`assign` then records the facts about the
*stem* — what the network runs before its first stage, whatever definitions write it —
that tables and feature extraction need, so that no back end works them out itself:

- the stem's final pooling (``Network.stem_pool``): from the first pooling layer (a pool
  or a padding before one) of the stem's trailing run of pooling, padding, norm and
  activation layers, to the stem's end; empty when the stem has no such run, or is
  nothing else. A paper's table lists it with the first stage (He et al. 2015, Table 1).
- the stem's feature point (``Network.stem_feature``): the op before the stem's final
  pooling, or, without one, before the stem's final downsampling layers (ResNet-RS's
  strided conv-BN-ReLU), as timm's ``act1``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from .ir import Network, Op, Role, Scope
from .passes import reductions
from .primitives import PRIMITIVES


def role_of(kind: str) -> Role:
    """The role of an instance of a definition of ``kind`` (``block`` → ``Role.BLOCK``)."""
    return Role(kind)


def stem_ops(root: Scope) -> tuple[str, ...]:
    """The ops the network runs before its first stage, in order; none without stages."""
    out: list[str] = []
    for item in root.items:
        if isinstance(item, Scope) and item.role is Role.STAGE:
            return tuple(out)
        out.extend([item] if isinstance(item, str) else item.op_names())
    return ()


def assign(net: Network) -> Network:
    """``net`` with its stem's final pooling and feature point recorded."""
    stem = stem_ops(net.root)
    if not stem:
        return net
    pool = final_pooling(net, stem)
    return replace(net, stem_pool=pool, stem_feature=_feature_point(net, stem[:len(stem) - len(pool)]))


def _pooling(op: Op) -> bool:
    traits = PRIMITIVES[op.kind].traits
    return traits.pool or traits.pad


def final_pooling(net: Network, stem: tuple[str, ...]) -> tuple[str, ...]:
    """The stem's final pooling (see the module docstring): a suffix of ``stem``."""
    start = len(stem)
    first = None
    while start > 0:
        op = net.op(stem[start - 1])
        if _pooling(op):
            first = start - 1
        elif not (PRIMITIVES[op.kind].traits.norm or PRIMITIVES[op.kind].traits.activation):
            break
        start -= 1
    if first is None or start == 0:  # no pooling, or a stem that is only pooling
        return ()
    return stem[first:]


def _feature_point(net: Network, ops: tuple[str, ...]) -> str:
    """The last of ``ops`` (the stem before its final pooling) before its final
    downsampling, if anything in it downsamples less."""
    ops = tuple(o for o in ops if net.op(o).batched) or ops  # learned tensors are no feature maps
    reduction = reductions(net)
    final = reduction[ops[-1]]
    end = len(ops)
    if any(reduction[o] < final for o in ops):
        while end > 1 and reduction[ops[end - 1]] == final:
            end -= 1
    return ops[end - 1]


class FeaturePoint(NamedTuple):
    """A feature map a feature extractor returns (timm's ``feature_info`` entry)."""

    op: str  # the op whose output it is
    module: str  # what makes it: the stage, or the stem's instance or layer (timm's ``stem``, ``act1``)
    channels: int
    reduction: int


def feature_points(net: Network) -> list[FeaturePoint]:
    """The stem's feature map (``Network.stem_feature``), then each stage's output, in order:
    timm's ``out_indices`` 0, 1, …. Raises ``ValueError`` for a network without a stem
    followed by stages."""
    if net.stem_feature is None:
        raise ValueError(f"{net.name} has no stem followed by stages")
    reduction = reductions(net)
    stem = net.op(net.stem_feature)
    # named as timm names it: the outermost instance that makes it (`stem`, `stem.conv1`),
    # else its layer (`act1`)
    points = [(stem.name, made_by(net, stem.name, outermost=True, default=stem.module or stem.name))]
    for item in net.root.items[[isinstance(i, Scope) and i.role is Role.STAGE for i in net.root.items].index(True):]:
        if not (isinstance(item, Scope) and item.role is Role.STAGE):
            break
        # an unnamed stage (timm's DPN) has no module: its map is named by its last block's
        points.append((item.output, made_by(net, item.output, outermost=True) if item.inline else item.path))
    return [FeaturePoint(op, module, net.shape_of(op)[0], reduction[op]) for op, module in points]


def stem_tail(net: Network) -> list[str] | None:
    """The modules the stem runs after its feature map (its final pooling: timm's
    ``prune_intermediate_layers`` drops them when only the stem's map is asked for): the
    outermost instances made only of ops after it, and the other such ops' modules, in
    order; ``None`` where one of those ops has no module of its own, or shares one with an op
    before the map."""
    stem = stem_ops(net.root)
    if net.stem_feature not in stem:
        return []
    before = stem[:stem.index(net.stem_feature) + 1]
    tail = set(stem[len(before):])
    out: list[str] = []

    def visit(scope: Scope) -> bool:
        for item in scope.items:
            if isinstance(item, str):
                if item in tail:
                    if net.op(item).module is None:
                        return False
                    out.append(net.op(item).module)
                continue
            ops = set(item.op_names())
            if not item.inline and ops and ops <= tail:
                out.append(item.path)
            elif ops & tail and not visit(item):
                return False
        return True

    if not visit(net.root):
        return None
    kept = {net.op(n).module for n in before}
    if any(m in kept or any(k is not None and k.startswith(m + ".") for k in kept) for m in out):
        return None
    return list(dict.fromkeys(out))


def stage_parts(net: Network, stage: Scope) -> list[Scope]:
    """What a stage runs, for figures and tables: its blocks and its other instances that
    hold instances themselves (a DLA subtree), in order; between them, each run of the
    stage's own layers and layer-like instances (a conv-norm-act: no instance inside) that
    holds weights, as one scope of role ``module`` (a cross stage's `conv_down` and
    `conv_exp`; all of a stage of plain layers), named after its layers' common first name
    (`root`) or ``layers``, whose path is its first item's."""
    parts: list[Scope] = []
    run: list[str | Scope] = []

    def flush() -> None:
        names = [n for i in run for n in ([i] if isinstance(i, str) else i.op_names())]
        if any(net.op(n).params for n in names):
            base = f"{stage.path}." if stage.path else ""
            firsts = {(net.op(n).module or n)[len(base):].split(".")[0] for n in names if net.op(n).params}
            name = firsts.pop() if len(firsts) == 1 else "layers"
            first = net.op(names[0])
            path = run[0] if isinstance(run[0], str) else run[0].path
            parts.append(Scope(name, path, Role.MODULE, name, (), tuple(run),
                               first.inputs[0] if first.inputs else stage.input, names[-1], first.span))
        run.clear()

    for item in stage.items:
        if isinstance(item, str) or (item.role is not Role.BLOCK and not item.children):
            run.append(item)
        else:
            flush()
            parts.append(item)
    flush()
    return parts


def stage_blocks(net: Network, stage: Scope) -> list[list[str]]:
    """A stage's blocks as the module paths in each (timm's layer-wise decay groups): its
    instances of a ``block`` definition, or, with none, of any definition; the stage's other
    layers go with the block after them if they come before the first, else with the block
    before them (a cross stage's `conv_exp` with its first block, its transition with its
    last). A stage with neither is one group: its path, or an unnamed stage's modules."""
    children = [i for i in stage.items if isinstance(i, Scope) and not i.inline]
    blocks = [c for c in children if c.role is Role.BLOCK] or children
    groups: list[list[str]] = []
    before: list[str] = []
    for item in stage.items:
        if isinstance(item, Scope) and any(item is b for b in blocks):
            groups.append([*before, item.path])
            before = []
            continue
        names = [item] if isinstance(item, str) else list(item.op_names())
        paths = [item.path] if isinstance(item, Scope) and not item.inline else \
            [m for m in dict.fromkeys(net.op(n).module for n in names) if m is not None]
        (groups[-1] if groups else before).extend(p for p in paths if p not in before)
    if not groups and stage.inline:
        return [list(dict.fromkeys(m for n in stage.op_names() if (m := net.op(n).module) is not None))]
    return groups or [[stage.path]]


def made_by(net: Network, op: str, *, outermost: bool = False, default: str | None = None) -> str:
    """The module whose output an op's value is: the innermost named instance ending with it
    (a conv written in `.res`: `stem.conv`), or the outermost one; else ``default`` (the
    op's name when not given)."""
    found = default if default is not None else op
    for scope in net.root.walk():  # parents come first: the last found is the innermost
        if scope.output == op and not scope.inline and scope is not net.root:
            found = scope.path
            if outermost:
                break
    return found


class Head(NamedTuple):
    """The parts of a network after its stages, as timm's model interface splits them:
    ``forward_features`` ends where ``pool`` begins, ``forward_head(pre_logits=True)``
    stops at ``pre_logits``, and ``classifier`` makes the logits."""

    pool: str  # the global pooling op: the first after the stages that pools to C×1×1
    classifier: str  # the last op with weights; nothing after it has any
    pre_logits: str  # the value the classifier reads


def head_of(net: Network) -> Head | None:
    """The network's head (see :class:`Head`), or ``None`` when it has none: no global
    pooling after the last stage (anywhere, in a network without stages), or no weighted
    layer after that pooling."""
    stages = [i for i in net.root.items if isinstance(i, Scope) and i.role is Role.STAGE]
    order = {op.name: n for n, op in enumerate(net.ops)}
    after = net.ops[max(order[n] for n in stages[-1].op_names()) + 1:] if stages else net.ops
    pool = next((op for op in after if PRIMITIVES[op.kind].traits.pool
                 and len(op.shape) == 3 and op.shape[1:] == (1, 1)), None)
    if pool is None:
        return None
    weighted = [op for op in after[after.index(pool):] if PRIMITIVES[op.kind].has_params]
    if not weighted:
        return None
    classifier = weighted[-1]
    return Head(pool.name, classifier.name, classifier.inputs[0])


def parallel_steps(net: Network, module: Scope, convs: list[str]) -> list[list[str]]:
    """``convs`` (op names of ``module``, in order) grouped into steps: a conv joins the
    step before it when it reads none of that step's convs, so paths side by side
    (selective kernel's) share a step and a chain gets one step per conv. Figures and
    tables show a module's widths by these steps."""
    inside = set(module.op_names())

    def before(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            for i in net.op(todo.pop()).inputs:
                if i in inside and i not in seen:
                    seen.add(i)
                    todo.append(i)
        return seen

    steps: list[list[str]] = []
    for n in convs:
        if steps and not any(m in before(n) for m in steps[-1]):
            steps[-1].append(n)
        else:
            steps.append([n])
    return steps


def radix_of(module: Scope, net: Network) -> int:
    """The radix of a softmax over radix groups in ``module`` (ResNeSt's split attention), or 0."""
    return next((int(dict(net.op(n).attrs)["radix"]) for n in module.op_names()
                 if "radix" in dict(net.op(n).attrs)), 0)


def conv_view(net: Network, op: Op) -> Op:
    """``op`` as figures and tables word it: a convolution whose weight is an operand
    (``Traits.weight_operand``: NF-ResNet's weight-standardised conv written in `.res`) as
    the ``conv`` it computes, its kernel and width read from the weight's shape; any other
    op as it is."""
    w = PRIMITIVES[op.kind].traits.weight_operand
    if w is None or w >= len(op.inputs):
        return op
    shape = net.shape_of(op.inputs[w])
    if len(shape) != 4 or shape[2] != shape[3]:
        return op
    attrs = dict(op.attrs)
    return replace(op, kind="conv", attrs=(("out_channels", shape[0]), ("kernel_size", shape[2]),
                                           ("stride", attrs.get("stride", 1)), ("groups", attrs.get("groups", 1)),
                                           ("dilation", attrs.get("dilation", 1))))


def conv_like(op: Op) -> bool:
    """A convolution, primitive or with its weight as an operand (:func:`conv_view`)."""
    traits = PRIMITIVES[op.kind].traits
    return traits.conv or traits.weight_operand is not None


def attention_convs(net: Network, module: Scope) -> list[str]:
    """The convs of ``module`` that compute weights, not features: on a 1×1 map (SE's
    fcs) or to a single channel (a weight per position: GC's attention pooling). Figures
    and tables name such a module rather than list these as layers, and depth skips them."""
    out = []
    for n in module.op_names():
        op = net.op(n)
        if conv_like(op) and len(op.shape) == 3 and (op.shape[1:] == (1, 1) or op.shape[0] == 1):
            out.append(n)
    return out


def computes_itself(net: Network, module: Scope) -> bool:
    """``module`` computes more than its layers do in a chain: it has tensor ops of its own
    (a matmul, a softmax, a reshape: self-attention's) beside convs, norms, activations and
    pools, so a figure or table names it."""
    for n in module.op_names():
        op = net.op(n)
        t = PRIMITIVES[op.kind].traits
        if not op.batched or conv_like(op):
            continue
        if not (t.norm or t.activation or t.pool or t.pad or t.hidden or t.identity or t.eval_identity
                or t.classifier):
            return True
    return False
