"""Bodies and instances: running a definition's statements (assignments, `if`, `for`,
`require`, `input`, layers) in its frame; a layer statement makes a primitive's op, a
definition's instance or a stage. A definition used as a layer becomes a
:class:`~resdsl.ir.Scope` whose body runs with its arguments bound (bodies and instances
contain each other, so they are one module); `stage` repeats a block."""

from __future__ import annotations

from typing import Any

from .. import limits, roles
from ..diagnostics import Span
from ..errors import E
from ..ir import INPUT, Role, Scope
from ..syntax import (
    Arg,
    Assign,
    BinOp,
    Bool,
    Definition,
    Expr,
    For,
    If,
    InputDecl,
    Layer,
    NoneLit,
    Num,
    Require,
    Reuse,
    Str,
    UnaryOp,
)
from .evaluation import as_int, bind, eval_args, eval_callee, eval_expr, truth
from .exprs import unparse, uses
from .frames import Abort, Frame, Skip, TooMany, env_of
from .labels import bind_label, label, source, stand_in, tensor
from .layers import primitive, reuse
from .state import Build
from .values import STAGE, DefValue, PrimValue, Tensor, Value, attrs_of, join_path, show, type_name

#: The names every definition body gets from its input (so no parameter may take them).
IMPLICIT_NAMES = {"in_channels": "channel count", "in_height": "height", "in_width": "width"}


def run_body(b: Build, defn: Definition, frame: Frame, args: dict[str, Value]) -> None:
    """Run a definition's body in ``frame``, its arguments and input sizes bound."""
    if frame.kind != "network" and frame.input not in b.shapes:
        if frame.input in b.tainted:
            raise Skip()  # fed by a failed statement: already reported
        raise b.no_input(b.sites[-1][2])  # the body would only cascade
    frame.vars.update(args)
    frame.params = tuple(args)
    shape = b.shapes.get(frame.input)
    # A definition cannot declare parameters with these names (the loader says so), so
    # nothing the spec wrote is overwritten here.
    if shape is not None and len(shape) == 3:
        frame.vars["in_channels"] = shape[0]
        frame.size = (shape[1], shape[2])  # `in_height`, `in_width`: looked up when read (evaluation.unbound)
    b.frames.append(frame)
    try:
        run_stmts(b, defn.body, frame)
    finally:
        b.frames.pop()
    if frame.split is not None:
        label, span, n = frame.split
        raise b.fail(E.WRONG_TYPE, f"the body ends with the split `{label}`: {n} tensors, not one",
                     span, hint=f"end with one tensor, e.g. `concat({label})`")


def run_stmts(b: Build, stmts, frame: Frame) -> None:
    for st in stmts:
        try:
            run_stmt(b, st, frame)
        except Abort:
            raise
        except Skip:
            continue


def run_stmt(b: Build, st, frame: Frame) -> None:
    """Run one statement (each costs a step)."""
    if b.steps >= limits.MAX_STEPS:
        b.step(st.span)
    else:  # inline `step`
        b.steps += 1
    kind = type(st)
    if kind is Layer:
        run_layer(b, st, frame)
    elif kind is Reuse:
        reuse(b, st, frame)
    elif kind is Assign:
        if st.name == "current":  # `current = x`: the next layer reads x
            b.stmt_span = st.span
            frame.current = tensor(b, st.value, frame, "`current`")
            frame.split = None
            return
        frame.vars[st.name] = eval_expr(b, st.value, env_of(frame))
    elif kind is If:
        for test, body in st.branches:
            v = eval_expr(b, test, env_of(frame))
            if v is True or (v is not False and truth(b, v, test.span)):
                run_stmts(b, body, frame)
                return
        run_stmts(b, st.orelse, frame)
    elif kind is For:
        if st.var == "current":
            raise b.fail(E.DEFINED_TWICE, "`current` cannot be a loop variable: it is the running value",
                         st.span, hint="name the loop variable otherwise")
        items = eval_expr(b, st.iterable, env_of(frame))
        if not isinstance(items, tuple):
            raise b.fail(E.WRONG_TYPE, f"`for` needs a list, got {type_name(items)}", st.iterable.span,
                         hint="use `range(n)` or a list literal")
        for item in items:
            b.step(st.span)  # an empty body still costs an iteration
            frame.vars[st.var] = item
            run_stmts(b, st.body, frame)
    elif kind is Require:
        env = env_of(frame)
        v = eval_expr(b, st.test, env)
        if v is not True and not truth(b, v, st.test.span):
            if frame.input in b.tainted:
                raise Abort()  # it may only fail because an earlier statement did
            why = explain(b, st.test, env)
            b.error(E.REQUIREMENT_FAILED, st.message or "requirement not met", st.span,
                    label="this `require` does not hold" + (f": {why}" if why else ""))
            raise Abort()
    elif kind is InputDecl:
        input_decl(b, st, frame)


