"""Labels and tensors: checking layer names, binding them to the ops they name, and
finding the tensors a layer reads (the running value, `from`, tensor arguments)."""

from __future__ import annotations

import keyword
import math
import re

from .. import limits
from ..diagnostics import did_you_mean
from ..errors import E
from ..primitives import Primitive
from ..syntax import Expr, Label, Layer, Name
from ..torch_names import MODEL_ATTRIBUTES, RESERVED_LABELS
from .builtins import BUILTINS
from .evaluation import eval_expr
from .frames import Frame, Skip, env_of, label_value
from .state import Build
from .values import Tensor, Value, type_name

#: Layer names that passed the checks of ``label`` → their components
_LABELS_OK: dict[str, tuple[str, ...]] = {}

_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")


def _shorten(path: str, keep: int = 60) -> str:
    return path if len(path) <= keep else f"{path[:keep // 2]}…{path[-keep // 2:]}"


def label(b: Build, label: Label, frame: Frame) -> str:
    parts = []
    for part in label.parts:
        if isinstance(part, str):
            parts.append(part)
            continue
        v = eval_expr(b, part, env_of(frame))
        if isinstance(v, bool) or not isinstance(v, (int, str)):
            raise b.fail(E.WRONG_TYPE, f"a name part must be an integer or a string, got "
                         f"{type_name(v)}", part.span)
        parts.append(str(v))
    name = "".join(parts)
    if label.gap is not None:
        raise b.fail(E.BAD_LAYER_NAME, f"the layer name `{name}` has a space in it", label.gap,
                     hint="write a name without spaces: `conv{i}`, `paths.{i}`")
    components = _LABELS_OK.get(name)
    if components is None:  # not checked yet (the check depends on the name alone)
        components = name.split(".") if "." in name else (name,)
        for component in components:
            if not _LABEL.fullmatch(component):
                raise b.fail(E.BAD_LAYER_NAME, f"`{name}` is not a valid layer name", label.span,
                             hint="names are identifiers (letters, digits, `_`) or whole numbers, "
                                  "joined by `.`")
        if name == "input":
            raise b.fail(E.DEFINED_TWICE, "`input` names the block's input and cannot name a layer",
                         label.span, hint="choose another name")
        for component in components:
            if keyword.iskeyword(component):  # torch.fx writes module paths into Python code
                raise b.fail(E.BAD_LAYER_NAME, f"`{component}` cannot name a layer: it is a Python keyword",
                             label.span, hint=f"choose another name, e.g. `{component}_`; torch.fx "
                             "writes layer names into Python code")
            if component in RESERVED_LABELS or component.startswith("_"):
                raise b.fail(E.BAD_LAYER_NAME, f"`{component}` cannot name a layer: torch modules reserve it",
                             label.span, hint=f"choose another name, e.g. `{component.strip('_')}_`"
                             if component.strip("_") else "choose another name")
        if len(_LABELS_OK) >= 4096:
            _LABELS_OK.clear()
        _LABELS_OK[name] = components
    depth = len(components) + (frame.path.count(".") + 1 if frame.path else 0)
    if depth > limits.MAX_PATH_DEPTH:
        raise b.fail(E.PATH_TOO_DEEP, f"the layer path `{_shorten(frame.path + '.' + name if frame.path else name)}` "
                     f"has {depth:,} parts, over the limit of {limits.MAX_PATH_DEPTH}", label.span,
                     hint="name layers with fewer dotted parts, or nest fewer definitions")
    if not frame.path and components[0] in MODEL_ATTRIBUTES:
        raise b.fail(E.BAD_LAYER_NAME, f"`{components[0]}` cannot name a top-level layer: the network's class has "
                     "it (timm's model interface)", label.span,
                     hint=f"choose another name, e.g. `{components[0]}_`, or put it inside a definition")
    if not frame.path and components[0].lower() == "self":
        # torch.fx names a value after its module path, snake-cased: a top-level `self`
        # (`Self`, `SELF`) would rebind the traced forward's own `self` (`layer1.0.self` is fine)
        raise b.fail(E.BAD_LAYER_NAME, f"`{components[0]}` cannot name a top-level layer: torch.fx code calls "
                     "the module `self`", label.span,
                     hint=f"choose another name, e.g. `{components[0]}_`, or put it inside a named block")
    labels = frame.labels
    if name in labels:
        first = labels[name]
        raise b.fail(E.DEFINED_TWICE, f"duplicate layer name `{name}`", label.span,
                     label=f"first defined at line {first.line}",
                     hint="every layer in a definition needs its own name")
    if name + "." in labels:  # `paths` after `paths.0`
        first = labels[name + "."]
        raise b.fail(E.DEFINED_TWICE, f"`{name}` already holds the layers named `{name}.…`", label.span,
                     label=f"first used at line {first.line}",
                     hint="a name is either a layer or a container of layers: rename one")
    if len(components) > 1:
        for k in range(1, len(components)):
            prefix = ".".join(components[:k])
            if prefix in labels:  # `attn.fc` after the layer `attn`
                raise b.fail(E.DEFINED_TWICE, f"`{prefix}` is a layer, so `{name}` cannot be named "
                             f"below it", label.span,
                             label=f"`{prefix}` defined at line {labels[prefix].line}",
                             hint="a name is either a layer or a container of layers: rename one")
        for k in range(1, len(components)):
            labels.setdefault(".".join(components[:k]) + ".", label.span)
    labels[name] = label.span
    return name


