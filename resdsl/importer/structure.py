"""Writing a traced model as `.res` definitions, one per distinct structure.

The module tree of the traced model gives the hierarchy: every module instance that reads
one tensor and gives one becomes a call of a definition (``layer1.0: bottleneck(…)``);
one that does not (it reads two tensors, or another part reads its inside) is written
inline, its layers labelled by their dotted path, so the names stay the ``state_dict``'s.
Instances whose bodies are the same up to numbers share one definition, whose parameters
are the numbers that vary, each written as a multiple of an earlier one where it is one
(``planes * 4``). A container whose children ``1…n-1`` are the same call becomes a loop,
so the spec's length grows with the number of distinct structures, not with depth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction

from ..errors import E
from ..lexer import KEYWORDS
from ..primitives import PRIMITIVES, REQUIRED, RESERVED
from .library import _fmt
from .trace import INPUT_ID, ImportFailure, TOp, Traced

#: Statement parts: text, and slots (numbers that may vary between instances).
Slot = tuple[str, object]  # (parameter name hint, value)


@dataclass(eq=False)
class ChildCall:
    """A call of a child's definition in a body; its arguments are the child's parameters."""

    body: Body
    name: str


@dataclass(eq=False)
class Body:
    """A definition body for one instance: lines of text pieces and slots."""

    lines: list[list[str | Slot]] = field(default_factory=list)
    kind: str = "module"
    cls: str = ""

    def signature(self) -> tuple:
        def part(p):
            if isinstance(p, str):
                return p
            if isinstance(p, ChildCall):
                return ("call", p.name)
            return ("#", type(p[1]).__name__, *p[2:])

        return (self.kind, tuple(tuple(part(p) for p in line) for line in self.lines))

    def slots(self, writer: Writer) -> list[Slot]:
        out: list[Slot] = []
        for line in self.lines:
            for p in line:
                if isinstance(p, ChildCall):
                    values = writer.instance_values(p.name, p.body)
                    out += list(zip(writer.params[p.name], values))
                elif not isinstance(p, str):
                    out.append((p[0], p[1]))
        return out


@dataclass
class Scope:
    path: str
    items: list = field(default_factory=list)  # TOp or Scope, in execution order
    parent: Scope | None = None
    inline: bool = False


class Writer:
    def __init__(self, traced: Traced, name: str) -> None:
        self.traced, self.name = traced, name
        self.ops = {op.id: op for op in traced.ops}
        self.alias: dict[int, int] = {}
        # identities vanish; flattens are re-made before linear layers, and kept where the
        # model's output is flat (a 1×1 conv head), not where a pooled vector goes on (ECA)
        shapes = {INPUT_ID: traced.input_shape, **{op.id: op.shape for op in traced.ops}}
        for op in traced.ops:
            # identities vanish, and so do reshapes to the shape their input has in the spec
            if op.kind == "identity" or (
                op.kind == "reshape" and shapes[self.resolve(op.inputs[0])] == op.shape
            ):
                self.alias[op.id] = self.resolve(op.inputs[0])
        kept = self.resolve(traced.output)
        for op in traced.ops:
            if op.kind == "flatten" and op.id != kept:
                self.alias[op.id] = self.resolve(op.inputs[0])
        # ops without weights whose output nothing reads (a split of which no part is used)
        live = {self.resolve(traced.output)}
        for op in reversed(traced.ops):
            if op.id in live or PRIMITIVES[op.kind].has_params:
                live.add(op.id)
                live.update(self.resolve(i) for i in op.inputs)
        self.dead = {op.id for op in traced.ops if op.id not in live}
        self.definitions: dict[tuple, tuple[str, list[Body]]] = {}
        self.def_order: list[tuple] = []
        self.used_names: set[str] = (
            set(PRIMITIVES)
            | set(RESERVED)
            | set(KEYWORDS)
            | {"resnet"}  # the standard library's network template
        )

    def resolve(self, i: int) -> int:
        while i in self.alias:
            i = self.alias[i]
        return i

    # ------------------------------------------------------------ the tree
    def tree(self) -> Scope:
        root = Scope("")
        scopes: dict[str, Scope] = {"": root}
        for op in self.traced.ops:
            if op.id in self.alias or op.id in self.dead:
                continue
            parent = root
            for path in op.scope:
                if path not in scopes:
                    child = Scope(path, parent=parent)
                    scopes[path] = child
                    parent.items.append(child)
                elif scopes[path].parent is not parent:
                    raise ImportFailure(
                        E.TORCH_NOT_WRITABLE,
                        f"the module `{path}` runs in two places",
                        hint="a module called from two parents cannot be one layer of a spec",
                    )
                parent = scopes[path]
            parent.items.append(op)
        return root

    def ops_in(self, scope: Scope) -> list[TOp]:
        out = []
        for item in scope.items:
            out += self.ops_in(item) if isinstance(item, Scope) else [item]
        return out

    def boundary(self, scope: Scope) -> tuple[list[int], list[int]]:
        """The tensors a scope reads from outside it, and those read outside of it."""
        inside = {op.id for op in self.ops_in(scope)}
        reads = []
        for op in self.ops_in(scope):
            for i in op.inputs:
                i = self.resolve(i)
                if i not in inside and i not in reads:
                    reads.append(i)
        outs = []
        out_id = self.resolve(self.traced.output)
        for op in self.traced.ops:
            if op.id in inside or op.id in self.alias or op.id in self.dead:
                continue
            for i in op.inputs:
                i = self.resolve(i)
                if i in inside and i not in outs:
                    outs.append(i)
        if out_id in inside and out_id not in outs:
            outs.append(out_id)
        return reads, outs

    def mark_inline(self, scope: Scope) -> None:
        for item in scope.items:
            if isinstance(item, Scope):
                reads, outs = self.boundary(item)
                ops = self.ops_in(item)
                weighted_elsewhere = any(
                    op.module is not None
                    and not op.module.startswith(item.path + ".")
                    and op.module != item.path
                    for op in ops
                )
                item.inline = (
                    len(reads) != 1
                    or len(outs) != 1
                    or weighted_elsewhere
                    or any(op.kind == "split" for op in ops if self.split_crosses(op, item))
                )
                self.mark_inline(item)

    def split_crosses(self, op: TOp, scope: Scope) -> bool:
        siblings = [o for o in self.traced.ops if o.group == op.group and o.kind == "split"]
        inside = {o.id for o in self.ops_in(scope)}
        return any(o.id not in inside for o in siblings)

    # ------------------------------------------------------------ bodies
    def label(self, op: TOp, base: str) -> str | None:
        if op.module is None:
            return None
        if base and not op.module.startswith(base + "."):
            raise ImportFailure(
                E.TORCH_NOT_WRITABLE,
                f"the layer `{op.module}` runs inside `{base}`, which does not hold it",
                hint="a spec's layers sit under the module that runs them",
            )
        return op.module[len(base) + 1 :] if base else op.module

    def items_flat(self, scope: Scope) -> list:
        """Items of a definition body: inline scopes are opened up."""
        out = []
        for item in scope.items:
            if isinstance(item, Scope) and item.inline:
                out += self.items_flat(item)
            else:
                out.append(item)
        return out

    def body(self, scope: Scope, input_id: int) -> tuple[Body, str]:
        """The body of ``scope`` as a definition (or the network), and its definition name."""
        base = scope.path
        items = self.items_flat(scope)
        body = Body(cls=self.traced.classes.get(base, ""))
        lines = body.lines
        names: dict[int, str] = {input_id: "input"}
        out_of: dict[int, int] = {}  # item index → output id
        ids_inside = {}
        for k, item in enumerate(items):
            if isinstance(item, Scope):
                reads, outs = self.boundary(item)
                out_of[k] = outs[0]
                ids_inside[k] = (reads, outs[0])
            else:
                out_of[k] = item.id
        # who reads what, to name only the values read later than right away
        readers: dict[int, list[int]] = {}
        for k, item in enumerate(items):
            ins = ids_inside[k][0] if isinstance(item, Scope) else [self.resolve(i) for i in item.inputs]
            for i in ins:
                readers.setdefault(i, []).append(k)
        final = self.resolve(self.traced.output) if scope.path == "" else self.boundary(scope)[1][0]
        current = input_id
        counter = 0
        split_labels: dict[str, str] = {}
        taken = {self.label(i, base) for i in items if isinstance(i, TOp) and i.module is not None}
        taken |= {self.child_label(i, base) for i in items if isinstance(i, Scope)}

        def ref(i: int) -> str:
            if i == current:
                return "current"
            if i in names:
                return names[i]
            op = self.ops[i]
            if op.kind == "split":
                return f"{split_labels[op.group]}[{op.part}]"
            raise ImportFailure(
                E.TORCH_NOT_WRITABLE, f"the tensor of `{op.module or op.kind}` is read before it is made"
            )

        def move(i: int) -> None:
            nonlocal current
            if i != current:
                lines.append([f"current = {ref(i)}"])
                current = i

        loop = self.repeated(items, base, input_id, ids_inside)
        for k, item in enumerate(items):
            if loop and k >= 1:
                if k == 1:
                    child_body, child_def = loop
                    lines.append(["for i in range(1, ", ("depth", len(items)), ") {"])
                    lines.append(["    {i}: ", ChildCall(child_body, child_def)])
                    lines.append(["}"])
                else:
                    self.define(item, ids_inside[k - 1][1])
                current = ids_inside[k][1]
                continue
            if isinstance(item, Scope):
                reads, out = ids_inside[k]
                move(reads[0])
                child_body, child_def = self.define(item, reads[0])
                lines.append([f"{self.child_label(item, base)}: ", ChildCall(child_body, child_def)])
                current = out
            else:
                op = item
                if op.id in self.alias:
                    continue
                ins = [self.resolve(i) for i in op.inputs]
                prim = PRIMITIVES[op.kind]
                label = self.label(op, base)
                if op.kind == "split":
                    if op.group not in split_labels:
                        move(ins[0])
                        name = "parts"
                        n = 2
                        while name in taken:
                            name, n = f"parts{n}", n + 1
                        taken.add(name)
                        split_labels[op.group] = name
                        sizes = list(op.attrs["sizes"])
                        if len(set(sizes)) == 1:  # equal parts: split(n)
                            lines.append([f"{name}: split(", ("chunks", len(sizes)), ")"])
                        else:
                            lines.append([f"{name}: split(", ("sizes", sizes), ")"])
                        current = -2  # a split leaves no running value
                    continue
                if op.batchless:
                    # a learned tensor, or computed from learned tensors alone: it leaves the
                    # running value as it was, so it is named and read by its name
                    if label is None:
                        n = len(names) + 1
                        while f"t{n}" in taken:
                            n += 1
                        label = f"t{n}"
                        taken.add(label)
                    if prim.arity is None:
                        lines.append([f"{label}: ", *self.call(op, self.operand_exprs(op, ins, ref))])
                    elif prim.arity == 0:
                        lines.append([f"{label}: ", *self.call(op)])
                    else:
                        lines.append([f"{label}: ", *self.call(op), f" from {ref(ins[0])}"])
                    names[op.id] = label
                elif prim.arity is None:
                    if prim.operands is not None:  # `conv_with(w, b, …)`: the running value and its tensors
                        move(ins[0])
                        exprs = [ref(i) for i in ins[1:]]
                    else:
                        exprs = self.operand_exprs(op, ins, ref)
                    lines.append([*((f"{label}: ",) if label else ()), *self.call(op, exprs)])
                    current = op.id
                else:
                    move(ins[0])
                    flat = ins[0] != INPUT_ID and self.ops[ins[0]].kind == "flatten"
                    if op.kind == "linear" and not flat:
                        lines.append(["flatten()"])
                    if op.apply > 0 and label is not None:
                        lines.append([label])
                    else:
                        lines.append([*((f"{label}: ",) if label else ()), *self.call(op)])
                    current = op.id
            produced = out_of[k]
            # the next item that reads the running value (tensors without a batch axis, made
            # in between, leave it as it was)
            following = next(
                (
                    j
                    for j in range(k + 1, len(items))
                    if not (isinstance(items[j], TOp) and items[j].batchless)
                ),
                k + 1,
            )
            later = [r for r in readers.get(produced, []) if r != following]
            if (
                later or len(readers.get(produced, [])) > 1 or (produced == final and k != len(items) - 1)
            ) and produced not in names:
                counter += 1
                names[produced] = f"x{counter}"
                lines.append([f"x{counter} = current"])
        if current != final:
            move(final)
        body.kind = (
            "block"
            if any(
                isinstance(i, TOp)
                and i.kind == "add"
                and input_id in [self.resolve(j) for j in i.inputs] + self.shortcut_inputs(items, i, input_id)
                for i in items
            )
            else "module"
        )
        return body, ""

    def repeated(self, items: list, base: str, input_id: int, ids_inside: dict):
        """For a container of children ``0…n-1`` run one after another whose children from
        ``1`` on are the same call: that call (its body and definition), written as a loop."""
        if len(items) < 2 or not all(
            isinstance(it, Scope) and not it.inline and self.child_label(it, base) == str(k)
            for k, it in enumerate(items)
        ):
            return None
        previous = input_id
        for k in range(len(items)):
            reads, out = ids_inside[k]
            if reads != [previous]:
                return None
            previous = out
        # the calls from 1 on must be equal: same structure and the same numbers
        bodies = [self.body(items[k], ids_inside[k][0][0])[0] for k in range(1, len(items))]
        if any(b.signature() != bodies[0].signature() or self.raw(b) != self.raw(bodies[0]) for b in bodies):
            return None
        return self.define(items[1], ids_inside[1][0][0])

    def raw(self, body: Body) -> list:
        out = []
        for line in body.lines:
            for p in line:
                if isinstance(p, ChildCall):
                    out.append((p.name, self.raw(p.body)))
                elif not isinstance(p, str):
                    out.append(p[1])
        return out

    def shortcut_inputs(self, items: list, add: TOp, input_id: int) -> list[int]:
        # an add that joins a sub-module reading the block's input: a residual block too
        out = []
        for item in items:
            if isinstance(item, Scope):
                reads, outs = self.boundary(item)
                if reads == [input_id] and outs[0] in [self.resolve(j) for j in add.inputs]:
                    out.append(input_id)
        return out

    def child_label(self, scope: Scope, base: str) -> str:
        return scope.path[len(base) + 1 :] if base else scope.path

    @staticmethod
    def operand_exprs(op: TOp, ins: list[int], ref) -> list:
        exprs: list = [ref(i) for i in ins]
        if op.attrs.get("constant_at") is not None:  # a number among the operands: `x * 0.5`, a slot
            exprs.insert(op.attrs["constant_at"], ("constant", float(op.attrs["constant"])))
        return exprs

    def call(self, op: TOp, operands: list | tuple = ()) -> list:
        """``kind(…)``: the ``operands`` (tensors' names), then required values as slots,
        optional ones as slots left out when, in the definition, they are their default (so
        a stride-1 and a stride-2 use share it)."""
        prim = PRIMITIVES[op.kind]
        a = dict(op.attrs)
        parts: list = [f"{op.kind}("]
        for k, operand in enumerate(operands):
            parts += [", "] if k else []
            parts.append(operand)
        first = not operands
        for p in prim.params:
            if p.name not in a or p.name in ("zero_init", "momentum", "constant", "constant_at"):
                continue
            v = a[p.name]
            if (
                p.name == "padding"
                and op.kind in ("conv", "std_conv")
                and v == (a["kernel_size"] - 1) // 2 * a.get("dilation", 1)
            ):
                continue
            if p.name == "stride" and op.kind in ("maxpool", "avgpool") and v == a["kernel_size"]:
                continue
            sep = "" if first else ", "
            if p.default is REQUIRED and p.name == "shape" and isinstance(v, (list, tuple)):
                # each size a slot of its own, so that sizes that vary become parameters
                # related to each other (`param([channels, channels // 4, 3, 3])`)
                parts += [sep, "["]
                for k, size in enumerate(v):
                    parts += [", "] if k else []
                    parts.append(("size", size))
                parts.append("]")
                first = False
            elif p.default is REQUIRED:
                parts += [sep, (p.name, v)]
                first = False
            else:
                parts.append((p.name, v, f"{sep}{p.name} = ", p.default))
                first = first and v == p.default
        parts.append(")")
        return parts

    # ------------------------------------------------------------ definitions
    def define(self, scope: Scope, input_id: int) -> tuple[Body, str]:
        body, _ = self.body(scope, input_id)
        sig = body.signature()
        if sig not in self.definitions:
            self.definitions[sig] = (self.def_name(body, scope), [])
            self.def_order.append(sig)
        self.definitions[sig][1].append(body)
        body.sig = sig  # type: ignore[attr-defined]
        return body, self.definitions[sig][0]

    def def_name(self, body: Body, scope: Scope) -> str:
        cls = body.cls or scope.path.rpartition(".")[2] or "part"
        if cls in ("Sequential", "ModuleList", "ModuleDict", ""):  # a container: named after its place
            cls = re.sub(r"\d+$", "", scope.path.rpartition(".")[2]) or "blocks"
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", cls).lower()
        snake = re.sub(r"\W", "_", snake).strip("_") or "part"
        if snake[0].isdigit():
            snake = "m_" + snake
        name, n = snake, 2
        while name in self.used_names:
            name, n = f"{snake}_{n}", n + 1
        self.used_names.add(name)
        return name

    params: dict[str, list[str]]

    def instance_values(self, def_name: str, body: Body) -> list[object]:
        slots = body.slots(self)
        return [slots[j][1] for j in self.param_slots[def_name]]

    def solve(self) -> None:
        """Parameters of each definition: the slots that vary between its instances, each a
        multiple of an earlier one where it is one."""
        self.params, self.param_slots, self.exprs = {}, {}, {}
        for sig in self.def_order:
            name, bodies = self.definitions[sig]
            first = bodies[0].slots(self)
            columns = list(zip(*[[s[1] for s in b.slots(self)] for b in bodies])) if first else []
            hints = [s[0] for s in first]
            params: list[str] = []
            param_slots: list[int] = []
            exprs: list[str] = []
            for j, col in enumerate(columns):
                if all(v == col[0] for v in col):
                    exprs.append(_fmt(col[0]))
                    continue
                expr = None
                for pj, pname in zip(param_slots, params):
                    expr = pname if columns[pj] == col else _ratio(columns[pj], col, pname)
                    if expr is not None:
                        break
                if expr is None:
                    pname = _param_name(hints[j], params)
                    params.append(pname)
                    param_slots.append(j)
                    expr = pname
                exprs.append(expr)
            self.params[name], self.param_slots[name], self.exprs[name] = params, param_slots, exprs

    def text(self, body: Body, exprs: list[str] | None, indent: str = "    ") -> list[str]:
        """The body's lines; ``exprs`` gives each slot's expression (None: its value)."""
        slots = body.slots(self)
        values = exprs if exprs is not None else [_fmt(v) for _, v in slots]
        out = []
        j = 0
        for line in body.lines:
            pieces = []
            for p in line:
                if isinstance(p, str):
                    pieces.append(p)
                elif isinstance(p, ChildCall):
                    n = len(self.params[p.name])
                    args = [f"{pn} = {v}" for pn, v in zip(self.params[p.name], values[j : j + n])]
                    pieces.append(f"{p.name}({', '.join(args)})")
                    j += n
                elif len(p) == 4:  # optional: left out at its default
                    if values[j] != _fmt(p[3]):
                        pieces.append(p[2] + values[j])
                    j += 1
                else:
                    pieces.append(values[j])
                    j += 1
            out.append(indent + "".join(pieces))
        return out


def _ratio(base: tuple, col: tuple, pname: str) -> str | None:
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in base + col):
        return None
    if any(b == 0 for b in base):
        return pname if base == col else None
    r = {Fraction(c, b) for b, c in zip(base, col)}
    if len(r) != 1:
        return None
    f = r.pop()
    if f == 1:
        return pname
    if f.denominator == 1:
        return f"{pname} * {f.numerator}"
    if f.numerator == 1:
        return f"{pname} // {f.denominator}"
    return f"{pname} * {f.numerator} // {f.denominator}"


_HINTS = {"out_channels": "channels", "out_features": "features", "kernel_size": "kernel", "sizes": "sizes"}


def _param_name(hint: str, taken: list[str]) -> str:
    base = _HINTS.get(hint, hint)
    if base in ("in_channels", "in_height", "in_width", "input", "current", "index") or base in RESERVED:
        base = f"{base}_"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}{n}", n + 1
    return name


def write(traced: Traced, name: str) -> str:
    """The spec text (definitions and the network) of ``traced``, without a header."""
    w = Writer(traced, name)
    w.used_names.add(name)
    root = w.tree()
    w.mark_inline(root)
    net_body, _ = w.body(root, INPUT_ID)
    w.solve()
    lines: list[str] = []
    for sig in w.def_order:
        dname, bodies = w.definitions[sig]
        params = w.params[dname]
        head = f"{bodies[0].kind} {dname}({', '.join(params)}) {{"
        lines.append(head)
        lines += w.text(bodies[0], w.exprs[dname])
        lines.append("}")
        lines.append("")
    c, h, wd = (traced.input_shape + (1, 1))[:3]
    lines.append(f"network {name} {{")
    lines.append(f"    input [{c}, {h}, {wd}]")
    lines += w.text(net_body, None)
    lines.append("}")
    return "\n".join(lines) + "\n"