def explain(b: Build, test: Expr, env) -> str:
    """The values that make a failed ``require`` test false: ``len(depths)` is 3``."""
    try:
        if isinstance(test, BinOp) and test.op in ("and", "or"):
            left = eval_expr(b, test.left, env)
            if test.op == "and" and left is False:
                return explain(b, test.left, env)
            if test.op == "and":
                return explain(b, test.right, env)
            return "; ".join(x for x in (explain(b, test.left, env),
                                         explain(b, test.right, env)) if x)
        if isinstance(test, UnaryOp) and test.op == "not":
            return explain(b, test.operand, env) or \
                f"`{unparse(test.operand)}` is {show(eval_expr(b, test.operand, env))}"
        if isinstance(test, BinOp):
            sides = [x for x in (test.left, test.right) if not isinstance(x, (Num, Str, Bool, NoneLit))]
            return ", ".join(f"`{unparse(x)}` is {show(eval_expr(b, x, env))}" for x in sides)
        if not isinstance(test, (Num, Str, Bool, NoneLit)):
            return f"`{unparse(test)}` is {show(eval_expr(b, test, env))}"
    except (Skip, TooMany, RecursionError):
        pass
    return ""


def input_decl(b: Build, st: InputDecl, frame: Frame) -> None:
    if frame.kind != "network":
        raise b.fail(E.MISPLACED_INPUT, "only a network declares an input", st.span,
                     hint="a definition takes its input from where it is used")
    if frame.input_shape is not None or frame.items:
        raise b.fail(E.MISPLACED_INPUT, "the input must be declared once, before any layer", st.span)
    v = eval_expr(b, st.shape, env_of(frame))
    if not isinstance(v, tuple) or len(v) != 3:
        got = f"a list of {len(v)}" if isinstance(v, tuple) else type_name(v)
        raise b.fail(E.WRONG_TYPE, f"the input must be a list [channels, height, width], got "
                     f"{got}", st.shape.span, hint="e.g. `input [3, 224, 224]`")
    dims = tuple(as_int(b, x, "an input size", st.shape.span) for x in v)
    if min(dims) < 1:
        raise b.fail(E.OUT_OF_RANGE, f"input sizes must be positive, got {list(dims)}", st.shape.span)
    if dims[0] > limits.MAX_INPUT_CHANNELS or max(dims[1:]) > limits.MAX_INPUT_SIZE:
        raise b.fail(E.TOO_LARGE, f"input {'×'.join(map(str, dims))} is too large", st.shape.span,
                     hint=f"at most {limits.MAX_INPUT_CHANNELS} channels and "
                          f"{limits.MAX_INPUT_SIZE} pixels a side")
    frame.input_shape = dims
    b.shapes[INPUT] = dims

def run_layer(b: Build, st: Layer, frame: Frame) -> None:
    """``name: callee(args) from src``: a primitive, a definition instance or a stage."""
    b.stmt_span = st.span
    name = None
    try:
        name = label(b, st.label, frame) if st.label else None
        env = env_of(frame)
        callee = eval_expr(b, st.call.func, env)
        if type(callee) is Tensor or type(callee) is tuple:  # `relu: relu()` … `relu()`
            callee = eval_callee(b, st.call.func, env)
        if isinstance(callee, PrimValue):
            primitive(b, st, callee, name, frame, env)
        elif isinstance(callee, DefValue):
            definition(b, st, callee, name, frame, env)
        elif callee is STAGE:
            stage(b, st, name, frame, env)
        elif callee is None:  # `attn = none` is not a layer: building nothing is a choice to write
            what = unparse(st.call.func)
            if what == "none":
                raise b.fail(E.WRONG_TYPE, "`none` is not a layer", st.call.func.span)
            raise b.fail(E.WRONG_TYPE, f"`{what}` is none, not a layer", st.call.func.span,
                         hint=f"leave the layer out with a test: `if {what} != none {{ ... }}`")
        else:
            raise b.fail(E.WRONG_TYPE, f"{type_name(callee)} is not a layer", st.call.func.span,
                         hint="a layer statement calls a primitive, a definition or `stage`")
    except Skip:
        # Later statements read a stand-in, so what follows from this failure is quiet.
        failed = stand_in(b, frame, frame.current)
        if name is not None:
            bind_label(b, frame, name, failed)
            frame.failed.add(name)
        if st.source is None:
            frame.current = failed
            frame.split = None
        raise


