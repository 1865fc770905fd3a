"""The three detail levels of one network: network, block and layer."""

from __future__ import annotations

import re

from ...diagnostics import did_you_mean
from ...ir import INPUT, Network, Op, Role, Scope
from ...roles import stage_parts
from ...stats import fmt_shape, sections
from .. import OptionError
from .anatomy import (
    _lines,
    block_groups,
    block_parts,
    branch_lines,
    callee,
    group_lines,
    look,
    op_text,
)
from .writer import _Dot, text, text_width

# ---------------------------------------------------------------- detail levels


def _terminal(g: _Dot, nid: str, words: str, shape: str | None = None) -> None:
    g.node(nid, g.label(None, [words], small=shape), main=True, shape="plaintext", style="solid")


def network_level(net: Network, g: _Dot, columns: int = 1) -> None:
    """Stem, each stage and the head as one box each, in ``columns`` columns (rows, left
    to right) as :func:`block_level` wraps them."""
    st = g.st
    secs = sections(net)
    lanes = _lanes(secs, columns, g.o.rankdir)
    g.group = "main0"
    _terminal(g, INPUT, "input")
    prev, prev_shape = INPUT, net.input_shape
    tied: list[list[list[str]]] = [[] for _ in range(lanes[-1] + 1)] if lanes else [[]]
    firsts = {0: INPUT}
    for i, sec in enumerate(secs):
        wrap = lanes[i] != (lanes[i - 1] if i else 0)  # the input is in the first lane
        if wrap:
            g.group = f"main{lanes[i]}"
        if sec.role is Role.STAGE:
            groups: list[list[str]] = []
            for block in stage_parts(net, sec.scope):
                if groups and groups[-1][0] == block.definition:
                    groups[-1].append(block.definition)
                else:
                    groups.append([block.definition])
            lines = [d[0] + (f" × {len(d)}" if len(d) > 1 else "") for d in groups]
            nid, fill = sec.scope.path or sec.name, st.fill("stage")  # an unnamed stage: its section's name
            tied[lanes[i]].append([nid])
        else:
            lines, nid, fill = _section_lines(net, sec.ops), f"{sec.name}/{sec.ops[0]}", st.fill("section")
        g.node(nid, g.label(sec.name, lines + g.stats(sec.params, sec.macs)), main=True, fillcolor=fill)
        # the edge that carries a lane to the next one does not rank it after it
        g.edge(prev, nid, g.shape(prev_shape), **({"constraint": "false"} if wrap else {}))
        firsts.setdefault(lanes[i], nid)
        prev, prev_shape = nid, sec.shape
    _terminal(g, "output", "output")
    g.edge(prev, "output", g.shape(prev_shape))
    if len(firsts) > 1:
        _tie_lanes(g, tied, firsts)


def _section_lines(net: Network, ops: list[str] | tuple[str, ...]) -> list[str]:
    """A stem's or head's layers, one line each; a block without a skip among them
    (RepVGG's stem: a sum of branches) by its branches side by side, then its sum."""
    inside = set(ops)
    blocks = [b for b in net.root.walk() if b.role is Role.BLOCK and set(b.op_names()) <= inside]
    owner = {n: b for b in blocks for n in b.op_names()}
    if not any(block_parts(net, b).skip_in is None and block_parts(net, b).merge for b in blocks):
        return _lines(net, ops)
    out: list[str] = []
    run: list[str] = []
    seen: set[str] = set()
    for n in ops:
        block = owner.get(n)
        if block is None:
            run.append(n)
            continue
        out += _lines(net, run)
        run = []
        if block.path not in seen:
            seen.add(block.path)
            parts = block_parts(net, block)
            out += branch_lines(net, block, parts) + (["+ " + ", ".join(_lines(net, parts.post))] if parts.merge else [])
    return out + _lines(net, run)


def stage_count(net: Network) -> int:
    return sum(1 for sec in sections(net) if sec.role is Role.STAGE)


