"""What the generated file pastes in besides its classes: the registry's helper functions
and classes, and the ``reset_parameters`` clauses (each kind's init, the zero-init norms)."""

from __future__ import annotations

from ...ir import Network
from ...primitives import PRIMITIVES
from ..source_format import Call, layout
from ..torch_lowering import TORCH, SourceHelper, SourceInit
from .classes import Cls, Lowering, Use
from .layers import _is_zero_init, _tensor_init
from .names import path_ref
from .templates import _environment


def _zero_init(low: Lowering, net: Network, ordered: list[Cls]) -> list[tuple[list[str], str, str]]:
    """Zero-init norms: ([] for the network itself, or the classes that hold it; its path;
    the tensor to zero)."""
    found: dict[tuple[bool, str], list[str]] = {}
    for cls in [None, *ordered]:
        scope = net.root if cls is None else cls.instances[0]
        for item in low.body(scope):
            subs = [(f"{item.local}.{s.local}", s) for s in low.body(item.scope)] \
                if item.use is Use.SUB and low.is_sequential(item.scope) else [(item.local, item)]
            for path, leaf in subs:
                if leaf.use is Use.LAYER and _is_zero_init(leaf.op):
                    found.setdefault((cls is None, path, PRIMITIVES[leaf.op.kind].zero_init), []) \
                        .extend([] if cls is None else [cls.name])
    return [(_instance_test(classes) if classes else "", path, tensor) for (_, path, tensor), classes in found.items()]


def _tensor_inits(low: Lowering, net: Network, ordered: list[Cls]) -> list[tuple[str, list[str]]]:
    """Learned tensors (``param``): ("" for the network's own, or the test for the classes
    that hold them; the statements initialising them)."""
    found: dict[tuple[bool, tuple[str, ...]], list[str]] = {}
    for cls in [None, *ordered]:
        scope = net.root if cls is None else cls.instances[0]
        owner = "self" if cls is None else "module"
        lines = tuple(init.replace("{tensor}", _tensor_ref(owner, item.local)) for item in low.body(scope)
                      if item.use is Use.LAYER and (init := _tensor_init(item.op)) is not None)
        if lines:
            found.setdefault((cls is None, lines), []).extend([] if cls is None else [cls.name])
    return [(_instance_test(classes) if classes else "", list(lines)) for (_, lines), classes in found.items()]


def _tensor_ref(owner: str, path: str) -> str:
    """``self.gain``, or ``self.get_parameter("gains.0")`` where a part is no identifier."""
    ref = path_ref(owner, path)
    return ref.replace(".get_submodule(", ".get_parameter(", 1)


def _instance_test(classes: list[str]) -> str:
    """``isinstance(module, A)`` or ``isinstance(module, (A, B))``, laid out after ``if``."""
    kinds = classes[0] if len(classes) == 1 else Call("", tuple(classes))
    return layout(Call("isinstance", ("module", kinds)), " " * 12, "if ", ":")


def _in_registry_order(used: set[SourceHelper]) -> list[SourceHelper]:
    out: list[SourceHelper] = []
    for kind in TORCH.kinds():
        out += [h for h in TORCH.require(kind).helpers if h in used and h not in out]
    return out


def _helper_text(helper: SourceHelper) -> str:
    if helper.text is not None:
        return helper.text.strip("\n")
    return _environment().get_template(helper.template).render().rstrip("\n")


def _inits(net: Network) -> list[SourceInit]:
    """The ``reset_parameters`` clauses of the kinds the network has modules of, in registry
    order, one per class (a std_conv is initialised as the nn.Conv2d it is)."""
    kinds = {op.kind for op in net.ops if op.module is not None}
    out: list[SourceInit] = []
    for kind in TORCH.kinds():
        init = TORCH.require(kind).init
        if kind in kinds and isinstance(init, SourceInit) and all(i.cls != init.cls for i in out):
            out.append(init)
    return out
