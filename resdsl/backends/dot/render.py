"""Rendering DOT text to SVG, PDF or PNG with Graphviz's `dot`."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from functools import lru_cache

from ...diagnostics import Note
from .. import BackendError, OptionError
from .writer import FONT, FONT_HINT, MIN_TEXT_PT

#: How to install Graphviz, for the error when `dot` is missing.
INSTALL_HINT = ("install Graphviz: `apt-get install graphviz` (Debian/Ubuntu), `brew install graphviz` "
                "(macOS), `conda install graphviz`; or write DOT text (the dot target) and render it elsewhere")


def render(dot_text: str, fmt: str) -> bytes:
    """Render DOT text to ``svg``, ``pdf`` or ``png`` bytes with Graphviz's `dot`, run by
    the `graphviz` package; a missing package or `dot` program is a :class:`BackendError`
    that says how to install it."""
    if fmt not in ("svg", "pdf", "png"):
        raise BackendError("cannot render to `{fmt}`", hint="choose svg, pdf or png", fmt=fmt)
    _check_font()
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
    return _cropped(_fixed_dates(out)) if fmt == "pdf" else out


def _fixed_dates(pdf: bytes) -> bytes:
    """Cairo stamps a PDF with the time it was made; pin the digits and any zone offset
    (same length, so the cross-reference offsets stay valid) to make the output reproducible."""
    def pin(m: re.Match) -> bytes:
        n = len(m.group(2))
        zone = re.sub(rb"[0-9]", b"0", m.group(3)).replace(b"-", b"+")
        return m.group(1) + (b"19700101000000" + b"0" * n)[:n] + zone

    return re.sub(rb"(/(?:CreationDate|ModDate) \(D:)([0-9]+)([-+Z0-9']*)", pin, pdf)


#: The margin, in points, that Graphviz leaves around a PDF's drawing when the graph sets
#: none (setting one would also close the gap dot leaves between the root's clusters).
PDF_MARGIN = 36


def _cropped(pdf: bytes) -> bytes:
    """The PDF's page cut to the drawing, as large as the SVG: the page's ``/MediaBox``
    less Graphviz's margin, written in no more bytes than before (padded with spaces, so
    the cross-reference offsets stay valid). A 6.75 in figure was a 7.75 in page."""
    def crop(m: re.Match) -> bytes:
        w, h = float(m.group(1)) - PDF_MARGIN, float(m.group(2)) - PDF_MARGIN
        if w <= PDF_MARGIN or h <= PDF_MARGIN:
            return m.group()
        box = f"/MediaBox [{PDF_MARGIN} {PDF_MARGIN} {w:g} {h:g}]".encode()
        return box[:-1] + b" " * (len(m.group()) - len(box)) + b"]" if len(box) <= len(m.group()) else m.group()

    return re.sub(rb"/MediaBox \[ ?0 0 ([0-9.]+) ([0-9.]+) ?\]", crop, pdf)


@lru_cache(maxsize=4)
def _font_found(config: str | None) -> str | None:
    """The family fontconfig gives for :data:`FONT` under ``config`` (FONTCONFIG_FILE), or
    ``None`` where fontconfig's `fc-match` is not there to ask (Graphviz then resolves
    fonts its own way)."""
    if shutil.which("fc-match") is None:
        return None
    proc = subprocess.run(["fc-match", "-f", "%{family}", FONT], capture_output=True, timeout=30)
    return proc.stdout.decode("utf-8", "replace")


def _check_font() -> None:
    """Graphviz would draw with whatever fontconfig offers instead, and lay the figure out
    for that font's widths: refuse, rather than make a figure that differs by machine."""
    family = _font_found(os.environ.get("FONTCONFIG_FILE"))
    if family is not None and FONT not in family.split(","):
        raise BackendError(f"rendering needs the font {FONT}, which fontconfig does not find "
                           f"(it would substitute `{{family}}`)", hint=FONT_HINT, family=family or "nothing")


# ---------------------------------------------------------------- printed size

#: ``--fit`` names for paper widths, in inches: a two-column paper's column and its text width.
WIDTHS = {"column": 3.25, "text": 6.75}
#: A figure taller than this many widths wraps its stages into columns, where that keeps
#: its text readable.
TALL = 1.4


