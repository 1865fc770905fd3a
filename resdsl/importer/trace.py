"""Tracing a torch model into a graph of registry primitives.

``torch.fx`` traces the model with a tracer that stops at every module a primitive's
``recognise`` accepts (and at torch's own layers); every other module is traced through,
so the module hierarchy survives in each node's ``nn_module_stack``. Each leaf module,
function and method call is then offered to the recognisers (:mod:`resdsl.importer.recognisers`);
reshapes that only change how a tensor's elements are laid out between recognised ops
(timm's ECA views its pooled channels as a sequence and back) pass their input through.
What no recogniser accepts is an :class:`ImportFailure` naming the module path and class.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from ..errors import E
from ..ir import Shape
from ..primitives import PRIMITIVES
from . import builtin_recognisers  # noqa: F401  (registers the built-ins' recognisers)
from .calls import TENSOR, Call
from .recognisers import RECOGNISERS

#: Methods that only change how a tensor's elements are laid out (no arithmetic): between
#: recognised ops they pass their input through; the outputs are compared afterwards anyway.
LAYOUT_METHODS = frozenset(
    {
        "view",
        "reshape",
        "expand_as",
        "expand",
        "unsqueeze",
        "squeeze",
        "view_as",
        "reshape_as",
        "flatten",
        "unflatten",
    }
)
#: Methods that change nothing of a float32 tensor: its input passes through.
PASS_METHODS = frozenset({"contiguous", "float", "to", "type_as"})
#: ``expand`` passes its input through: the op that reads it broadcasts it again.
EXPAND_METHODS = frozenset({"expand", "expand_as"})
#: The batch the model is traced with: 2, so that a reshape that merges the batch with an
#: axis (``x.reshape(-1, W, k)``) shows in the traced sizes.
BATCH = 2
#: Calls whose results are sizes, not tensors (``x.shape[0]``, ``x.size(1)``).
SIZE_METHODS = frozenset({"size", "dim"})


class ImportFailure(Exception):
    """The model cannot be imported: a stable code, a message naming the module path and
    class, and a hint. ``resdsl import`` prints it as a diagnostic and exits with 1."""

    def __init__(self, code: str, message: str, hint: str = "", notes: tuple[str, ...] = ()):
        super().__init__(message)
        self.code, self.message, self.hint, self.notes = code, message, hint, notes

    def render(self) -> str:
        lines = [f"error[{self.code}]: {self.message}"]
        lines += [f"  = note: {n}" for n in self.notes]
        if self.hint:
            lines.append(f"  = help: {self.hint}")
        return "\n".join(lines)


REGISTER_HINT = (
    "register a primitive that computes it, and a recogniser for it "
    "(resdsl.register_primitive, register_recogniser; docs/importing.md)"
)


@dataclass
class TOp:
    """One primitive op of the traced model."""

    id: int
    kind: str
    attrs: dict
    inputs: list[int]  # ids of the ops it reads; INPUT_ID for the model's input
    module: str | None  # the leaf module's path, or None for a function
    scope: tuple[str, ...]  # the paths of the (non-leaf) modules it runs in, outermost first
    shape: Shape  # per sample, in resdsl's layout
    #: Several ops from one call (a norm with its activation; a split's parts): the call's node
    #: name and the op's place in it.
    group: str | None = None
    part: int = 0
    apply: int = 0  # how many times its module ran before (a ReLU applied again)
    batchless: bool = False  # a learned tensor, or computed from learned tensors alone


INPUT_ID = -1


@dataclass
class Traced:
    """A traced model: its ops in execution order, the output op and the input shape."""

    ops: list[TOp]
    output: int
    input_shape: Shape
    classes: dict[str, str] = field(default_factory=dict)  # module path → class name


def recognise(call: Call) -> list[tuple[str, dict]] | None:
    """The chain of ``(kind, attrs)`` the first accepting recogniser gives, or None."""
    for kind in RECOGNISERS.kinds():
        if kind not in PRIMITIVES:  # a recogniser for a primitive no one registered
            continue
        try:
            found = RECOGNISERS.require(kind)(call)
        except Exception:  # a recogniser that trips over an odd module has not recognised it
            found = None
        if found is None:
            continue
        if isinstance(found, dict):
            return [(kind, dict(found))]
        return [(e[0], dict(e[1]), *e[2:]) for e in found]
    return None


def recognise_module(module: Any) -> list[tuple[str, dict]] | None:
    return recognise(Call(module=module, recognise_module=recognise_module))


def _describe(module: Any) -> str:
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}"


def trace(model: Any, input_size: tuple[int, ...]) -> Traced:
    """Trace ``model`` (in eval mode) on a random input of ``input_size`` (C, H, W)."""
    import torch
    from torch import fx, nn

    # recognised before tracing: while fx traces, reading a module's parameter (`m.bias is
    # not None`) would record a node
    leaves: dict[int, list | None] = {id(m): recognise_module(m) for m in model.modules()}

    def leaf_chain(m: nn.Module) -> list | None:
        return leaves.get(id(m))

    class Tracer(fx.Tracer):
        def __init__(self, **kwargs) -> None:
            super().__init__(**kwargs)
            self.where: list[str] = []

        def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
            if leaf_chain(m) is not None:
                return True
            if isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
                return False
            # torch's own layers are leaves: one the registry lacks is reported by its class
            return type(m).__module__.startswith("torch.nn") and not list(m.children())

        def call_module(self, m, forward, args, kwargs):
            self.where.append(self.path_of_module(m))
            out = super().call_module(m, forward, args, kwargs)
            self.where.pop()
            return out

    tracer = Tracer(autowrap_functions=_generated_helpers(model))
    try:
        graph = tracer.trace(model)
    except Exception as err:
        path = tracer.where[-1] if tracer.where else ""
        module = model.get_submodule(path) if path else model
        raise ImportFailure(
            E.TORCH_UNTRACEABLE,
            f"cannot trace `{path or '(the model)'}` ({_describe(module)}): {type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''}",
            hint="torch.fx cannot follow control flow that depends on tensor values or sizes; "
            "if the module computes one primitive, " + REGISTER_HINT + ", so it is traced "
            "as a leaf",
        ) from None
    gm = fx.GraphModule(model, graph)
    x = torch.randn(BATCH, *input_size)
    try:
        with torch.no_grad():
            try:  # sizes without arithmetic: fake tensors
                from torch._subclasses.fake_tensor import FakeTensorMode

                _size_recorder(gm, FakeTensorMode()).propagate(x)
            except Exception:  # an op fake tensors cannot run: the real forward tells
                _size_recorder(gm).propagate(x)
    except Exception as err:
        raise ImportFailure(
            E.TORCH_UNTRACEABLE,
            f"the traced model does not run on a {'×'.join(map(str, input_size))} input: "
            f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}",
            hint="give the input size the model expects (--input-size C,H,W)",
        ) from None
    return _Builder(gm, model, tuple(input_size), leaf_chain).build()


def _size_recorder(gm, fake_mode=None):
    """torch.fx's ShapeProp that also keeps the numbers a forward computes from sizes
    (``W - 1`` in ``F.pad(x, [0, W - 1])``), for the recognisers. One computed from the
    batch size is the traced batch's: the output comparison refuses a spec that used it."""
    from torch.fx.passes.shape_prop import ShapeProp

    class Sizes(ShapeProp):
        def run_node(self, n):
            result = super().run_node(n)
            numbers = isinstance(result, tuple) and all(type(v) in (int, float) for v in result)
            if type(result) in (int, float) or numbers:  # a torch.Size is a tuple of ints
                n.meta["size_value"] = result
            return result

    return Sizes(gm, fake_mode=fake_mode)


