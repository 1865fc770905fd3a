"""A toy back end written for the tests: each weighted layer's parameter count, then the total.

It shows that adding a back end touches no primitive: it reads only the checked IR (op
names, modules and the counts the shape rules made), and is registered with one line.
"""

from __future__ import annotations

from resdsl.backends import declare
from resdsl.ir import Network


@declare()
def emit(net: Network) -> str:
    """``module: count`` for each op with parameters, in order, then ``total: count``."""
    lines = [f"{op.module or op.name}: {op.params:,}" for op in net.ops if op.params]
    return "\n".join([*lines, f"total: {net.params:,}"]) + "\n"
