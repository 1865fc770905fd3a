"""The DOT writer: styles, the font, escaping, and the statement accumulator."""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ...diagnostics import did_you_mean
from ...ir import Network
from ...stats import fmt_count, fmt_shape
from .. import OptionError

DETAILS = ("network", "block", "layer", "blocks")
ANNOTATIONS = ("shapes", "params", "macs")
STYLES = ("color", "paper")
RANKDIRS = ("TB", "LR")

#: The one font of every figure, in every style and format: a Times-metric serif, so a
#: figure sits in a LaTeX paper, named exactly so that Graphviz (through fontconfig and
#: Pango) never substitutes whatever the machine calls "serif" or "Times" (installing TeX
#: Live once changed that, and with it the layout).
FONT = "Liberation Serif"
#: Where to get it, for the error when it is missing.
FONT_HINT = ("install Liberation Serif: `apt-get install fonts-liberation2` (or fonts-liberation; Debian/"
             "Ubuntu), `dnf install liberation-serif-fonts`, `brew install --cask font-liberation`; "
             "or write DOT text (the dot target) and render it elsewhere")

#: The smallest text, in points, at the printed size of a fitted figure.
MIN_TEXT_PT = 7.0


#: Advance widths of Times (and so of Liberation Serif, made to its metrics), in
#: thousandths of an em, for the characters figures use; anything else counts as 600.
_WIDTHS = {" ": 250, ",": 250, ".": 250, "/": 278, ":": 278, "-": 333, "(": 333, ")": 333, "[": 333, "]": 333,
           "+": 564, "=": 564, "×": 564, "–": 500, "·": 250, "‖": 500, "_": 500, "#": 500,
           **dict.fromkeys("0123456789", 500), **dict.fromkeys("acez", 444), **dict.fromkeys("bdghknopquvxy", 500),
           **dict.fromkeys("fr", 333), **dict.fromkeys("ijlt", 278), "m": 778, "s": 389, "w": 722,
           **dict.fromkeys("ACDGHKNOQUVXY", 722), **dict.fromkeys("BR", 667), **dict.fromkeys("EILTZ", 611),
           **dict.fromkeys("FPS", 556), "J": 389, "M": 889, "W": 944}


def text_width(line: str, size: float, bold: bool = False) -> float:
    """An upper estimate of ``line``'s width in inches, set in :data:`FONT` at ``size``
    points: enough to give nodes one width without rendering (bold is wider by a twentieth)."""
    em = sum(_WIDTHS.get(ch, 600) for ch in line) / 1000
    return em * size / 72 * (1.06 if bold else 1.0) * 1.02


@dataclass(frozen=True)
class Style:
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
    font: str = FONT
    small: int = 8  # edge labels, sub-labels, op names: the smallest text drawn

    def fill(self, category: str) -> str:
        return self.fills.get(category, "white")


