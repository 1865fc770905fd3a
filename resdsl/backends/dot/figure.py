"""Block figures: each block type drawn once, layer by layer, like Fig. 2 of He et al."""

from __future__ import annotations

from collections.abc import Sequence

from ...diagnostics import did_you_mean
from ...ir import Network, Scope
from ...stats import fmt_shape
from .. import OptionError
from .anatomy import (
    BlockParts,
    block_parts,
    block_signature,
    block_types,
    look,
    op_text,
    part_text,
    shortcut_kind,
    traits,
)
from .writer import _Dot, text


def panel_name(net: Network, block: Scope, parts: BlockParts) -> str:
    """A panel's name for ``panels``: the block's definition and its shortcut's kind,
    ``bottleneck:projection``, ``basic:identity``, ``basic:zero-padding``,
    ``bottleneck:pool-projection``, ``repvgg_block:sum-of-branches`` (:func:`shortcut_kind`)."""
    kind = shortcut_kind(net, parts).removesuffix(" shortcut").replace(" + ", "-").replace(" ", "-")
    return f"{block.definition}:{kind}"


Panel = tuple[int, Network, Scope, BlockParts]


def _all_panels(nets: Sequence[Network]) -> list[Panel]:
    drawn: set[tuple] = set()
    panels: list[Panel] = []
    for k, net in enumerate(nets):
        for block in block_types(net):
            parts = block_parts(net, block)
            key = (block.definition, parts.shortcut.definition if parts.shortcut else "identity",
                   block_signature(net, block)[3:])
            if key not in drawn:
                drawn.add(key)
                panels.append((k, net, block, parts))
    return panels


def _named(nets: Sequence[Network]) -> dict[str, Panel]:
    """Every panel by a name of its own: :func:`panel_name`, led by its network's name
    where two networks draw it differently (``resnext50_32x4d:bottleneck:projection``),
    and then followed by the block's path where one network does
    (``bottleneck:projection@layer2.0``): what differs, said in the name."""
    panels = _all_panels(nets)
    names = [panel_name(p[1], p[2], p[3]) for p in panels]
    if len(set(names)) < len(names):
        by_net = {}
        for p, n in zip(panels, names):
            by_net.setdefault(n, set()).add(p[0])
        names = [f"{p[1].name}:{n}" if len(by_net[n]) > 1 else n for p, n in zip(panels, names)]
    if len(set(names)) < len(names):
        repeated = {n for n in names if names.count(n) > 1}
        names = [f"{n}@{p[2].path}" if n in repeated else n for p, n in zip(panels, names)]
    return dict(zip(names, panels))


def panel_names(nets: Sequence[Network]) -> list[str]:
    """The panels a block figure of ``nets`` can draw, by name (:func:`panel_name`, made
    unique), in the order drawn."""
    return list(_named(nets))


def _chosen(nets: Sequence[Network], wanted: Sequence[str] | None) -> list[Panel]:
    """The panels named in ``wanted``, in its order (all of them without it)."""
    named = _named(nets)
    if wanted is None:
        return list(named.values())
    out = []
    for name in wanted:
        if name not in named:
            raise OptionError("panels", "no block type `{name}` to draw", name=name,
                              hint=(did_you_mean(name, named) or "")
                              + f" the panels here are: {', '.join(named)}".lstrip())
        out.append(named[name])
    return out


def block_figure(nets: Sequence[Network], g: _Dot, wanted: Sequence[str] | None = None) -> None:
    """Each chosen block type, one panel each; every panel's input on one rank and its
    output on another, so the panels are as tall as each other with their bottoms aligned."""
    panels = _chosen(nets, wanted)
    # The panels in the order of the arguments, in every rankdir: dot lays LR out as TB
    # turned a quarter, which stacks the first cluster at the bottom, so LR emits them
    # last first.
    ins, outs = [], []
    for k, net, block, parts in panels if g.o.rankdir == "TB" else panels[::-1]:
        prefix = f"{k}/" if len(nets) > 1 else ""
        who = f"{net.name} · " if len(nets) > 1 else ""
        # the panel's name over lines of its own, flush left: a long one-line title made the
        # panels twice as wide as their blocks (He et al.'s Fig. 2 fits a column)
        small = f'<FONT POINT-SIZE="{g.st.small}" COLOR="{g.st.label}">'
        title = "".join(f"{part}<BR ALIGN=\"LEFT\"/>" for part in (
            f"<B>{text(block.definition)}</B>", f"{small}{text(shortcut_kind(net, parts))}</FONT>",
            f"{small}{text(who + block.path)}</FONT>"))
        g.open_cluster(prefix + block.path, title, fill=False)
        _figure_block(net, g, block, parts, prefix)
        g.close()
        ins.append(prefix + block.path + "/in")
        outs.append(prefix + block.path + "/out")
    g.same_rank(ins)
    g.same_rank(outs)


def _figure_block(net: Network, g: _Dot, block: Scope, parts: BlockParts, prefix: str) -> None:
    """One block layer by layer, the way Fig. 2 of He et al. 2015 draws it."""
    st = g.st

    def nid(name: str) -> str:
        return prefix + name

    g.group = prefix + block.path
    inp = nid(block.path + "/in")
    g.node(inp, g.label(None, [f"{fmt_shape(net.shape_of(block.input))}"]), True, shape="plaintext",
           style="solid")
    short = set(parts.shortcut.op_names()) if parts.shortcut else set()

    def shown(name: str) -> str:
        """The drawn op behind ``name``: an identity (option D's at stride 1) or another
        hidden op is no box, its readers' edges come from what it passes through."""
        while name != block.input and traits(net.op(name)).hidden and net.op(name).inputs:
            name = net.op(name).inputs[0]
        return name

    names = [n for n in block.op_names() if shown(n) == n]
    readers: dict[str, list[str]] = {}
    for n in names:
        for i in dict.fromkeys(map(shown, net.op(n).inputs)):
            readers.setdefault(i, []).append(n)
    for n in names:
        op = net.op(n)
        # parallel paths in index order: a fan-out keeps its out-edges in the order written
        # (the op order, which is the spec's index order), a gather its in-edges
        order = {"ordering": "out"} if len(readers.get(n, ())) > 1 else \
            {"ordering": "in"} if len(op.inputs) > 2 else {}
        if look(op).symbol is not None:
            g.node(nid(n), f"<B>{text(look(op).symbol)}</B>", n not in short, shape="circle", width=0.22,
                   height=0.22, fixedsize="true", margin=0, fillcolor="white", **order)
        else:
            g.node(nid(n), g.label(None, part_text(op) or [op_text(op)]), n not in short,
                   fillcolor=st.fill("shortcut" if n in short else look(op).category), **order)
    for outs in readers.values():
        # the parts of one split side by side on one rank, so that a hierarchy over them
        # (Res2Net's) steps down as a staircase rather than crossing itself
        parts_of = [n for n in outs if len(net.op(n).inputs) == 1]
        if len(outs) > 1 and len(parts_of) == len(outs):
            g.same_rank([nid(n) for n in parts_of])
    for n in names:
        for i in map(shown, net.op(n).inputs):
            src = inp if i == block.input else nid(i)
            is_skip = parts.skip_in is not None and n == parts.merge and i == shown(parts.skip_in)
            if is_skip or n in short:
                g.skip(src, nid(n), parts.shortcut is not None)
            else:
                g.edge(src, nid(n))
    out = nid(block.path + "/out")
    g.node(out, g.label(None, [fmt_shape(net.shape_of(block.output))]), True, shape="plaintext", style="solid")
    last = shown(block.output)
    g.edge(inp if last == block.input else nid(last), out)
