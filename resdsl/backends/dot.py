"""Graphviz diagrams of a network: DOT text from the IR, and SVG/PDF/PNG through `dot`.

Three levels of detail, one figure mode:

``network``
    stem, each stage and the head as one box, tensor shapes on the edges.
``block``
    stages as clusters; each block as its residual branch, its merge (``+``) and its
    skip edge; identical consecutive blocks (same definition, arguments and layer
    structure, differing only in their index) collapse into one ``bottleneck × 5``.
``layer``
    every op (conv, BN, activation, …) as a node, blocks and shortcuts as nested clusters;
    ``scope="layer2.0"`` draws one block (or stage) only.
``blocks``
    a block figure, like Fig. 2 of He et al. 2015: each distinct block type of one or more
    specs drawn once, side by side, layer by layer (:func:`emit_blocks`).

Skip edges are dashed for an identity shortcut and solid (bold, a second colour in the
colour style) through the shortcut's layers for a projection, zero-padding or pooling
shortcut. DOT text needs no binary; the output is deterministic: node ids are spec paths
(quoted and %-escaped), labels are HTML-escaped, so no name can break the graph.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

from ..diagnostics import did_you_mean
from ..ir import INPUT, Network, Op, Role, Scope
from ..primitives import PRIMITIVES, Look
from ..stats import fmt_count, fmt_shape, sections
from . import BackendError, Option, OptionError, declare

DETAILS = ("network", "block", "layer", "blocks")
ANNOTATIONS = ("shapes", "params", "macs")
STYLES = ("color", "paper")
RANKDIRS = ("TB", "LR")

#: How to install Graphviz, for the error when `dot` is missing.
INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
                "(macOS), `conda install graphviz`; or write DOT text (the dot target) and render it elsewhere")

#: Layer categories that fold onto the line of the layer before them (``BN, ReLU``).
_NORM_ACT = ("norm", "act")


def look(op: Op) -> Look:
    """How the registry says to draw ``op``."""
    return PRIMITIVES[op.kind].look


@dataclass(frozen=True)
class Style:
    font: str
    size: int
    node_pen: str
    edge: str
    label: str  # secondary text (op names, block ranges)
    cluster_pen: str
    cluster_fill: str
    skip_identity: str
    skip_projection: str
    fills: dict[str, str] = field(default_factory=dict)
    nodesep: float = 0.25
    ranksep: float = 0.3
    title: bool = True  # a paper figure gets its caption from the paper, not the graph

    def fill(self, category: str) -> str:
        return self.fills.get(category, "white")


_STYLES = {
    "color": Style("Helvetica,Arial,sans-serif", 11, "#4d4d4d", "#404040", "#6b6b6b", "#9aa7b5", "#f5f8fb",
                   "#2f6fb0", "#c4501b",
                   {"conv": "#d6e6f5", "norm": "#fbeec9", "act": "#dcefd6", "pool": "#f8dcc8",
                    "fc": "#e6ddf1", "pad": "#eeeeee", "block": "#d6e6f5", "pre": "#dcefd6",
                    "section": "#eeeeee", "shortcut": "#f8dcc8", "stage": "#d6e6f5"}),
    "paper": Style("Times,serif", 10, "black", "black", "#555555", "#808080", "white", "black", "black",
                   {"conv": "#f0f0f0", "block": "#f0f0f0", "stage": "#f0f0f0", "shortcut": "#d9d9d9",
                    "pad": "#d9d9d9"}, 0.18, 0.22, title=False),
}


@dataclass(frozen=True)
class _Options:
    detail: str
    annotate: frozenset[str]
    style: Style
    rankdir: str
    scope: str | None

    @property
    def shapes(self) -> bool:
        return "shapes" in self.annotate


def _options(detail: str, annotate: str | Iterable[str] | None, style: str, rankdir: str,
             scope: str | None) -> _Options:
    """The drawing's settings from options already checked (:data:`OPTIONS`)."""
    marks = _annotations(("shapes",) if annotate is None else annotate)
    return _Options(detail, marks, _STYLES[style], rankdir, scope)


