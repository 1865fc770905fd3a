"""What a figure reads from a block: its branch point, residual branch, merge, shortcut
and tail; which blocks are identical; how a paper words a layer."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ... import builtin_looks  # noqa: F401  (registers the built-ins' looks)
from ...grid import runs
from ...ir import INPUT, Network, Op, Role, Scope
from ...looks import Look, fmt_constant, look_of
from ...primitives import PRIMITIVES, Traits
from ...roles import (
    attention_convs,
    computes_itself,
    conv_like,
    conv_view,
    parallel_steps,
    radix_of,
    stage_parts,
)


def look(op: Op) -> Look:
    """How ``op`` is drawn: its registered look (or the default one). Drawing only."""
    return look_of(op)


def traits(op: Op) -> Traits:
    """What ``op`` is, as the registry declares it: what a figure's structure reads."""
    return PRIMITIVES[op.kind].traits


def _folds_onto_line(op: Op) -> bool:
    """A norm or activation, written on the line of the layer before it (``BN, ReLU``)."""
    return traits(op).norm or traits(op).activation


# ---------------------------------------------------------------- op and section wording


def op_text(op: Op) -> str:
    """How a paper writes one layer: ``3×3 conv, 128, /2``, ``BN``, ``fc, 1000``."""
    return look(op).text(op)


def part_text(op: Op) -> list[str] | None:
    """A part of a split on two short lines, ``part 2 of 8`` over ``14 channels`` (its
    look's words, read from the op's ``sizes`` and ``index``, whatever its kind): a block
    figure's row of eight parts stays narrow."""
    attrs = dict(op.attrs)
    sizes, index = attrs.get("sizes"), attrs.get("index")
    if not isinstance(sizes, tuple) or not isinstance(index, int) or not 0 <= index < len(sizes):
        return None
    return [f"part {index + 1} of {len(sizes)}", f"{sizes[index]} channels"]


def layers_of_their_own(net: Network) -> dict[str, Scope]:
    """op name → the outermost module instance it runs in that holds learned tensors of its
    own (a ``param``: a norm or conv written in `.res`, such as ``evonorm_s0``). A figure
    words such an instance as one layer, by its definition's name, as it words a primitive
    norm: its reshapes, gates and sums are how it computes, not layers of the network."""
    out: dict[str, Scope] = {}

    def visit(scope: Scope) -> None:
        for child in scope.children:
            if child.role is Role.MODULE and any(isinstance(i, str) and traits(net.op(i)).batchless
                                                 for i in child.items):
                for name in child.op_names():
                    out[name] = child
            else:
                visit(child)

    visit(net.root)
    return out


def norm_like(net: Network, module: Scope) -> bool:
    """An instance with learned tensors of its own that counts no MACs (a norm written in
    `.res`): a figure folds or drops it as it does a primitive norm."""
    return sum(net.op(n).macs for n in module.op_names()) == 0


def _own_name(module: Scope) -> str:
    return module.definition.replace("_", "-")


def _own_text(net: Network, module: Scope) -> str:
    """An instance with learned tensors of its own as one line: its definition's name, with
    the kernel and width of the one conv it computes (``3×3 scaled-std-conv, 64``)."""
    convs = [conv_view(net, net.op(n)) for n in module.op_names() if conv_like(net.op(n))]
    if len(convs) == 1 and traits(convs[0]).conv:
        return op_text(convs[0]).replace(" conv,", f" {_own_name(module)},", 1)
    return _own_name(module)


def _lines(net: Network, names: Iterable[str], convs_only: bool = False, fold: bool = False) -> list[str]:
    """One line per layer, with consecutive BN/activations folded onto one line
    (``BN, ReLU``); ``convs_only`` keeps just the layers a block figure names (no norms,
    activations or dataflow: split, concat, merges), a run of three or more equal ones as
    one line (``3×3 conv, 14 × 7``, Res2Net's hierarchy). With ``fold`` a BN or activation
    joins whatever line comes before it (``1×1 conv, 256, BN``, a shortcut's box). An
    instance with learned tensors of its own is one line, its definition's name."""
    own = layers_of_their_own(net)
    ops: list[Op | Scope] = []
    for n in names:
        op = net.op(n)
        if n in own:
            if not ops or ops[-1] is not own[n]:
                ops.append(own[n])
        # learned tensors and what is computed from them alone (a weight: no batch axis) belong
        # to the layer that reads them (`conv with given weights`): no lines of their own
        elif not traits(op).hidden and op.batched:
            ops.append(op)

    def folds(op: Op | Scope) -> bool:
        return norm_like(net, op) if isinstance(op, Scope) else _folds_onto_line(op)

    if convs_only:
        main = [op for op in ops if not (folds(op) or (isinstance(op, Op) and traits(op).merge))]
        if main:
            ops = main
    out: list[str] = []
    folding = False
    for op in ops:
        if isinstance(op, Scope):
            t = _own_text(net, op)
            if folds(op) and (folding or fold) and out:
                out[-1] += f", {t}"
            else:
                out.append(t)
            folding = folds(op)
            continue
        t = op_text(op)
        if _folds_onto_line(op) and (folding or fold) and out:
            out[-1] += f", {t}"
        else:
            out.append(t)
        folding = _folds_onto_line(op)
    return _runs(out) if convs_only else out