def bind_label(b: Build, frame: Frame, name: str, value: str | tuple) -> None:
    """Bind a label to its tensor (or parts); a dotted label also updates the numbered
    containers above it, so that ``paths`` evaluates to ``[paths.0, paths.1]``."""
    tensors = frame.tensors
    tensors[name] = value
    if "." not in name:
        return
    components = name.split(".")
    for k in range(len(components) - 1, 0, -1):
        prefix = ".".join(components[:k])
        items: list = []
        while f"{prefix}.{len(items)}" in tensors:
            items.append(label_value(tensors, f"{prefix}.{len(items)}"))
        tensors.pop(prefix, None)
        if items and not any(key.startswith(prefix + ".") and not
                             key[len(prefix) + 1:].split(".")[0].isdigit() for key in tensors):
            tensors[prefix] = tuple(items)


def source(b: Build, src: Expr | None, frame: Frame) -> str:
    """The op a layer reads: the running value, or its `from` tensor."""
    if src is None:
        if frame.split is not None:
            label, _, n = frame.split
            raise b.fail(E.WRONG_TYPE, f"after the split `{label}` there is no running value",
                         b.stmt_span, label=f"`{label}` is {n} tensors",
                         hint=f"continue from one part with `current = {label}[0]`, or read "
                              f"it in this layer with `from {label}[0]`")
        return frame.current
    if type(src) is Name and type(frame.tensors.get(src.id)) is str:  # the common `from x`
        return frame.tensors[src.id]
    return tensor(b, src, frame, "`from`")


def tensor(b: Build, e: Expr, frame: Frame, what: str) -> str:
    """The op that a tensor expression names (a label, `input`, `parts[1]`, a variable)."""
    value = tensor_value(b, e, frame)
    if isinstance(value, Tensor):
        return value.op
    if isinstance(value, tuple) and value and all(isinstance(v, Tensor) for v in value):
        raise b.fail(E.WRONG_TYPE, f"{what} needs one tensor, got a list of {len(value)}", e.span,
                     hint="pick one: `parts[0]`")
    raise b.fail(E.WRONG_TYPE, f"{what} needs a tensor, got {type_name(value)}", e.span,
                 hint="name a layer defined earlier in this definition, or `input`")


