"""Layer statements: a primitive becomes one :class:`~resdsl.ir.Op` whose shape,
parameters and MACs are inferred on the spot; `split` becomes one op per part; a layer
applied again (``relu`` after ``relu: relu()``) shares the first one's weights."""

from __future__ import annotations

from .. import limits
from ..diagnostics import Span, did_you_mean
from ..ir import INPUT, Op
from ..primitives import PRIMITIVES, PluginError, Primitive, ShapeError
from ..syntax import Layer, Reuse
from .exprs import unparse
from .frames import Frame, Skip
from .values import STAGE, DefValue, PrimValue, Tensor, Value, join_path, to_attr, type_name


class Layers:
    """The part of :class:`~resdsl.elaborate.Elaborator` that runs layer statements and
    makes ops."""

    def layer(self, st: Layer, frame: Frame) -> None:
        """``name: callee(args) from src``: a primitive, a definition instance or a stage."""
        self.stmt_span = st.span
        name = None
        try:
            name = self.label(st.label, frame) if st.label else None
            env = self.env_of(frame)
            callee = self.eval(st.call.func, env)
            if type(callee) is Tensor or type(callee) is tuple:  # `relu: relu()` … `relu()`
                callee = self.eval_callee(st.call.func, env)
            if isinstance(callee, PrimValue):
                self.primitive(st, callee, name, frame, env)
            elif isinstance(callee, DefValue):
                self.definition(st, callee, name, frame, env)
            elif callee is STAGE:
                self.stage(st, name, frame, env)
            elif callee is None:  # `attn = none` is not a layer: building nothing is a choice to write
                what = unparse(st.call.func)
                if what == "none":
                    raise self.fail("E023", "`none` is not a layer", st.call.func.span)
                raise self.fail("E023", f"`{what}` is none, not a layer", st.call.func.span,
                                hint=f"leave the layer out with a test: `if {what} != none {{ ... }}`")
            else:
                raise self.fail("E023", f"{type_name(callee)} is not a layer", st.call.func.span,
                                hint="a layer statement calls a primitive, a definition or `stage`")
        except Skip:
            # Later statements read a stand-in, so what follows from this failure is quiet.
            failed = self.stand_in(frame, frame.current)
            if name is not None:
                self.bind_label(frame, name, failed)
                frame.failed.add(name)
            if st.source is None:
                frame.current = failed
                frame.split = None
            raise

    def primitive(self, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
        """A primitive layer: one op, named by its label (or its kind) inside the instance."""
        prim = callee.prim
        if prim.parts:
            return self.split(st, callee, name, frame, env)
        if prim.arity is None:  # add(x): the running value + x; add(a, b, …): the named tensors
            inputs = self.tensor_args(st, prim, frame)
            attrs: dict[str, Value] = {}
        else:
            inputs = [self.source(st.source, frame)]
            attrs = self.bind(callee, self.eval_args(st.call.args, env), st.call.span)
        if name is None and prim.has_params:
            raise self.fail("E052", f"a `{prim.kind}` layer has weights, so it needs a name",
                            st.span, hint=f"write `name: {prim.kind}(...)`; the name becomes its "
                                          "state_dict key")
        op = self.add_op(prim, attrs, inputs, join_path(frame.path, name or prim.kind),
                         join_path(frame.path, name) if name and prim.module else None, st.span,
                         count_params=True)
        if name is not None:
            if "." in name:
                self.bind_label(frame, name, op.name)
            else:
                frame.tensors[name] = op.name
            frame.layers[name] = op
        frame.items.append(op.name)
        if st.source is None:  # a `from` branch leaves the running value where it was
            frame.current = op.name
            frame.split = None

    def split(self, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
        """``parts: split(4)`` or ``split([a, b])``: one ``split`` op per part (``parts.0``…),
        each with the attributes ``sizes`` and ``index``. The label names the tuple of parts,
        and there is no running value until a layer says which part it reads."""
        if name is None:
            raise self.fail("E052", "a `split` gives several tensors, so it needs a name", st.span,
                            hint="write `parts: split(...)`, then use `parts[0]`, `parts[1]`…")
        bound = self.bind(callee, self.eval_args(st.call.args, env), st.call.span, complete=False)
        if "index" in bound:
            raise self.fail("E020", "`index` of a split is not an argument: every part is built",
                            st.call.span, hint=f"use `{name}[i]` for one part")
        if "sizes" not in bound:
            raise self.fail("E021", "`split` needs the number of parts or their sizes", st.call.span,
                            hint="`split(4)` (equal parts) or `split([32, 32, 64])`")
        where = next((a.span for a in st.call.args), st.call.span)
        src = self.source(st.source, frame)
        shape = self.shapes.get(src)
        if shape is None:
            raise Skip() if src in self.tainted else self.no_input(st.span)
        sizes = bound["sizes"]
        if isinstance(sizes, tuple):
            sizes = tuple(self.as_int(x, "a split size", where) for x in sizes)
            if not sizes or min(sizes) < 1:
                raise self.fail("E015", f"split sizes must be positive, got {list(sizes)}", where)
        else:
            n = self.as_int(sizes, "the number of parts of a split", where)
            if n < 1:
                raise self.fail("E015", f"a split needs at least one part, got {n}", where)
            if shape[0] % n:
                if src in self.tainted:
                    raise Skip()
                raise self.fail("E014", f"{shape[0]} channels do not split into {n} equal parts",
                                where, hint="choose a number of parts that divides the channels, "
                                            "or give the sizes: `split([a, b, …])`")
            sizes = (shape[0] // n,) * n
        if len(sizes) > limits.MAX_REPEAT:
            raise self.fail("E017", f"a split is limited to {limits.MAX_REPEAT:,} parts", where)
        parts = []
        for i in range(len(sizes)):
            op = self.add_op(callee.prim, {"sizes": sizes, "index": i}, [src],
                             join_path(frame.path, f"{name}.{i}"), None, st.span, count_params=True)
            frame.items.append(op.name)
            parts.append(Tensor(op.name, f"{name}[{i}]"))
        self.bind_label(frame, name, tuple(parts))
        if st.source is None:
            frame.split = (name, st.span, len(sizes))

    def add_op(self, prim: Primitive, attrs: dict, inputs: list[str], name: str,
               module: str | None, span: Span, *, count_params: bool) -> Op:
        """Infer the op's shape, parameters and MACs and add it under a unique name."""
        tainted = self.tainted and any(i in self.tainted for i in inputs)
        known = self.shapes
        shapes = []
        for i in inputs:
            shape = known.get(i)
            if shape is None:
                if tainted:
                    raise Skip()
                raise self.no_input(span)
            shapes.append(shape)
        try:
            attrs = prim.complete(attrs)
            shape, params, macs = prim.infer(attrs, shapes)
        except ShapeError as e:
            if tainted:  # a consequence of an error already reported
                raise Skip() from None
            self.error(e.code, e.message, span, label=e.label, hint=self.adjust_hint(e))
            raise Skip() from None
        except PluginError as e:  # the plugin's code, not the spec: named, at the layer that ran it
            raise self.fail("E058", f"the primitive `{e.kind}` from {e.origin} failed in its {e.what}: "
                            f"{e.detail}", span, hint="this is a bug in that plugin: report it to its "
                            "authors, or uninstall it") from None
        if len(self.ops) >= limits.MAX_OPS:
            raise self.fail("E017", f"the network has more than {limits.MAX_OPS:,} layers", span,
                            hint="check the depths and repeat counts")
        unique = name
        if unique in self.op_by_name or unique == INPUT:
            # repeats of a name (`relu`, `relu#2`…): start after the last one given, so that
            # thousands of unnamed layers are named in linear time
            k = self.next_suffix.get(name, 1)
            while unique in self.op_by_name or unique == INPUT:
                k += 1
                unique = f"{name}#{k}"
            self.next_suffix[name] = k
        items = []
        for p in prim.params:
            v = attrs[p.name]
            t = type(v)
            items.append((p.name, v if t is int or t is str or t is float or t is bool or v is None
                          else to_attr(v)))
        op = Op(unique, prim.kind, tuple(items),
                tuple(inputs), shape, params if count_params else 0, macs, module, span)
        self.ops.append(op)
        self.op_by_name[unique] = op
        self.shapes[unique] = shape
        if tainted:
            self.tainted.add(unique)
        return op

    def adjust_hint(self, e: ShapeError) -> str:
        """The add rule suggests a `shortcut =` argument; only a definition that has such a
        parameter can take one."""
        if "shortcut =" not in e.hint or not self.frames or "shortcut" in self.frames[-1].params:
            return e.hint
        if e.code == "E012":
            return ("give the skip path a projection to the new width (a 1×1 `conv` and a "
                    "`batchnorm` `from input`, as std.resnet's `option_b`), or keep the width")
        return ("the skip path must downsample too: give it a projection with the block's stride "
                "(a 1×1 `conv` and a `batchnorm` `from input`, as std.resnet's `option_b`)")

    def reuse(self, st: Reuse, frame: Frame) -> None:
        self.stmt_span = st.span
        try:
            self.reapply(st, frame)
        except Skip:
            if st.source is None:
                frame.current = self.stand_in(frame, frame.current)
                frame.split = None
            raise

    def reapply(self, st: Reuse, frame: Frame) -> None:
        first = frame.layers.get(st.name)
        if first is None and st.name in frame.failed:
            raise Skip()  # the layer's own statement failed and was reported
        if first is None and st.name in frame.labels:
            raise self.fail("E023", f"`{st.name}` is not a primitive layer, so it cannot be applied "
                            "again", st.span, hint="instantiate the definition again under a new name")
        if first is None:
            hint = did_you_mean(st.name, frame.layers)
            if not hint and st.name in PRIMITIVES:
                hint = f"to add a layer, call it: `{st.name}()` or `name: {st.name}()`"
            raise self.fail("E010", f"unknown layer `{st.name}`", st.span,
                            hint=hint or "only a layer defined earlier in this definition can be applied again")
        inputs = [self.source(st.source, frame)]
        prim = PRIMITIVES[first.kind]
        was, now = self.shapes[first.inputs[0]], self.shapes.get(inputs[0])
        if prim.has_params and now is not None and (len(now), now[0]) != (len(was), was[0]):
            if inputs[0] in self.tainted:
                raise Skip()
            raise self.fail("E055", f"`{st.name}` is applied to {now[0]} channels here but was made for "
                            f"{was[0]}", st.span, label=f"first applied at line {first.span.line}",
                            hint=f"a layer applied again shares its weights, so it needs the same input "
                                 f"width; for a new layer write `name: {first.kind}(...)`")
        op = self.add_op(prim, dict(first.attrs), inputs, first.name, first.module, st.span,
                         count_params=False)  # shared weights count once
        frame.items.append(op.name)
        if st.source is None:
            frame.current = op.name
            frame.split = None