def block_level(net: Network, g: _Dot, columns: int = 1) -> None:
    """Stages as clusters, in ``columns`` columns side by side (top to bottom: the stem
    heads the first, the head ends the last) or, left to right, in as many rows (the stem
    and the head then in rows of their own, so that no row is longer than a stage row);
    every stage cluster is built alike, so they line up.

    No edge has a label here: dot gives every labelled graph twice the ranks, which made
    the view twice as tall. Shapes are written where they hold instead: under ``input``,
    in the stem's and head's boxes, and in each stage's title (its output)."""
    st = g.st
    secs = sections(net)
    lanes = _lanes(secs, columns, g.o.rankdir)
    g.body_width = _body_width(net, g, [sec.scope for sec in secs if sec.role is Role.STAGE])
    g.group = "main0"
    _terminal(g, INPUT, "input", g.shape(net.input_shape))
    prev = INPUT
    # each lane's (column's or row's) stages, as the nodes to tie across lanes: the
    # stage's top, then each block's box
    tied: list[list[list[str]]] = [[] for _ in range(lanes[-1] + 1)] if lanes else [[]]
    firsts = {0: INPUT}  # each lane's first node
    for i, sec in enumerate(secs):
        wrap = lanes[i] != (lanes[i - 1] if i else 0)  # the input is in the first lane
        if wrap:
            g.group = f"main{lanes[i]}"
        if sec.role is not Role.STAGE:
            nid = f"{sec.name}/{sec.ops[0]}"
            shape = g.shape(sec.shape)
            g.node(nid, g.label(sec.name, _section_lines(net, sec.ops) + g.stats(sec.params, sec.macs), small=shape),
                   main=True, fillcolor=st.fill("section"))
            # the edge that carries a lane to the next one does not rank it after it
            g.edge(prev, nid, **({"constraint": "false"} if wrap else {}))
            firsts.setdefault(lanes[i], nid)
            prev = nid
            continue
        stage = sec.scope
        key = stage.path or sec.name  # an unnamed stage (no path of its own): its section's name
        size = fmt_shape(sec.shape) if g.o.shapes else "×".join(str(d) for d in sec.shape[1:])
        g.open_cluster(key, g.label(None, [f"{sec.name} · {size}"], " · ".join(g.stats(sec.params, sec.macs))))
        # an empty point at the top of every stage: the lane ties and a stage's first
        # skip start here, so each stage cluster is drawn alike
        top = key + "/top"
        g.node(top, " ", True, shape="point", width=0.03, height=0.03, style="filled", fillcolor=st.edge,
               color=st.edge)
        g.edge(prev, top, **({"constraint": "false"} if wrap else {}))
        firsts.setdefault(lanes[i], top)
        prev = top
        tied[lanes[i]].append([top])
        groups = block_groups(net, stage)
        # where each part's output is drawn: a part reads the one it reads, not always the
        # one above it (DLA's tree1 reads the tree's input, not the projection beside it)
        exits = {stage.input: top}
        # a part that no part reads as its input, only a block's add as its skip (DLA's
        # projection of the tree's input), is drawn with that block, beside it as a block's
        # own shortcut is: on the main path it would push the stage off the column's axis
        beside: dict[str, Scope] = {}
        if any(group[0].role is not Role.BLOCK for group in groups):
            read = {group[0].input for group in groups} | {stage.output}
            skips = {block_parts(net, group[0]).skip_in for group in groups if group[0].role is Role.BLOCK}
            beside = {group[0].output: group[0] for group in groups if group[0].role is not Role.BLOCK
                      and group[0].output in skips and group[0].output not in read}
        # the box each value leaves from, to draw every read between boxes from where it starts
        # (only a stage part that is not a block reads across boxes: none, nothing to record)
        drawn: dict[str, str] | None = None if all(gr[0].role is Role.BLOCK for gr in groups) else {}
        entries: dict[str, str] = {}  # each part's box: the node its main edge comes from
        for group in groups:
            if group[0].output in beside:
                continue
            entries[group[0].path] = exits.get(group[0].input, prev)
            prev = _block_node(net, g, group, entries[group[0].path], exits, beside, drawn)
            exits[group[-1].output] = prev
            tied[lanes[i]][-1].append(group[0].path + "/body")
        if drawn is not None:
            _cross_links(net, g, groups, drawn, entries)
        # and one at its bottom, outside any plate: the stage's way out
        g.node(key + "/end", " ", True, shape="point", width=0.03, height=0.03, style="filled",
               fillcolor=st.edge, color=st.edge)
        g.edge(prev, key + "/end", arrowhead="none")
        prev = key + "/end"
        g.close()
    _terminal(g, "output", "output", g.shape(net.output_shape))
    g.edge(prev, "output")
    if len(firsts) > 1:
        _tie_lanes(g, tied, firsts)


