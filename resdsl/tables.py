"""Architecture tables in the style of He et al. 2015, Table 1: a column per spec.

Rows follow the paper: ``conv1`` (the stem), ``conv2_x`` … (the stages, in order:
torchvision's ``layer1`` is the paper's ``conv2_x``), a head row, then FLOPs and
parameters. Naming rows like the paper rather than like a spec keeps specs with
different stage names side by side in one table; the stage's own name is in the DOT
diagrams and in `resdsl stats`. As in the paper, the stem's final pooling (as the IR
records it: ``Network.stem_pool``) is listed at the top of the first stage's row, and a
stage's cell is its block's convolutions, ``[1×1, 64; 3×3, 64; 1×1, 256] × 3``, read
from the conv ops of its blocks (kernel, output channels, ``C=32`` for grouped convs);
batch norms, activations and shortcuts are left out, as the paper does. The padding
before a stem's pool goes with the pool (BiT's conv1 is 112×112, not the padded 114×114).

"FLOPs" are multiply-accumulates, as in the paper (its 3.6×10⁹ for ResNet-34 counts
multiply-adds). Numbers use engineering notation with one decimal (``11.3×10⁹``).

Formats: ``markdown`` (``<br>`` between lines in a cell), ``csv`` (a line break inside a
quoted cell) and ``latex``: a complete document (``article`` + ``booktabs``) that
compiles on its own; copy the ``tabular`` into a paper.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass

from . import builtin_looks  # noqa: F401  (registers the built-ins' looks)
from .diagnostics import UsageError
from .grid import grid, runs
from .ir import Network, Op, Role, Scope
from .looks import look_of
from .primitives import PRIMITIVES, Traits
from .roles import (
    attention_convs,
    computes_itself,
    conv_like,
    conv_view,
    parallel_steps,
    radix_of,
    stage_parts,
)
from .stats import sections

FORMATS = ("markdown", "latex", "csv")

_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


@dataclass(frozen=True)
class Composition:
    """``[1×1, 64; 3×3, 64; 1×1, 256] × 3``: one line per conv, repeated ``times``."""

    convs: tuple[str, ...]
    times: int


#: A cell: lines of plain text and block compositions, top to bottom.
Cell = tuple[str | Composition, ...]


@dataclass(frozen=True)
class Row:
    name: str
    output: str  # output size, H×W
    cells: tuple[Cell, ...]  # one per network


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]  # one per network
    rows: tuple[Row, ...]
    flops: tuple[int, ...]
    params: tuple[int, ...]


def _traits(op: Op) -> Traits:
    return PRIMITIVES[op.kind].traits


def _is_layer(op: Op) -> bool:
    """A layer a paper table lists as a line of its own: a convolution. What is listed comes
    from the registry's traits; only the words come from the look. A conv whose weight is
    an operand (``conv_with`` in NF-ResNet's ``scaled_std_conv``) is one too."""
    return conv_like(op)


def _is_pool(op: Op) -> bool:
    return _traits(op).pool


def _in_head_row(op: Op) -> bool:
    """An op the head row names: its pooling, classifier and dropout."""
    t = _traits(op)
    return (t.pool or t.classifier or t.eval_identity) and not t.hidden


def depth(net: Network) -> int:
    """Weighted layers on the main path, as the papers count them: 18 for ResNet-18, 50 for
    ResNet-50. Shortcuts and attention modules (convs that compute weights: on 1×1 maps, SE,
    ECA, or to one channel, global context's pooling) do not count; a module that stands in
    for a conv (selective kernel, split attention, a conv written in `.res`) counts once, and
    so does a numbered list of convs (Res2Net's ``convs.{i}``); branches side by side in a
    block (RepVGG's 3×3 and 1×1, summed) are one layer, as the paper's deploy form is."""
    blocks = [s for s in net.root.walk() if s.role is Role.BLOCK]
    scopes = {s.path for s in net.root.walk()}
    skip = {n for b in blocks for s in b.walk() if s.role is Role.SHORTCUT for n in s.op_names()}
    units: dict[str, str] = {}  # unit → its first weighted op
    for module in (s for b in blocks for s in b.walk() if s.role is Role.MODULE):
        names = [n for n in module.op_names() if n not in skip]
        skip.update(names)
        attention = set(attention_convs(net, module))
        weighted = [n for n in names if _traits(net.op(n)).depth and n not in attention]
        if weighted:
            units.setdefault(module.path, weighted[0])
    for op in net.ops:
        if _traits(op).depth and op.name not in skip:
            parent, _, last = (op.module or op.name).rpartition(".")
            units.setdefault(parent if last.isdigit() and parent and parent not in scopes else op.name, op.name)
    # within a block, a unit that reads none of the step before it joins that step
    order = {op.name: k for k, op in enumerate(net.ops)}
    block_of = {n: b.path for b in blocks for n in b.op_names()}
    steps: list[list[str]] = []
    for first in sorted(units.values(), key=order.__getitem__):
        prev = steps[-1] if steps else []
        if prev and block_of.get(first) is not None and block_of.get(prev[0]) == block_of.get(first) \
                and not _reads_any(net, first, set(prev), block_of):
            prev.append(first)
        else:
            steps.append([first])
    return len(steps)


def _reads_any(net: Network, name: str, targets: set[str], block_of: dict[str, str]) -> bool:
    """``name`` depends on one of ``targets`` through ops of its own block."""
    block, seen, todo = block_of.get(name), set(), [name]
    while todo:
        for i in net.op(todo.pop()).inputs:
            if i in targets:
                return True
            if i not in seen and block_of.get(i) == block:
                seen.add(i)
                todo.append(i)
    return False


#: How far the depth a name states may be from the counted one and still be the name's
#: convention: a deep stem adds 2 convs (ResNet-D: resnet50d has 52), ResNet-RS 3, and WRN
#: counts its 2 shortcut projections (WRN-16-8 has 14 main-path layers).
NAME_DEPTH_TOLERANCE = 4


def depth_label(net: Network) -> int | str:
    """The depth a table heads the network with (``50`` in "50-layer").

    A network parameter ``depth_label`` states it (the standard library's ``resnet``
    takes one: ``resnet(…, depth_label = 50)``); otherwise the number in the network's
    name that is within ``NAME_DEPTH_TOLERANCE`` of the counted :func:`depth`, since names
    follow their family's convention (``resnet50d``: 50, though its deep stem makes 52
    weighted layers); otherwise the counted depth."""
    stated = dict(net.root.args).get("depth_label")
    if stated is not None and stated is not False and stated != 0 and stated != "":
        return stated
    counted = depth(net)
    for m in re.finditer(r"\d+", net.name):
        if abs(int(m.group()) - counted) <= NAME_DEPTH_TOLERANCE:
            return int(m.group())
    return counted


def _conv(net: Network, name: str, with_stride: bool = False) -> str:
    op = conv_view(net, net.op(name))
    return look_of(op).table_text(op, with_stride)


def _pool(net: Network, name: str) -> str:
    op = net.op(name)
    return look_of(op).table_text(op, False)


def block_convs(net: Network, block: Scope) -> tuple[str, ...]:
    """A block's residual-branch convs as the paper lists them; a squeeze-and-excitation
    style module (convs on a 1×1 map) becomes ``fc, [16, 256]`` as in the SENet paper;
    convs side by side in a module (selective kernel's paths) are one line joined by
    ``‖``; a grouped conv under a softmax over radix groups (ResNeSt's split attention)
    says ``radix 2``, not ``C=2``; a run of three or more equal convs (Res2Net's scales) is
    one line, ``3×3, 14 (×7)``; a block's own branches side by side (RepVGG's 3×3 and 1×1,
    summed) are one line joined by ``‖`` too."""
    units: list[tuple[str | None, list[str]]] = []  # (the add its output is summed into, its lines)
    for item in block.items:
        if isinstance(item, str):
            if _is_layer(net.op(item)):
                units.append((_summed_into(net, block, item), [_conv(net, item)]))
        elif item.role is Role.SHORTCUT:
            continue
        elif item.role is Role.MODULE:
            lines = _module_lines(net, item)
            if lines:
                units.append((_summed_into(net, block, item.output), lines))
        else:
            units += [(None, [line]) for line in block_convs(net, item)]  # a block it calls: as it lists
    out: list[str] = []
    for k, (sink, lines) in enumerate(units):
        # summed into the same add as the unit before: branches side by side
        if k and sink is not None and units[k - 1][0] == sink and len(lines) == 1 and out:
            out[-1] += f" ‖ {lines[0]}"
        else:
            out += lines
    return _runs(out)


def _owner_block(net: Network, name: str) -> Scope | None:
    """The outermost block that runs op ``name``, if any."""
    for scope in net.root.walk():
        if scope.role is Role.BLOCK and name in set(scope.op_names()):
            return scope
    return None


def _summed_into(net: Network, block: Scope, value: str) -> str | None:
    """The add of ``block`` that ``value`` is an operand of, through its norms and
    activations (a conv-norm branch's), or ``None``."""
    ops = [net.op(n) for n in block.op_names()]  # a block's few ops, not the network's
    while True:
        readers = [op for op in ops if value in op.inputs]
        if len(readers) != 1:
            return None
        t = _traits(readers[0])
        if t.residual and len(readers[0].inputs) > 1:
            return readers[0].name
        if not (t.norm or t.activation) or len(readers[0].inputs) != 1:
            return None
        value = readers[0].name


def _module_lines(net: Network, module: Scope) -> list[str]:
    names = [n for n in module.op_names() if _is_layer(net.op(n))]
    attention = attention_convs(net, module)
    main = [n for n in names if n not in attention]
    radix = radix_of(module, net)

    def text(n: str) -> str:
        conv = _conv(net, n)
        groups = int(dict(conv_view(net, net.op(n)).attrs).get("groups", 1))
        if radix and groups % radix == 0:
            conv = re.sub(r", C=\d+", "", conv) + f", radix {radix}" + (f", C={groups // radix}" if groups > radix else "")
        return conv

    steps = parallel_steps(net, module, main)
    out = [" ‖ ".join(text(n) for n in step) for step in steps]
    fcs = [n for n in attention if net.op(n).shape[1:] == (1, 1)]
    if fcs:
        out.append("fc, [" + ", ".join(str(conv_view(net, net.op(n)).attr("out_channels")) for n in fcs) + "]")
    # a module that is more than an SE-like gate or a chain of its convs (global context's
    # attention pooling, self-attention's matmuls) is named: `global_context: fc, [8, 64]`
    if out and (len(fcs) < len(attention) or (all(len(s) == 1 for s in steps) and not fcs
                                               and computes_itself(net, module))):
        out[0] = f"{module.definition}: {out[0]}"
    elif not out and attention:
        out = [module.definition]
    return out


def _runs(lines: list[str]) -> tuple[str, ...]:
    return tuple(x for line, n in runs(lines) for x in ([f"{line} (×{n})"] if n >= 3 else [line] * n))


def _stage_cell(net: Network, stage: Scope) -> list[str | Composition]:
    cell: list[str | Composition] = []
    for block in stage_parts(net, stage):
        convs = block_convs(net, block)
        last = cell[-1] if cell else None
        if isinstance(last, Composition) and last.convs == convs:
            cell[-1] = Composition(convs, last.times + 1)
        else:
            cell.append(Composition(convs, 1))
    return cell


def build(nets: Sequence[Network]) -> Table:
    """The table for ``nets``, one column each."""
    if not nets:
        raise UsageError("a table needs at least one spec")
    per_net: list[dict[str, tuple[str, Cell]]] = []
    order: list[str] = []
    for net in nets:
        rows: dict[str, tuple[str, Cell]] = {}
        # the stem's final pooling goes to the first stage's row, as in the paper
        carry: list[str] = [_pool(net, n) for n in net.stem_pool if _is_pool(net.op(n))]
        stage_no = 0
        for sec in sections(net):
            if sec.role is Role.STEM:
                names = [n for n in sec.ops if n not in net.stem_pool]
                lines: list[str | Composition] = []
                sink = None
                for n in names:
                    if _is_layer(net.op(n)):
                        # convs summed into one add (RepVGG's stem block) side by side, as in a block
                        into = _summed_into(net, _owner_block(net, n) or net.root, n)
                        if into is not None and into == sink and lines and isinstance(lines[-1], str):
                            lines[-1] += f" ‖ {_conv(net, n, with_stride=True)}"
                        else:
                            lines.append(_conv(net, n, with_stride=True))
                        sink = into
                    elif _is_pool(net.op(n)):
                        lines.append(_pool(net, n))
                rows["conv1"] = (_size(net.op(names[-1]).shape), tuple(lines))
            elif sec.role is Role.STAGE:
                stage_no += 1
                rows[f"conv{stage_no + 1}_x"] = (_size(sec.shape), tuple(carry + _stage_cell(net, sec.scope)))
                carry = []
            else:
                words, size = [], ""
                for n in sec.ops:
                    op = net.op(n)
                    if _in_head_row(op):
                        words.append(look_of(op).head_text(op))
                        if _is_pool(op):
                            size = _size(op.shape)
                    elif _is_layer(op) and op.shape[1:] == (1, 1) and "out_channels" in dict(conv_view(net, op).attrs):
                        # a classifier written as a 1×1 conv (BiT's head.fc) is still the fc row
                        words.append(f"{conv_view(net, op).attr('out_channels')}-d fc (1×1 conv)")
                rows[""] = (size, (", ".join(words),) if words else ())
        per_net.append(rows)
        for key in rows:
            if key not in order:
                order.append(key)
    # conv1 first, the stages in order, the head row last
    order.sort(key=lambda k: (k != "conv1", k == "", int(k[4:-2]) if k.startswith("conv") and k != "conv1" else 0))
    table_rows = []
    for key in order:
        sizes = []
        for rows in per_net:
            if key in rows and rows[key][0] and rows[key][0] not in sizes:
                sizes.append(rows[key][0])
        table_rows.append(Row(key, " / ".join(sizes), tuple(rows[key][1] if key in rows else () for rows in per_net)))
    return Table(headers(nets), tuple(table_rows),
                 tuple(n.macs for n in nets), tuple(n.params for n in nets))


def headers(nets: Sequence[Network]) -> tuple[str, ...]:
    """Column headers as the paper writes them, ``50-layer`` (:func:`depth_label`), where
    that tells the columns apart; otherwise each network's name alone."""
    labels = [f"{depth_label(n)}-layer" for n in nets]
    return tuple(labels) if len(set(labels)) == len(labels) else tuple(n.name for n in nets)


def _size(shape: tuple[int, ...]) -> str:
    return "×".join(str(d) for d in shape[1:]) if len(shape) == 3 else ""


def engineering(n: int) -> tuple[str, int]:
    """``n`` as a mantissa with one decimal and an exponent that is a multiple of 3:
    11282415616 → ("11.3", 9), the way the paper writes 11.3×10⁹."""
    if n < 1000:  # a count, not a measurement: no decimal
        return str(n), 0
    exp = (len(str(n)) - 1) // 3 * 3
    mantissa = f"{n / 10 ** exp:.1f}"
    if float(mantissa) >= 1000:  # 999.96×10³ rounds up to the next power
        exp += 3
        mantissa = f"{n / 10 ** exp:.1f}"
    return mantissa, exp


def _number(n: int) -> str:
    m, e = engineering(n)
    return m if e == 0 else f"{m}×10{str(e).translate(_SUPERSCRIPT)}"


def _plain(item: str | Composition) -> str:
    if isinstance(item, Composition):
        return f"[{'; '.join(item.convs)}] × {item.times}"
    return item


def markdown(table: Table) -> str:
    header = ["layer name", "output size", *table.headers]
    rows = [[r.name, r.output, *("<br>".join(_plain(i) for i in cell) for cell in r.cells)]
            for r in table.rows]
    rows.append(["FLOPs", "", *(_number(f) for f in table.flops)])
    rows.append(["params", "", *(_number(p) for p in table.params)])
    return grid(header, rows, ["l"] + ["c"] * (len(header) - 1), markdown=True, pad=False,
                escape=lambda s: s.replace("|", "\\|")) + "\n"


def csv_text(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["layer name", "output size", *table.headers])
    for r in table.rows:
        w.writerow([r.name, r.output, *("\n".join(_plain(i) for i in cell) for cell in r.cells)])
    w.writerow(["MACs", "", *table.flops])  # exact multiply-accumulates: the paper's "FLOPs"
    w.writerow(["params", "", *table.params])
    return buf.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(s: str) -> str:
    """Text for LaTeX: specials escaped, × as math, anything outside ASCII dropped to `?`
    so the document compiles with any engine."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in s).replace("×", r"$\times$").replace("‖", r"$\|$")
    return out.encode("ascii", "replace").decode("ascii")


def _tex_item(item: str | Composition) -> str:
    if isinstance(item, Composition):
        lines = r"\\ ".join(r"\mbox{" + _tex(c) + "}" for c in item.convs)  # text spacing, as the paper
        return (r"$\left[\begin{array}{@{}c@{}}" + lines + r"\end{array}\right]"
                + (rf"\times{item.times}$" if item.times > 1 else r"\times 1$"))
    return _tex(item)


def _tex_cell(cell: Cell) -> str:
    if len(cell) <= 1:
        return _tex_item(cell[0]) if cell else ""
    return r"\begin{tabular}[c]{@{}c@{}}" + r" \\ ".join(_tex_item(i) for i in cell) + r"\end{tabular}"


def _tex_number(n: int) -> str:
    m, e = engineering(n)
    return f"${m}$" if e == 0 else rf"${m}\times10^{{{e}}}$"


def _tex_rows(row: Row) -> list[str]:
    """One table row as LaTeX lines. As in the paper, a line every column shares (the
    stem, the max pool, the head) spans the model columns once instead of repeating."""
    n = len(row.cells)
    cells = [list(c) for c in row.cells]
    lead = [_tex(row.name), _tex(row.output)]
    out = []
    while n > 1 and all(c and isinstance(c[0], str) and c[0] == cells[0][0] for c in cells):
        out.append(" & ".join([*lead, rf"\multicolumn{{{n}}}{{c}}{{{_tex_item(cells[0][0])}}}"]) + r" \\")
        lead = ["", ""]
        for c in cells:
            c.pop(0)
    if any(cells) or not out:
        out.append(" & ".join([*lead, *(_tex_cell(tuple(c)) for c in cells)]) + r" \\")
    return out


def _tex_header(h: str) -> str:
    name, _, rest = h.partition(" (")
    if not rest:
        return _tex(h)
    return r"\begin{tabular}[b]{@{}c@{}}" + _tex(name) + r" \\ (" + _tex(rest) + r"\end{tabular}"


def latex(table: Table, fragment: bool = False, caption: str | None = None, label: str | None = None) -> str:
    """The table as a complete LaTeX document, or with ``fragment`` a ``table`` float to
    ``\\input`` into a paper (needs ``booktabs``); ``caption`` is text (escaped), ``label``
    a LaTeX label."""
    cols = "ll" + "c" * len(table.headers)
    head = " & ".join(["layer name", "output size", *(_tex_header(h) for h in table.headers)])
    body = [line for r in table.rows for line in _tex_rows(r)]
    float_ = [
        r"\begin{table}[t]",
        r"\centering",
        *([rf"\caption{{{_tex(caption)}}}"] if caption else []),
        *([rf"\label{{{_tex_label(label)}}}"] if label else []),
        r"\footnotesize",
        r"\setlength{\tabcolsep}{3pt}",
        r"\renewcommand{\arraystretch}{1.15}",
        rf"\begin{{tabular}}{{{cols}}}",
        r"\toprule",
        head + r" \\",
        r"\midrule",
        *body,
        r"\midrule",
        " & ".join(["FLOPs", "", *(_tex_number(f) for f in table.flops)]) + r" \\",
        " & ".join(["params", "", *(_tex_number(p) for p in table.params)]) + r" \\",
        r"\bottomrule",
        r"\end{tabular}",
        r"\end{table}",
    ]
    if fragment:
        return "\n".join([
            r"% An architecture table in the style of He et al. 2015, Table 1, made by `resdsl table --fragment`.",
            r"% \input it into a paper whose preamble has \usepackage{booktabs}. FLOPs are multiply-adds.",
            *float_, ""])
    return "\n".join([
        r"% An architecture table in the style of He et al. 2015, Table 1, made by `resdsl table`.",
        r"% Needs booktabs; for a table to \input into a paper, use `resdsl table --fragment`.",
        r"\documentclass{article}",
        r"\usepackage[margin=2cm]{geometry}",
        r"\usepackage{booktabs}",
        r"\begin{document}",
        *float_,
        r"\end{document}",
        "",
    ])


def _tex_label(label: str) -> str:
    """A label as LaTeX takes it in ``\\label`` and ``\\ref``: no braces, backslashes,
    ``#``, ``%`` or spaces."""
    clean = re.sub(r"[\\{}#%~^&$\s]", "", label)
    if not clean:
        raise UsageError(f"`{label}` is not a LaTeX label", hint="e.g. --label tab:arch")
    return clean.encode("ascii", "replace").decode("ascii")


def add_listings(document: str, specs: Sequence[tuple[str, str]]) -> str:
    """``document`` (from :func:`latex`) with each ``(file name, text)`` of ``specs`` after
    the table as a ``minted`` listing in the ``resdsl`` language (the Pygments lexer in
    :mod:`resdsl.lexer`). minted runs ``pygmentize``: compile with ``-shell-escape`` where
    ``resdsl[docs]`` is installed, so that the lexer is found by name."""
    listings = []
    for name, text in specs:
        if r"\end{minted}" in text:  # would end the verbatim listing early
            raise UsageError(f"`{name}` contains `\\end{{minted}}` and cannot be listed with minted")
        listings += [r"\begin{listing}[ht]", r"\begin{minted}[fontsize=\footnotesize]{resdsl}",
                     text.rstrip("\n"), r"\end{minted}", rf"\caption{{\texttt{{{_tex(name)}}}}}",
                     r"\end{listing}"]
    head, end = document.split(r"\end{document}", 1)
    head = head.replace(r"\usepackage{booktabs}", "\n".join([
        r"\usepackage{booktabs}",
        r"% the spec listings: minted calls pygmentize, which finds the resdsl lexer once resdsl[docs]",
        r"% is installed; compile with -shell-escape (lualatex or xelatex for non-ASCII comments)",
        r"\usepackage{minted}"]), 1)
    return head + "\n".join(listings) + "\n" + r"\end{document}" + end


def render(nets: Sequence[Network], fmt: str = "markdown", *, fragment: bool = False, caption: str | None = None,
           label: str | None = None) -> str:
    """The architecture table of ``nets`` as ``markdown``, ``latex`` or ``csv`` text;
    ``fragment``, ``caption`` and ``label`` for ``latex`` only (:func:`latex`)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown table format `{fmt}`", hint=f"choose one of: {', '.join(FORMATS)}")
    if fmt != "latex" and (fragment or caption is not None or label is not None):
        raise UsageError("a fragment, caption or label is for --format latex only",
                         hint="add --format latex")
    table = build(nets)
    if fmt == "latex":
        return latex(table, fragment, caption, label)
    return {"markdown": markdown, "csv": csv_text}[fmt](table)