def _runs(lines: list[str]) -> list[str]:
    return [line for line, n in runs(lines) for line in ([f"{line} × {n}"] if n >= 3 else [line] * n)]


# ---------------------------------------------------------------- block anatomy


@dataclass(frozen=True)
class BlockParts:
    """A block split the way a figure draws it.

    ``pre`` runs before the branch point (a pre-activation block's BN-ReLU that both
    paths read), ``body`` is the residual branch, ``merge`` the residual add, ``post``
    what follows it (the ReLU of a post-activation block); ``shortcut`` is the shortcut
    scope when it has layers (``None`` for the identity) and ``skip_from`` the tensor it
    reads. ``skip_in`` is the merge's operand that the skip brings (the block input, the
    shortcut's output, or a part of either: DPN's residual path); ``None`` when no operand
    is one, a sum of parallel branches (RepVGG's), drawn with no skip.
    """

    block: Scope
    pre: tuple[str, ...]
    body: tuple[str, ...]
    merge: str | None
    post: tuple[str, ...]
    shortcut: Scope | None
    skip_from: str | None
    skip_in: str | None = None
    #: A join after the merge that also takes a part of the input (DPN's dense path: the
    #: concat of the sum, the input's other part and the branch's), drawn with its own skip;
    #: ``post`` then runs after it.
    dense: str | None = None
    #: The skip passes through layers outside the block (DLA's projection of the tree's
    #: input, added after the block): drawn solid, as a projection is.
    skip_projected: bool = False


def _carried(net: Network, value: str, ends: set[str]) -> bool:
    """``value`` is one of ``ends`` or a part of one: reached through ops that pass their one
    input on (identity, a split's part) and nothing else."""
    while value not in ends:
        if value == INPUT:
            return False
        op = net.op(value)
        t = traits(op)
        # a split's part passes its input on; a scaling by a number (one input too) computes
        if len(op.inputs) != 1 or _scaling(op) or not (t.identity or t.hidden or (t.merge and not t.residual)):
            return False
        value = op.inputs[0]
    return True


def callee(block: Scope) -> Scope:
    """The block that ``block`` only calls (byob_block's chosen bottleneck or self-attention
    block, inlined), or ``block`` itself: what its figure draws."""
    while len(block.items) == 1 and isinstance(block.items[0], Scope) and block.items[0].role is Role.BLOCK:
        block = block.items[0]
    return block


def _added_after(net: Network, block: Scope, body: tuple[str, ...]) -> BlockParts | None:
    """A block without an add of its own whose output only a residual add reads, with an
    operand computed without the block (DLA's trees add the block's input, or its
    projection, after the block): that add is the block's merge, its skip that operand."""
    readers = [op for op in net.ops if block.output in op.inputs]
    if len(readers) != 1 or not traits(readers[0]).residual or len(readers[0].inputs) != 2:
        return None
    merge = readers[0]
    other = next(x for x in merge.inputs if x != block.output)
    if other in set(block.op_names()):
        return None
    after = [op for op in net.ops if merge.name in op.inputs]
    post = (after[0].name,) if len(after) == 1 and _folds_onto_line(after[0]) else ()
    return BlockParts(block, (), body, merge.name, post, None, block.input, other,
                      skip_projected=not _carried(net, other, {block.input}))


