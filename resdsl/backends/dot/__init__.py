"""Graphviz diagrams of a network: DOT text from the IR, and SVG/PDF/PNG through `dot`.

Three levels of detail, one figure mode:

``network``
    stem, each stage and the head as one box, tensor shapes on the edges.
``block``
    stages as clusters; each block as its residual branch, its merge (``+``) and its
    skip edge; identical consecutive blocks (same definition, arguments and layer
    structure, differing only in their index) collapse into one block drawn inside a
    dashed plate marked ``× 5``: one skip per block, as the network has.
``layer``
    every op (conv, BN, activation, …) as a node, blocks and shortcuts as nested clusters;
    ``scope="layer2.0"`` draws one block (or stage) only.
``blocks``
    a block figure, like Fig. 2 of He et al. 2015: each distinct block type of one or more
    specs drawn once, side by side, layer by layer (:func:`emit_blocks`); ``panels``
    chooses which.

Skip edges are dashed for an identity shortcut and solid (bold, a second colour in the
colour style) through the shortcut's layers for a projection, zero-padding or pooling
shortcut. Every figure is set in one font, :data:`FONT` (Liberation Serif, Times'
metrics), named explicitly so the layout never depends on the machine's other fonts.
``fit`` lays a figure out for a printed width (``column``, ``text`` or inches) with text
of at least 7 pt, rendering it to measure (so it needs Graphviz even for DOT text): the
block and network views wrap their stages into columns (left to right, rows) to stay
within 1.4 widths in height.

DOT text needs no binary otherwise; the output is deterministic: node ids are spec paths
(quoted and %-escaped), labels are HTML-escaped, so no name can break the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePath

from ...ir import Network
from .. import Option, OptionError, declare
from .anatomy import (
    BlockParts,
    block_groups,
    block_parts,
    block_signature,
    block_types,
    look,
    op_text,
    shortcut_kind,
)
from .figure import block_figure, panel_names
from .render import INSTALL_HINT, WIDTHS, fit, fit_width, render, svg_metrics, svg_scale
from .views import block_level, layer_level, network_level, stage_count
from .writer import (
    ANNOTATIONS,
    DETAILS,
    FONT,
    FONT_HINT,
    MIN_TEXT_PT,
    RANKDIRS,
    STYLES,
    _Dot,
    annotations,
    options,
    quote_id,
    text,
    title_of,
)

__all__ = ["ANNOTATIONS", "DETAILS", "FONT", "FONT_HINT", "INSTALL_HINT", "MIN_TEXT_PT", "OPTIONS", "RANKDIRS",
           "STYLES", "WIDTHS", "BlockParts", "block_groups", "block_parts", "block_signature", "block_types", "emit",
           "emit_blocks", "emit_pdf", "emit_png", "emit_svg", "look", "op_text", "panel_names", "quote_id",
           "render", "shortcut_kind", "svg_metrics", "svg_scale", "text"]


def _upper(value: str) -> str:
    return value.upper() if isinstance(value, str) else value


def _panels(value: str | Iterable[str]) -> tuple[str, ...]:
    """``panels`` as a tuple of ``block:shortcut`` names (checked against the figure's
    blocks when it is drawn)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(p).strip() for p in items if str(p).strip())
    if not out:
        raise OptionError("panels", "{panels} names no panel", hint="e.g. {panels=basic:identity,bottleneck:projection}")
    return out


#: The diagram options, of ``--target dot|svg|pdf|png`` and of ``resdsl diagram``.
DETAIL = Option("detail", "network (stages as boxes), block (default; repeated blocks collapsed), layer "
                          "(every op), blocks (each block type once, side by side)", choices=DETAILS, default="block")
ANNOTATE = Option("annotate", "comma-separated shapes,params,macs, or none (default: shapes)", check=annotations,
                  metavar="LIST")
STYLE = Option("style", "color (default) or paper (grayscale, compact)", choices=STYLES, default="color")
RANKDIR = Option("rankdir", "top to bottom (default) or left to right", check=_upper,
                 choices=RANKDIRS, default="TB")
