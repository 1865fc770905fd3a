"""The back ends: one module each, registered here by target name.

A back end is a function ``emit(net: Network, **options) -> bytes | str``; the CLI
imports it only when its target is asked for, so ``resdsl check`` never imports torch.
Adding a back end means one new module and one line in :data:`TARGETS`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # resdsl.backends.<module>
    function: str
    extension: str
    binary: bool  # bytes that do not belong on a terminal
    help: str

    def load(self) -> Callable:
        return getattr(importlib.import_module(f"resdsl.backends.{self.module}"), self.function)


TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("torch", "torch_source", "emit", ".py", False, "standalone PyTorch source"),
    Target("onnx", "onnx_graph", "emit", ".onnx", True, "ONNX model (weights included)"),
    Target("dot", "dot", "emit", ".dot", False, "Graphviz DOT text of the diagram"),
    Target("svg", "dot", "emit_svg", ".svg", False, "diagram as SVG (needs Graphviz's dot)"),
    Target("pdf", "dot", "emit_pdf", ".pdf", True, "diagram as PDF (needs Graphviz's dot)"),
    Target("png", "dot", "emit_png", ".png", True, "diagram as PNG, 200 dpi (needs Graphviz's dot)"),
]}