def fit_width(value: object) -> float:
    """``fit`` as inches: ``column`` (3.25), ``text`` (6.75), or a width in inches
    (``3.3`` or ``3.3in``)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in WIDTHS:
            return WIDTHS[word]
        try:
            value = float(word.removesuffix("in"))
        except ValueError:
            raise OptionError("fit", "{fit} takes column, text or a width in inches, not {value}",
                              hint="e.g. {fit=column} (3.25 in), {fit=text} (6.75 in) or {fit=3.3}",
                              value=repr(value)) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 1 <= value <= 40:
        raise OptionError("fit", "a figure width lies between 1 and 40 inches, not {value}",
                          hint="e.g. {fit=column} (3.25 in) or {fit=text} (6.75 in)", value=repr(value))
    return float(value)


def svg_scale(root: ET.Element) -> float:
    """Printed points per drawing unit of a rendered SVG: Graphviz writes the printed size
    in points, maps the ``viewBox`` onto it, and scales a drawing made smaller by ``size``
    with a ``transform`` on its top group (as 2.43 does), which counts too."""
    width = float(root.get("width", "0").removesuffix("pt"))
    box = [float(v) for v in root.get("viewBox", f"0 0 {width} 0").split()]
    scale = width / box[2] if box[2] else 1.0
    top = root.find("{http://www.w3.org/2000/svg}g")
    m = re.search(r"scale\(([-0-9.e]+)", top.get("transform", "")) if top is not None else None
    return scale * (float(m.group(1)) if m else 1.0)


def svg_metrics(svg: bytes) -> tuple[float, float, float]:
    """Width and height in inches and the smallest text in points of a rendered SVG, at
    its printed size (:func:`svg_scale`)."""
    root = ET.fromstring(svg)
    width, height = (float(root.get(k, "0").removesuffix("pt")) for k in ("width", "height"))
    sizes = [float(t.get("font-size")) for t in root.iter("{http://www.w3.org/2000/svg}text") if t.get("font-size")]
    return width / 72, height / 72, (min(sizes) if sizes else 0.0) * svg_scale(root)


def sized(dot_text: str, width: float, tall: bool = False) -> str:
    """``dot_text`` drawn no wider than ``width`` inches and, unless ``tall``, no taller
    than :data:`TALL` widths (Graphviz scales it down to fit both)."""
    size = f"{width:g},{1000 if tall else round(TALL * width, 2):g}"
    return dot_text.replace("digraph resdsl {\n", f'digraph resdsl {{\n  graph [size="{size}"];\n', 1)


def fit(make: Callable[[int], str], columns: Sequence[int], width: float,
        less: str = "{detail=block} or {detail=network}, {annotate=none}, one {scope}") -> str:
    """DOT text laid out for a printed ``width`` (inches): ``make(c)`` draws the figure in
    ``c`` columns (rows, left to right); of the drawings that, scaled down to that width
    and to :data:`TALL` widths in height, keep text of at least :data:`MIN_TEXT_PT`, the
    one with the largest text (the fewest columns of equals), else the shortest that keeps
    the text at that width (and a note says it is taller). A figure that cannot keep its
    text that large at that width is a :class:`BackendError`, whose hint names ``less``:
    how to draw less."""
    chosen: tuple[float, str] | None = None
    best: tuple[float, str] | None = None
    smallest: tuple[float, float] | None = None
    drawn: set[str] = set()
    for c in columns:
        text = make(c)
        if text in drawn:  # more columns asked, the same drawn (5 stages in 3 or 4 columns)
            continue
        drawn.add(text)
        w, h, font = svg_metrics(render(text, "svg"))
        across = min(1.0, width / w)
        if font * across < MIN_TEXT_PT - 1e-6:
            if smallest is None or font * across > smallest[0]:
                smallest = (font * across, w)
            continue  # more columns may be narrower (rows left to right), or not
        printed = font * min(across, TALL * width / h)
        if printed >= MIN_TEXT_PT - 1e-6:
            if chosen is None or printed > chosen[0] + 0.05:
                chosen = (printed, text)
            continue
        if best is None or h * across < best[0]:
            best = (h * across, text)
    if chosen is not None:
        return sized(chosen[1], width)
    if best is not None:
        warnings.warn(Note(f"the figure is {best[0]:.1f} in tall at {width:g} in wide, more than {TALL:g} "
                           f"times its width, and no layout keeps its text at {MIN_TEXT_PT:g} pt and shorter: "
                           "a wider fit, fewer panels or the network detail make a shorter figure"), stacklevel=2)
        return sized(best[1], width, tall=True)
    font, w = smallest or (0.0, 0.0)
    raise BackendError(f"the figure cannot be {width:g} in wide with text of at least {MIN_TEXT_PT:g} pt: "
                       f"its smallest text would be {math.floor(font * 10) / 10:.1f} pt (it is {w:.1f} in wide as drawn)",
                       hint="fit it to a wider figure ({fit=text} or a width in inches), or draw less: " + less)
