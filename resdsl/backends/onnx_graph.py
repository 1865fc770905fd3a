"""ONNX back end: a ``ModelProto`` built directly from the checked IR with ``onnx.helper``.

The graph is written op by op from the IR, not traced from a torch module, so it holds
only the operators the network needs: no Identity chains, no Shape/Gather/Cast plumbing.

- Nodes follow the IR's topological order and are named by the op's spec path
  (``layer1.0.conv1``); an op that lowers to several nodes names its helpers
  ``<path>/<step>`` and its last node ``<path>``. Tensors carry the same names; the graph
  reads ``input`` (N×C×H×W, N symbolic as ``batch`` unless fixed) and writes ``output``.
- Initializers are named exactly like the torch back end's ``state_dict`` keys
  (``layer1.0.bn1.running_mean``); constants the lowering needs are named ``<path>/<what>``
  or ``const/<what>``, which no ``state_dict`` key can be (spec names have no ``/``).
- Dropout, drop-path and identity are the identity at inference: they emit no node.
- Weights come from the torch back end's seeded initialisation (same seed, same tensors)
  or from a torch ``state_dict`` file loaded with ``weights_only=True``.
- With ``fold_bn`` every BN the IR marks foldable (:func:`resdsl.passes.foldable_batchnorms`)
  is folded into its convolution; otherwise there is one BatchNormalization per spec BN.
- Models past protobuf's 2 GB limit need ``external_data``: the tensors then go to a file
  beside the ``.onnx`` (:class:`ExternalDataModel`), both written atomically together.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from .. import __version__
from ..diagnostics import Note, UsageError
from ..ir import INPUT, Network, Op
from ..output import TEMP_TAG, destination, sweep, temp_file, write_all
from ..passes import foldable_batchnorms
from .fold import fold_conv_bn

#: Opsets this back end emits and is tested at: 13 is the oldest still common (TensorRT,
#: mobile runtimes); 21 is the newest that onnxruntime ≥ 1.18 and onnx ≥ 1.16 both know.
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 13, 21, 17

#: protobuf refuses to serialise a message of 2 GiB or more.
PROTOBUF_LIMIT = 2**31 - 1

#: Tensors this large or larger go to the external data file; small constants stay inline.
EXTERNAL_MIN_BYTES = 1024
#: Offsets in the external data file are aligned so that runtimes can memory-map tensors.
EXTERNAL_ALIGN = 4096

#: The graph's symbolic batch dimension.
BATCH = "batch"

_BN_BUFFERS = ("weight", "bias", "running_mean", "running_var")


def emit(net: Network, *, seed: int | None = None, weights: str | Path | Mapping | None = None,
         opset: int = DEFAULT_OPSET, static_batch: int | None = None, fold_bn: bool = False,
         external_data: bool = False, allow_nonfinite: bool = False) -> bytes | ExternalDataModel:
    """The serialised ONNX model for ``net``.

    ``weights`` is a path to a torch ``state_dict`` (``.pt``/``.pth``) or a mapping of
    tensors; without it the weights are the torch back end's for ``seed`` (default 0).
    With ``external_data`` the result is an :class:`ExternalDataModel`, which writes the
    ``.onnx`` and its tensor file together. Raises :class:`UsageError` for bad options or
    weights, before anything is written.
    """
    lowering, provenance = _lower(net, seed, weights, opset, fold_bn, external_data, allow_nonfinite)
    if external_data:
        return ExternalDataModel(lowering.model(static_batch, provenance))
    return lowering.serialize(static_batch, provenance)


def build_model(net: Network, *, seed: int | None = None, weights: str | Path | Mapping | None = None,
                opset: int = DEFAULT_OPSET, static_batch: int | None = None, fold_bn: bool = False,
                external_data: bool = False, allow_nonfinite: bool = False) -> onnx.ModelProto:
    """The ONNX ``ModelProto`` for ``net`` (see :func:`emit` for the options).

    Without ``external_data`` a model too large for protobuf is refused with a
    :class:`UsageError` that says to use it.
    """
    lowering, provenance = _lower(net, seed, weights, opset, fold_bn, external_data, allow_nonfinite)
    return lowering.model(static_batch, provenance)


def _lower(net: Network, seed: int | None, weights: str | Path | Mapping | None, opset: int,
           fold_bn: bool, external_data: bool, allow_nonfinite: bool = False) -> tuple[_Lowering, str]:
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise UsageError(f"opset {opset} is not supported by the onnx target",
                         hint=f"choose --opset between {MIN_OPSET} and {MAX_OPSET} (default {DEFAULT_OPSET})")
    if weights is not None and seed is not None:
        raise UsageError("--seed and --weights exclude each other",
                         hint="a seed chooses initial weights; --weights gives them")
    if weights is None:
        seed = 0 if seed is None else seed
        state, provenance = _seeded_state(net, seed), f"seed {seed}"
    else:
        state, provenance = _load_weights(net, weights, allow_nonfinite)
    lowering = _Lowering(net, state, opset, fold_bn)
    lowering.run()
    if not external_data:
        # The tensors, and a generous kilobyte for each node's and tensor's description.
        size = sum(t.nbytes for t in lowering.initializers) + 1024 * (len(lowering.nodes) +
                                                                     len(lowering.initializers))
        if size > PROTOBUF_LIMIT:
            raise UsageError(f"the model's tensors take {size / 2**30:.2f} GiB, over protobuf's 2 GiB "
                             "limit for one .onnx file",
                             hint="use --external-data to write the tensors to a file beside the .onnx")
    return lowering, provenance


# ---------------------------------------------------------------------------------- weights

def expected_state(net: Network) -> dict[str, tuple[int, ...]]:
    """The ``state_dict`` keys and shapes of the torch back end's module for ``net``,
    from the IR alone (``num_batches_tracked`` included)."""
    out: dict[str, tuple[int, ...]] = {}
    for path, op in net.modules().items():
        a = dict(op.attrs)
        c = net.shape_of(op.inputs[0])[0]
        if op.kind == "conv":
            out[f"{path}.weight"] = (a["out_channels"], c // a["groups"], a["kernel_size"], a["kernel_size"])
            if a["bias"]:
                out[f"{path}.bias"] = (a["out_channels"],)
        elif op.kind == "batchnorm":
            for key in _BN_BUFFERS:
                out[f"{path}.{key}"] = (c,)
            out[f"{path}.num_batches_tracked"] = ()
        elif op.kind == "linear":
            out[f"{path}.weight"] = (a["out_features"], c)
            if a["bias"]:
                out[f"{path}.bias"] = (a["out_features"],)
    return out


def _seeded_state(net: Network, seed: int) -> dict[str, torch.Tensor]:
    from .torch_module import build

    return build(net, seed=seed).state_dict()


def _load_weights(net: Network, weights: str | Path | Mapping,
                  allow_nonfinite: bool = False) -> tuple[dict[str, torch.Tensor], str]:
    if isinstance(weights, Mapping):
        raw, provenance = weights, "state_dict"
    else:
        raw, provenance = _read_checkpoint(Path(weights)), f"file {Path(weights).name}"
    state = _unwrap(raw)
    _check_state(net, state, provenance)
    kept = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    converted: dict[str, int] = {}
    for v in kept.values():
        if v.dtype != torch.float32:
            name = str(v.dtype).removeprefix("torch.")
            converted[name] = converted.get(name, 0) + 1
    out = {k: v.detach().to("cpu", torch.float32) for k, v in kept.items()}
    if converted:  # ONNX initializers are float32 here: say so, since precision may change
        what = ", ".join(f"{n} {dtype} tensor{'s' * (n != 1)}" for dtype, n in sorted(converted.items()))
        warnings.warn(Note(f"the weights ({provenance}) hold {what}; converted to float32"), stacklevel=2)
    nonfinite = sorted(k for k, v in out.items() if not bool(torch.isfinite(v).all()))
    if nonfinite and not allow_nonfinite:  # a float64 beyond float32's range is infinite here too
        shown = ", ".join(nonfinite[:8]) + (f" and {len(nonfinite) - 8} more" if len(nonfinite) > 8 else "")
        raise UsageError(f"the weights ({provenance}) hold NaN or infinite values, in {len(nonfinite)} "
                         f"tensor{'s' * (len(nonfinite) != 1)} (as float32): {shown}",
                         hint="the model would output NaN; pass --allow-nonfinite "
                              "(allow_nonfinite=True) to write them anyway")
    return out, provenance


def _read_checkpoint(path: Path) -> object:
    if not path.is_file():
        raise UsageError(f"cannot read weights `{path}`: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UsageError(f"refusing to load `{path}`: it holds Python objects other than tensors, and "
                         f"loading them could run code ({first})",
                         hint="save only the weights: torch.save(model.state_dict(), path)") from None
    except Exception as err:  # not a torch file, truncated, corrupt zip…
        raise UsageError(f"cannot read weights `{path}`: {type(err).__name__}: {err}",
                         hint="--weights takes a file written by torch.save(model.state_dict(), path)") from None


def _unwrap(raw: object) -> Mapping:
    """The state_dict in a checkpoint: the mapping itself, or the one training scripts nest
    under ``state_dict`` / ``model``; a ``module.`` prefix (DataParallel) is dropped."""
    if isinstance(raw, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(raw.get(key), Mapping) and not any(isinstance(v, torch.Tensor) for v in raw.values()):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError("the weights are not a state_dict (a mapping of names to tensors)",
                         hint="save them with torch.save(model.state_dict(), path)")
    keys = [str(k) for k in raw]
    if all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in raw.items()}
    return raw


def _check_state(net: Network, state: Mapping, provenance: str) -> None:
    expected = expected_state(net)
    optional = {k for k in expected if k.endswith(".num_batches_tracked")}
    missing = sorted(k for k in expected if k not in state and k not in optional)
    extra = sorted(str(k) for k in state if k not in expected)
    wrong = []
    for key, shape in expected.items():
        value = state.get(key)
        if value is None or key in optional:
            continue
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            wrong.append(f"{key} (not a floating-point tensor)")
        elif value.layout != torch.strided:  # sparse tensors: no dense storage to export
            wrong.append(f"{key} (a {str(value.layout).removeprefix('torch.')} tensor; save it dense)")
        elif value.device.type == "meta":  # shapes only, no values
            wrong.append(f"{key} (a meta tensor, which holds no values)")
        elif tuple(value.shape) != shape:
            wrong.append(f"{key} ({_fmt(tuple(value.shape))}, expected {_fmt(shape)})")
    problems = []
    for title, keys in (("missing", missing), ("unexpected", extra), ("wrongly shaped", wrong)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{len(keys)} {title}: {shown}")
    if problems:
        raise UsageError(f"the weights ({provenance}) do not fit network `{net.name}`: " + "; ".join(problems),
                         hint="the keys must be those of the torch back end's module for this spec: "
                              "resdsl.build(spec).state_dict()")


def _fmt(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


# ---------------------------------------------------------------------------------- lowering

@dataclass
class _Lowering:
    net: Network
    state: Mapping[str, torch.Tensor]
    opset: int
    fold_bn: bool
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[np.ndarray] = field(default_factory=list)
    init_names: list[str] = field(default_factory=list)
    #: IR value (op name or ``input``) → the ONNX tensor that holds it.
    tensor: dict[str, str] = field(default_factory=dict)

    def run(self) -> None:
        net = self.net
        self.folded = foldable_batchnorms(net) if self.fold_bn else {}
        self.fold_into = {conv: bn for bn, conv in self.folded.items()}
        self._seen: set[str] = set()
        # The final tensor is called `output`, unless an op of that name is something else.
        names = {op.name for op in net.ops}
        self.output_name = "output" if "output" not in names - {net.output} else net.output
        self.tensor[INPUT] = INPUT
        for op in net.ops:
            self._lower(op)
        if self.tensor[net.output] != self.output_name:  # the output is the input, passed through
            self._node("Identity", [INPUT], net.output, self.output_name)

    # -- helpers

    def _out(self, op: Op) -> str:
        return self.output_name if op.name == self.net.output else op.name

    def _node(self, kind: str, inputs: list[str], name: str, out: str | None = None, **attrs) -> str:
        out = out or name
        self.nodes.append(helper.make_node(kind, inputs, [out], name=name, **attrs))
        return out

    def _init(self, name: str, array: np.ndarray) -> str:
        if name not in self._seen:
            self._seen.add(name)
            self.init_names.append(name)
            self.initializers.append(np.ascontiguousarray(array))
        return name

    def _param(self, key: str) -> str:
        return self._init(key, self.state[key].numpy())

    def _const(self, name: str, values, dtype=np.int64) -> str:
        return self._init(name, np.asarray(values, dtype=dtype))

    def _alias(self, op: Op, source: str) -> None:
        self.tensor[op.name] = self.tensor[source]
        if op.name == self.net.output and self.tensor[source] != INPUT:  # else: an Identity in run()
            self._rename(self.tensor[source], self.output_name)

    def _rename(self, old: str, new: str) -> None:
        """Rename a tensor already produced (an elided op at the end of the network)."""
        for node in self.nodes:
            node.output[:] = [new if o == old else o for o in node.output]
            node.input[:] = [new if i == old else i for i in node.input]
        for value, t in self.tensor.items():
            if t == old:
                self.tensor[value] = new

    # -- ops

    def _lower(self, op: Op) -> None:
        a = dict(op.attrs)
        xs = [self.tensor[i] for i in op.inputs]
        x, out, k = xs[0], self._out(op), op.kind
        if k in ("dropout", "drop_path", "identity") or (k == "batchnorm" and op.name in self.folded):
            self._alias(op, op.inputs[0])
            return
        if k == "zeropad" and a["stride"] == 1 and a["out_channels"] == self.net.shape_of(op.inputs[0])[0]:
            self._alias(op, op.inputs[0])
            return
        self.tensor[op.name] = out
        if k == "conv":
            self._conv(op, a, x, out)
        elif k == "batchnorm":
            m = op.module
            self._node("BatchNormalization", [x, *(self._param(f"{m}.{p}") for p in _BN_BUFFERS)],
                       op.name, out, epsilon=float(a["eps"]))
        elif k == "linear":
            w = self._param(f"{op.module}.weight")
            b = [self._param(f"{op.module}.bias")] if a["bias"] else []
            self._node("Gemm", [x, w, *b], op.name, out, transB=1)
        elif k in ("maxpool", "avgpool"):
            self._pool(op, a, x, out)
        elif k == "zeropad":
            self._zeropad(op, a, x, out)
        elif k in ("add", "multiply"):
            kind = "Add" if k == "add" else "Mul"
            acc = xs[0]
            for i, y in enumerate(xs[1:-1], start=1):  # left to right, as torch sums them
                acc = self._node(kind, [acc, y], f"{op.name}/{i}")
            self._node(kind, [acc, xs[-1]], op.name, out)
        else:
            self._unary(op, a, x, out)

    def _conv(self, op: Op, a: dict, x: str, out: str) -> None:
        m = op.module
        w, b = self.state[f"{m}.weight"], self.state.get(f"{m}.bias") if a["bias"] else None
        bn_name = self.fold_into.get(op.name)
        if bn_name is not None:
            bn = self.net.op(bn_name)
            s = {p: self.state[f"{bn.module}.{p}"] for p in _BN_BUFFERS}
            w, b = fold_conv_bn(w, b, s["weight"], s["bias"], s["running_mean"], s["running_var"],
                                float(bn.attr("eps")))
            # Re-key the folded tensors under the conv's names, as the torch folding pass does.
            inputs = [self._init(f"{m}.weight", w.numpy()), self._init(f"{m}.bias", b.numpy())]
        else:
            inputs = [self._param(f"{m}.weight")] + ([self._param(f"{m}.bias")] if b is not None else [])
        kernel, p, s, d = a["kernel_size"], a["padding"], a["stride"], a["dilation"]
        self._node("Conv", [x, *inputs], op.name, out, kernel_shape=[kernel, kernel], strides=[s, s],
                   pads=[p, p, p, p], dilations=[d, d], group=a["groups"])

    def _pool(self, op: Op, a: dict, x: str, out: str) -> None:
        # With ceil_mode, torch drops a last window that would start in the right padding;
        # onnx's shape inference does not. So ceil_mode is never emitted: where rounding up
        # adds a window (`extra` > 0), the overhang is spelled out as end padding.
        _, h, w = self.net.shape_of(op.inputs[0])
        _, oh, ow = op.shape
        k, s, p, d = a["kernel_size"], a["stride"], a["padding"], a.get("dilation", 1)
        extra = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + 2 * p)) for o, n in ((oh, h), (ow, w))]
        pads = [p, p, p + extra[0], p + extra[1]]
        attrs = {"kernel_shape": [k, k], "strides": [s, s]}
        if op.kind == "maxpool":
            if max(pads) >= k:  # onnxruntime wants pads below the kernel size (dilated windows)
                fill = self._const("const/-inf", -np.inf, np.float32)
                pad = self._const(f"{op.name}/pads", [0, 0, p, p, 0, 0, pads[2], pads[3]])
                x, pads = self._node("Pad", [x, pad, fill], f"{op.name}/pad"), [0, 0, 0, 0]
            self._node("MaxPool", [x], op.name, out, **attrs, pads=pads, dilations=[d, d])
            return
        # torch's divisor counts the real padding (with count_include_pad) but never the
        # overhang: the overhang is padding left out of the count, and counted padding
        # next to it becomes explicit zeros. (p + extra < kernel without dilation.)
        include = bool(a["count_include_pad"]) and p > 0
        if include and any(extra):
            pad = self._const(f"{op.name}/pads", [0, 0, p, p, 0, 0, p, p])
            x = self._node("Pad", [x, pad], f"{op.name}/pad")
            pads, include = [0, 0, extra[0], extra[1]], False
        self._node("AveragePool", [x], op.name, out, **attrs, pads=pads, count_include_pad=int(include))

    def _zeropad(self, op: Op, a: dict, x: str, out: str) -> None:
        c, h, w = self.net.shape_of(op.inputs[0])
        s, extra = a["stride"], a["out_channels"] - c
        if s != 1:
            args = [self._const(f"{op.name}/{n}", v)
                    for n, v in (("starts", [0, 0]), ("ends", [h, w]), ("axes", [2, 3]), ("steps", [s, s]))]
            x = self._node("Slice", [x, *args], op.name if not extra else f"{op.name}/slice",
                           out if not extra else None)
        if extra:
            pad = self._const(f"{op.name}/pads", [0, extra // 2, 0, 0, 0, extra - extra // 2, 0, 0])
            self._node("Pad", [x, pad], op.name, out)

    def _unary(self, op: Op, a: dict, x: str, out: str) -> None:
        """Activations, global pooling and flatten: one input, no weights."""
        k, name = op.kind, op.name
        simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh",
                  "global_avgpool": "GlobalAveragePool"}
        if k in simple:
            self._node(simple[k], [x], name, out)
        elif k == "flatten":
            self._node("Flatten", [x], name, out, axis=1)
        elif k == "leaky_relu":
            self._node("LeakyRelu", [x], name, out, alpha=float(a["negative_slope"]))
        elif k == "relu6":
            lo = self._const("const/zero", 0.0, np.float32)
            hi = self._const("const/six", 6.0, np.float32)
            self._node("Clip", [x, lo, hi], name, out)
        elif k == "silu":
            self._node("Mul", [x, self._node("Sigmoid", [x], f"{name}/sigmoid")], name, out)
        elif k == "hardswish":
            if self.opset >= 14:
                self._node("HardSwish", [x], name, out)
            else:  # x · hardsigmoid(x) with ONNX's alpha/beta for relu6(x + 3) / 6
                gate = self._node("HardSigmoid", [x], f"{name}/gate", alpha=1.0 / 6.0, beta=0.5)
                self._node("Mul", [x, gate], name, out)
        elif k == "gelu":
            if self.opset >= 20:
                self._node("Gelu", [x], name, out)
            else:  # torch's exact GELU: x · (1 + erf(x / √2)) / 2
                sqrt2 = self._const("const/sqrt2", np.sqrt(2.0), np.float32)
                one = self._const("const/one", 1.0, np.float32)
                half = self._const("const/half", 0.5, np.float32)
                e = self._node("Erf", [self._node("Div", [x, sqrt2], f"{name}/scale")], f"{name}/erf")
                y = self._node("Mul", [x, self._node("Add", [e, one], f"{name}/shift")], f"{name}/gate")
                self._node("Mul", [y, half], name, out)
        else:
            raise ValueError(f"no ONNX lowering for `{k}`")  # PRIMITIVES and this list agree

    # -- the model

    def skeleton(self, static_batch: int | None, provenance: str) -> onnx.ModelProto:
        """The model without its initializers."""
        if static_batch is not None and (isinstance(static_batch, bool) or not isinstance(static_batch, int)
                                         or static_batch < 1):
            raise UsageError(f"--static-batch must be a positive batch size, got {static_batch}",
                             hint="leave it out for a symbolic batch dimension")
        net = self.net
        batch = static_batch if static_batch is not None else BATCH
        spec = Path(net.source).name
        graph = helper.make_graph(
            self.nodes, net.name,
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [batch, *net.input_shape])],
            [helper.make_tensor_value_info(self.output_name, TensorProto.FLOAT, [batch, *net.output_shape])],
            doc_string=f"network `{net.name}` from {spec}")
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="resdsl",
                                  producer_version=__version__,
                                  ir_version=helper.find_min_ir_version_for(opsets),
                                  doc_string=f"{net.name}: compiled from {spec} by resdsl {__version__}")
        helper.set_model_props(model, {
            "resdsl.version": __version__, "resdsl.spec": spec, "resdsl.network": net.name,
            "resdsl.weights": provenance, "resdsl.fold_bn": str(self.fold_bn).lower(),
        })
        return model

    def _tensors(self) -> list[tuple[onnx.TensorProto, memoryview]]:
        """Each initializer: its header (name, type, dims) and its little-endian bytes."""
        out = []
        for name, array in zip(self.init_names, self.initializers):
            header = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype),
                                 dims=array.shape)
            data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"), copy=False))
            out.append((header, memoryview(data).cast("B")))
        return out

    def model(self, static_batch: int | None, provenance: str) -> onnx.ModelProto:
        """The complete ``ModelProto``."""
        model = self.skeleton(static_batch, provenance)
        # Added in place: make_graph / make_model copy what they are given.
        for header, data in self._tensors():
            tensor = model.graph.initializer.add()
            tensor.CopyFrom(header)
            tensor.raw_data = bytes(data)
        return model

    def serialize(self, static_batch: int | None, provenance: str) -> bytes:
        """``model(...).SerializeToString()``, byte for byte, with each tensor copied once.

        protobuf writes a message as its fields in field-number order, each as a tag, a
        length and the bytes; the weights are spliced in at their place (graph field 5,
        tensor field 9) instead of being copied into the message and out again.
        """
        model = self.skeleton(static_batch, provenance)
        model_head, model_tail = _split(model, _MODEL_GRAPH)
        graph_head, graph_tail = _split(model.graph, _GRAPH_INITIALIZER)
        pieces: list[bytes | memoryview] = [graph_head]
        for header, data in self._tensors():
            head = header.SerializeToString() + _tag(_TENSOR_RAW_DATA, len(data))
            pieces += [_tag(_GRAPH_INITIALIZER, len(head) + len(data)), head, data]
        pieces.append(graph_tail)
        size = sum(len(p) for p in pieces)
        return b"".join([model_head, _tag(_MODEL_GRAPH, size), *pieces, model_tail])


# Field numbers in onnx.proto.
_MODEL_GRAPH = onnx.ModelProto.DESCRIPTOR.fields_by_name["graph"].number
_GRAPH_INITIALIZER = onnx.GraphProto.DESCRIPTOR.fields_by_name["initializer"].number
_TENSOR_RAW_DATA = onnx.TensorProto.DESCRIPTOR.fields_by_name["raw_data"].number


def _split(message, number: int) -> tuple[bytes, bytes]:
    """The serialised fields of ``message`` numbered below ``number``, and those above."""
    below, above = type(message)(), type(message)()
    below.CopyFrom(message)
    above.CopyFrom(message)
    for field_ in message.DESCRIPTOR.fields:
        (below if field_.number >= number else above).ClearField(field_.name)
        if field_.number == number:
            above.ClearField(field_.name)
    return below.SerializeToString(), above.SerializeToString()


def _tag(number: int, length: int) -> bytes:
    """The key of a length-delimited field and the length, as protobuf varints."""
    out = bytearray()
    for value in (number << 3 | 2, length):
        while value > 0x7F:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


# ---------------------------------------------------------------------------------- external data

class ExternalDataModel:
    """An ONNX model whose tensors live in a file beside it (``model.onnx.data``).

    The data file's name depends on where the model goes, so the tensors are placed only
    when :meth:`write` is called; both files are written to temporary names first and
    renamed into place only once both are complete.
    """

    def __init__(self, model: onnx.ModelProto):
        self._model = model
        self._chunks: list[bytes] = []
        offset = 0
        for tensor in model.graph.initializer:
            if len(tensor.raw_data) < EXTERNAL_MIN_BYTES:
                continue
            offset = -(-offset // EXTERNAL_ALIGN) * EXTERNAL_ALIGN
            data = tensor.raw_data
            pad = offset - sum(len(c) for c in self._chunks)
            if pad:
                self._chunks.append(b"\0" * pad)
            self._chunks.append(data)
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", ""), ("offset", str(offset)), ("length", str(len(data)))):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            offset += len(data)

    def files(self, path: str | Path) -> dict[Path, bytes]:
        """The files to write for a model at ``path``: the model and its data."""
        path = Path(path)
        data = path.with_name(path.name + ".data")
        for tensor in self._model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    entry.value = data.name
        return {path: self._model.SerializeToString(deterministic=True), data: b"".join(self._chunks)}

    def write(self, path: str | Path) -> list[Path]:
        """Write the model at ``path`` and its tensors beside it, all or nothing: on any
        failure both files are as they were."""
        if str(path) == "-":
            raise UsageError("--external-data writes two files and cannot go to standard output",
                             hint="give -o FILE.onnx; the tensors go to FILE.onnx.data")
        real = destination(path)
        if real is None or any(destination(p) is None for p in self.files(real)):
            raise UsageError(f"--external-data writes two files, `{path}` and its `.data`, and "
                             "cannot write them to a device or FIFO",
                             hint="give -o FILE.onnx in a folder")
        files = self.files(real)
        model_path, data_path = files
        temps: dict[Path, str] = {}
        sweep(model_path)
        keep = Path(tempfile.mkdtemp(prefix=f".{data_path.name}.{TEMP_TAG}-{os.getpid()}-",
                                     dir=data_path.parent))
        backup = keep / "previous"
        placed = False
        try:
            for target, payload in files.items():
                temps[target] = _write_temp(target, payload)
            if data_path.exists():  # the old tensors, kept until the new model is in place
                try:
                    os.link(data_path, backup)
                except OSError:  # a file system without hard links
                    shutil.copyfile(data_path, backup)
            # The data first: a model never points at tensors that are not there yet.
            os.replace(temps[data_path], data_path)
            del temps[data_path]
            placed = True
            os.replace(temps[model_path], model_path)
            del temps[model_path]
            placed = False
        finally:
            if placed:  # the model could not be placed: put the old data back
                if backup.exists():
                    os.replace(backup, data_path)
                else:
                    data_path.unlink(missing_ok=True)
            for tmp in temps.values():
                Path(tmp).unlink(missing_ok=True)
            shutil.rmtree(keep, ignore_errors=True)
        return list(files)


def _write_temp(target: Path, payload: bytes) -> str:
    """``payload`` in a new temporary file beside ``target``, synced, with the permissions
    ``target`` has or a new file would get."""
    fd, tmp = temp_file(target)
    try:
        with os.fdopen(fd, "wb") as f:
            write_all(f, payload, target)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~_umask())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
