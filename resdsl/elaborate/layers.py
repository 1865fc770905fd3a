"""Primitive layers: a primitive becomes one :class:`~resdsl.ir.Op` whose shape,
parameters and MACs are inferred on the spot; `split` becomes one op per part; a layer
applied again (``relu`` after ``relu: relu()``) shares the first one's weights."""

from __future__ import annotations

from .. import limits
from ..diagnostics import Span, did_you_mean
from ..errors import E
from ..ir import INPUT, Op
from ..ops.shapes import dims
from ..primitives import PRIMITIVES, PluginError, Primitive, ShapeError
from ..syntax import Layer, Reuse
from .axes import name_axes
from .evaluation import as_int, bind, eval_args
from .frames import Frame, Skip
from .labels import bind_label, source, stand_in, tensor_args
from .state import Build
from .values import PrimValue, Tensor, join_path, to_attr


def primitive(b: Build, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
    """A primitive layer: one op, named by its label (or its kind) inside the instance."""
    prim = callee.prim
    if prim.parts:
        return split(b, st, callee, name, frame, env)
    if prim.arity is None:  # add(x): the running value + x; add(a, b, …): the named tensors
        inputs, attrs = tensor_args(b, st, prim, frame)
        if prim.operands is not None:
            keywords = tuple(a for a in st.call.args if a.name is not None)
            attrs = {**attrs, **bind(b, callee, eval_args(b, keywords, env), st.call.span)}
            operands(b, st, prim, inputs)
    elif prim.arity == 0:  # a learned tensor: it reads nothing
        if st.source is not None:
            raise b.fail(E.WRONG_TYPE, f"`{prim.kind}` reads no tensor, so it takes no `from`", st.source.span,
                         hint=f"it is a learned tensor: use it by its name, e.g. `multiply({name or 'v'})`")
        inputs = []
        attrs = bind(b, callee, eval_args(b, st.call.args, env), st.call.span)
    else:
        inputs = [source(b, st.source, frame)]
        attrs = bind(b, callee, eval_args(b, st.call.args, env), st.call.span)
    if prim.axes_param is not None:  # `reshape([heads, -1])`: the sizes' expressions name the axes
        name_axes(attrs, prim.axes_param, st.call.args, callee.param_names)
    if name is None and prim.has_params:
        raise b.fail(E.NEEDS_A_NAME, f"a `{prim.kind}` layer has weights, so it needs a name",
                     st.span, hint=f"write `name: {prim.kind}(...)`; the name becomes its "
                                   "state_dict key")
    op = add_op(b, prim, attrs, inputs, join_path(frame.path, name or prim.kind),
                join_path(frame.path, name) if name and prim.module else None, st.span,
                count_params=True)
    if name is not None:
        if "." in name:
            bind_label(b, frame, name, op.name)
        else:
            frame.tensors[name] = op.name
        frame.layers[name] = op
    frame.items.append(op.name)
    # a `from` branch leaves the running value where it was, and so do a learned tensor and
    # what is computed from learned tensors alone (no batch axis): named and used by name
    if st.source is None and op.batched:
        frame.current = op.name
        frame.split = None


def operands(b: Build, st: Layer, prim: Primitive, inputs: list[str]) -> None:
    """The tensors a call like ``conv_with(w, b)`` names beside its input: as many as the
    primitive takes, each a learned tensor (no batch axis), not one computed from the input."""
    least, most = prim.operands  # type: ignore[misc]
    given = len(inputs) - 1
    if not least <= given <= most:
        wants = f"{least}" if least == most else f"{least} to {most}"
        raise b.fail(E.TOO_MANY_ARGUMENTS if given > most else E.MISSING_ARGUMENT,
                     f"`{prim.kind}` takes {wants} tensor{'s' * (most != 1)} besides its input, got {given}",
                     st.call.span, hint=f"e.g. `{prim.kind}(weight, bias, stride = 1)`; its input is the "
                                        "running value or the `from` tensor")
    for name, arg in zip(inputs[1:], [a for a in st.call.args if a.name is None]):
        op = b.op_by_name.get(name)
        if op is not None and op.batched:
            raise b.fail(E.WRONG_TENSOR_KIND, f"`{prim.kind}` needs learned tensors as its arguments, but "
                         f"`{op.name.rsplit('.', 1)[-1]}` is computed from the input (it has a batch axis)",
                         arg.span, hint="give it a `param` or a tensor computed from `param`s alone")


def split(b: Build, st: Layer, callee: PrimValue, name: str | None, frame: Frame, env) -> None:
    """``parts: split(4)`` or ``split([a, b])``: one ``split`` op per part (``parts.0``…),
    each with the attributes ``sizes`` and ``index``. The label names the tuple of parts,
    and there is no running value until a layer says which part it reads."""
    if name is None:
        raise b.fail(E.NEEDS_A_NAME, "a `split` gives several tensors, so it needs a name", st.span,
                     hint="write `parts: split(...)`, then use `parts[0]`, `parts[1]`…")
    bound = bind(b, callee, eval_args(b, st.call.args, env), st.call.span, complete=False)
    if "index" in bound:
        raise b.fail(E.UNKNOWN_PARAMETER, "`index` of a split is not an argument: every part is built",
                     st.call.span, hint=f"use `{name}[i]` for one part")
    if "sizes" not in bound:
        raise b.fail(E.MISSING_ARGUMENT, "`split` needs the number of parts or their sizes", st.call.span,
                     hint="`split(4)` (equal parts) or `split([32, 32, 64])`")
    where = next((a.span for a in st.call.args), st.call.span)
    src = source(b, st.source, frame)
    shape = b.shapes.get(src)
    if shape is None:
        raise Skip() if src in b.tainted else b.no_input(st.span)
    sizes = bound["sizes"]
    if isinstance(sizes, tuple):
        sizes = tuple(as_int(b, x, "a split size", where) for x in sizes)
        if not sizes or min(sizes) < 1:
            raise b.fail(E.OUT_OF_RANGE, f"split sizes must be positive, got {list(sizes)}", where)
    else:
        n = as_int(b, sizes, "the number of parts of a split", where)
        if n < 1:
            raise b.fail(E.OUT_OF_RANGE, f"a split needs at least one part, got {n}", where)
        if shape[0] % n:
            if src in b.tainted:
                raise Skip()
            raise b.fail(E.GROUPS_NOT_DIVIDING, f"{shape[0]} channels do not split into {n} equal parts",
                         where, hint="choose a number of parts that divides the channels, "
                                     "or give the sizes: `split([a, b, …])`")
        sizes = (shape[0] // n,) * n
    if len(sizes) > limits.MAX_REPEAT:
        raise b.fail(E.TOO_LARGE, f"a split is limited to {limits.MAX_REPEAT:,} parts", where)
    parts = []
    for i in range(len(sizes)):
        op = add_op(b, callee.prim, {"sizes": sizes, "index": i}, [src],
                    join_path(frame.path, f"{name}.{i}"), None, st.span, count_params=True)
        frame.items.append(op.name)
        parts.append(Tensor(op.name, f"{name}[{i}]"))
    bind_label(b, frame, name, tuple(parts))
    if st.source is None:
        frame.split = (name, st.span, len(sizes))


def add_op(b: Build, prim: Primitive, attrs: dict, inputs: list[str], name: str,
           module: str | None, span: Span, *, count_params: bool) -> Op:
    """Infer the op's shape, parameters and MACs and add it under a unique name."""
    tainted = b.tainted and any(i in b.tainted for i in inputs)
    known = b.shapes
    shapes = []
    for i in inputs:
        shape = known.get(i)
        if shape is None:
            if tainted:
                raise Skip()
            raise b.no_input(span)
        shapes.append(shape)
    try:
        attrs = prim.complete(attrs)
        shape, params, macs = prim.infer(attrs, shapes)
    except ShapeError as e:
        if tainted:  # a consequence of an error already reported
            raise Skip() from None
        b.error(e.code, e.message, span, label=e.label, hint=adjust_hint(b, e))
        raise Skip() from None
    except PluginError as e:  # the plugin's code, not the spec: named, at the layer that ran it
        raise b.fail(E.PLUGIN_FAILED, f"the primitive `{e.kind}` from {e.origin} failed in its {e.what}: "
                     f"{e.detail}", span, hint="this is a bug in that plugin: report it to its "
                     "authors, or uninstall it") from None
    if len(b.ops) >= limits.MAX_OPS:
        raise b.fail(E.TOO_LARGE, f"the network has more than {limits.MAX_OPS:,} layers", span,
                     hint="check the depths and repeat counts")
    unique = name
    if unique in b.op_by_name or unique == INPUT:
        # repeats of a name (`relu`, `relu#2`…): start after the last one given, so that
        # thousands of unnamed layers are named in linear time
        k = b.next_suffix.get(name, 1)
        while unique in b.op_by_name or unique == INPUT:
            k += 1
            unique = f"{name}#{k}"
        b.next_suffix[name] = k
    items = []
    for p in prim.params:
        v = attrs[p.name]
        t = type(v)
        items.append((p.name, v if t is int or t is str or t is float or t is bool or v is None
                      else to_attr(v)))
    by_name = b.op_by_name
    # a failed statement's stand-in (tainted, no op) counts as batched, as the input it replaces
    batched = not prim.traits.batchless and (not inputs or any(i not in by_name or by_name[i].batched
                                                               for i in inputs))
    if batched and prim.arity is None:
        # per-sample shapes broadcast from their last axes; a tensor with a batch axis and
        # fewer axes than the result would have its batch axis lined up with another
        for i, s in zip(inputs, shapes):
            if len(s) < len(shape) and (i not in by_name or by_name[i].batched):
                if tainted:
                    raise Skip()
                raise b.fail(E.SIZE_MISMATCH, f"`{prim.kind}` broadcasts a {dims(s)} tensor to {dims(shape)}, but "
                             "it has a batch axis", span, label="its batch axis would line up with another axis",
                             hint=f"give it every axis: reshape it to {dims((1,) * (len(shape) - len(s)) + s)}")
    op = Op(unique, prim.kind, tuple(items),
            tuple(inputs), shape, params if count_params else 0, macs, module, span, batched)
    b.ops.append(op)
    b.op_by_name[unique] = op
    b.shapes[unique] = shape
    if tainted:
        b.tainted.add(unique)
    return op


def adjust_hint(b: Build, e: ShapeError) -> str:
    """The add rule suggests a `shortcut =` argument; only a definition that has such a
    parameter can take one."""
    if "shortcut =" not in e.hint or not b.frames or "shortcut" in b.frames[-1].params:
        return e.hint
    if e.code == E.CHANNEL_MISMATCH:
        return ("give the skip path a projection to the new width (a 1×1 `conv` and a "
                "`batchnorm` `from input`, as std.resnet's `option_b`), or keep the width")
    return ("the skip path must downsample too: give it a projection with the block's stride "
            "(a 1×1 `conv` and a `batchnorm` `from input`, as std.resnet's `option_b`)")


def reuse(b: Build, st: Reuse, frame: Frame) -> None:
    b.stmt_span = st.span
    try:
        reapply(b, st, frame)
    except Skip:
        if st.source is None:
            frame.current = stand_in(b, frame, frame.current)
            frame.split = None
        raise


def reapply(b: Build, st: Reuse, frame: Frame) -> None:
    first = frame.layers.get(st.name)
    if first is None and st.name in frame.failed:
        raise Skip()  # the layer's own statement failed and was reported
    if first is None and st.name in frame.labels:
        raise b.fail(E.WRONG_TYPE, f"`{st.name}` is not a primitive layer, so it cannot be applied "
                     "again", st.span, hint="instantiate the definition again under a new name")
    if first is None:
        hint = did_you_mean(st.name, frame.layers)
        if not hint and st.name in PRIMITIVES:
            hint = f"to add a layer, call it: `{st.name}()` or `name: {st.name}()`"
        raise b.fail(E.UNKNOWN_NAME, f"unknown layer `{st.name}`", st.span,
                     hint=hint or "only a layer defined earlier in this definition can be applied again")
    prim = PRIMITIVES[first.kind]
    if prim.arity == 0:
        raise b.fail(E.WRONG_TYPE, f"`{st.name}` is a learned tensor, so it is not applied again", st.span,
                     hint=f"use it by its name: `multiply({st.name})`, `conv_with({st.name})`")
    inputs = [source(b, st.source, frame)]
    if prim.operands is not None:  # `conv_with(w)` again: the same weights on the new input
        inputs += first.inputs[1:]
    was, now = b.shapes[first.inputs[0]], b.shapes.get(inputs[0])
    if prim.has_params and now is not None and (len(now), now[0]) != (len(was), was[0]):
        if inputs[0] in b.tainted:
            raise Skip()
        raise b.fail(E.REAPPLIED_TO_OTHER_WIDTH, f"`{st.name}` is applied to {now[0]} channels here but was made for "
                     f"{was[0]}", st.span, label=f"first applied at line {first.span.line}",
                     hint=f"a layer applied again shares its weights, so it needs the same input "
                          f"width; for a new layer write `name: {first.kind}(...)`")
    op = add_op(b, prim, dict(first.attrs), inputs, first.name, first.module, st.span,
                count_params=False)  # shared weights count once
    frame.items.append(op.name)
    if st.source is None:
        frame.current = op.name
        frame.split = None
