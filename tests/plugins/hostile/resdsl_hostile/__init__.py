"""Primitives that each break the plugin contract in one way (and one that keeps it)."""

from __future__ import annotations

import dataclasses
import sys

from resdsl.primitives import Look, Primitive, SourceCall


def _same(attrs, shapes):
    return shapes[0], 0, 0


def _onnx_relu(g, op, inputs, out):
    g.node("Relu", [inputs[0]], op.name, out)


def _prim(kind, infer=_same, onnx_fn=_onnx_relu, **kw):
    fields = {"module": False, "look": Look(lambda op: kind, "act"), "source_function": SourceCall("F.relu", ()),
              "onnx": ((1, onnx_fn),), **kw}
    return Primitive(kind, (), infer, f"test primitive {kind}", **fields)


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
        _prim("text_not_str", look=Look(lambda op: 42, "act")),
    ]


def malformed():
    # no ONNX lowering: the registry refuses the entry
    return dataclasses.replace(_prim("malformed_op"), onnx=())


def not_a_primitive():
    return ["not a primitive"]


def current():
    return _prim("current")