def definition(b: Build, st: Layer, callee: DefValue, name: str | None, frame: Frame, env) -> None:
    """A named instance becomes a module (``downsample``); an unnamed one is inlined:
    its layers join the caller's namespace (a stem's ``conv1`` stays ``conv1``)."""
    if callee.kind == "network":
        raise b.fail(E.WRONG_TYPE, f"the network `{callee.name}` cannot be used as a layer",
                     st.call.func.span, hint="define the part you need as a `module`")
    src = source(b, st.source, frame)
    scope = instantiate(b, callee, eval_args(b, st.call.args, env), name, src, frame,
                        st.call.span, st.span)
    if scope.inline and scope.role is Role.STAGE:
        check_inlined_stage(b, scope, unparse(st.call.func), st.span)
    attach(b, scope, name, frame, branch=st.source is not None)


def check_inlined_stage(b: Build, scope: Scope, written: str, span: Span) -> None:
    """An unnamed stage has no module of its own (timm's DPN: its blocks sit in the
    network's `features`): running it is running its modules one after another, so its
    body may hold only named instances and layers, each reading the one before."""
    previous = scope.input
    for item in scope.items:
        if isinstance(item, str):
            op = b.op_by_name[item]
            ok, what, reads = op.module is not None, f"`{op.name.split('#')[0]}`", op.inputs
        else:
            ok, what, reads = not item.inline, f"the unnamed `{item.definition}`", (item.input,)
        if not ok or reads != (previous,):
            why = "is no module of its own" if not ok else "does not read what runs before it"
            raise b.fail(E.NEEDS_A_NAME, f"the unnamed stage `{written}` runs {what}, which {why}: an "
                         "unnamed stage runs its named blocks and layers one after another", span,
                         hint=f"name the stage (`s1: {written}(...)`) to give it a module of its own")
        previous = item if isinstance(item, str) else item.output
    if previous != scope.output:
        raise b.fail(E.NEEDS_A_NAME, f"the unnamed stage `{written}` does not end with its last block: "
                     "an unnamed stage runs its named blocks and layers one after another", span,
                     hint=f"name the stage (`s1: {written}(...)`) to give it a module of its own")


def attach(b: Build, scope: Scope, name: str | None, frame: Frame, branch: bool = False) -> None:
    """Record a child instance; a `from` branch leaves the running value where it was."""
    if scope.items:  # an empty instance (an identity shortcut) leaves no module behind
        frame.items.append(scope)
    if name is not None:
        bind_label(b, frame, name, scope.output)
    if not branch:
        frame.current = scope.output
        frame.split = None


def instantiate(b: Build, callee: DefValue, args, name: str | None, src: str, parent: Frame,
                call_span: Span, span: Span) -> Scope:
    """Run a definition's body on ``src`` as the instance ``name`` (inlined when None)."""
    if len(b.sites) >= limits.MAX_NESTING:
        raise b.fail(E.DEFINITIONS_TOO_DEEP, f"definitions nest more than {limits.MAX_NESTING} deep", span,
                     hint=f"does `{callee.name}` instantiate itself?")
    b.charge(10, span)  # an instance costs about ten steps' time, even with an empty body
    bound = bind(b, callee, args, call_span)
    path = parent.path if name is None else join_path(parent.path, name)
    is_stage = callee.kind == "stage"
    if is_stage:
        check_not_in_stage(b, f"the stage `{callee.name}`", span)
    frame = Frame(path, callee.kind, callee.env, {}, src, src)
    if name is None:  # inlined: layer names must not clash with the caller's
        frame.labels = parent.labels
    frame.tensors["input"] = src
    b.sites.append((callee.name, path, span))
    if is_stage:
        b.stages.append(path if name is not None else callee.name)
    try:
        run_body(b, callee.definition, frame, bound)
    except Abort:
        raise Skip() from None  # the instance fails; its caller goes on
    finally:
        b.sites.pop()
        if is_stage:
            b.stages.pop()
    return Scope(name or callee.name, path, roles.role_of(callee.kind), callee.name,
                 attrs_of(bound), tuple(frame.items), src,
                 frame.current, span, inline=name is None)


def check_not_in_stage(b: Build, what: str, span: Span) -> None:
    """A stage is one level of the network's hierarchy (its feature maps, its figure's
    column): ``what`` may not be built inside another stage."""
    if b.stages:
        raise b.fail(E.STAGE_IN_STAGE, f"{what} is built inside the stage `{b.stages[-1]}`", span,
                     hint="a stage's body repeats blocks (`b{i}: block(...)` in a `for`); "
                          "call the stages one after another at the network's level")