_STYLES = {
    "color": Style(10, "#4d4d4d", "#404040", "#5a5a5a", "#9aa7b5", "#f5f8fb", "#2f6fb0", "#c4501b",
                   {"conv": "#d6e6f5", "norm": "#fbeec9", "act": "#dcefd6", "pool": "#f8dcc8",
                    "fc": "#e6ddf1", "pad": "#eeeeee", "block": "#d6e6f5", "pre": "#dcefd6",
                    "section": "#eeeeee", "shortcut": "#f8dcc8", "stage": "#d6e6f5"}),
    "paper": Style(10, "black", "black", "#555555", "#808080", "white", "black", "black",
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
    fitted: bool = False  # laid out for a printed width: no title (the paper's caption says it)

    @property
    def shapes(self) -> bool:
        return "shapes" in self.annotate


def annotations(value: str | Iterable[str]) -> frozenset[str]:
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


def options(detail: str, annotate: str | Iterable[str] | None, style: str, rankdir: str,
            scope: str | None, fitted: bool = False) -> _Options:
    """The drawing's settings from options already checked (:data:`OPTIONS`)."""
    marks = annotations(("shapes",) if annotate is None else annotate)
    st = _STYLES[style]
    if fitted:  # a paper's figure text: all 9 pt before scaling, so it may shrink to 7 pt
        st = replace(st, size=9, small=9)
    return _Options(detail, marks, st, rankdir, scope, fitted)


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
        if opts.detail == "block":  # a column of a paper: tighter ranks
            nodesep, ranksep = max(nodesep, 0.2), min(ranksep, 0.2)
        margin, height = "0.12,0.05", 0.3
        if opts.fitted:  # a printed figure: every tenth of an inch counts (0.2 in: a 9 pt line, margins)
            nodesep, ranksep, margin, height = min(nodesep, 0.14), min(ranksep, 0.14), "0.08,0.03", 0.2
        #: points between a cluster's frame and what it holds
        self.cluster_margin = 5 if opts.fitted else 8
        graph = [f'rankdir={opts.rankdir}', 'newrank=true', 'forcelabels=true',
                 f'nodesep={nodesep:g}', f'ranksep={ranksep:g}', f'fontname="{st.font}"',
                 f'fontsize={st.size + 1}', 'bgcolor="white"', 'pad=0.1']
        if title and st.title and not opts.fitted:
            graph += [f'label=<<B>{text(title)}</B>>', 'labelloc=t']
        self.line(f"graph [{', '.join(graph)}];")
        self.line(f'node [shape=box, style="rounded,filled", fillcolor="white", color="{st.node_pen}", '
                  f'penwidth=0.8, fontname="{st.font}", fontsize={st.size}, margin="{margin}", '
                  f'height={height:g}];')
        self.line(f'edge [color="{st.edge}", arrowsize=0.6, penwidth=0.8, fontname="{st.font}", '
                  f'fontsize={st.small}, fontcolor="{st.label}"];')
        #: ``{rank=same; …}`` statements, written after the clusters (newrank lets them
        #: tie nodes of different clusters: aligned panel bottoms, columns of stages)
        self.ranks: list[list[str]] = []
        #: the layer view's names for ops (:func:`views.spec_names`)
        self.names: dict[str, str] = {}
        #: inches: one width for every block box of the block view, so that each stage
        #: is laid out alike and the clusters line up (0: each its own)
        self.body_width = 0.0

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

    def open_cluster(self, cid: str, label: str, fill: bool = True, plate: bool = False,
                     hidden: bool = False) -> None:
        """A cluster; a ``plate`` is the repeat mark of a collapsed group: a dashed frame
        whose label (``× 5``) sits at its right."""
        st = self.st
        self.line(f"subgraph {quote_id('cluster_' + cid)} {{")
        self.depth += 1
        if plate:
            pen = "invis" if hidden else "dashed,rounded"
            words = f"label=<{label}>, labeljust=r, labelloc=b, " if label else ""
            self.line(f'graph [{words}style="{pen}", color="{st.cluster_pen}", fillcolor="white", '
                      f'penwidth=0.8, margin=4];')
            return
        style = "rounded,filled" if fill and st.cluster_fill != "white" else "rounded"
        self.line(f'graph [label=<{label}>, labeljust=l, style="{style}", color="{st.cluster_pen}", '
                  f'fillcolor="{st.cluster_fill}", penwidth=0.8, margin={self.cluster_margin}];')

    def close(self) -> None:
        self.depth -= 1
        self.line("}")

    def label(self, title: str | None, lines: Sequence[str] = (), sub: str | None = None,
              small: str | None = None) -> str:
        """An HTML-like label: a bold title, a small grey subtitle, then plain lines, then
        a ``small`` grey last line (already escaped: a shape)."""
        if small:
            tail = f'<FONT POINT-SIZE="{self.st.small}" COLOR="{self.st.label}">{small}</FONT>'
            return self.label(title, lines, sub) + "<BR/>" + tail
        parts = []
        if title:
            parts.append(f"<B>{text(title)}</B>")
        small = f'<FONT POINT-SIZE="{self.st.small}" COLOR="{self.st.label}">{text(sub)}</FONT>' if sub else ""
        if small and title:  # on the title's line: a line less in every block
            parts[-1] += " " + small
        parts += [text(s) for s in lines]
        if small and not title:  # a cluster's numbers go under its name, both flush left
            parts.append(small)
            return "".join(p + '<BR ALIGN="LEFT"/>' for p in parts)
        return "<BR/>".join(parts) or " "

    def shape(self, shape: Sequence[int]) -> str | None:
        # a shape keeps its axis names (a tuple already); a list of sizes has none
        return text(fmt_shape(shape if isinstance(shape, tuple) else tuple(shape))) if self.o.shapes else None

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

    def same_rank(self, nids: Sequence[str]) -> None:
        if len(nids) > 1:
            self.ranks.append(list(nids))

    def text(self) -> str:
        ranks = ["  {rank=same; " + " ".join(quote_id(n) + ";" for n in r) + "};" for r in self.ranks]
        return "\n".join([*self.out, *ranks, *self.edges, "}"]) + "\n"


def _attr(v: str | float) -> str:
    if isinstance(v, float | int):
        return f"{v:g}"
    # attribute values are our own words and colours, or group names made from spec
    # paths: anything that could end or escape the string is %-escaped, as in ids
    return '"' + "".join(ch if ch.isprintable() and ch not in '"\\%' else f"%{ord(ch):02X}" for ch in v) + '"'


def title_of(net: Network) -> str:
    return f"{net.name} · input {fmt_shape(net.input_shape)}"
