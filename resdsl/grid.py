"""The one renderer of text tables: `resdsl stats` (plain text and markdown) and `resdsl
table` (markdown) both lay out their rows with :func:`grid`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

#: Column alignments: left, right, centre.
ALIGNS = ("l", "r", "c")


def grid(header: Sequence[str], rows: Sequence[Sequence[str]], align: Sequence[str], *,
         markdown: bool, pad: bool = True, escape: Callable[[str], str] | None = None) -> str:
    """``header`` and ``rows`` as a table, one line per row, no trailing newline.

    ``align`` holds one of ``l``, ``r``, ``c`` per column. Plain text: columns padded to
    their widest cell, two spaces apart, trailing spaces dropped, a rule of dashes under
    the header. Markdown: ``| a | b |`` rows and an alignment rule; with ``pad`` the cells
    are padded to line up in a text editor too. ``escape`` applies to every markdown cell
    (``|`` in a cell, for instance).
    """
    if any(a not in ALIGNS for a in align) or len(align) != len(header):
        raise ValueError(f"one alignment of {ALIGNS} per column, got {list(align)}")
    esc = escape if markdown and escape is not None else (lambda s: s)
    table = [[esc(c) for c in header], *([esc(c) for c in r] for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))] if pad else [0] * len(header)

    def cell(c: str, w: int, a: str) -> str:
        return c.rjust(w) if a == "r" else c.center(w) if a == "c" and markdown else c.ljust(w)

    def line(cells: list[str]) -> str:
        padded = [cell(c, w, a) for c, w, a in zip(cells, widths, align)]
        return ("| " + " | ".join(padded) + " |") if markdown else "  ".join(padded).rstrip()

    if markdown:
        def mark(w: int, a: str) -> str:
            colons = 2 if a == "c" else 1
            dashes = "-" * (w + 2 - colons if pad else 3)
            return {"l": ":" + dashes, "r": dashes + ":", "c": ":" + dashes + ":"}[a]

        rule = "|" + "|".join(mark(w, a) for w, a in zip(widths, align)) + "|"
    else:
        rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(table[0]), rule, *(line(r) for r in table[1:])])


def runs(lines: Sequence[str]) -> list[tuple[str, int]]:
    """Equal neighbouring lines counted: ``["a", "a", "b"]`` → ``[("a", 2), ("b", 1)]``
    (Res2Net's seven `3×3, 14` convs become one row in a table or a block's box)."""
    out: list[tuple[str, int]] = []
    for line in lines:
        if out and out[-1][0] == line:
            out[-1] = (line, out[-1][1] + 1)
        else:
            out.append((line, 1))
    return out