def stage(b: Build, st: Layer, name: str | None, frame: Frame, env) -> None:
    """``stage(block, depth, stride = 1, **kw)``: ``depth`` blocks; the first takes the stride.

    The other keyword arguments go to every block and are evaluated once per block
    with ``index`` (the block's position in the stage) in scope.
    """
    if name is None:
        raise b.fail(E.NEEDS_A_NAME, "a stage builds modules, so it needs a name", st.span,
                     hint="write `layer1: stage(...)`")
    positional = [a for a in st.call.args if a.name is None]
    keywords: dict[str, Arg] = {}
    for a in st.call.args:
        if a.name is not None:
            if a.name in keywords:
                raise b.fail(E.ARGUMENT_TWICE, f"argument `{a.name}` given twice", a.span)
            keywords[a.name] = a
    if len(positional) > 2:
        raise b.fail(E.TOO_MANY_ARGUMENTS, "`stage` takes 2 positional arguments (block, depth)",
                     positional[2].span, hint="pass the rest by keyword: "
                     "`stage(block, depth, stride = 2, planes = 64)`")
    # `block` and `depth` are the stage's when not given positionally; given positionally,
    # keywords of those names go to the block (a block parameter named `depth` works).
    fixed: dict[str, Any] = dict(zip(("block", "depth"), positional))
    for key in ("block", "depth", "stride"):
        if key in keywords and key not in fixed:
            fixed[key] = keywords.pop(key)
    for key in ("block", "depth"):
        if key not in fixed:
            raise b.fail(E.MISSING_ARGUMENT, f"`stage` needs the argument `{key}`", st.call.span,
                         hint="`stage(block, depth, stride = 1, ...)`")
    block = eval_expr(b, fixed["block"].value, env)
    if not isinstance(block, DefValue) or block.kind == "network":
        raise b.fail(E.WRONG_TYPE, f"`stage` repeats a block definition, got {type_name(block)}",
                     fixed["block"].span)
    if block.kind == "stage":
        written = unparse(fixed["block"].value)
        raise b.fail(E.STAGE_IN_STAGE, f"`stage` repeats a block, and `{written}` is a stage",
                     fixed["block"].span, hint=f"call the stage itself: `{name}: {written}(...)`, or "
                                               "repeat one of its blocks")
    check_not_in_stage(b, "`stage(...)`", st.call.span)
    depth = as_int(b, eval_expr(b, fixed["depth"].value, env), "the depth of a stage",
                   fixed["depth"].span)
    if not 1 <= depth <= limits.MAX_REPEAT:
        code = E.OUT_OF_RANGE if depth < 1 else E.TOO_LARGE
        raise b.fail(code, f"a stage needs 1 to {limits.MAX_REPEAT:,} blocks, got {depth}",
                     fixed["depth"].span)
    stride = as_int(b, eval_expr(b, fixed["stride"].value, env), "`stride`",
                    fixed["stride"].span) if "stride" in fixed else 1
    has_stride = "stride" in block.param_names
    if stride != 1 and not has_stride:
        raise b.fail(E.UNKNOWN_PARAMETER, f"`{block.name}` has no parameter `stride`", fixed["stride"].span,
                     hint="add a `stride` parameter to the block")
    if ("index" in env or "index" in frame.tensors) and any(uses(a.value, "index") for a in keywords.values()):
        used = next(a for a in keywords.values() if uses(a.value, "index"))
        raise b.fail(E.DEFINED_TWICE, "`index` in a stage's arguments is the block's position, which "
                     "hides your `index`", used.span,
                     hint="rename your variable: in a stage's keyword arguments `index` is "
                          "0, 1, … along the stage")
    src = source(b, st.source, frame)
    sub = Frame(join_path(frame.path, name), "stage", frame.module, {}, src, src)
    b.stages.append(sub.path)
    try:
        for i in range(depth):
            block_env = env.new_child({"index": i})
            args = [(k, eval_expr(b, a.value, block_env), a.span) for k, a in keywords.items()]
            if has_stride:
                args.append(("stride", stride if i == 0 else 1, fixed.get("stride", st.call).span))
            scope = instantiate(b, block, tuple(args), str(i), sub.current, sub, st.call.span,
                                st.span)
            attach(b, scope, str(i), sub)
    finally:
        b.stages.pop()
    scope = Scope(name, sub.path, Role.STAGE, "stage",
                  (("block", block.name), ("depth", depth), ("stride", stride)),
                  tuple(sub.items), src, sub.current, st.span)
    attach(b, scope, name, frame, branch=st.source is not None)
