"""Primitives that each break the plugin contract in one way (and one that keeps it)."""

from __future__ import annotations

import dataclasses
import sys

from resdsl.backends.onnx_graph import onnx_lowering
from resdsl.backends.torch_lowering import SourceCall, torch_lowering
from resdsl.looks import Look, register_look
from resdsl.primitives import Primitive, Traits


def _same(attrs, shapes):
    return shapes[0], 0, 0


def _onnx_relu(g, op, inputs, out):
    g.node("Relu", [inputs[0]], op.name, out)


def _prim(kind, infer=_same, onnx_fn=_onnx_relu, text=None, **kw):
    # the lowerings, registered while the entry point loads: recorded as the plugin's
    torch_lowering(kind, function=SourceCall("F.relu", ()))
    onnx_lowering(kind)(onnx_fn)
    register_look(kind, Look(text or (lambda op: kind), "act"))
    return Primitive(kind, (), infer, f"test primitive {kind}", module=False, traits=Traits(activation=True), **kw)


def _raise(attrs, shapes):
    raise ValueError("the rule has a bug")


def _recurse(attrs, shapes):
    return _recurse(attrs, shapes)


def _exit(attrs, shapes):
    sys.exit("a rule called sys.exit")


def _no_node(g, op, inputs, out):
    pass


def _bad_node(g, op, inputs, out):
    g.node("NoSuchOperator", [inputs[0]], op.name, out)


def good():
    return _prim("good_relu")


def rules():
    return [
        _prim("rule_raises", _raise),
        _prim("rule_none", lambda a, s: None),
        _prim("rule_rank", lambda a, s: ((4, 8), 0, 0)),
        _prim("rule_negative", lambda a, s: ((-4, 8, 8), 0, 0)),
        _prim("rule_zero", lambda a, s: ((0, 8, 8), 0, 0)),
        _prim("rule_nan_macs", lambda a, s: (s[0], 0, float("nan"))),
        _prim("rule_recursion", _recurse),
        _prim("rule_exit", _exit),
        _prim("onnx_no_node", onnx_fn=_no_node),
        _prim("onnx_bad_node", onnx_fn=_bad_node),
        _prim("text_not_str", text=lambda op: 42),
    ]


def malformed():
    # weights, but never a module: the registry refuses the entry
    return dataclasses.replace(_prim("malformed_op"), weights=lambda attrs, shapes: {"weight": (1,)})


def not_a_primitive():
    return ["not a primitive"]


def current():
    return _prim("current")