def tensor_value(b: Build, e: Expr, frame: Frame) -> Value:
    if isinstance(e, Name):
        if e.id in frame.tensors:  # a label wins over a variable here (`from se`, `add(relu)`)
            return label_value(frame.tensors, e.id)
        env = env_of(frame)
        if e.id not in env and e.id not in BUILTINS:
            names = [k for k in (*frame.tensors, *frame.vars) if "." not in k]
            container = [k[:-1] for k in frame.labels if k.endswith(".") and k[:-1] == e.id]
            raise b.fail(E.UNKNOWN_NAME, f"unknown tensor `{e.id}`", e.span,
                         hint=f"`{e.id}` holds named layers, not a numbered list: name one "
                              f"of them" if container else did_you_mean(e.id, names) or
                         "name a layer defined earlier in this definition, or `input`")
    value = eval_expr(b, e, env_of(frame))
    if isinstance(value, Tensor) and value.op in b.tainted and value.op not in b.shapes:
        raise Skip()
    return value


def tensor_args(b: Build, st: Layer, prim: Primitive, frame: Frame) -> tuple[list[str], dict[str, Value]]:
    """The inputs of ``add``, ``multiply``, ``subtract``, ``concat``: the tensors named as
    arguments (lists expanded), after the running value or the `from` tensor where the
    call names a single tensor (``add(downsample)``) or only a number (``multiply(0.5)``).
    Also the attributes of its numeric operand, for a primitive that declares ``constant``
    and ``constant_at`` (:data:`resdsl.ops.elementwise.CONSTANT_PARAMS`): the number, and
    its position among the operands. A primitive with ``operands`` (``conv_with(w, b,
    stride = 2)``) always reads the running value first; its keyword arguments are left
    for its parameters."""
    inputs: list[str] = []
    single = False
    numbers = any(p.name == "constant_at" for p in prim.params)
    constant: tuple[int, float] | None = None  # (position among the named operands, value)
    example = f"`{prim.kind}(downsample)` or `{prim.kind}(a, b)`" + (f", `{prim.kind}(x, 0.5)`" if numbers else "")
    for a in st.call.args:
        if a.name is not None:
            if prim.operands is not None:  # `conv_with(w, stride = 2)`: its parameters (layers.primitive)
                continue
            raise b.fail(E.WRONG_TYPE, f"the arguments of `{prim.kind}` are {'operands' if numbers else 'tensors'}, "
                         "not keywords", a.span, hint=f"e.g. {example}")
        op = frame.tensors.get(a.value.id) if type(a.value) is Name else None
        if type(op) is str:  # the common `add(downsample)`: a label
            inputs.append(op)
            single = len(st.call.args) == 1
            continue
        value = tensor_value(b, a.value, frame)
        if isinstance(value, Tensor):
            inputs.append(value.op)
            single = len(st.call.args) == 1
        elif isinstance(value, tuple) and all(isinstance(v, Tensor) for v in value):
            inputs.extend(v.op for v in value)
        elif numbers and isinstance(value, (int, float)) and not isinstance(value, bool):
            if constant is not None:
                raise b.fail(E.TOO_MANY_ARGUMENTS, f"`{prim.kind}` takes one number among its operands, "
                             "got a second", a.value.span, hint="combine the numbers into one")
            if not math.isfinite(value) or abs(value) > 1e300:
                raise b.fail(E.OUT_OF_RANGE, f"the number {value} is not a finite operand", a.value.span)
            constant = (len(inputs), float(value))
        else:
            raise b.fail(E.WRONG_TYPE, f"the arguments of `{prim.kind}` are {'tensors or a number' if numbers else 'tensors'}, "
                         f"got {type_name(value)}", a.value.span, hint=f"e.g. {example}")
    if st.source is not None or prim.operands is not None or (prim.reads_current and (single or not inputs)):
        inputs.insert(0, source(b, st.source, frame))
        if constant is not None:
            constant = (constant[0] + 1, constant[1])
    if not numbers:
        return inputs, {}
    at, value = constant if constant is not None else (None, 0.0)
    return inputs, {"constant": value, "constant_at": at}


def stand_in(b: Build, frame: Frame, reads: str) -> str:
    """A name for the output of a failed statement: later statements read it as if the
    failed layer had kept its input's shape, and their errors about it stay quiet."""
    name = f"<failed {len(b.tainted)}>"
    b.tainted.add(name)
    if reads in b.shapes:
        b.shapes[name] = b.shapes[reads]
    return name
