"""Rendering: each class's ``__init__`` and ``forward`` lines, the network's class split
as timm's model interface needs it, and the containers dotted module names live in."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace

from ...ir import Network, Op, Role, Scope, Shape
from ...primitives import PRIMITIVES
from ...roles import head_of, made_by, stage_blocks, stem_tail
from ..source_format import Call, Expr, Sequential, layout
from ..torch_lowering import NODEFAULT, SourceCall, SourceHelper
from .classes import Cls, Form, Item, Literal, Lowering, Use
from .interface import INTERFACE_NAMES, TopView
from .layers import _call, _inplace_statement, _is_tensor, _reads_width, _typed
from .names import Namespace, _quoted, attr_ref, is_identifier


@dataclass
class ClassView:
    """What the template needs for one class."""

    name: str
    doc: str
    params: list[str]
    init: list[str]
    forward: list[str]
    returns: str

    @property
    def signature(self) -> str:
        """``__init__(self, …)``, laid out as ruff format does after ``    def``."""
        return layout(Call("__init__", ("self", *self.params)), "    ", "def ", " -> None:")


def _contained(items: list[Item], source: str) -> bool:
    """Every item reads only ``source`` or what an earlier item of ``items`` computes."""
    seen = {source}
    for item in items:
        if any(i not in seen for i in item.inputs):
            return False
        seen.add(item.output)
    return True


class Containers:
    """The containers a class body needs for dotted module names: ``paths.0`` and
    ``paths.1`` live in ``self.paths``, an ``nn.ModuleList`` (children 0…n-1) or else a
    plain ``nn.Module``, created where its first child is, so modules are built in the
    order the in-process module builds them."""

    def __init__(self, locals_: list[str], tensors: frozenset[str] = frozenset()):
        children: dict[str, list[str]] = {}
        for local in locals_:
            parts = local.split(".")
            for i in range(1, len(parts)):
                names = children.setdefault(".".join(parts[:i]), [])
                if parts[i] not in names:
                    names.append(parts[i])
        # appended in order, so `self.paths[i]` is `paths.i`
        self.lists = {p for p, names in children.items() if names == [str(i) for i in range(len(names))]}
        # learned tensors (`gains.0`, `gains.1`) live in an nn.ParameterList
        self.tensor_lists = {p for p in self.lists if all(f"{p}.{n}" in tensors for n in children[p])}
        self.tensors = tensors
        self.made: set[str] = set()

    def ref(self, owner: str, local: str) -> str:
        """The expression for the module at ``local``: ``self.paths[0].conv``."""
        out, parts = owner, local.split(".")
        for i, part in enumerate(parts):
            out = f"{out}[{part}]" if i and ".".join(parts[:i]) in self.lists else attr_ref(out, part)
        return out

    def assign(self, owner: str, local: str, expr: Expr, indent: str) -> list[str]:
        """Statements that create the containers above ``local`` (once) and put ``expr`` there,
        laid out for ``indent``."""
        lines: list[str] = []
        parts = local.split(".")
        for i in range(1, len(parts)):
            path = ".".join(parts[:i])
            if path not in self.made:
                self.made.add(path)
                kind = "nn.ParameterList()" if path in self.tensor_lists else \
                    "nn.ModuleList()" if path in self.lists else "nn.Module()"
                lines.append(self._set(owner, path, kind, indent))
        return [*lines, self._set(owner, local, expr, indent)]

    def _set(self, owner: str, path: str, expr: Expr, indent: str) -> str:
        parent, _, leaf = path.rpartition(".")
        if parent in self.lists:
            return layout(Call(f"{self.ref(owner, parent)}.append", (expr,)), indent)
        target = self.ref(owner, parent) if parent else owner
        if is_identifier(leaf):
            lead = f"{target}.{leaf} = "
            return lead + layout(expr, indent, lead)
        register = "register_parameter" if path in self.tensors else "add_module"
        return layout(Call(f"{target}.{register}", (_quoted(leaf), expr)), indent)


class Renderer:
    def __init__(self, net: Network, low: Lowering):
        self.net = net
        self.low = low
        self.uses: set[SourceHelper] = set()

    def position(self, form: Form, ref) -> str:
        if isinstance(form, Literal):
            return repr(form.value)
        return ref(form.name) if form.op is None else f"{ref(form.name)} {form.op} {form.k}"

    def call_args(self, call: SourceCall, forms: Iterator[Form], ref) -> list[str]:
        self.uses.update(call.helpers)
        parts = []
        for arg, form in zip(call.args, forms):
            if arg.keyword is not None and arg.default is not NODEFAULT and isinstance(form, Literal) and \
                    _typed(form.value) == _typed(arg.default):
                continue
            text = self.position(form, ref)
            parts.append(text if arg.keyword is None else f"{arg.keyword}={text}")
        return parts

    def constructor(self, scope: Scope, item: Item, forms: Iterator[Form], ref) -> Expr:
        """The expression that builds ``item``'s module, consuming its positions from ``forms``."""
        if item.use is Use.SUB:
            child = item.scope
            if self.low.is_sequential(child):
                return Sequential.of([self.constructor(child, sub, forms, ref) for sub in self.low.body(child)])
            cls = self.low.class_of[child.path]
            return Call(cls.name, tuple(f"{p.name}={self.position(next(forms), ref)}" for p in cls.params))
        call = _call(item.op, functional=False)
        if call.render is not None:  # not a plain call: a learned tensor's `nn.Parameter(torch.empty(…))`
            return call.render([], self.call_args(call, forms, ref))
        if call.skip_init:  # built once: reset_parameters initialises it (the `skip_init` helper)
            return Call("skip_init", (call.name, *self.call_args(call, forms, ref)))
        return Call(call.name, tuple(self.call_args(call, forms, ref)))

    def render_class(self, scope: Scope, name: str, forms: list[Form], params: list[str],
                     doc: str, features: tuple[str, ...] = ()) -> ClassView:
        items, calls, init, _ = self.prepare(scope, forms)
        if features:
            items, calls = self.inline(items, calls, features)
        forward = self.forward(scope, items, calls, features)
        return ClassView(name, doc, params, init, forward[0], forward[1])

    def prepare(self, scope: Scope, forms: list[Form]) -> tuple[list[Item], dict[int, list[str]], list[str], Namespace]:
        """A class body's items, the argument texts of its function calls (by item index),
        its ``__init__`` lines and the attribute names it takes."""
        items = self.low.body(scope)
        attrs = Namespace(("training",))
        for item in items:
            top = item.local.split(".")[0] if item.local is not None else None
            if top is not None and is_identifier(top) and top not in attrs:
                attrs.claim(top)
        self.containers = Containers([i.local for i in items if i.use.builds],
                                     frozenset(i.local for i in items if i.use.builds and i.op is not None
                                               and _is_tensor(i.op)))
        stored: dict[str, str] = {}

        def init_ref(p: str) -> str:
            return p

        def forward_ref(p: str) -> str:
            if p not in stored:
                stored[p] = attrs.fresh(p)
            return f"self.{stored[p]}"

        # positions are consumed in body order: constructors in __init__, function
        # arguments in forward
        it = iter(forms)
        init: list[str] = []
        calls: dict[int, list[str]] = {}
        for n, item in enumerate(items):
            if item.use.builds:
                expr = self.constructor(scope, item, it, init_ref)
                init += self.containers.assign("self", item.local, expr, "        ")
            elif item.use is Use.FUNC:
                calls[n] = self.call_args(_call(item.op, functional=True), it, forward_ref)
        init = [f"self.{attr} = {p}" for p, attr in stored.items()] + init
        return items, calls, init, attrs

    def segment(self, scope: Scope, items: list[Item], calls: dict[int, list[str]], start: int, end: int,
                source: str, target: str, features: tuple[str, ...] = ()) -> tuple[list[str], str]:
        """Lines computing ``target`` from ``source`` (as ``x``) with ``items[start:end]``, and
        the variable that holds it; ``self.vars`` also gives the features'."""
        part = items[start:end]
        part_calls = {n - start: c for n, c in calls.items() if start <= n < end}
        if features:
            part, part_calls = self.inline(part, part_calls, features)
        lines, _ = self.forward(replace(scope, input=source, output=target), part, part_calls, features)
        return lines, self.vars[target]

    def render_top(self, scope: Scope, name: str, forms: list[Form]) -> TopView:
        """The network's class (see :class:`TopView`)."""
        net = self.net
        items, calls, init, attrs = self.prepare(scope, forms)
        taken = [n for n in INTERFACE_NAMES if n in attrs]
        if taken:
            raise ValueError(f"the top-level layer `{taken[0]}` takes the name of a method or attribute of "
                             "timm's model interface, which the network's class has")
        at = {item.output: n for n, item in enumerate(items)}
        head = head_of(net)
        if head is not None and not (head.pool in at and head.classifier in at
                                     and items[at[head.classifier]].use is Use.LAYER):
            head = None  # a head inside a module of its own: forward runs it whole
        end = at[head.pool] if head is not None else len(items)
        target = net.op(head.pool).inputs[0] if head is not None else scope.output
        if head is not None and not (_contained(items[:end], scope.input)
                                     and _contained(items[end:at[head.classifier]], target)
                                     and _contained(items[at[head.classifier]:], head.pre_logits)):
            head = None  # something after the pooling reads an earlier value: no head to split off
            end, target = len(items), scope.output
        stages = self.stage_ranges(scope, items, end)
        view = TopView(name, init, [])
        if stages:
            first, last = stages[0][0], stages[-1][1] - 1
            source, features = items[first].inputs[0], items[last].output
            lines, out = self.segment(scope, items, calls, 0, first, scope.input, source)
            view.stem = lines + _rename(out)
            lines, out = self.segment(scope, items, calls, 0, first, scope.input, source, (net.stem_feature,))
            # the feature is taken before `x` is set to the stem's output, which may overwrite it
            view.intermediates, view.stem_feature, view.stem_out = lines, self.vars[net.stem_feature], _rename(out)
            for stage, (a, b) in zip(self.top_stages(scope), stages):
                if stage.inline:  # no module: its modules' calls, and their paths joined by `|`
                    lines, out = self.segment(scope, items, calls, a, b, items[a].inputs[0], items[b - 1].output)
                    view.stages.append(lines + _rename(out))
                    view.stage_paths.append("|".join(i.local for i in items[a:b]))
                else:
                    view.stages.append([f"x = {self.containers.ref('self', items[a].local)}(x)"])
                    view.stage_paths.append(items[a].local)
                view.stage_blocks.append(self.blocks_of(stage))
                view.stage_inline.append(stage.inline)
            view.stem_modules = list(dict.fromkeys(i.local for i in items[:first] if i.local))
            view.stem_tail = stem_tail(net)
            # timm counts a stem feature map that an instance of its own makes after the stem's
            # first module (DLA's level0 after base_layer) as a level: a layer-decay group;
            # not one that shares a container with the rest (byobnet's stem.conv2)
            level = made_by(net, net.stem_feature, outermost=True, default="")
            if level in view.stem_modules[1:] and not any(
                    m.split(".")[0] == level.split(".")[0] for m in view.stem_modules if m != level):
                view.stem_modules.remove(level)
                view.stem_level = level
            lines, out = self.segment(scope, items, calls, last + 1, end, features, target)
            view.post = lines + _rename(out)
            view.post_modules = [i.local for i in items[last + 1:end] if i.use.builds]
            # a final norm: weights, but no multiply-accumulates (a norm written in `.res` too:
            # EvoNorm); not NF-ResNet's final activation, nor a final conv
            post = [n for i in items[last + 1:end]
                    for n in ([i.op] if i.op is not None else [net.op(o) for o in i.scope.op_names()])]
            view.post_norm = any(n.params for n in post) and not any(n.macs for n in post)
        else:
            lines, out = self.segment(scope, items, calls, 0, end, scope.input, target)
            view.stem = lines + _rename(out)
        if head is not None:
            cls_at = at[head.classifier]
            lines, out = self.segment(scope, items, calls, end, cls_at, target, head.pre_logits)
            view.pool = lines + _rename(out)
            view.pre_logits = "x" if len(net.shape_of(head.pre_logits)) == 1 else "x.flatten(1)"
            lines, out = self.segment(scope, items, calls, cls_at, len(items), head.pre_logits, scope.output)
            view.logits = lines + _rename(out)
            op = net.op(head.classifier)
            view.classifier = op.module
            view.new_classifier = _new_classifier(op, [net.shape_of(i) for i in op.inputs])
        return view

    def top_stages(self, scope: Scope) -> list[Scope]:
        """The stage instances at the network's top level, in order."""
        return [i for i in scope.items if isinstance(i, Scope) and i.role is Role.STAGE]

    def stage_ranges(self, scope: Scope, items: list[Item], end: int) -> list[tuple[int, int]]:
        """Each top-level stage's items ``items[a:b]`` before ``end`` (the head): a named stage
        is one submodule, an unnamed one its modules; none unless the network is a stem, a
        chain of stages, each reading the one before, and what follows them."""
        ranges = []
        for stage in self.top_stages(scope):
            if stage.inline:
                ops = set(stage.op_names())
                at = [n for n, i in enumerate(items) if i.output in ops]
            else:
                at = [n for n, i in enumerate(items) if i.use is Use.SUB and i.scope is stage]
            if not at or at != list(range(at[0], at[-1] + 1)) or at[-1] >= end:
                return []
            ranges.append((at[0], at[-1] + 1))
        if not ranges or self.net.stem_feature is None or not _contained(items[:ranges[0][0]], scope.input):
            return []
        # one after another, each reading only the one before
        if any(b != a or items[a].inputs[0] != items[b - 1].output for (_, b), (a, _) in zip(ranges, ranges[1:])):
            return []
        if not all(_contained(items[a:b], items[a].inputs[0]) for a, b in ranges):
            return []
        last = ranges[-1][1]
        return ranges if _contained(items[last:end], items[last - 1].output) else []

    def blocks_of(self, stage: Scope) -> list[list[str]] | None:
        """The stage's blocks (:func:`resdsl.roles.stage_blocks`), or None where they are its
        children, as ``group_matcher`` finds them in an ``nn.Sequential``."""
        groups = stage_blocks(self.net, stage)
        if stage.inline:  # no module, nor a body of its own (its path is the network's)
            return groups
        if self.low.is_sequential(stage) and groups == [[f"{stage.path}.{n}"] for n in range(len(groups))] \
                and len(groups) == len(self.low.body(stage)):
            return None
        return groups

    def inline(self, items: list[Item], calls: dict[int, list[str]],
               features: tuple[str, ...]) -> tuple[list[Item], dict[int, list[str]]]:
        """``items`` with each submodule that computes a feature inside it (not as its
        output) written out as calls of its layers, so ``forward`` can return that value
        (as timm's feature extractors flatten the stem: ``stem.conv``'s output)."""
        out: list[Item] = []
        out_calls: dict[int, list[str]] = {}
        for n, item in enumerate(items):
            inner = item.use is Use.SUB and any(f in set(item.scope.op_names()) - {item.output} for f in features)
            if not inner:
                if n in calls:
                    out_calls[len(out)] = calls[n]
                out.append(item)
                continue
            body = [Item(Use.FUNC if sub.use is Use.FUNC else Use.CALL if sub.use is not Use.SUB else Use.SUB,
                         sub.output, sub.inputs, op=sub.op, scope=sub.scope,
                         local=None if sub.local is None else f"{item.local}.{sub.local}",
                         shortcut=sub.shortcut, group=sub.group)
                    for sub in self.low.body(item.scope)]
            # the layers' arguments as the instance has them: constants here
            sub_calls = {}
            for m, sub in enumerate(body):
                if sub.use is Use.FUNC:
                    shapes = [self.net.shape_of(i) for i in sub.op.inputs]
                    call = _call(sub.op, functional=True)
                    sub_calls[m] = self.call_args(call, iter([Literal(a.value(sub.op, shapes)) for a in call.args]),
                                                  repr)
                elif sub.use is Use.SUB:  # a module of its own: called, not rebuilt
                    body[m] = Item(Use.CALL, sub.output, sub.inputs, scope=sub.scope, local=sub.local,
                                   shortcut=sub.shortcut)
            body, sub_calls = self.inline(body, sub_calls, features)
            for m, sub in enumerate(body):
                if m in sub_calls:
                    out_calls[len(out)] = sub_calls[m]
                out.append(sub)
        return out, out_calls

    def forward(self, scope: Scope, items: list[Item], calls: dict[int, list[str]],
                features: tuple[str, ...] = ()) -> tuple[list[str], str]:
        alias: dict[str, str] = {}

        def resolve(v: str) -> str:
            while v in alias:
                v = alias[v]
            return v

        for item in items:
            if item.use is Use.FUNC and PRIMITIVES[item.op.kind].traits.identity:
                alias[item.output] = item.inputs[0]
        # a function whose value nothing reads is left out (a module call stays: it may
        # update state, as a BN in training does)
        needed = {resolve(scope.output), *map(resolve, features)}
        dead: set[int] = set()
        for n in range(len(items) - 1, -1, -1):
            item = items[n]
            if item.use is Use.FUNC and resolve(item.output) not in needed:
                dead.add(n)
            else:
                needed.update(resolve(v) for v in item.inputs)
        last_use: dict[str, int] = {}
        for n, item in enumerate(items):
            if n in dead:
                continue
            for v in item.inputs:
                last_use[resolve(v)] = n
        for value in (scope.output, *features):  # returned: kept to the end
            last_use[resolve(value)] = len(items)
        var = {scope.input: "x"}
        live = {"x": scope.input}
        held: set[str] = set()  # references to tensor attributes (`self.weight`): never overwritten
        lines = []
        for n, item in enumerate(items):
            if item.output in alias or n in dead:
                continue
            if item.op is not None and item.use is not Use.FUNC and _is_tensor(item.op):
                # a learned tensor is read where it is used: `F.conv2d(x, self.weight)`
                var[item.output] = self.containers.ref("self", item.local)
                held.add(var[item.output])
                continue
            ins = [var[resolve(v)] for v in item.inputs]
            for name, value in list(live.items()):
                if last_use.get(value, -1) <= n:
                    del live[name]
            first = resolve(item.inputs[0]) if item.inputs else None
            if resolve(item.output) not in needed:  # run for its effect only: no name to leave unused
                lines.append(self.expression(item, ins, calls.get(n, [])))
                continue
            if first is not None and item.use is Use.FUNC and _inplace_statement(item.op):  # overwrites its first input
                target = var[first]
                live[target] = item.output
                var[item.output] = target
                lines += _call(item.op, functional=True).render_inplace(ins)
                continue
            if item.shortcut:
                target = _fresh_var("shortcut", live, self.low.names)
            elif item.op is not None and not item.op.batched:  # computed from learned tensors: its own name
                target = _fresh_var(item.op.name.rsplit(".", 1)[-1].split("#")[0], live, self.low.names)
            elif first is not None and var[first] not in live and var[first] not in held:
                target = var[first]
            elif "out" not in live:
                target = "out"
            else:
                target = _fresh_var(item.local or item.op.kind, live, self.low.names)
            live[target] = item.output
            var[item.output] = target
            lines.append(f"{target} = {self.expression(item, ins, calls.get(n, []))}")
        #: the variables holding the output and the features at the end (for segments)
        self.vars = {v: var[resolve(v)] for v in (scope.output, *features)}
        if features:
            return lines, "[" + ", ".join(var[resolve(f)] for f in features) + "]"
        return lines, var[resolve(scope.output)]

    def expression(self, item: Item, ins: list[str], args: list[str]) -> str:
        if item.use is not Use.FUNC:
            return f"{self.containers.ref('self', item.local)}({', '.join(ins)})"
        call = _call(item.op, functional=True)
        if call.render is not None:
            return call.render(ins, args)
        extra = ["self.training"] if call.training else []
        return f"{call.name}({', '.join([ins[0], *args, *extra])})"