def block_parts(net: Network, block: Scope) -> BlockParts:
    """Split ``block`` into branch point, residual branch, merge, shortcut and tail.

    The rule is the dataflow's: a skip is drawn only into a residual add one of whose
    operands is the block's input or its shortcut's output (a scope of role ``shortcut``),
    or a part of either; the last such add is the merge. A block whose sums add only
    branches that compute (RepVGG's 3×3, 1×1 and BN branches) has no skip: its last sum
    is the merge, drawn without one."""
    inner = callee(block)
    shortcut = next((c for c in inner.children if c.role is Role.SHORTCUT and any(True for _ in c.op_names())),
                    None)
    short_ops = set(shortcut.op_names()) if shortcut else set()
    main = [n for n in block.op_names() if n not in short_ops]
    adds = [n for n in main if traits(net.op(n)).residual]
    if not adds:
        return _added_after(net, block, tuple(main)) or BlockParts(block, (), tuple(main), None, (), shortcut, None)
    ends = {shortcut.output} if shortcut is not None else {block.input}
    skipped = [(n, x) for n in adds for x in net.op(n).inputs if _carried(net, x, ends)]
    if not skipped:  # a sum of branches, no skip
        merge = adds[-1]
        i = main.index(merge)
        return BlockParts(block, (), tuple(main[:i]), merge, tuple(main[i + 1:]), shortcut, None)
    merge, skip_in = skipped[-1]
    i = main.index(merge)
    before, post = main[:i], tuple(main[i + 1:])
    skip_from = shortcut.input if shortcut is not None else block.input
    if skip_from in before:
        k = before.index(skip_from)
        return BlockParts(block, tuple(before[:k + 1]), tuple(before[k + 1:]), merge, post, shortcut,
                          skip_from, skip_in)
    # what only the skip reads (a part of the input, DPN's) is not in the residual branch
    body = tuple(n for n in before if not _carried(net, n, ends))
    dense = next((n for n in post if traits(net.op(n)).merge and len(net.op(n).inputs) > 1
                  and any(_carried(net, x, ends) for x in net.op(n).inputs)), None)
    if dense is not None:
        post = tuple(n for n in post if n != dense and not _carried(net, n, ends))
    return BlockParts(block, (), body, merge, post, shortcut, skip_from, skip_in, dense)


def block_signature(net: Network, block: Scope) -> tuple:
    """What makes two blocks identical: definition, arguments, input shape and every
    layer (relative name, kind, attributes, shape, relative inputs); not the index."""
    base = block.path + "."

    def rel(name: str) -> str:
        if name == block.input:
            return "<input>"
        return name[len(base):] if name.startswith(base) else name

    # equal up to the numbers among an op's operands (NF-ResNet's β per block): a figure groups
    # such blocks and writes the number as a range (:func:`group_lines`)
    layers = tuple((rel(n), op.kind, tuple((k, "<constant>" if k == "constant" else v) for k, v in op.attrs),
                    op.shape, tuple(rel(i) for i in op.inputs))
                   for n in block.op_names() for op in [net.op(n)])
    args = tuple((k, "<number>" if isinstance(v, float) else v) for k, v in block.args)
    return (block.definition, args, net.shape_of(block.input), layers)


def _alike(a: tuple, b: tuple) -> bool:
    """Two block signatures equal up to the block's input width: the same definition,
    arguments and layers (names, kinds, inputs), inputs of the same size but for their
    channels, and a layer's attributes or shape different only where one of its inputs
    differs (DPN's dense path and DenseNet's concat grow block by block: the input's norm, the
    split or concat that carries it; every conv's output width is the same)."""
    (defn, args, shape, layers), (defn_b, args_b, shape_b, layers_b) = a, b
    # shapes are per sample: channels first
    if (defn, args, len(shape), shape[1:], len(layers)) != (defn_b, args_b, len(shape_b), shape_b[1:], len(layers_b)):
        return False
    differ = {"<input>"}
    for (name, kind, attrs, out, ins), (name_b, kind_b, attrs_b, out_b, ins_b) in zip(layers, layers_b):
        if (name, kind, ins) != (name_b, kind_b, ins_b):
            return False
        if (attrs, out) != (attrs_b, out_b):
            if not differ.intersection(ins):  # a difference of its own, not the input's
                return False
            if out != out_b:
                differ.add(name)
    return True


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e-?\d+)?")


