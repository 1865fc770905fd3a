"""Definition instances: a definition used as a layer becomes a
:class:`~resdsl.ir.Scope` whose body runs with its arguments bound; `stage` repeats a
block."""

from __future__ import annotations

from typing import Any

from .. import limits, roles
from ..diagnostics import Span
from ..errors import E
from ..ir import Role, Scope
from ..syntax import Arg, Layer
from .exprs import uses
from .frames import Abort, Frame, Skip
from .values import DefValue, attrs_of, join_path, type_name


class Instances:
    """The part of :class:`~resdsl.elaborate.Elaborator` that instantiates definitions
    and stages."""

    def definition(self, st: Layer, callee: DefValue, name: str | None, frame: Frame, env) -> None:
        """A named instance becomes a module (``downsample``); an unnamed one is inlined:
        its layers join the caller's namespace (a stem's ``conv1`` stays ``conv1``)."""
        if callee.kind == "network":
            raise self.fail(E.WRONG_TYPE, f"the network `{callee.name}` cannot be used as a layer",
                            st.call.func.span, hint="define the part you need as a `module`")
        src = self.source(st.source, frame)
        scope = self.instantiate(callee, self.eval_args(st.call.args, env), name, src, frame,
                                 st.call.span, st.span)
        self.attach(scope, name, frame, branch=st.source is not None)

    def attach(self, scope: Scope, name: str | None, frame: Frame, branch: bool = False) -> None:
        """Record a child instance; a `from` branch leaves the running value where it was."""
        if scope.items:  # an empty instance (an identity shortcut) leaves no module behind
            frame.items.append(scope)
        if name is not None:
            self.bind_label(frame, name, scope.output)
        if not branch:
            frame.current = scope.output
            frame.split = None

    def instantiate(self, callee: DefValue, args, name: str | None, src: str, parent: Frame,
                    call_span: Span, span: Span) -> Scope:
        """Run a definition's body on ``src`` as the instance ``name`` (inlined when None)."""
        if len(self.sites) >= limits.MAX_NESTING:
            raise self.fail(E.DEFINITIONS_TOO_DEEP, f"definitions nest more than {limits.MAX_NESTING} deep", span,
                            hint=f"does `{callee.name}` instantiate itself?")
        self.charge(10, span)  # an instance costs about ten steps' time, even with an empty body
        bound = self.bind(callee, args, call_span)
        path = parent.path if name is None else join_path(parent.path, name)
        frame = Frame(path, callee.kind, callee.env, {}, src, src)
        if name is None:  # inlined: layer names must not clash with the caller's
            frame.labels = parent.labels
        frame.tensors["input"] = src
        self.sites.append((callee.name, path, span))
        try:
            self.run_body(callee.definition, frame, bound)
        except Abort:
            raise Skip() from None  # the instance fails; its caller goes on
        finally:
            self.sites.pop()
        return Scope(name or callee.name, path, roles.role_of(callee.kind), callee.name,
                     attrs_of(bound), tuple(frame.items), src,
                     frame.current, span, inline=name is None)

    def stage(self, st: Layer, name: str | None, frame: Frame, env) -> None:
        """``stage(block, depth, stride = 1, **kw)``: ``depth`` blocks; the first takes the stride.

        The other keyword arguments go to every block and are evaluated once per block
        with ``index`` (the block's position in the stage) in scope.
        """
        if name is None:
            raise self.fail(E.NEEDS_A_NAME, "a stage builds modules, so it needs a name", st.span,
                            hint="write `layer1: stage(...)`")
        positional = [a for a in st.call.args if a.name is None]
        keywords: dict[str, Arg] = {}
        for a in st.call.args:
            if a.name is not None:
                if a.name in keywords:
                    raise self.fail(E.ARGUMENT_TWICE, f"argument `{a.name}` given twice", a.span)
                keywords[a.name] = a
        if len(positional) > 2:
            raise self.fail(E.TOO_MANY_ARGUMENTS, "`stage` takes 2 positional arguments (block, depth)",
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
                raise self.fail(E.MISSING_ARGUMENT, f"`stage` needs the argument `{key}`", st.call.span,
                                hint="`stage(block, depth, stride = 1, ...)`")
        block = self.eval(fixed["block"].value, env)
        if not isinstance(block, DefValue) or block.kind == "network":
            raise self.fail(E.WRONG_TYPE, f"`stage` repeats a block definition, got {type_name(block)}",
                            fixed["block"].span)
        depth = self.as_int(self.eval(fixed["depth"].value, env), "the depth of a stage",
                            fixed["depth"].span)
        if not 1 <= depth <= limits.MAX_REPEAT:
            code = E.OUT_OF_RANGE if depth < 1 else E.TOO_LARGE
            raise self.fail(code, f"a stage needs 1 to {limits.MAX_REPEAT:,} blocks, got {depth}",
                            fixed["depth"].span)
        stride = self.as_int(self.eval(fixed["stride"].value, env), "`stride`",
                             fixed["stride"].span) if "stride" in fixed else 1
        has_stride = "stride" in block.param_names
        if stride != 1 and not has_stride:
            raise self.fail(E.UNKNOWN_PARAMETER, f"`{block.name}` has no parameter `stride`", fixed["stride"].span,
                            hint="add a `stride` parameter to the block")
        if ("index" in env or "index" in frame.tensors) and any(uses(a.value, "index") for a in keywords.values()):
            used = next(a for a in keywords.values() if uses(a.value, "index"))
            raise self.fail(E.DEFINED_TWICE, "`index` in a stage's arguments is the block's position, which "
                            "hides your `index`", used.span,
                            hint="rename your variable: in a stage's keyword arguments `index` is "
                                 "0, 1, … along the stage")
        src = self.source(st.source, frame)
        sub = Frame(join_path(frame.path, name), "stage", frame.module, {}, src, src)
        for i in range(depth):
            block_env = env.new_child({"index": i})
            args = [(k, self.eval(a.value, block_env), a.span) for k, a in keywords.items()]
            if has_stride:
                args.append(("stride", stride if i == 0 else 1, fixed.get("stride", st.call).span))
            scope = self.instantiate(block, tuple(args), str(i), sub.current, sub, st.call.span,
                                     st.span)
            self.attach(scope, str(i), sub)
        scope = Scope(name, sub.path, Role.STAGE, "stage",
                      (("block", block.name), ("depth", depth), ("stride", stride)),
                      tuple(sub.items), src, sub.current, st.span)
        self.attach(scope, name, frame, branch=st.source is not None)