def _rename(var: str) -> list[str]:
    """The line that leaves a segment's result in ``x``, if it is elsewhere."""
    return [] if var == "x" else [f"x = {var}"]


def _new_classifier(op: Op, shapes: list[Shape]) -> Call:
    """The constructor of ``op``'s module for ``num_classes`` outputs reading
    ``self.head_hidden_size`` features, with torch's default initialisation (timm's
    ``reset_classifier``): the output width is the argument equal to the op's output
    channels, the input width the one the registry says reads them."""
    call = _call(op, functional=False)
    parts, placed = [], False
    for arg in call.args:
        value = arg.value(op, shapes)
        if _reads_width(arg):
            text = "self.head_hidden_size"
        elif not placed and type(value) is int and value == op.shape[0]:
            text, placed = "num_classes", True
        elif arg.keyword is not None and arg.default is not NODEFAULT and _typed(value) == _typed(arg.default):
            continue
        else:
            text = repr(value)
        parts.append(text if arg.keyword is None else f"{arg.keyword}={text}")
    return Call(call.name, tuple(parts))


def _annotation(values: tuple) -> str:
    types = sorted({type(v).__name__ for v in values})
    return types[0] if len(types) == 1 else " | ".join(types)


def _fresh_var(base: str, live: dict[str, str], module: Namespace) -> str:
    # a local named `F`, `torch` or after a block class would hide it from later lines
    ns = Namespace((*live, "self", *module.used()))
    return ns.fresh(base)


def _instances_doc(cls: Cls) -> str:
    paths = [s.path for s in cls.instances]
    shown = ", ".join(paths[:3]) + (f" … ({len(paths)} in all)" if len(paths) > 3 else "")
    return shown