# ---------------------------------------------------------------- escaping


def text(value: object) -> str:
    """Plain text for an HTML-like label: control characters (newlines included) become
    spaces, and ``& < > " '`` become entities, so any name is safe inside ``<…>``."""
    clean = "".join(ch if ch.isprintable() else " " for ch in str(value))
    return html.escape(clean, quote=True)


def quote_id(name: str) -> str:
    """A DOT id for a spec path: quoted, with anything but ``[A-Za-z0-9_.#/-]`` %-escaped
    (byte-wise, UTF-8), so the mapping is injective and a quote, backslash or newline in a
    name can never end the string early."""
    safe = re.sub(r"[^A-Za-z0-9_.#/-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), name)
    return f'"{safe}"'


def _comment(value: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in value)


# ---------------------------------------------------------------- op and section wording


def op_text(op: Op) -> str:
    """How a paper writes one layer: ``3×3 conv, 128, /2``, ``BN``, ``fc, 1000``."""
    return look(op).text(op)


def _lines(net: Network, names: Iterable[str], convs_only: bool = False, fold: bool = False) -> list[str]:
    """One line per layer, with consecutive BN/activations folded onto one line
    (``BN, ReLU``); ``convs_only`` keeps just the layers a block figure names (no norms,
    activations or dataflow: split, concat, merges), a run of three or more equal ones as
    one line (``3×3 conv, 14 × 7``, Res2Net's hierarchy). With ``fold`` a BN or activation
    joins whatever line comes before it (``1×1 conv, 256, BN``, a shortcut's box)."""
    ops = [net.op(n) for n in names if not look(net.op(n)).hidden]
    if convs_only:
        main = [op for op in ops if look(op).category not in (*_NORM_ACT, "merge")]
        if main:
            ops = main
    out: list[str] = []
    folding = False
    for op in ops:
        t = op_text(op)
        if look(op).category in _NORM_ACT and (folding or fold) and out:
            out[-1] += f", {t}"
        else:
            out.append(t)
        folding = look(op).category in _NORM_ACT
    return _runs(out) if convs_only else out


def _runs(lines: list[str]) -> list[str]:
    out: list[tuple[str, int]] = []
    for line in lines:
        if out and out[-1][0] == line:
            out[-1] = (line, out[-1][1] + 1)
        else:
            out.append((line, 1))
    return [line for line, n in out for line in ([f"{line} × {n}"] if n >= 3 else [line] * n)]


# ---------------------------------------------------------------- block anatomy


@dataclass(frozen=True)
class BlockParts:
    """A block split the way a figure draws it.

    ``pre`` runs before the branch point (a pre-activation block's BN-ReLU that both
    paths read), ``body`` is the residual branch, ``merge`` the residual add, ``post``
    what follows it (the ReLU of a post-activation block); ``shortcut`` is the shortcut
    scope when it has layers (``None`` for the identity) and ``skip_from`` the tensor it
    reads.
    """

    block: Scope
    pre: tuple[str, ...]
    body: tuple[str, ...]
    merge: str | None
    post: tuple[str, ...]
    shortcut: Scope | None
    skip_from: str


def block_parts(net: Network, block: Scope) -> BlockParts:
    """Split ``block`` into branch point, residual branch, merge, shortcut and tail."""
    shortcut = next((c for c in block.children if c.role is Role.SHORTCUT and any(True for _ in c.op_names())),
                    None)
    short_ops = set(shortcut.op_names()) if shortcut else set()
    main = [n for n in block.op_names() if n not in short_ops]
    adds = [n for n in main if look(net.op(n)).residual]
    if not adds:
        return BlockParts(block, (), tuple(main), None, (), shortcut, block.input)
    merge = adds[-1]
    i = main.index(merge)
    before, post = main[:i], tuple(main[i + 1:])
    if shortcut is not None:
        skip_from = shortcut.input
    else:
        branch_end = before[-1] if before else None
        others = [x for x in net.op(merge).inputs if x != branch_end]
        skip_from = others[0] if others else block.input
    if skip_from in before:
        k = before.index(skip_from)
        return BlockParts(block, tuple(before[:k + 1]), tuple(before[k + 1:]), merge, post, shortcut,
                          skip_from)
    return BlockParts(block, (), tuple(before), merge, post, shortcut, skip_from)


def block_signature(net: Network, block: Scope) -> tuple:
    """What makes two blocks identical: definition, arguments, input shape and every
    layer (relative name, kind, attributes, shape, relative inputs); not the index."""
    base = block.path + "."

    def rel(name: str) -> str:
        if name == block.input:
            return "<input>"
        return name[len(base):] if name.startswith(base) else name

    layers = tuple((rel(n), op.kind, op.attrs, op.shape, tuple(rel(i) for i in op.inputs))
                   for n in block.op_names() for op in [net.op(n)])
    return (block.definition, block.args, net.shape_of(block.input), layers)


def block_groups(net: Network, stage: Scope) -> list[list[Scope]]:
    """A stage's blocks, identical consecutive ones grouped together."""
    groups: list[list[Scope]] = []
    last = None
    for block in stage.children:
        sig = block_signature(net, block) if block.role is Role.BLOCK else ("scope", block.path)
        if groups and sig == last:
            groups[-1].append(block)
        else:
            groups.append([block])
        last = sig
    return groups


# ---------------------------------------------------------------- the DOT writer


class _Dot:
    """Accumulates DOT statements with indentation; every label goes through :func:`text`."""

    def __init__(self, net_name: str, source: str, opts: _Options, title: str | None):
        self.o, self.st = opts, opts.style
        self.out: list[str] = []
        self.depth = 1
        # edges go last, at the top level: an edge written inside a cluster would pull
        # both its ends into that cluster
        self.edges: list[str] = []
        #: nodes of one Graphviz group line up, so the main path is drawn straight and
        #: the skips curve around it, as in the papers' figures
        self.group: str | None = None
        st = self.st
        self.out += [f"// {_comment(net_name)} ({_comment(source)}), drawn by resdsl",  # file names only
                     "digraph resdsl {"]
        nodesep, ranksep = st.nodesep, st.ranksep
        if opts.detail == "block":  # a column of a paper: tighter ranks, skips further out
            nodesep, ranksep = max(nodesep, 0.5), min(ranksep, 0.2)
        graph = [f'rankdir={opts.rankdir}', 'newrank=true', 'forcelabels=true',
                 f'nodesep={nodesep:g}', f'ranksep={ranksep:g}', f'fontname="{st.font}"',
                 f'fontsize={st.size + 1}', 'bgcolor="white"', 'pad=0.1']
        if title and st.title:
            graph += [f'label=<<B>{text(title)}</B>>', 'labelloc=t']
        self.line(f"graph [{', '.join(graph)}];")
        self.line(f'node [shape=box, style="rounded,filled", fillcolor="white", color="{st.node_pen}", '
                  f'penwidth=0.8, fontname="{st.font}", fontsize={st.size}, margin="0.12,0.05", '
                  f'height=0.3];')
        self.line(f'edge [color="{st.edge}", arrowsize=0.6, penwidth=0.8, fontname="{st.font}", '
                  f'fontsize={st.size - 2}, fontcolor="{st.label}"];')

    def line(self, s: str) -> None:
        self.out.append("  " * self.depth + s)

    def node(self, nid: str, label: str, main: bool = False, **attrs: str | float) -> None:
        if main and self.group:
            attrs["group"] = self.group
        extra = "".join(f", {k}={_attr(v)}" for k, v in attrs.items())
        self.line(f"{quote_id(nid)} [label=<{label}>{extra}];")

    def edge(self, a: str, b: str, label: str | None = None, **attrs: str | float) -> None:
        parts = [f"label=<{label}>"] if label else []
        parts += [f"{k}={_attr(v)}" for k, v in attrs.items()]
        self.edges.append(f"  {quote_id(a)} -> {quote_id(b)}" + (f" [{', '.join(parts)}]" if parts else "") + ";")

    def open_cluster(self, cid: str, label: str, fill: bool = True) -> None:
        st = self.st
        self.line(f"subgraph {quote_id('cluster_' + cid)} {{")
        self.depth += 1
        style = "rounded,filled" if fill and st.cluster_fill != "white" else "rounded"
        self.line(f'graph [label=<{label}>, labeljust=l, style="{style}", color="{st.cluster_pen}", '
                  f'fillcolor="{st.cluster_fill}", penwidth=0.8, margin=8];')

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def label(self, title: str | None, lines: Sequence[str] = (), sub: str | None = None) -> str:
        """An HTML-like label: a bold title, a small grey subtitle, then plain lines."""
        parts = []
        if title:
            parts.append(f"<B>{text(title)}</B>")
        small = f'<FONT POINT-SIZE="{self.st.size - 2}" COLOR="{self.st.label}">{text(sub)}</FONT>' if sub else ""
        if small and title:  # on the title's line: a line less in every block
            parts[-1] += " " + small
        parts += [text(s) for s in lines]
        if small and not title:  # a cluster's numbers go under its name, both flush left
            parts.append(small)
            return "".join(p + '<BR ALIGN="LEFT"/>' for p in parts)
        return "<BR/>".join(parts) or " "

    def shape(self, shape: Sequence[int]) -> str | None:
        return text(fmt_shape(tuple(shape))) if self.o.shapes else None

    def stats(self, params: int, macs: int) -> list[str]:
        out = []
        if "params" in self.o.annotate:
            out.append(f"{fmt_count(params)} params")
        if "macs" in self.o.annotate:
            out.append(f"{fmt_count(macs)} MACs")
        return out

    def skip(self, a: str, b: str, projection: bool, label: str | None = None, **attrs: str | float) -> None:
        st = self.st
        if projection:
            self.edge(a, b, label, color=st.skip_projection, penwidth=1.4, **attrs)
        else:
            self.edge(a, b, label, color=st.skip_identity, style="dashed", penwidth=1.1, **attrs)

    def text(self) -> str:
        return "\n".join([*self.out, *self.edges, "}"]) + "\n"


def _attr(v: str | float) -> str:
    if isinstance(v, float | int):
        return f"{v:g}"
    # attribute values are our own words and colours, or group names made from spec
    # paths: anything that could end or escape the string is %-escaped, as in ids
    return '"' + "".join(ch if ch.isprintable() and ch not in '"\\%' else f"%{ord(ch):02X}" for ch in v) + '"'


def _title(net: Network) -> str:
    return f"{net.name} · input {fmt_shape(net.input_shape)}"


# ---------------------------------------------------------------- detail levels


def _terminal(g: _Dot, nid: str, words: str) -> None:
    g.node(nid, g.label(None, [words]), main=True, shape="plaintext", style="solid")


def _network(net: Network, g: _Dot) -> None:
    st = g.st
    _terminal(g, INPUT, "input")
    prev, prev_shape = INPUT, net.input_shape
    for sec in sections(net):
        if sec.role is Role.STAGE:
            groups: list[list[str]] = []
            for block in sec.scope.children:
                if groups and groups[-1][0] == block.definition:
                    groups[-1].append(block.definition)
                else:
                    groups.append([block.definition])
            lines = [d[0] + (f" × {len(d)}" if len(d) > 1 else "") for d in groups]
            nid, fill = sec.scope.path, st.fill("stage")
        else:
            lines, nid, fill = _lines(net, sec.ops), f"{sec.name}/{sec.ops[0]}", st.fill("section")
        g.node(nid, g.label(sec.name, lines + g.stats(sec.params, sec.macs)), main=True, fillcolor=fill)
        g.edge(prev, nid, g.shape(prev_shape))
        prev, prev_shape = nid, sec.shape
    _terminal(g, "output", "output")
    g.edge(prev, "output", g.shape(prev_shape))


def _block_level(net: Network, g: _Dot) -> None:
    st = g.st
    g.group = "main"
    _terminal(g, INPUT, "input")
    prev, prev_shape = INPUT, net.input_shape
    for sec in sections(net):
        if sec.role is not Role.STAGE:
            nid = f"{sec.name}/{sec.ops[0]}"
            g.node(nid, g.label(sec.name, _lines(net, sec.ops) + g.stats(sec.params, sec.macs)), main=True,
                   fillcolor=st.fill("section"))
            g.edge(prev, nid, g.shape(prev_shape))
            prev, prev_shape = nid, sec.shape
            continue
        stage = sec.scope
        size = "×".join(str(d) for d in sec.shape[1:])
        g.open_cluster(stage.path, g.label(None, [f"{stage.name} · {size}"], " · ".join(g.stats(sec.params, sec.macs))))
        for i, group in enumerate(block_groups(net, stage)):
            # the shape where it changes: into the stage; inside, the cluster names the size
            prev = _block_node(net, g, group, prev, prev_shape if i == 0 else None)
            prev_shape = net.shape_of(group[-1].output)
        g.close()
    _terminal(g, "output", "output")
    g.edge(prev, "output", g.shape(prev_shape))


def _block_node(net: Network, g: _Dot, group: list[Scope], prev: str, prev_shape) -> str:
    """Draw a group of identical blocks as one; returns the node its output leaves from."""
    st = g.st
    block = group[0]
    if block.role is not Role.BLOCK:  # a stage item that is not a block: one box
        nid = block.path + "/body"
        g.node(nid, g.label(block.definition, _lines(net, block.op_names(), convs_only=True)), main=True,
               fillcolor=st.fill("block"))
        g.edge(prev, nid, g.shape(prev_shape) if prev_shape is not None else None)
        return nid
    parts = block_parts(net, block)
    title = block.definition + (f" × {len(group)}" if len(group) > 1 else "")
    sub = block.path if len(group) == 1 else f"{block.path} – {group[-1].path}"
    entry = prev
    label = g.shape(prev_shape) if prev_shape is not None else None
    skip_src = prev
    if parts.pre:
        pre = block.path + "/pre"
        g.node(pre, g.label(None, _lines(net, parts.pre)), main=True, fillcolor=st.fill("pre"))
        g.edge(entry, pre, label)
        entry, label = pre, None
        if parts.skip_from in parts.pre:
            skip_src = pre
    body = block.path + "/body"
    g.node(body, g.label(title, _body_lines(net, block, parts.body), sub), main=True, fillcolor=st.fill("block"))
    g.edge(entry, body, label)
    if parts.merge is None:
        return body
    merge = block.path + "/merge"
    post = ", ".join(_lines(net, parts.post))
    if post:  # what follows the add (the ReLU) is written in its node, not floating beside it
        g.node(merge, f"<B>+</B> {text(post)}", main=True, height=0.2, margin="0.05,0.01", style="rounded",
               fillcolor="white")
    else:
        g.node(merge, "<B>+</B>", main=True, shape="circle", width=0.22, height=0.22, fixedsize="true",
               margin=0, fillcolor="white")
    g.edge(body, merge)
    # weight 0: the main path stays straight, and the skips bend around it
    if parts.shortcut is not None:
        sc = block.path + "/shortcut"
        g.node(sc, g.label(None, _lines(net, parts.shortcut.op_names(), fold=True)),
               fillcolor=st.fill("shortcut"))
        g.skip(skip_src, sc, True, weight=0)
        g.skip(sc, merge, True, weight=0)
    else:
        g.skip(skip_src, merge, False, weight=0)
    return merge


def _body_lines(net: Network, block: Scope, names: Sequence[str]) -> list[str]:
    """The residual branch as a block figure names it: convs and pools, and any nested
    module (squeeze-and-excitation) by its definition."""
    owner = {n: c for c in block.children if c.role is not Role.SHORTCUT for n in c.op_names()}
    out: list[str] = []
    run: list[str] = []
    seen: set[str] = set()
    for n in names:
        child = owner.get(n)
        if child is None:
            run.append(n)
            continue
        out += _lines(net, run, convs_only=True) if run else []
        run = []
        if child.path not in seen:
            seen.add(child.path)
            out.append(child.definition.replace("_", "-"))
    out += _lines(net, run, convs_only=True) if run else []
    return out


def _op_node(net: Network, g: _Dot, op: Op, named: bool, main: bool = True) -> None:
    st = g.st
    cat = look(op).category
    if look(op).symbol is not None:
        g.node(op.name, f"<B>{text(look(op).symbol)}</B>", main, shape="circle", width=0.22, height=0.22,
               fixedsize="true", margin=0)
        return
    label = text(op_text(op))
    if named:  # the name under the layer, smaller and grey
        label += f'<BR/><FONT POINT-SIZE="{st.size - 3}" COLOR="{st.label}">{text(op.name)}</FONT>'
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
            if parts.merge is not None:
                tail = parts.shortcut.output if parts.shortcut else parts.skip_from
                skips[(tail, parts.merge)] = parts.shortcut is not None
                if parts.shortcut is not None:  # into and through the shortcut
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


def _layer_level(net: Network, g: _Dot, scope_path: str | None, named: bool = True) -> None:
    skips: dict[tuple[str, str], bool] = {}
    g.group = "main"
    if scope_path is None:
        _terminal(g, INPUT, "input")
        # the stem and head are sections, not scopes, when inline: cluster them anyway
        for sec in sections(net):
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
            _terminal(g, i, "input" if i == INPUT else i)
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
        _terminal(g, "output", "output")
        g.edge(last, "output", g.shape(net.shape_of(last)))


# ---------------------------------------------------------------- block figures


def block_types(net: Network) -> list[Scope]:
    """The first block of each distinct type: definition, shortcut kind and the kinds of
    its layers in order (channel counts and strides do not make a new type)."""
    seen: dict[tuple, Scope] = {}
    for scope in net.root.walk():
        if scope.role is not Role.BLOCK:
            continue
        parts = block_parts(net, scope)
        key = (scope.definition, parts.shortcut.definition if parts.shortcut else "identity",
               bool(parts.pre), tuple(net.op(n).kind for n in scope.op_names()))
        seen.setdefault(key, scope)
    return list(seen.values())


def shortcut_kind(net: Network, parts: BlockParts) -> str:
    """``identity shortcut``, ``projection shortcut`` (it has a conv), ``zero-padding
    shortcut`` (option A), or the shortcut definition's name."""
    if parts.shortcut is None:
        return "identity shortcut"
    categories = {look(net.op(n)).category for n in parts.shortcut.op_names()}
    if "conv" in categories:
        return "projection shortcut"
    if "pad" in categories:
        return "zero-padding shortcut"
    return f"{parts.shortcut.definition} shortcut"


def _block_figure(nets: Sequence[Network], g: _Dot) -> None:
    drawn: set[tuple] = set()
    panels: list[tuple[int, Network, Scope, BlockParts]] = []
    for k, net in enumerate(nets):
        for block in block_types(net):
            parts = block_parts(net, block)
            key = (block.definition, parts.shortcut.definition if parts.shortcut else "identity",
                   block_signature(net, block)[3:])
            if key not in drawn:
                drawn.add(key)
                panels.append((k, net, block, parts))
    # The panels in the order of the arguments, in every rankdir: dot lays LR out as TB
    # turned a quarter, which stacks the first cluster at the bottom, so LR emits them
    # last first.
    for k, net, block, parts in panels if g.o.rankdir == "TB" else panels[::-1]:
        prefix = f"{k}/" if len(nets) > 1 else ""
        who = f"{net.name} · " if len(nets) > 1 else ""
        g.open_cluster(prefix + block.path,
                       g.label(block.definition, (), f"{who}{block.path} · {shortcut_kind(net, parts)}"),
                       fill=False)
        _figure_block(net, g, block, parts, prefix)
        g.close()


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
        while name != block.input and look(net.op(name)).hidden and net.op(name).inputs:
            name = net.op(name).inputs[0]
        return name

    names = [n for n in block.op_names() if shown(n) == n]
    for n in names:
        op = net.op(n)
        if look(op).symbol is not None:
            g.node(nid(n), f"<B>{text(look(op).symbol)}</B>", n not in short, shape="circle", width=0.22,
                   height=0.22, fixedsize="true", margin=0, fillcolor="white")
        else:
            g.node(nid(n), g.label(None, [op_text(op)]), n not in short,
                   fillcolor=st.fill("shortcut" if n in short else look(op).category))
    for n in names:
        for i in map(shown, net.op(n).inputs):
            src = inp if i == block.input else nid(i)
            is_skip = n == parts.merge and i == shown(parts.shortcut.output if parts.shortcut else parts.skip_from)
            if is_skip or n in short:
                g.skip(src, nid(n), parts.shortcut is not None)
            else:
                g.edge(src, nid(n))
    out = nid(block.path + "/out")
    g.node(out, g.label(None, [fmt_shape(net.shape_of(block.output))]), True, shape="plaintext", style="solid")
    last = shown(block.output)
    g.edge(inp if last == block.input else nid(last), out)


# ---------------------------------------------------------------- entry points


def _annotations(value: str | Iterable[str]) -> frozenset[str]:
    """``annotate`` as a set of :data:`ANNOTATIONS`: a comma-separated string (``none``
    for none) or an iterable of names."""
    if isinstance(value, str):
        value = [a.strip() for a in value.split(",") if a.strip() and a.strip() != "none"]
    marks = frozenset(value)
    unknown = sorted(map(str, marks - set(ANNOTATIONS)))
    if unknown:
        raise OptionError("annotate", "unknown annotation `{mark}`", mark=unknown[0],
                          hint=did_you_mean(unknown[0], ANNOTATIONS) or f"choose from: {', '.join(ANNOTATIONS)}, or none")
    return marks


def _upper(value: str) -> str:
    return value.upper() if isinstance(value, str) else value


#: The diagram options, of ``--target dot|svg|pdf|png`` and of ``resdsl diagram``.
DETAIL = Option("detail", "network (stages as boxes), block (default; repeated blocks collapsed), layer "
                          "(every op), blocks (each block type once, side by side)", choices=DETAILS, default="block")
ANNOTATE = Option("annotate", "comma-separated shapes,params,macs, or none (default: shapes)", check=_annotations,
                  metavar="LIST")
STYLE = Option("style", "color (default) or paper (grayscale, serif, compact)", choices=STYLES, default="color")
RANKDIR = Option("rankdir", "top to bottom (default) or left to right", check=_upper,
                 choices=RANKDIRS, default="TB")
SCOPE = Option("scope", "with {detail=layer}: draw one stage or block only, e.g. layer2.0", metavar="PATH")
OPTIONS = (DETAIL, ANNOTATE, STYLE, RANKDIR, SCOPE)


@declare(*OPTIONS)
def emit(net: Network, *, detail: str = "block", annotate: str | Iterable[str] | None = None,
         style: str = "color", rankdir: str = "TB", scope: str | None = None) -> str:
    """DOT text for ``net``.

    ``detail``: ``network``, ``block`` (default), ``layer`` or ``blocks`` (a block figure);
    ``annotate``: any of ``shapes`` (default), ``params``, ``macs`` (a comma-separated
    string or an iterable; ``none`` for no annotation); ``style``: ``color`` or ``paper``;
    ``rankdir``: ``TB`` or ``LR``; ``scope``: with ``detail="layer"``, one stage or block
    path to draw alone.
    """
    opts = _options(detail, annotate, style, rankdir, scope)
    if scope is not None and opts.detail != "layer":
        raise OptionError("scope", "{scope} applies to {detail=layer} only", hint="add {detail=layer} to draw `{path}`",
                          path=scope)
    if opts.detail == "blocks":
        return emit_blocks([net], annotate=annotate, style=style, rankdir=rankdir)
    title = _title(net) if scope is None else f"{net.name} · {scope}"
    g = _Dot(net.name, PurePath(net.source).name, opts, title)
    if opts.detail == "network":
        _network(net, g)
    elif opts.detail == "block":
        _block_level(net, g)
    else:
        _layer_level(net, g, scope)
    return g.text()


@declare(ANNOTATE, STYLE, RANKDIR)
def emit_blocks(nets: Sequence[Network], *, annotate: str | Iterable[str] | None = None,
                style: str = "color", rankdir: str = "TB") -> str:
    """A block figure: each distinct block type of ``nets`` drawn once, side by side."""
    opts = _options("blocks", annotate, style, rankdir, None)
    names = ", ".join(n.name for n in nets)
    g = _Dot(names, ", ".join(PurePath(n.source).name for n in nets), opts, f"block types of {names}")
    _block_figure(nets, g)
    return g.text()


def render(dot_text: str, fmt: str) -> bytes:
    """Render DOT text to ``svg``, ``pdf`` or ``png`` bytes with Graphviz's `dot`, run by
    the `graphviz` package; a missing package or `dot` program is a :class:`BackendError`
    that says how to install it."""
    if fmt not in ("svg", "pdf", "png"):
        raise BackendError("cannot render to `{fmt}`", hint="choose svg, pdf or png", fmt=fmt)
    try:
        import graphviz
    except ImportError:
        raise BackendError("rendering needs the `graphviz` Python package, which is not installed",
                           hint="pip install 'resdsl[diagrams]' (or graphviz); or write DOT text "
                                "(the dot target) and render it elsewhere") from None
    if fmt == "png":  # print resolution (as `dot -Gdpi=200`): the default 96 dpi blurs in a paper
        dot_text = dot_text.replace("digraph resdsl {\n", "digraph resdsl {\n  graph [dpi=200];\n", 1)
    # Cairo writes a PDF's date in the local zone, and the zone's length varies ("Z" or
    # "+01'00"): `dot` runs in UTC. The package takes no env, so ours is set around the call.
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    try:
        out = graphviz.pipe("dot", fmt, dot_text.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        raise BackendError("rendering needs Graphviz's `dot` program, which is not installed (not on PATH)",
                           hint=INSTALL_HINT) from None
    except graphviz.CalledProcessError as err:
        message = (err.stderr or b"").decode("utf-8", "replace").strip().splitlines()
        raise BackendError(f"Graphviz's `dot` failed (exit status {err.returncode}){{why}}",
                           hint="write the DOT text (the dot target) to inspect it",
                           why=f": {message[0]}" if message else "") from None
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
    if not out:
        raise BackendError("Graphviz's `dot` wrote nothing", hint="write the DOT text (the dot target) to inspect it")
    return _fixed_dates(out) if fmt == "pdf" else out


def _fixed_dates(pdf: bytes) -> bytes:
    """Cairo stamps a PDF with the time it was made; pin the digits and any zone offset
    (same length, so the cross-reference offsets stay valid) to make the output reproducible."""
    def pin(m: re.Match) -> bytes:
        n = len(m.group(2))
        zone = re.sub(rb"[0-9]", b"0", m.group(3)).replace(b"-", b"+")
        return m.group(1) + (b"19700101000000" + b"0" * n)[:n] + zone

    return re.sub(rb"(/(?:CreationDate|ModDate) \(D:)([0-9]+)([-+Z0-9']*)", pin, pdf)


@declare(*OPTIONS)
def emit_svg(net: Network, **options) -> bytes:
    """An SVG drawing of ``net`` (options as :func:`emit`)."""
    return render(emit(net, **options), "svg")


@declare(*OPTIONS)
def emit_pdf(net: Network, **options) -> bytes:
    """A PDF drawing of ``net`` (options as :func:`emit`)."""
    return render(emit(net, **options), "pdf")


@declare(*OPTIONS)
def emit_png(net: Network, **options) -> bytes:
    """A PNG drawing of ``net`` at 200 dpi (options as :func:`emit`)."""
    return render(emit(net, **options), "png")
