"""Per-section statistics of a checked network, and the `resdsl stats` renderings.

A network's top level splits into *sections*: the stem (everything before the first
stage), each stage, and the head (everything after the last stage). Tables, diagrams
and `resdsl stats` all use :func:`sections`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .grid import grid
from .ir import Network, Role, Scope, Shape, axis_texts, shown_names


@dataclass(frozen=True)
class Section:
    name: str
    role: Role  # STEM, STAGE or HEAD; NETWORK for the one section of a network without stages
    shape: Shape  # output shape
    blocks: int  # blocks in a stage, 0 elsewhere
    params: int
    macs: int
    ops: tuple[str, ...]  # op names, in execution order
    scope: Scope | None  # the stage's scope


def sections(net: Network) -> list[Section]:
    """Stem, stages and head of ``net``, in order; a network without stages is one section,
    ``body``."""
    groups: list[tuple[str, Role, list[str], Scope | None]] = []
    seen_stage = False
    for item in net.root.items:
        if isinstance(item, Scope) and item.role is Role.STAGE:
            # an unnamed stage (std.dpn's) has no name of its own: its place, as timm's feature index
            name = f"stage {sum(g[1] is Role.STAGE for g in groups) + 1}" if item.inline else item.name
            groups.append((name, Role.STAGE, list(item.op_names()), item))
            seen_stage = True
            continue
        ops = [item] if isinstance(item, str) else list(item.op_names())
        role = Role.HEAD if seen_stage else Role.STEM
        if groups and groups[-1][1] is role:
            groups[-1][2].extend(ops)
        else:
            groups.append((role.value, role, ops, None))
    if not seen_stage:
        groups = [("body", Role.NETWORK, [o for g in groups for o in g[2]], None)]
    out = []
    for name, role, ops, scope in groups:
        if not ops:
            continue
        out.append(Section(name, role, net.op(ops[-1]).shape if scope is None else
                           net.shape_of(scope.output), len(scope.children) if scope else 0,
                           sum(net.op(o).params for o in ops), sum(net.op(o).macs for o in ops),
                           tuple(ops), scope))
    return out


def fmt_shape(shape: Shape) -> str:
    """``256×14×14``; a tensor whose axes have names other than a feature map's shows them:
    ``heads: 4 × HW: 256 × dqk: 64``."""
    texts = axis_texts(shape)
    return (" × " if shown_names(shape) else "×").join(texts)


def fmt_count(n: int) -> str:
    """A parameter or MAC count the way papers print it: 25.56M, 4.09G, 9.41K."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def summary(net: Network) -> dict:
    """JSON-ready statistics: per section and totals (exact integers)."""
    return {
        "network": net.name,
        "source": net.source,
        "input": list(net.input_shape),
        "output": list(net.output_shape),
        "params": net.params,
        "macs": net.macs,
        "sections": [{"name": s.name, "kind": "body" if s.role is Role.NETWORK else s.role.value,
                      "shape": list(s.shape), "blocks": s.blocks, "params": s.params, "macs": s.macs}
                     for s in sections(net)],
    }


def render(nets: list[Network], fmt: str = "table") -> str:
    """`resdsl stats` output for one or more networks; several are shown side by side."""
    if fmt == "json":
        data = [summary(n) for n in nets]
        return json.dumps(data[0] if len(data) == 1 else data, indent=2)
    markdown = fmt == "markdown"
    per_net = [{s.name: s for s in sections(n)} for n in nets]
    names: dict[str, Role] = {}
    for secs in per_net:
        for name, s in secs.items():
            names.setdefault(name, s.role)
    # stem first, stages in order, head last, whatever order the specs list them in
    order = sorted(names, key=lambda n: (names[n] is not Role.STEM, names[n] is Role.HEAD))
    if len(nets) == 1:
        header = ["section", "output", "blocks", "params", "MACs"]
    else:
        header = ["section"] + [f"{n.name} {col}" for n in nets for col in ("output", "blocks", "params", "MACs")]
    rows = []
    for name in order:
        row = [name]
        for secs in per_net:
            s = secs.get(name)
            row += ([fmt_shape(s.shape), str(s.blocks) if s.blocks else "", f"{s.params:,}",
                     fmt_count(s.macs)] if s else ["", "", "", ""])
        rows.append(row)
    total = ["total"]
    for n in nets:
        blocks = sum(s.blocks for s in sections(n))
        total += [fmt_shape(n.output_shape), str(blocks), f"{n.params:,}", fmt_count(n.macs)]
    rows.append(total)
    title = ", ".join(f"{n.name} ({n.source}, input {fmt_shape(n.input_shape)})" for n in nets)
    body = grid(header, rows, ["l"] + ["r"] * (len(header) - 1), markdown=markdown)
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + body