SCOPE = Option("scope", "with {detail=layer}: draw one stage or block only, e.g. layer2.0", metavar="PATH")
FIT = Option("fit", "lay the figure out for a printed width: column (3.25 in), text (6.75 in) or inches, "
                    "with text of at least 7 pt there, its stages wrapped into columns (left to right: rows) "
                    "where one would be over 1.4 widths tall (needs Graphviz, also for DOT text)",
             check=fit_width, metavar="WIDTH")
PANELS = Option("panels", "with {detail=blocks}: the panels to draw, in order, as block:shortcut, e.g. "
                          "basic:identity,bottleneck:projection (default: every block type)",
                check=_panels, metavar="LIST")
OPTIONS = (DETAIL, ANNOTATE, STYLE, RANKDIR, SCOPE, FIT, PANELS)


@declare(*OPTIONS)
def emit(net: Network, *, detail: str = "block", annotate: str | Iterable[str] | None = None,
         style: str = "color", rankdir: str = "TB", scope: str | None = None, fit: float | None = None,
         panels: Sequence[str] | None = None) -> str:
    """DOT text for ``net``.

    ``detail``: ``network``, ``block`` (default), ``layer`` or ``blocks`` (a block figure);
    ``annotate``: any of ``shapes`` (default), ``params``, ``macs`` (a comma-separated
    string or an iterable; ``none`` for no annotation); ``style``: ``color`` or ``paper``;
    ``rankdir``: ``TB`` or ``LR``; ``scope``: with ``detail="layer"``, one stage or block
    path to draw alone; ``fit``: a printed width (``"column"``, ``"text"`` or inches) to
    lay the figure out for; ``panels``: with ``detail="blocks"``, which block types.
    """
    if scope is not None and detail != "layer":
        raise OptionError("scope", "{scope} applies to {detail=layer} only", hint="add {detail=layer} to draw `{path}`",
                          path=scope)
    if panels is not None and detail != "blocks":
        raise OptionError("panels", "{panels} applies to {detail=blocks} only", hint="add {detail=blocks}")
    if detail == "blocks":
        return emit_blocks([net], annotate=annotate, style=style, rankdir=rankdir, fit=fit, panels=panels)

    def draw(columns: int) -> str:
        opts = options(detail, annotate, style, rankdir, scope, fitted=fit is not None)
        title = title_of(net) if scope is None else f"{net.name} · {scope}"
        g = _Dot(net.name, PurePath(net.source).name, opts, title)
        if detail == "network":
            network_level(net, g, columns)
        elif detail == "block":
            block_level(net, g, columns)
        else:
            layer_level(net, g, scope)
        return g.text()

    if fit is None:
        return draw(1)
    wraps = detail in ("network", "block")
    return _fit(draw, range(1, max(1, stage_count(net)) + 1) if wraps else [1], fit)


@declare(ANNOTATE, STYLE, RANKDIR, FIT, PANELS)
def emit_blocks(nets: Sequence[Network], *, annotate: str | Iterable[str] | None = None,
                style: str = "color", rankdir: str = "TB", fit: float | None = None,
                panels: Sequence[str] | None = None) -> str:
    """A block figure: each distinct block type of ``nets`` drawn once, side by side, or
    the ``panels`` named (``"basic:identity,bottleneck:projection"``; see
    :func:`panel_names`), with equal heights and their bottoms aligned."""
    names = ", ".join(n.name for n in nets)

    def draw(columns: int) -> str:
        opts = options("blocks", annotate, style, rankdir, None, fitted=fit is not None)
        g = _Dot(names, ", ".join(PurePath(n.source).name for n in nets), opts, f"block types of {names}")
        block_figure(nets, g, panels)
        return g.text()

    return draw(1) if fit is None else _fit(draw, [1], fit, "fewer {panels}, {annotate=none}")


def _fit(draw, columns, width: float, *less: str) -> str:
    return fit(draw, columns, width, *less)


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