def _generated_helpers(model: Any) -> tuple:
    """The helper functions of resdsl-generated sources the model's classes come from
    (``group_softmax``, ``blur_pool``…): calls of them stay calls, for their primitive's
    recogniser, instead of being traced through (``grouped`` and ``ungrouped``, which only
    lay out a grouped reduction, are read by the builder)."""
    import sys
    import types

    found: dict[int, Any] = {}
    for m in model.modules():
        mod = sys.modules.get(type(m).__module__)
        if mod is None or not mod.__name__.startswith("resdsl._generated"):
            continue
        for value in vars(mod).values():
            if isinstance(value, types.FunctionType) and value.__module__ == mod.__name__:
                found[id(value)] = value
    return tuple(found.values())


def _module_stack(node) -> list[tuple[str, type]]:
    """The (module path, class) pairs a traced node sits in, outermost first. torch ≥ 2.2
    keeps ``{key: (path, class)}`` in ``nn_module_stack``; torch 2.1 kept ``{path: class}``."""
    return [
        value if isinstance(value, tuple) else (key, value)
        for key, value in node.meta.get("nn_module_stack", {}).items()
    ]


class _Builder:
    def __init__(self, gm, model, input_size: Shape, leaf_chain) -> None:
        self.gm, self.model, self.input_size, self.leaf_chain = gm, model, input_size, leaf_chain
        self.ops: list[TOp] = []
        self.value: dict[str, Any] = {}  # node name → op id, or a split's parts, or a non-tensor
        self.applied: dict[str, int] = {}
        self.slices: dict[int, list] = {}  # source op id → the channel slices taken of it
        self.classes: dict[str, str] = {}
        self.offset: dict[str, int] = {}  # node name → leading torch dims that are not axes (Call.offsets)
        self.batchless = False  # the ops being added have no batch axis
        self.state = set(model.state_dict())
        self.reshapes: dict[str, int] = {}
        self.expanded: dict[str, Shape] = {}  # node name of an expand → the shape it expands to
        self.materialise = False
        self.scope_now: tuple[str, ...] = ()
        self.in_offsets: list[int] = []

    # ------------------------------------------------------------ helpers
    def _meta_shape(self, node, ids: list[int]) -> Shape | None:
        """The per-sample shape of ``node``'s tensor (None: not a tensor); sets its offset and
        whether the ops made for it are batchless (every tensor input is)."""
        from torch.fx.passes.shape_prop import TensorMetadata

        meta = node.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata):
            return None
        full = tuple(meta.shape)
        self.batchless = bool(ids) and all(i != INPUT_ID and self.ops[i].batchless for i in ids)
        if self.batchless:
            self.offset[node.name] = 0
            return full
        if not full or full[0] % BATCH:
            raise self._fail_call(node, f"a tensor of sizes {list(full)} whose first axis is not the batch")
        self.offset[node.name] = 1 if full[0] == BATCH else 0
        return full[1:] if full[0] == BATCH else (full[0] // BATCH, *full[1:])

    def _scope(self, node, leaf: bool) -> tuple[str, ...]:
        stack = [path for path, _ in _module_stack(node)]
        for path, cls in _module_stack(node):
            self.classes.setdefault(path, getattr(cls, "__name__", str(cls)))
        if leaf and stack:
            stack = stack[:-1]
        return tuple(p for p in stack if p)

    def _where(self, node) -> str:
        stack = [path for path, _ in _module_stack(node)]
        return stack[-1] if stack else ""

    def _fail_call(self, node, what: str) -> ImportFailure:
        path = self._where(node)
        module = self.model.get_submodule(path) if path else self.model
        owner = f"`{path}` ({_describe(module)})" if path else f"the forward of {_describe(self.model)}"
        return ImportFailure(
            E.TORCH_UNSUPPORTED, f"no primitive computes {what}, called in {owner}", hint=REGISTER_HINT
        )

    def _args(self, node, values) -> tuple[tuple, dict, list[int], list[Shape]]:
        """The call's arguments with tensors as TENSOR, the ids of its tensor inputs, their shapes."""
        from torch import fx

        ids: list[int] = []
        self.in_offsets: list[int] = []

        def conv(v):
            if isinstance(v, fx.Node):
                got = self.value.get(v.name)
                if isinstance(got, int):
                    ids.append(got)
                    self.in_offsets.append(self.offset.get(v.name, 1))
                    return TENSOR
                if isinstance(got, tuple) and got[:1] == ("size",):
                    return got[1]
                if self.materialise and self._is_stack(got) and got[2] is not None:
                    ids.append(self._reshape(got[2], got[3], v.name))
                    self.in_offsets.append(1)
                    return TENSOR
                return got  # a size, or a split's parts (a tuple of ids)
            if isinstance(v, (list, tuple)):
                return type(v)(conv(i) for i in v)
            if isinstance(v, dict):
                return {k: conv(i) for k, i in v.items()}
            if isinstance(v, slice):
                return slice(conv(v.start), conv(v.stop), conv(v.step))
            return v

        args = conv(tuple(node.args))
        kwargs = conv(dict(node.kwargs))
        return args, kwargs, ids, [self.shape(i) for i in ids]

    def shape(self, op_id: int) -> Shape:
        return self.input_size if op_id == INPUT_ID else self.ops[op_id].shape

    def _add(
        self,
        kind: str,
        attrs: dict,
        inputs: list[int],
        module: str | None,
        scope,
        shape,
        group=None,
        part=0,
        apply=0,
    ) -> int:
        op = TOp(len(self.ops), kind, attrs, inputs, module, scope, shape, group, part, apply, self.batchless)
        self.ops.append(op)
        return op.id

    def _unviewed(self, ids: list[int], chain: list) -> list[int]:
        """A module given a reshaped input its op does not take (timm's ECA runs its Conv1d on
        the pooled channels laid out as a sequence) reads the tensor before the reshapes."""
        kind, attrs = chain[0]
        src = ids[0]
        while not _fits(kind, attrs, self.shape(src)):
            if src == INPUT_ID or self.ops[src].kind not in ("reshape", "flatten"):
                return ids
            src = self.ops[src].inputs[0]
        return [src]

    def _graph(self, node, graph, ids, scope, shape) -> int:
        """A call computed by several ops reading each other (``F.batch_norm`` with the batch's
        statistics): entries ``(kind, attrs, inputs)``, an input ``j ≥ 0`` the j-th entry,
        ``-1 - k`` the call's k-th tensor."""
        made: list[int] = []
        for j, (kind, attrs, inputs) in enumerate(graph):
            srcs = [made[i] if i >= 0 else ids[-1 - i] for i in inputs]
            out_shape = shape if j == len(graph) - 1 else _infer(kind, attrs, [self.shape(i) for i in srcs])
            made.append(self._add(kind, dict(attrs), srcs, None, scope, out_shape))
        return made[-1]

    def _chain(self, node, chain, ids, module, scope, shape) -> int:
        if chain and len(chain[0]) == 3:
            return self._graph(node, chain, ids, scope, shape)
        current = ids
        out = INPUT_ID
        apply = 0
        if module is not None:
            apply = self.applied.get(module, 0)
            self.applied[module] = apply + 1
        for i, (kind, attrs) in enumerate(chain):
            # ops after the first of a module's chain are parameter-free: functions in the spec
            prim = PRIMITIVES[kind]
            if i > 0 and prim.has_params:
                raise self._fail_call(node, f"a chain with weights after its first op ({kind})")
            if kind == "split":
                raise self._fail_call(node, "a module that splits its input")
            in_shapes = [self.shape(j) for j in current]
            out_shape = shape if i == len(chain) - 1 else _infer(kind, attrs, in_shapes)
            out = self._add(
                kind,
                attrs,
                list(current),
                module if i == 0 else None,
                scope,
                out_shape,
                group=node.name if len(chain) > 1 else None,
                part=i,
                apply=apply if i == 0 else 0,
            )
            current = [out]
        return out

    # ------------------------------------------------------------ the walk
    def build(self) -> Traced:
        output = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                if self.value:
                    raise ImportFailure(
                        E.TORCH_UNSUPPORTED,
                        f"the model's forward takes more than one input (`{node.name}`)",
                        hint="import a module whose forward takes one image tensor",
                    )
                self.value[node.name] = INPUT_ID
            elif node.op == "output":
                out = node.args[0]
                output = self.value.get(getattr(out, "name", None))
                if not isinstance(output, int):
                    raise ImportFailure(
                        E.TORCH_UNSUPPORTED,
                        "the model does not return one tensor",
                        hint="import a module whose forward returns one tensor (not a tuple or dict)",
                    )
            elif node.op == "get_attr":
                self._param(node)
            else:
                self._node(node)
        assert output is not None
        if output == INPUT_ID:
            raise ImportFailure(E.TORCH_UNSUPPORTED, "the model returns its input unchanged")
        return Traced(self.ops, output, self.input_size, self.classes)

    def _param(self, node) -> None:
        """A parameter or buffer read by a forward (timm's ``pos_embed.height_rel``): a `param`
        at its own path, which is its ``state_dict`` key."""
        path = str(node.target)
        if path not in self.state:
            raise self._fail_call(
                node, f"a direct use of the tensor `{path}`, which is not in the state_dict"
            )
        t = (
            self.model.get_parameter(path)
            if path in dict(self.model.named_parameters())
            else self.model.get_buffer(path)
        )
        # it sits where the forward that reads it runs (a container iterated, never called,
        # is no scope), inside the modules on its path
        scope = tuple(p for p in self._scope(node, False) if path.startswith(p + "."))
        self.batchless = True
        self.offset[node.name] = 0
        self.value[node.name] = self._add("param", {"shape": list(t.shape)}, [], path, scope, tuple(t.shape))

    def _reshape(self, src: int, shape: Shape, key: str) -> int:
        """A reshape of ``src`` to ``shape`` (the same op for the same ``key`` read twice)."""
        made = self.reshapes.get(key)
        while src != INPUT_ID and self.ops[src].kind == "reshape":  # a reshape of a reshape: one
            src = self.ops[src].inputs[0]
        if made is None and shape == self.shape(src):
            return src
        if made is None:
            self.batchless = self.ops[src].batchless if src != INPUT_ID else False
            made = self._add("reshape", {"shape": list(shape)}, [src], None, self.scope_now, shape)
            self.reshapes[key] = made
        return made

    def _regroup(self, src: int, expanded: Shape, target: Shape) -> int | None:
        """EvoNorm's group_std: a feature map reshaped to ``[groups, C / groups, H, W]``, reduced
        over all but the groups (keepdim), maybe shifted and rooted, expanded back and reshaped
        to the feature map is the same reduction with ``groups``, each channel its group's value."""
        chain = []
        op = src
        while op != INPUT_ID and self.ops[op].kind not in ("mean", "var", "std", "reduce_sum"):
            o = self.ops[op]
            if (
                len(o.inputs) != 1
                or PRIMITIVES[o.kind].has_params
                or o.kind in ("reshape", "slice", "pad_axis")
            ):
                return None
            chain.append(o)
            op = o.inputs[0]
        if op == INPUT_ID or self.ops[op].inputs[0] == INPUT_ID:
            return None
        red, grouped = self.ops[op], self.ops[self.ops[op].inputs[0]]
        x = grouped.inputs[0] if grouped.kind == "reshape" else None
        if x is None or red.attrs.get("groups", 1) != 1 or not red.attrs["keepdim"]:
            return None
        xs, gs = self.shape(x), grouped.shape
        # expanded over the channels of each group (and over H, W or not), then the groups
        # flattened back into the channels
        if not (
            len(xs) == 3
            and len(gs) == 4
            and gs[0] * gs[1] == xs[0]
            and gs[2:] == xs[1:]
            and tuple(red.attrs["axes"]) == (1, 2, 3)
            and len(expanded) == 4
            and tuple(expanded[:2]) == gs[:2]
            and tuple(expanded[2:]) in (gs[2:], (1, 1))
            and tuple(target) == (xs[0], *expanded[2:])
        ):
            return None
        self.batchless = False
        out = self._add(
            red.kind, {**red.attrs, "axes": [0, 1, 2], "groups": gs[0]}, [x], None, red.scope, (xs[0], 1, 1)
        )
        for o in reversed(chain):
            out = self._add(o.kind, dict(o.attrs), [out], None, o.scope, (xs[0], 1, 1))
        return out

    def _align(self, node, ids: list[int]) -> list[int]:
        """Tensors without a batch axis whose leading 1s torch aligns with the batch of the
        others (timm's ``v.view(1, -1, 1, 1)`` times a feature map) lose those 1s."""
        batched = [len(self.shape(i)) for i in ids if i == INPUT_ID or not self.ops[i].batchless]
        if not batched:
            return ids
        rank = max(batched)
        out = []
        for k, i in enumerate(ids):
            shape = self.shape(i)
            if (
                i != INPUT_ID
                and self.ops[i].batchless
                and len(shape) > rank
                and all(v == 1 for v in shape[: len(shape) - rank])
            ):
                keep = self.batchless
                i = self._reshape(i, shape[len(shape) - rank :], f"{node.name}.{k}")
                self.batchless = keep
            out.append(i)
        return out

    def _node(self, node) -> None:
        import torch

        self.materialise = False
        self.scope_now = self._scope(node, node.op == "call_module")
        args, kwargs, ids, in_shapes = self._args(node, self.value)
        offsets = list(self.in_offsets)
        shape = self._meta_shape(node, ids)
        if node.op != "call_module" and self._stacked(node, args, kwargs, ids, shape):
            return
        if any(self._is_stack(a) for a in (*args, *kwargs.values())):
            # paths along a new axis read by anything else: the reshape that made them
            self.materialise = True
            args, kwargs, ids, in_shapes = self._args(node, self.value)
            offsets = list(self.in_offsets)
            shape = self._meta_shape(node, ids)
        if node.op == "call_module":
            module = self.model.get_submodule(node.target)
            chain = self.leaf_chain(module)
            if chain is None:
                path = node.target
                raise ImportFailure(
                    E.TORCH_UNSUPPORTED,
                    f"no primitive computes `{path}` ({_describe(module)})",
                    hint=REGISTER_HINT,
                )
            if len(ids) != 1 or shape is None:
                raise self._fail_call(node, f"`{node.target}` called on {len(ids)} tensors")
            ids = self._unviewed(ids, chain)
            self.value[node.name] = self._chain(node, chain, ids, node.target, self._scope(node, True), shape)
            return
        method = node.target if node.op == "call_method" else None
        function = node.target if node.op == "call_function" else None
        if shape is None and (function is getattr or method in SIZE_METHODS):
            self.value[node.name] = ("size", node.meta.get("size_value"))  # a size: its value as traced
            return
        if shape is None:
            # sizes and tuples: a split's parts are kept for the getitem that picks one
            if function is operator.getitem and isinstance(args[0], tuple) and args[0][:1] == ("parts",):
                _, sizes, src, scope, group = args[0]
                self.value[node.name] = ("parts", sizes, src, scope, group)
                return
            call = Call(
                function=function,
                method=method,
                args=args,
                kwargs=kwargs,
                in_shapes=in_shapes,
                recognise_module=recognise_module,
            )
            found = recognise(call) if ids else None
            if found and found[0][0] == "split" and len(found) == 1:
                self.value[node.name] = (
                    "parts",
                    found[0][1]["sizes"],
                    ids[0],
                    self._scope(node, False),
                    node.name,
                )
                return
            if ids:
                raise self._fail_call(node, _call_text(node))
            self.value[node.name] = ("size", node.meta.get("size_value"))  # a size: its value as traced
            return
        if function is operator.getitem and isinstance(args[0], tuple) and args[0][:1] == ("parts",):
            _, sizes, src, scope, group = args[0]
            index = args[1] % len(sizes) if isinstance(args[1], int) else None
            if index is None:
                raise self._fail_call(node, "a split indexed by a slice")
            seen = next((op.id for op in self.ops if op.group == group and op.part == index), None)
            if seen is not None:  # the same part picked again
                self.value[node.name] = seen
                return
            self.value[node.name] = self._add(
                "split",
                {"sizes": tuple(sizes), "index": index},
                [src],
                None,
                scope,
                shape,
                group=group,
                part=index,
            )
            return
        if function is operator.getitem and args[:1] == (TENSOR,):
            self.value[node.name] = self._slice(node, args[1], ids[0], shape)
            return
        if args[:1] == (TENSOR,) and (method in PASS_METHODS or method in EXPAND_METHODS):
            self.value[node.name] = ids[0]
            self.offset[node.name] = offsets[0]
            if method in EXPAND_METHODS:
                self.expanded[node.name] = shape
            return
        flatten = method == "flatten" or function is torch.flatten
        if (
            args[:1] == (TENSOR,)
            and (
                method in LAYOUT_METHODS
                or function in (torch.reshape, torch.flatten, torch.unsqueeze, torch.squeeze)
            )
            and not (flatten and offsets[0] == 1 and call_flattens(args, kwargs, method))
        ):
            grouped = None
            if getattr(node.args[0], "name", None) in self.expanded:
                grouped = self._regroup(ids[0], self.expanded[node.args[0].name], shape)
            if grouped is not None:
                self.value[node.name] = grouped
            elif shape == self.shape(ids[0]):
                self.value[node.name] = ids[0]
            else:
                self.value[node.name] = self._reshape(ids[0], shape, node.name)
            return
        helper = Call(function=function)
        if helper.is_generated("grouped") and args[:1] == (TENSOR,):  # [C, …] as [groups, C / groups, …]
            self.value[node.name] = self._reshape(ids[0], shape, node.name)
            return
        if helper.is_generated("ungrouped") and args[:2] == (
            TENSOR,
            TENSOR,
        ):  # a group's value to its channels
            stat = self.shape(ids[0])
            expanded = (stat[0], shape[0] // max(stat[0], 1), *stat[2:])
            grouped = self._regroup(ids[0], expanded, shape)
            if grouped is None:
                raise self._fail_call(
                    node, "a statistic given to channel groups other than a grouped reduction's"
                )
            self.value[node.name] = grouped
            return
        ids = self._align(node, ids)
        in_shapes = [self.shape(i) for i in ids]
        call = Call(
            function=function,
            method=method,
            args=args,
            kwargs=kwargs,
            in_shapes=in_shapes,
            out_shape=shape,
            recognise_module=recognise_module,
            offsets=offsets,
            batchless=[i != INPUT_ID and self.ops[i].batchless for i in ids],
        )
        found = recognise(call)
        if found is None or not ids:
            raise self._fail_call(node, _call_text(node))
        self.value[node.name] = self._chain(node, found, ids, None, self._scope(node, False), shape)

    # ------------------------------------------------------------ tensors of paths
    # SK's and ResNeSt's attention hold their paths along a new axis (B, paths, C, H, W):
    # a stack, or a reshape of the channels. Such a value is kept as its paths (and, for a
    # reshape, the tensor it came from): a sum over the axis is an add of the paths, a
    # product multiplies path by path, a softmax over the axis is a group_softmax of the
    # tensor it came from, split again into its paths.

    @staticmethod
    def _is_stack(v) -> bool:
        return isinstance(v, tuple) and v[:1] == ("stack",)

    def _dim(self, node, args, kwargs, i: int, default=None):
        dim = args[i] if i < len(args) else kwargs.get("dim", default)
        return tuple(dim) if isinstance(dim, (list, tuple)) else dim

    def _paths(self, node, src: int, n: int, part_shape: Shape) -> tuple:
        size = prod_(self.shape(src)) // n // max(prod_(part_shape[1:]), 1) if len(part_shape) else 0
        sizes = (size,) * n
        parts = [
            self._add(
                "split",
                {"sizes": sizes, "index": i},
                [src],
                None,
                self._scope(node, False),
                part_shape,
                group=node.name,
                part=i,
            )
            for i in range(n)
        ]
        return ("stack", parts, src, (n, *part_shape))

    def _stacked(self, node, args, kwargs, ids, shape) -> bool:
        import torch

        fn = node.target if node.op == "call_function" else None
        method = node.target if node.op == "call_method" else None
        first = args[0] if args else None
        if (
            fn is torch.stack
            and self._dim(node, args, kwargs, 1, 0) == 1
            and isinstance(first, (list, tuple))
            and all(a is TENSOR for a in first)
        ):
            self.value[node.name] = ("stack", list(ids), None, None)
            return True
        reshape = method in ("view", "reshape") or fn is torch.reshape
        if (
            reshape
            and first is TENSOR
            and shape is not None
            and len(shape) == 4
            and len(self.shape(ids[0])) == 3
            and shape[0] * shape[1] == self.shape(ids[0])[0]
            and shape[2:] == self.shape(ids[0])[1:]
        ):
            self.value[node.name] = self._paths(node, ids[0], shape[0], shape[1:])
            return True
        if not self._is_stack(first):
            return False
        parts, src = first[1], first[2]
        scope = self._scope(node, False)
        if (method == "sum" or fn is torch.sum) and self._dim(node, args, kwargs, 1) in (1, (1,)):
            self.value[node.name] = self._add("add", {}, list(parts), None, scope, shape)
            return True
        softmax = method == "softmax" or fn in (torch.softmax, torch.nn.functional.softmax)
        if softmax and self._dim(node, args, kwargs, 1) == 1 and src is not None:
            gs = self._add(
                "group_softmax", {"radix": len(parts), "cardinality": 1}, [src], None, scope, self.shape(src)
            )
            self.value[node.name] = self._paths(node, gs, len(parts), self.shape(parts[0]))
            return True
        if fn in (operator.mul, torch.mul) or method == "mul":
            other = args[1] if len(args) > 1 else None
            if self._is_stack(other) and len(other[1]) == len(parts):
                outs = [
                    self._add("multiply", {}, [a, b], None, scope, shape[1:] if shape else self.shape(a))
                    for a, b in zip(parts, other[1])
                ]
                self.value[node.name] = ("stack", outs, None, None)
                return True
        if method == "contiguous":
            self.value[node.name] = first
            return True
        return False

    def _slices(self, node, index, src: int, offset: int) -> int:
        """``x[:, :w, w - 1:]``: a `slice` op per axis cut (the batch dim is never cut)."""
        index = index if isinstance(index, tuple) else (index,)
        if not all(isinstance(i, slice) for i in index) or len(index) > len(self.shape(src)) + offset:
            raise self._fail_call(node, "an indexing of a tensor other than slices of its axes")
        if not (src != INPUT_ID and self.ops[src].batchless) and index[0] != slice(None):
            raise self._fail_call(node, "a slice of the batch")
        out = src
        for d, cut in enumerate(index):
            if cut == slice(None):
                continue
            shape = self.shape(out)
            axis = d - offset
            if not 0 <= axis < len(shape) or any(
                type(v) not in (int, type(None)) for v in (cut.start, cut.stop, cut.step)
            ):
                raise self._fail_call(node, "a slice of an axis other than the sample's, or by a tensor")
            start, stop, step = cut.indices(shape[axis])
            new = (*shape[:axis], len(range(start, stop, step)), *shape[axis + 1 :])
            self.batchless = src != INPUT_ID and self.ops[src].batchless
            out = self._add(
                "slice",
                {"axis": axis, "start": start, "end": stop, "step": step},
                [out],
                None,
                self.scope_now,
                new,
            )
        return out

    def _slice(self, node, index, src: int, shape: Shape) -> int:
        """``x[:, a:b]``: a part of a split of the channels (the generated source's splits);
        other slices are `slice` ops."""
        if not (
            len(self.shape(src)) == 3
            and self.offset.get(node.args[0].name, 1) == 1
            and isinstance(index, tuple)
            and len(index) == 2
            and index[0] == slice(None)
        ):
            return self._slices(node, index, src, self.offset.get(node.args[0].name, 1))
        c = self.shape(src)[0] if self.shape(src) else 0
        ok = (
            isinstance(index, tuple)
            and len(index) == 2
            and index[0] == slice(None)
            and isinstance(index[1], slice)
            and index[1].step in (None, 1)
        )
        if not ok:
            raise self._fail_call(node, "an indexing of a tensor other than a slice of its channels")
        start, stop, _ = index[1].indices(c)
        # one split per source, cut where its slices start and end; parts not taken go unused
        cuts = sorted({0, c, start, stop} | {b for s in self.slices.get(src, []) for b in s})
        self.slices.setdefault(src, []).append((start, stop))
        sizes = tuple(b - a for a, b in zip(cuts, cuts[1:]))
        part = cuts.index(start)
        if cuts.index(stop) != part + 1:
            raise self._fail_call(node, "overlapping slices of one tensor's channels")
        group = f"slices_{src}"
        op_id = self._add(
            "split",
            {"sizes": sizes, "index": part},
            [src],
            None,
            self._scope(node, False),
            shape,
            group=group,
            part=part,
        )
        # earlier parts of the same source get the final cuts too
        for op in self.ops:
            if op.group == group and op.attrs["sizes"] != sizes:
                a, b = split_bounds(op.attrs)
                op.attrs = {"sizes": sizes, "index": cuts.index(a)}
                op.part = op.attrs["index"]
                if cuts.index(b) != op.part + 1:
                    raise self._fail_call(node, "overlapping slices of one tensor's channels")
        return op_id


def _fits(kind: str, attrs: dict, shape: Shape) -> bool:
    try:
        _infer(kind, attrs, [shape])
    except Exception:  # the registry's shape rule refuses it
        return False
    return True


def call_flattens(args: tuple, kwargs: dict, method: str | None) -> bool:
    """``x.flatten(1)`` / ``torch.flatten(x, 1)``: a feature map to a vector (the flatten op)."""
    start = args[1] if len(args) > 1 else kwargs.get("start_dim", 0)
    end = args[2] if len(args) > 2 else kwargs.get("end_dim", -1)
    return start == 1 and end == -1


def prod_(shape: Shape) -> int:
    out = 1
    for v in shape:
        out *= v
    return out


def split_bounds(attrs: dict) -> tuple[int, int]:
    sizes, i = attrs["sizes"], attrs["index"]
    return sum(sizes[:i]), sum(sizes[: i + 1])


def _infer(kind: str, attrs: dict, shapes: list[Shape]) -> Shape:
    prim = PRIMITIVES[kind]
    return prim.infer(prim.complete({**{p.name: p.default for p in prim.params}, **attrs}), shapes)[0]


def _call_text(node) -> str:
    target = node.target
    if node.op == "call_method":
        return f"the tensor method `.{target}()`"
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or str(target)
    mod = getattr(target, "__module__", None)
    if name.startswith("_VariableFunctionsClass."):  # torch's C functions
        name, mod = name.partition(".")[2], "torch"
    return f"the function `{(mod + '.') if mod and mod not in ('_operator', 'builtins') else ''}{name}`"