def _cross_links(net: Network, g: _Dot, groups: list[list[Scope]], drawn: dict[str, str],
                 entries: dict[str, str]) -> None:
    """A stage's own layer that also reads a value drawn in another box than the one its
    main edge comes from (CSP's concat of the half that bypassed the blocks; DLA's root,
    which reads the first tree's sum and the max-pooled input) is drawn as such: a skip from
    the box that value leaves."""
    claimed = _claimed(net, groups)
    for group in groups:
        part = group[0]
        if part.role is Role.BLOCK:
            continue
        own = {drawn.get(n) for n in part.op_names() if n not in claimed}
        done: set[str] = set()
        for n in part.op_names():
            if n in claimed:
                continue
            for x in net.op(n).inputs:
                src = drawn.get(x)
                if src is None or src in own or src in done or src == entries.get(part.path):
                    continue
                done.add(src)
                g.skip(src, drawn[n], False, weight=0)


def _claimed(net: Network, groups: list[list[Scope]]) -> set[str]:
    """The stage's own ops that a block's box draws: its add and what follows it (DLA's tree
    adds each block's skip outside the block)."""
    out: set[str] = set()
    for group in groups:
        for block in group:
            if block.role is Role.BLOCK:
                parts = block_parts(net, block)
                out.update(n for n in (parts.merge, *parts.post, parts.dense) if n is not None)
    return out


def _segments(net: Network, part: Scope) -> list[list[str]]:
    """A part's ops, cut after each that something outside the part reads (DLA's max pool,
    which the tree's root reads as well as the projection): each piece is a box of its own,
    so that a read of it starts where the value does, never at a box that computes more.
    Only where weighted layers follow: a box's split or activation at its end (CSP's halves,
    the one its cross link reads) is part of what the box hands on."""
    ops = list(part.op_names())
    inside = set(ops)
    read = {x for op in net.ops if op.name not in inside for x in op.inputs}
    out: list[list[str]] = [[]]
    for k, n in enumerate(ops):
        out[-1].append(n)
        if n in read and n != ops[-1] and any(net.op(m).params for m in ops[k + 1:]):
            out.append([])
    return [seg for seg in out if seg]


def _part_boxes(net: Network, g: _Dot, part: Scope, src: str, drawn: dict[str, str], beside: bool,
                **wide: float) -> tuple[str, str]:
    """Draw a stage part that is not a block as its boxes (:func:`_segments`), each read edge
    between them drawn; returns its first and last box."""
    segs = _segments(net, part)
    base = part.path.rpartition(".")[0] + "." if "." in part.path else ""
    nodes: list[str] = []
    for k, seg in enumerate(segs):
        nid = part.path + "/body" if k == 0 else seg[0] + "/body"
        title = part.definition
        if len(segs) > 1:  # each piece named by its layers' common first name, as the part is
            firsts = {(net.op(n).module or n)[len(base):].split(".")[0] for n in seg}
            title = firsts.pop() if len(firsts) == 1 else part.definition
        fill = g.st.fill("shortcut") if beside else g.st.fill("block")
        attrs = {"group": "shortcuts"} if beside else {}
        g.node(nid, g.label(title, _lines(net, seg, convs_only=True)), main=not beside, fillcolor=fill,
               **attrs, **({} if beside else wide))
        before = {drawn[x] for n in seg for x in net.op(n).inputs if drawn.get(x) in nodes}
        for n in seg:
            drawn[n] = nid
        for a in sorted(before, key=nodes.index) if k else [src]:
            g.skip(a, nid, True, weight=0) if beside else g.edge(a, nid)
        nodes.append(nid)
    return nodes[0], nodes[-1]


