"""One structural form for a traced model and a checked network, to compare them.

Two graphs are the same network when every op has the same kind, the same attributes, the
same module path where it owns weights (the ``state_dict`` names), the same number of
elements out, and the same inputs, recursively: each op gets a key built from its own
facts and its inputs' keys (a Merkle hash), so the comparison does not depend on the order
in which a forward happens to run independent branches, nor on the names of layers without
weights (timm's ``global_pool`` is resdsl's ``avgpool``). Ops that pass their input through
in eval mode (identity, dropout, drop-path), flattens and reshapes are left out: they change
nothing a checkpoint can tell, and the import's output comparison checks the layout.
"""

from __future__ import annotations

from math import prod

from ..ir import INPUT, Network
from ..primitives import PRIMITIVES
from .trace import INPUT_ID, Traced

#: Attributes that say how a layer starts or runs, not what it computes.
IGNORED = frozenset({"zero_init", "inplace", "momentum"})
SKIPPED = frozenset({"flatten", "reshape"})
COMMUTATIVE = frozenset({"add", "multiply"})


def _attrs(kind: str, attrs: dict) -> tuple:
    prim = PRIMITIVES[kind]
    full = prim.complete({**{p.name: p.default for p in prim.params}, **attrs})
    out = []
    for k in sorted(full):
        if k in IGNORED:
            continue
        v = full[k]
        if isinstance(v, float):
            v = float(f"{v:.6g}")
        elif isinstance(v, list):
            v = tuple(v)
        out.append((k, v))
    return tuple(out)


class Keys:
    """Interns op keys to small integers, shared by the graphs compared."""

    def __init__(self) -> None:
        self.ids: dict[tuple, int] = {("input",): 0}

    def key(self, kind: str, attrs: dict, module: str | None, numel: int, inputs: list[int]) -> int:
        ins = tuple(sorted(inputs)) if kind in COMMUTATIVE else tuple(inputs)
        weighted = PRIMITIVES[kind].has_params
        k = (kind, _attrs(kind, attrs), module if weighted else None, numel, ins)
        return self.ids.setdefault(k, len(self.ids))


def _passes(kind: str) -> bool:
    traits = PRIMITIVES[kind].traits
    return kind in SKIPPED or traits.identity or traits.eval_identity


def traced_form(traced: Traced, keys: Keys) -> tuple[int, frozenset[str]]:
    """The output key of a traced model and its weighted module paths."""
    got: dict[int, int] = {INPUT_ID: 0}
    modules = set()
    for op in traced.ops:
        ins = [got[i] for i in op.inputs]
        if _passes(op.kind):
            got[op.id] = ins[0]
            continue
        if op.module is not None and PRIMITIVES[op.kind].has_params:
            modules.add(op.module)
        got[op.id] = keys.key(op.kind, op.attrs, op.module, prod(op.shape), ins)
    return got[traced.output], frozenset(modules)


def network_form(net: Network, keys: Keys) -> tuple[int, frozenset[str]]:
    """The output key of a checked network and its weighted module paths."""
    got: dict[str, int] = {INPUT: 0}
    modules = set()
    for op in net.ops:
        ins = [got[i] for i in op.inputs]
        if _passes(op.kind):
            got[op.name] = ins[0]
            continue
        if op.module is not None and PRIMITIVES[op.kind].has_params:
            modules.add(op.module)
        got[op.name] = keys.key(op.kind, dict(op.attrs), op.module, prod(op.shape), ins)
    return got[net.output], frozenset(modules)


def same(traced: Traced, net: Network) -> bool:
    """``net`` computes what ``traced`` does, with the same weights under the same names."""
    keys = Keys()
    return traced_form(traced, keys) == network_form(net, keys)