def group_lines(per_block: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a group of blocks equal up to constants: the first block's, each number
    that differs between them written as its range (``× 0.908–0.981``)."""
    first = list(per_block[0])
    if len(per_block) == 1 or any(len(lines) != len(first) for lines in per_block):
        return first
    out = []
    for k, line in enumerate(first):
        others = [lines[k] for lines in per_block]
        shapes = {_NUMBER.sub("#", x) for x in others}
        if len(set(others)) == 1 or len(shapes) != 1:
            out.append(line)
            continue
        numbers = [[float(m) for m in _NUMBER.findall(x)] for x in others]
        parts = iter(range(len(numbers[0])))

        def ranged(m: re.Match, parts=parts, numbers=numbers) -> str:
            i = next(parts)
            lo, hi = min(v[i] for v in numbers), max(v[i] for v in numbers)
            return m.group() if lo == hi else f"{fmt_constant(lo)}–{fmt_constant(hi)}"

        out.append(_NUMBER.sub(ranged, line))
    return out


def block_groups(net: Network, stage: Scope) -> list[list[Scope]]:
    """A stage's blocks (and its other parts, :func:`resdsl.roles.stage_parts`), consecutive
    blocks grouped that are identical up to constants and their input width (what a block's
    box shows, its layers' kernels and output widths and its skips, is then the same, as in
    the DPN paper's Table 1)."""
    groups: list[list[Scope]] = []
    last = None
    for block in stage_parts(net, stage):
        sig = block_signature(net, block) if block.role is Role.BLOCK else None
        if groups and sig is not None and last is not None and (sig == last or _alike(last, sig)):
            groups[-1].append(block)
        else:
            groups.append([block])
        last = sig
    return groups


# ---------------------------------------------------------------- block figures


def block_types(net: Network) -> list[Scope]:
    """The first block of each distinct type: definition, shortcut kind and the kinds of
    its layers in order (channel counts and strides do not make a new type)."""
    seen: dict[tuple, Scope] = {}
    outermost: list[Scope] = []

    def visit(scope: Scope) -> None:  # a block inside a block (BoTNet's rel_to_abs) is part of it
        for child in scope.children:
            (outermost.append if child.role is Role.BLOCK else visit)(child)

    visit(net.root)
    for scope in outermost:
        parts = block_parts(net, scope)
        key = (scope.definition, parts.shortcut.definition if parts.shortcut else "identity",
               bool(parts.pre), tuple(net.op(n).kind for n in scope.op_names()), shortcut_kind(net, parts))
        seen.setdefault(key, scope)
    return list(seen.values())


def shortcut_kind(net: Network, parts: BlockParts) -> str:
    """``identity shortcut``, ``projection shortcut`` (it has a conv), ``pool + projection
    shortcut`` (a pool drawn before it: ResNet-D's at a stride), ``zero-padding shortcut``
    (option A), or the shortcut definition's name; ``sum of branches`` for a block whose add
    has no skip (RepVGG's), ``no shortcut`` for one without an add."""
    if parts.skip_in is None:  # no skip: a sum of branches (RepVGG's), or a plain chain
        return "sum of branches" if parts.merge is not None else "no shortcut"
    if parts.shortcut is None:
        return "projection shortcut" if parts.skip_projected else "identity shortcut"
    ops = [traits(net.op(n)) for n in parts.shortcut.op_names() if not traits(net.op(n)).hidden]
    if any(t.conv for t in ops):
        return "pool + projection shortcut" if any(t.pool for t in ops) else "projection shortcut"
    if any(t.pad for t in ops):
        return "zero-padding shortcut"
    return f"{parts.shortcut.definition} shortcut"



def sum_branches(net: Network, parts: BlockParts) -> list[list[str]]:
    """The branches a block without a skip sums (RepVGG's 3×3, 1×1 and BN branches): the
    merge's operands, nested sums opened, each with the body's ops only it reads, in body
    order; ``[]`` for a block with a skip or no sum."""
    if parts.merge is None or parts.skip_in is not None:
        return []
    body = set(parts.body)
    operands: list[str] = []
    sums = {parts.merge}
    todo = list(net.op(parts.merge).inputs)
    while todo:
        x = todo.pop(0)
        if x in body and traits(net.op(x)).residual and len(net.op(x).inputs) > 1:
            todo[:0] = net.op(x).inputs
            sums.add(x)
        else:
            operands.append(x)
    body -= sums

    def upstream(x: str) -> set[str]:
        seen, stack = set(), [x]
        while stack:
            n = stack.pop()
            if n in body and n not in seen:
                seen.add(n)
                stack.extend(net.op(n).inputs)
        return seen

    ups = [upstream(x) for x in operands]
    out = []
    for k, up in enumerate(ups):
        shared = set().union(*(u for j, u in enumerate(ups) if j != k))
        out.append([n for n in parts.body if n in up and n not in shared])
    # weighted branches first, then in the order they run (not the order the sum names them)
    return sorted((b for b in out if b), key=lambda b: (not any(traits(net.op(n)).depth for n in b),
                                                     parts.body.index(b[0])))


def branch_lines(net: Network, block: Scope, parts: BlockParts) -> list[str]:
    """The residual branch's lines (:func:`_body_lines`); for a sum of branches without a
    skip, each branch's, the second and later marked ``‖`` ("in parallel with"), a branch
    without convs by its layers (RepVGG's identity ``BN``)."""
    branches = sum_branches(net, parts)
    if len(branches) < 2:
        return _body_lines(net, block, parts.body)
    inside = {n for b in branches for n in b}
    sums = {n for n in parts.body if traits(net.op(n)).residual}
    lines = _body_lines(net, block, [n for n in parts.body if n not in inside | sums])
    for k, branch in enumerate(branches):
        words = _body_lines(net, block, branch) or _lines(net, branch) or ["identity"]
        lines += [("‖ " if k and not j else "") + w for j, w in enumerate(words)]
    return lines


def _scaling(op: Op) -> bool:
    """An element-wise op of one tensor and a number (``x * 0.2``): a layer of its own."""
    return len(op.inputs) == 1 and "constant" in dict(op.attrs)


def _body_lines(net: Network, block: Scope, names: Sequence[str]) -> list[str]:
    """The residual branch as a block figure names it: convs and pools with their widths,
    and each nested module by what it holds (:func:`module_lines`)."""
    owner = {n: c for c in callee(block).children if c.role is not Role.SHORTCUT for n in c.op_names()}
    own = layers_of_their_own(net)
    out: list[str] = []
    run: list[str] = []
    bare: list[str] = []
    seen: set[str] = set()

    def flush() -> None:
        # the block's own layers: convs, pools and scalings by a constant (NF-ResNet's α and
        # 1/β), not norms, activations or merges, as beside a conv; a run of those alone
        # (NF-ResNet's ReLU between its convs) is left out, unless nothing else is there
        lines = [op_text(conv_view(net, op)) for n in run for op in [net.op(n)]
                 if op.batched and not (traits(op).hidden or _folds_onto_line(op))
                 and (not traits(op).merge or _scaling(op))]
        out.extend(lines)
        if not lines:
            bare.extend(run)
        run.clear()

    for n in names:
        child = owner.get(n)
        if child is None:
            run.append(n)
            continue
        flush()
        if child.path not in seen:
            seen.add(child.path)
            # a norm written in .res is left out as a primitive norm is
            if not (own.get(n) is child and norm_like(net, child)):
                out += module_lines(net, child)
    flush()
    return _runs(out or (_lines(net, bare, convs_only=True) if bare else []))


def module_lines(net: Network, module: Scope) -> list[str]:
    """A nested module in a block's box. An attention module that only reweights (its convs
    act on a 1×1 map or make one channel: SE, ECA, global context) is its definition's name; a module that computes the
    branch keeps its widths: its convs, one line per step, convs side by side (selective
    kernel's paths) marked ``‖``, under the module's name when it is more than a
    wrapper (it has paths or attention); a softmax over radix groups (ResNeSt's split
    attention) turns its grouped conv's ``groups 2`` into ``radix 2``."""
    convs = [n for n in module.op_names() if conv_like(net.op(n))]
    attention = attention_convs(net, module)
    main = [n for n in convs if n not in attention]
    name = module.definition.replace("_", "-")
    if not main:
        return [name]
    radix = radix_of(module, net)

    def words(n: str) -> str:
        op = conv_view(net, net.op(n))
        text = op_text(op)
        if op is not net.op(n) and len(main) == 1:  # a conv written in .res: its definition's name
            text = text.replace(" conv,", f" {name},", 1)
        groups = int(dict(op.attrs).get("groups", 1))
        if radix and groups % radix == 0:
            text = text.replace(f"groups {groups}", f"radix {radix}" + (f", groups {groups // radix}"
                                                                        if groups > radix else ""))
        return text

    steps = [[words(n) for n in step] for step in parallel_steps(net, module, main)]
    # paths side by side: the first as is, each other on a line of its own marked ‖ ("in
    # parallel with"), which keeps the box as narrow as its widest conv
    lines = [line for step in steps for line in [step[0], *(f"‖ {w}" for w in step[1:])]]
    # named when more than a chain of its convs (paths, attention, self-attention's matmuls)
    wrapper = not attention and all(len(step) == 1 for step in steps) and not computes_itself(net, module)
    return lines if wrapper else [name, *lines]