def _lanes(secs: list, columns: int, rankdir: str) -> list[int]:
    """The lane (column, or row left to right) of each section: the stages ``columns``
    to a lane at most, in order; the stem with the first stage and the head with the last
    (left to right, each in a lane of its own when the stages wrap)."""
    stages = [i for i, sec in enumerate(secs) if sec.role is Role.STAGE]
    if columns <= 1 or not stages:
        return [0] * len(secs)
    per = -(-len(stages) // columns)
    own = rankdir == "LR"  # the stem and the head alone in their rows
    lane = {i: k // per + own for k, i in enumerate(stages)}
    out, last = [], 0
    for i in range(len(secs)):
        if i in lane:
            last = lane[i]
        elif i > stages[-1]:
            last = lane[stages[-1]] + own
        out.append(last)
    return out


def _tie_lanes(g: _Dot, tied: list[list[list[str]]], firsts: dict[int, str]) -> None:
    """Line the lanes up: dot's ranks run across the whole figure, so a stage's box
    level with a small node of the next lane (a merge, a plate's entry) left a box's
    height of air in both. The j-th stage of every lane starts on one rank, and its k-th
    box is level with the k-th box of the others; a lane without a stage (the stem's or
    head's row) starts level with the first stage."""
    stage_lanes = [lane for lane in tied if lane]
    for j in range(max(map(len, stage_lanes), default=0)):
        rows = [lane[j] for lane in stage_lanes if j < len(lane)]
        for k in range(max(map(len, rows))):
            g.same_rank([row[k] for row in rows if k < len(row)])
    if stage_lanes:
        g.same_rank([stage_lanes[0][0][0], *(firsts[k] for k, lane in enumerate(tied) if not lane and k in firsts)])


def _body_text(net: Network, group: list[Scope]) -> tuple[str, list[str], str]:
    """A block box's title, lines and sub-label."""
    block = group[0]
    if block.role is not Role.BLOCK:
        return block.definition, _lines(net, block.op_names(), convs_only=True), ""
    # which blocks, named within their stage (whose cluster names it): `block 0`, `blocks 1–5`
    first, last = block.path.rpartition(".")[2], group[-1].path.rpartition(".")[2]
    # a range of numbered names says their stem once, as page ranges do: `conv4_2–12`
    stem = re.match(r"(.*\D)\d+$", first)
    if stem and last.startswith(stem[1]) and last[len(stem[1]):].isdigit():
        last = last[len(stem[1]):]
    sub = f"block {first}" if len(group) == 1 else f"blocks {first}–{last}"
    # blocks called with the same arguments on inputs as wide compute the same numbers: the
    # first's lines do (a wider input, DPN's, may change a number the box shows: a range then)
    shape = net.shape_of(block.input)
    varied = group if any(b.args != block.args or net.shape_of(b.input) != shape for b in group) else [block]
    lines = group_lines([branch_lines(net, b, block_parts(net, b)) for b in varied])
    return callee(block).definition, lines, sub


def _body_width(net: Network, g: _Dot, stages: list[Scope]) -> float:
    """The widest block box of the figure, estimated from the font's metrics (left to right,
    the tallest, as a negative number)."""
    widest = 0.0
    for stage in stages:
        for group in block_groups(net, stage):
            title, lines, sub = _body_text(net, group)
            widest = max([widest, text_width(title, g.st.size, bold=True) + text_width(" " + sub, g.st.small),
                          *(text_width(line, g.st.size) for line in lines)])
    if g.o.rankdir == "LR":  # across the rank is height here: as many lines as the tallest box
        tallest = max((1 + len(_body_text(net, group)[1]) for stage in stages
                       for group in block_groups(net, stage)), default=1)
        return -round(tallest * g.st.size * 1.2 / 72 + 0.12, 2)
    return round(widest + 0.26, 2)  # the node's margins, 0.12 in a side, and a little air


def _block_node(net: Network, g: _Dot, group: list[Scope], prev: str, exits: dict[str, str] | None = None,
                beside: dict[str, Scope] | None = None, drawn: dict[str, str] | None = None) -> str:
    """Draw a group of identical blocks as one; returns the node its output leaves from.
    A group of several is drawn once inside a plate marked ``× n``, its skip starting
    inside the plate: one skip per block, as in the network, never one arc over the group."""
    st = g.st
    block = group[0]
    record = drawn is not None
    drawn = {} if drawn is None else drawn
    # one size for every block box (its width; left to right, its height: stored negative)
    wide = {} if not g.body_width else {"width": g.body_width} if g.body_width > 0 else {"height": -g.body_width}
    if block.role is not Role.BLOCK:  # a stage item that is not a block: one box
        # framed unseen as a block is, so that every stage's boxes line up
        g.open_cluster(block.path + "/frame", "<B> </B>" if g.o.rankdir == "LR" else "", plate=True, hidden=True)
        # the ops a block's box draws (its add, DLA's) are that block's, not this box's
        claimed = {n: drawn[n] for n in block.op_names() if n in drawn}
        nid = _part_boxes(net, g, block, prev, drawn, False, **wide)[1]
        drawn.update(claimed)
        g.close()
        return nid
    parts = block_parts(net, block)
    plate = len(group) > 1
    # a single block is framed too, unseen: with every block one cluster deep, the plates'
    # margins do not push the main path right, stage after stage
    # (left to right, a plate's label takes room across the rank: an unseen frame keeps as
    # much, a blank label, so that the blocks still line up)
    blank = "<B> </B>" if g.o.rankdir == "LR" else ""
    g.open_cluster(block.path + ("/plate" if plate else "/frame"), f"<B>× {len(group)}</B>" if plate else blank,
                   plate=True, hidden=not plate)
    if plate:
        point = block.path + "/in"
        g.node(point, " ", True, shape="point", width=0.03, height=0.03, style="filled", fillcolor=st.edge,
               color=st.edge)
        g.edge(prev, point)
        prev = point
    title, lines, sub = _body_text(net, group)
    entry, skip_src = prev, prev
    if parts.pre:
        pre = block.path + "/pre"
        g.node(pre, g.label(None, _lines(net, parts.pre)), main=True, fillcolor=st.fill("pre"))
        g.edge(entry, pre)
        entry = pre
        if parts.skip_from in parts.pre:
            skip_src = pre
    body = block.path + "/body"
    g.node(body, g.label(title, lines, sub), main=True, fillcolor=st.fill("block"), **wide)
    g.edge(entry, body)
    if parts.merge is None:
        if record:
            drawn.update(dict.fromkeys((n for b in group for n in b.op_names()), body))
        g.close()
        return body
    merge = block.path + "/merge"
    post = ", ".join(_lines(net, parts.post)) if parts.dense is None else ""
    if post:  # what follows the add (the ReLU) is written in its node, not floating beside it
        g.node(merge, f"<B>+</B> {text(post)}", main=True, height=0.2, margin="0.05,0.01", style="rounded",
               fillcolor="white")
    else:
        g.node(merge, "<B>+</B>", main=True, shape="circle", width=0.22, height=0.22, fixedsize="true",
               margin=0, fillcolor="white")
    g.edge(body, merge)
    # weight 0: the main path stays straight, and the skips bend around it
    if parts.skip_from is None:  # a sum of parallel branches: no skip to draw
        pass
    elif parts.shortcut is not None:
        sc = block.path + "/shortcut"
        g.node(sc, g.label(None, _lines(net, parts.shortcut.op_names())),
               fillcolor=st.fill("shortcut"), group="shortcuts")
        g.skip(skip_src, sc, True, weight=0)
        g.skip(sc, merge, True, weight=0)
        # beside the block's box and to its right, as the papers draw it: an unseen edge
        # on one rank fixes the order that dot would otherwise pick by crossings
        g.same_rank([body, sc])
        g.edge(body, sc, style="invis")
    elif parts.skip_projected and parts.skip_in in (beside or {}):
        # a stage's part that only this add reads (DLA's projection): drawn as a shortcut is
        part = (beside or {})[parts.skip_in]
        first, sc = _part_boxes(net, g, part, (exits or {}).get(part.input, skip_src), drawn, True)
        g.skip(sc, merge, True, weight=0)
        g.same_rank([body, first])
        g.edge(body, first, style="invis")
        if exits is not None:
            exits[part.output] = sc
    else:
        # a projection drawn as a part of its own (DLA's) is where the skip starts
        src = (exits or {}).get(parts.skip_in, skip_src) if parts.skip_projected else skip_src
        g.skip(src, merge, parts.skip_projected, weight=0)
    for b in group if record else ():  # a collapsed group's values leave its one drawing
        drawn.update(dict.fromkeys(b.op_names(), body))
    for b in {block.path: block, group[-1].path: group[-1]}.values() if record else ():  # its way out
        bp = block_parts(net, b) if b is not block else parts
        drawn.update(dict.fromkeys(bp.pre, block.path + "/pre"))
        if bp.shortcut is not None:
            drawn.update(dict.fromkeys(bp.shortcut.op_names(), block.path + "/shortcut"))
        drawn.update(dict.fromkeys((bp.merge, *(() if bp.dense else bp.post)), merge))
        if bp.dense is not None:
            drawn.update(dict.fromkeys((bp.dense, *bp.post), block.path + "/dense"))
    if parts.dense is not None:  # DPN's dense path: the input's other part joins after the sum
        dense = block.path + "/dense"
        words = ", ".join([op_text(net.op(parts.dense)), *_lines(net, parts.post)])
        g.node(dense, text(words), main=True, height=0.2, margin="0.05,0.01", style="rounded", fillcolor="white")
        g.edge(merge, dense)
        g.skip(block.path + "/shortcut" if parts.shortcut is not None else skip_src, dense,
               parts.shortcut is not None, weight=0)
        merge = dense
    g.close()
    return merge


def _op_node(net: Network, g: _Dot, op: Op, named: bool, main: bool = True) -> None:
    st = g.st
    cat = look(op).category
    if look(op).symbol is not None:
        g.node(op.name, f"<B>{text(look(op).symbol)}</B>", main, shape="circle", width=0.22, height=0.22,
               fixedsize="true", margin=0)
        return
    label = text(op_text(op))
    if named:  # the name under the layer, smaller and grey
        label += f'<BR/><FONT POINT-SIZE="{st.small}" COLOR="{st.label}">{text(g.names.get(op.name, op.name))}</FONT>'
    g.node(op.name, label, main, fillcolor=st.fill(cat))


def _layer_ops(net: Network, g: _Dot, scope: Scope, named: bool, skips: dict[tuple[str, str], bool],
               main: bool = True) -> None:
    """Emit ``scope``'s ops, with blocks, shortcuts and modules as nested clusters."""
    for item in scope.items:
        if isinstance(item, str):
            _op_node(net, g, net.op(item), named, main)
            continue
        if item.inline:
            _layer_ops(net, g, item, named, skips, main)
            continue
        if item.role is Role.BLOCK:
            parts = block_parts(net, item)
            if parts.skip_in is not None:
                skips[(parts.skip_in, parts.merge)] = parts.shortcut is not None
            if parts.dense is not None:  # the dense path's part of the input
                for x in net.op(parts.dense).inputs:
                    if x != parts.merge and x not in parts.body:
                        skips[(x, parts.dense)] = parts.shortcut is not None
            if parts.skip_in is not None and parts.shortcut is not None:  # into and through the shortcut
                for n in parts.shortcut.op_names():
                    for i in net.op(n).inputs:
                        skips[(i, n)] = True
        title = item.name if item.role in (Role.STAGE, Role.BLOCK) else f"{item.name}: {item.definition}"
        lines, sub = [title], None
        if item.role is Role.STAGE:
            lines = [f"{item.name} · {'×'.join(map(str, net.shape_of(item.output)[1:]))}"]
            sub = " · ".join(g.stats(net.scope_params(item), net.scope_macs(item)))
        elif item.role is Role.BLOCK:
            lines = [f"{item.path} · {item.definition}"]
        g.open_cluster(item.path, g.label(None, lines, sub), fill=item.role in (Role.STAGE, Role.STEM, Role.HEAD))
        _layer_ops(net, g, item, named, skips, main and item.role not in (Role.SHORTCUT, Role.MODULE))
        g.close()


def _find_scope(net: Network, path: str) -> Scope:
    scopes = {s.path: s for s in net.root.walk() if not s.inline and s.path}
    if path not in scopes:
        raise OptionError("scope", "network `{network}` has no stage or block `{path}`", network=net.name,
                          path=path, hint=did_you_mean(path, scopes) or f"e.g. {next(iter(sorted(scopes)), 'layer1.0')}")
    return scopes[path]


def spec_names(net: Network) -> dict[str, str]:
    """What the layer view calls each op: the name the spec gives it (a torch module used
    twice, torchvision's ``relu``, is that module each time); an op the spec leaves unnamed
    is named by its place in its parent, ``layer1.1[17]``, never by a made-up ``#3``."""
    out: dict[str, str] = {}
    for scope in net.root.walk():
        for k, item in enumerate(scope.items):
            if isinstance(item, str):
                op = net.op(item)
                out[item] = op.module or (item if "#" not in item else f"{scope.path or net.name}[{k}]")
    return out


def layer_level(net: Network, g: _Dot, scope_path: str | None, named: bool = True) -> None:
    skips: dict[tuple[str, str], bool] = {}
    g.names = spec_names(net)
    g.group = "main"
    if scope_path is None:
        _terminal(g, INPUT, "input")
        # the stem and head are sections, not scopes, when inline: cluster them anyway
        for sec in sections(net):
            if sec.role is Role.STAGE and sec.scope.inline:  # an unnamed stage: clustered by its section's name
                g.open_cluster(sec.name, g.label(None, [f"{sec.name} · {'×'.join(map(str, sec.shape[1:]))}"],
                                                 " · ".join(g.stats(sec.params, sec.macs))), fill=True)
                _layer_ops(net, g, sec.scope, named, skips)
                g.close()
                continue
            if sec.role is Role.STAGE:
                _layer_ops(net, g, Scope("", "", Role.NETWORK, "", (), (sec.scope,), "", "", sec.scope.span),
                           named, skips)
                continue
            g.open_cluster(f"{sec.name}/{sec.ops[0]}",
                           g.label(None, [sec.name], " · ".join(g.stats(sec.params, sec.macs))))
            for n in sec.ops:
                _op_node(net, g, net.op(n), named)
            g.close()
        names = [op.name for op in net.ops]
        outside: list[str] = []
    else:
        scope = _find_scope(net, scope_path)
        _layer_ops(net, g, Scope("", "", Role.NETWORK, "", (), (scope,), "", "", scope.span), named, skips)
        names = list(scope.op_names())
        inside = set(names)
        outside = sorted({i for n in names for i in net.op(n).inputs if i not in inside},
                         key=lambda i: -1 if i == INPUT else net.ops.index(net.op(i)))
        for i in outside:
            _terminal(g, i, "input" if i == INPUT else f"from {g.names.get(i, i)}")
    for n in names:
        op = net.op(n)
        for i in op.inputs:
            src_shape = net.shape_of(i)
            # shapes on edges where they change (or enter), to keep long chains readable
            changed = i == INPUT or i in outside or look(net.op(i)).symbol is not None or \
                src_shape != (net.shape_of(net.op(i).inputs[0]) if net.op(i).inputs else None)
            label = g.shape(src_shape) if changed else None
            if (i, n) in skips:
                g.skip(i, n, skips[(i, n)], label)
            else:
                g.edge(i, n, label)
    if scope_path is None:
        _terminal(g, "output", "output")
        g.edge(net.output, "output", g.shape(net.output_shape))
    else:
        last = _find_scope(net, scope_path).output
        # the end of a stage or block is the network's output only when it is
        readers = [op.name for op in net.ops if last in op.inputs and op.name not in inside]
        words = "output" if last == net.output else f"to {g.names.get(readers[0], readers[0])}" if readers else "out"
        _terminal(g, "output", words)
        g.edge(last, "output", g.shape(net.shape_of(last)))
