"""The ONNX back end's lowering: the weights, the graph and its serialisation.

:mod:`resdsl.backends.onnx_graph` describes the result, declares the options and calls this
module; it is apart so that reading the options imports neither ``onnx`` nor ``numpy``.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper

from ..diagnostics import Note
from ..ir import INPUT, Network, Op
from ..output import destination, publish_addressed, seal, sweep, temp_dir
from ..passes import foldable_batchnorms
from ..primitives import PRIMITIVES, NoLowering
from ..version import __version__
from . import BackendError, OptionError, onnx_builtins  # noqa: F401  (registers the built-ins' lowerings)
from .onnx_registry import ONNX, data_files, expected_state, lowering_for

#: Tensors this large or larger go to the external data file; small constants stay inline.
EXTERNAL_MIN_BYTES = 1024
#: Offsets in the external data file are aligned so that runtimes can memory-map tensors.
EXTERNAL_ALIGN = 4096

#: The graph's symbolic batch dimension.
BATCH = "batch"
#: With ``dynamic_size``: the input's symbolic height and width.
HEIGHT, WIDTH = "height", "width"

# ---------------------------------------------------------------------------------- weights

def seeded_state(net: Network, seed: int) -> dict[str, np.ndarray]:
    # the only ONNX path that needs torch: the torch back end's seeded initialisation
    from .torch_model import build

    return {k: v.detach().numpy() for k, v in build(net, seed=seed).state_dict().items()}


def _torch_tensor(value: object) -> bool:
    """A torch tensor (only possible when torch is loaded: this never imports it)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _dtype_name(value) -> str:
    return str(value.dtype).removeprefix("torch.") if _torch_tensor(value) else value.dtype.name


def load_weights(net: Network, weights: str | Path | Mapping,
                  allow_nonfinite: bool = False) -> tuple[dict[str, np.ndarray], str]:
    widened: dict[str, str] = {}  # bfloat16 tensors read from safetensors as float32
    from ..checkpoints import CheckpointError, unwrap_state_dict

    notes: list[str] = []  # wrappers taken off, a prefix dropped: said, as the docs promise
    if isinstance(weights, Mapping):
        provenance = "state_dict"
        try:  # a network without weights has an empty state_dict, and may be given it
            state = unwrap_state_dict(weights, source="the state_dict", notes=notes) if weights else {}
        except CheckpointError as err:
            raise OptionError("weights", "{problem}", hint="{fix}", problem=err, fix=err.hint) from None
    else:
        state, provenance = _read_checkpoint(Path(weights), widened, notes), f"file {Path(weights).name}"
    for note in notes:
        warnings.warn(Note(note), stacklevel=2)
    _check_state(net, state, provenance)
    kept = {k: v for k, v in state.items() if not k.endswith(".num_batches_tracked")}
    converted: dict[str, int] = {}
    for k, v in kept.items():
        name = widened.get(k) or _dtype_name(v)
        if name != "float32":
            converted[name] = converted.get(name, 0) + 1
    # numpy float32 arrays from here on; torch tensors (from a torch file, or given) are converted
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes infinite: reported below
        out = {k: (v.detach().to("cpu", sys.modules["torch"].float32).numpy() if _torch_tensor(v)
                   else np.asarray(v, np.float32)) for k, v in kept.items()}
    if converted:  # ONNX initializers are float32 here: say so, since precision may change
        what = ", ".join(f"{n} {dtype} tensor{'s' * (n != 1)}" for dtype, n in sorted(converted.items()))
        warnings.warn(Note(f"the weights ({provenance}) hold {what}; converted to float32"), stacklevel=2)
    nonfinite = sorted(k for k, v in out.items() if not bool(np.isfinite(v).all()))
    if nonfinite and not allow_nonfinite:  # a float64 beyond float32's range is infinite here too
        shown = ", ".join(nonfinite[:8]) + (f" and {len(nonfinite) - 8} more" if len(nonfinite) > 8 else "")
        raise OptionError("weights", f"the weights ({{provenance}}) hold NaN or infinite values, in {len(nonfinite)} "
                          f"tensor{'s' * (len(nonfinite) != 1)} (as float32): {{shown}}",
                          hint="the model would output NaN; pass {allow_nonfinite=True} to write them anyway",
                          provenance=provenance, shown=shown)
    return out, provenance


def _read_checkpoint(path: Path, widened: dict[str, str], notes: list[str]) -> Mapping:
    if not path.is_file():
        raise OptionError("weights", "cannot read weights `{path}`: no such file", path=path)
    # safetensors as numpy, without pickle or torch; torch files with weights_only=True
    # (resdsl.checkpoints)
    from ..checkpoints import CheckpointError, load_arrays
    try:
        return load_arrays(path, dtypes=widened, notes=notes)
    except CheckpointError as err:
        raise OptionError("weights", "{problem}", hint="{fix}", problem=err, fix=err.hint) from err


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
        if _torch_tensor(value):
            if not value.is_floating_point():
                wrong.append(f"{key} (not a floating-point tensor)")
                continue
            if value.layout != sys.modules["torch"].strided:  # sparse tensors: no dense storage to export
                wrong.append(f"{key} (a {str(value.layout).removeprefix('torch.')} tensor; save it dense)")
                continue
            if value.device.type == "meta":  # shapes only, no values
                wrong.append(f"{key} (a meta tensor, which holds no values)")
                continue
        elif not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
            wrong.append(f"{key} (not a floating-point tensor)")
            continue
        if tuple(value.shape) != shape:
            wrong.append(f"{key} ({_fmt(tuple(value.shape))}, expected {_fmt(shape)})")
    problems = []
    for title, keys in (("missing", missing), ("unexpected", extra), ("wrongly shaped", wrong)):
        if keys:
            shown = ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")
            problems.append(f"{len(keys)} {title}: {shown}")
    if problems:
        raise OptionError("weights", "the weights ({provenance}) do not fit network `{network}`: {problems}",
                          hint="the keys must be those of the torch back end's module for this spec: "
                               "resdsl.build(spec).state_dict()",
                          provenance=provenance, network=net.name, problems="; ".join(problems))


def _is_array(value: object) -> bool:
    return isinstance(value, np.ndarray) or _torch_tensor(value)


def _fmt(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


# ---------------------------------------------------------------------------------- lowering

@dataclass
class Lowering:
    net: Network
    state: Mapping[str, np.ndarray]
    opset: int
    fold_bn: bool
    #: Symbolic height and width (``dynamic_size``).
    dynamic: bool = False
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[np.ndarray] = field(default_factory=list)
    init_names: list[str] = field(default_factory=list)
    #: IR value (op name or ``input``) → the ONNX tensor that holds it.
    tensor: dict[str, str] = field(default_factory=dict)
    #: Tensors whose shape a lowering declares (ops shape inference cannot see into).
    declared: dict[str, tuple[int, ...]] = field(default_factory=dict)

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
        self.check()

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
        return self._init(key, self.state[key])

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
        if old in self.declared:
            self.declared[new] = self.declared.pop(old)

    # -- what an op's lowering uses (the registry's ONNX lowerings call these)

    def node(self, kind: str, inputs: list[str], name: str, out: str | None = None, **attrs) -> str:
        """Add a node; returns its output tensor (``out``, or ``name``)."""
        return self._node(kind, inputs, name, out, **attrs)

    def node_outputs(self, kind: str, inputs: list[str], name: str, outputs: list[str], **attrs) -> None:
        """Add a node with several outputs (a Split)."""
        self.nodes.append(helper.make_node(kind, inputs, outputs, name=name, **attrs))

    def declare(self, tensor: str, shape: tuple[int, ...]) -> None:
        """Record ``tensor``'s per-sample shape in the graph's value_info, for an operator
        onnx's shape inference does not know (GroupNormalization-21 in onnx 1.23)."""
        self.declared[tensor] = shape

    def produced(self, tensor: str) -> bool:
        """Whether a node already writes ``tensor`` (a sibling's lowering wrote it)."""
        return any(tensor in node.output for node in self.nodes)

    def output_of(self, op: Op) -> str:
        """The tensor that will hold ``op``'s value (``output`` for the network's last op)."""
        return self._out(op)

    def init(self, name: str, array: np.ndarray) -> str:
        """An initializer (added once per name)."""
        return self._init(name, array)

    def param(self, key: str) -> str:
        """The ``state_dict`` tensor ``key`` as an initializer of that name."""
        return self._param(key)

    def const(self, name: str, values, dtype=np.int64) -> str:
        """A constant initializer, int64 unless ``dtype`` says otherwise."""
        return self._const(name, values, dtype)

    def alias(self, op: Op, source: str) -> None:
        """``op`` passes ``source`` through: no node."""
        self._alias(op, source)

    def holds(self, op: Op, tensor: str) -> None:
        """``op``'s value is the ONNX tensor ``tensor`` (an initializer): no node, unless it is
        the network's output."""
        if op.name == self.net.output:
            self._node("Identity", [tensor], op.name, self.output_name)
        else:
            self.tensor[op.name] = tensor

    def shape_of(self, value: str) -> tuple[int, ...]:
        """The per-sample shape of an IR value."""
        return self.net.shape_of(value)

    def varies(self, value: str) -> bool:
        """With ``dynamic_size``, whether the height or width of IR value ``value`` depends
        on the input's (false after a global pool); always false for a static graph."""
        if not self.dynamic:
            return False
        if not hasattr(self, "_varying"):
            self._varying = _size_dependent(self.net)
        return value in self._varying

    def spatial_shape(self, x: str, name: str) -> str:
        """A ``Shape`` node: ``x``'s dimensions, read from the graph at run time."""
        return self._node("Shape", [x], name)

    def folded_bn(self, op: Op) -> Op | None:
        """With BN folding, the BN that folds into this conv, if any."""
        name = self.fold_into.get(op.name)
        return None if name is None else self.net.op(name)

    def reduce_mean(self, x: str, axes: list[int], name: str) -> str:
        """ReduceMean keeping dimensions; axes are an attribute before opset 18, an input since."""
        if self.opset >= 18:
            return self._node("ReduceMean", [x, self._const(f"{name}/axes", axes)], name, keepdims=1)
        return self._node("ReduceMean", [x], name, axes=axes, keepdims=1)

    # -- ops

    def _lower(self, op: Op) -> None:
        if op.name in self.folded:  # a BN folded into its conv
            self._alias(op, op.inputs[0])
            return
        try:
            ONNX.require(op.kind)
        except NoLowering as err:
            raise BackendError("{what}", what=err, hint="register one with "
                               "resdsl.backends.onnx_graph.onnx_lowering, or choose another target") from None
        lowering = lowering_for(op.kind, self.opset)
        if lowering is None:
            raise BackendError(f"`{{kind}}` has no ONNX lowering for opset {self.opset}",
                               hint="choose a newer {opset}", kind=op.kind)
        self.tensor[op.name] = self._out(op)
        before = len(self.nodes)
        lowering(self, op, [self.tensor[i] for i in op.inputs], self._out(op))
        origin = ONNX.origin(op.kind)
        made = self.tensor[op.name]
        if origin != "builtin" and made == self._out(op) and \
                not any(made in node.output for node in self.nodes[before:]):
            where = f"{op.span.path}:{op.span.line}:{op.span.column}: " if op.span is not None else ""
            raise BackendError("{where}the ONNX lowering of `{kind}` (from {origin}) made no node that writes "
                               "`{made}`: nothing was written", where=where, kind=op.kind, origin=origin,
                               made=made,
                               hint="this is a bug in that plugin: its lowering must end with the node "
                                    "that writes its `out` tensor")

    def check(self) -> None:
        """``onnx.checker`` (full check, strict shape inference included) on the graph before
        anything is written: a plugin's lowering can break a graph that resdsl's own cannot.
        The weights stand as graph inputs of their shapes, so they are not copied for it."""
        model = self.skeleton(None, "")
        for header, _ in self._tensors():
            model.graph.input.append(helper.make_tensor_value_info(header.name, header.data_type,
                                                                   list(header.dims)))
        try:
            onnx.checker.check_model(model, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
            plugins = sorted({f"`{op.kind}` (from {ONNX.origin(op.kind)})" for op in self.net.ops
                              if ONNX.origin(op.kind) != "builtin"})
            detail = str(err).strip().splitlines()[0][:300]
            raise BackendError("the ONNX graph fails onnx.checker, so nothing was written: {detail}",
                               hint=("the network uses plugin primitives: {plugins}; their ONNX lowering is "
                                     "the likely cause") if plugins else "this is a bug in resdsl: please report it",
                               detail=detail, plugins=", ".join(plugins)) from None

    # -- the model

    def skeleton(self, static_batch: int | None, provenance: str) -> onnx.ModelProto:
        """The model without its initializers."""
        net = self.net
        batch = static_batch if static_batch is not None else BATCH
        spec = Path(net.source).name
        in_dims: list[int | str] = [batch, *net.input_shape]
        out_dims: list[int | str] = [batch, *net.output_shape]
        if self.dynamic:
            in_dims[2:] = [HEIGHT, WIDTH]
            if self.varies(net.output) and len(out_dims) == 4:  # a feature map comes out
                out_dims[2:] = [f"output_{HEIGHT}", f"output_{WIDTH}"]
        graph = helper.make_graph(
            self.nodes, net.name,
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, in_dims)],
            [helper.make_tensor_value_info(self.output_name, TensorProto.FLOAT, out_dims)],
            doc_string=f"network `{net.name}` from {spec}",
            # a declared shape's height and width are unknown (None) in a graph of any size
            value_info=[helper.make_tensor_value_info(
                t, TensorProto.FLOAT, [batch, *(shape[:1] + (None,) * (len(shape) - 1) if self.dynamic else shape)])
                for t, shape in self.declared.items() if t != self.output_name])
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="resdsl",
                                  producer_version=__version__,
                                  ir_version=helper.find_min_ir_version_for(opsets),
                                  doc_string=f"{net.name}: compiled from {spec} by resdsl {__version__}")
        helper.set_model_props(model, {
            "resdsl.version": __version__, "resdsl.spec": spec, "resdsl.network": net.name,
            "resdsl.weights": provenance, "resdsl.fold_bn": str(self.fold_bn).lower(),
            **({"resdsl.dynamic_size": "true"} if self.dynamic else {}),
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


def _size_dependent(net: Network) -> set[str]:
    """The IR values whose height or width changes with the input's: the registry's shape
    rules run again at twice the declared input size, and the sizes compared. (A value
    whose size does not change there, a global pool's 1×1, is the same at every size.)"""
    c, h, w = net.input_shape
    shapes: dict[str, tuple[int, ...]] = {INPUT: (c, 2 * h, 2 * w)}
    out = {INPUT}
    for op in net.ops:
        try:
            shape = PRIMITIVES[op.kind].infer(dict(op.attrs), [shapes[i] for i in op.inputs])[0]
        except Exception:  # noqa: BLE001 - a rule that refuses the larger size: assume it varies
            shape = ()
        shapes[op.name] = shape
        if tuple(shape[1:]) != tuple(op.shape[1:]) or len(op.shape) < 3 and any(i in out for i in op.inputs):
            out.add(op.name)
    return out


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
    """An ONNX model whose tensors live in a file beside it.

    The tensor file is named by its content, ``model.onnx.<digest>.data`` (16 hex digits
    of its SHA-256), and the model names that file. Publishing is one rename, the model's:
    the tensor file is placed first under its own name, then the model over the old one,
    then tensor files no model points at any more are removed. So a reader, a crash at any
    step, or another writer to the same output never sees a model beside another run's
    tensors (two files renamed one after the other would let them: issue 25, defect 1).
    The renames and the removal run under a lock on the folder, one writer at a time.
    """

    def __init__(self, model: onnx.ModelProto):
        self._model = model

    @staticmethod
    def data_name(path: str | Path, digest: str) -> str:
        return f"{Path(path).name}.{digest}.data"

    @staticmethod
    def companions(path: str | Path) -> list[Path]:
        """The tensor files of earlier writes beside the model at ``path`` (our naming only)."""
        return data_files(path)

    def external(self, location: str) -> onnx.ModelProto:
        """A copy of the model whose tensors of ``EXTERNAL_MIN_BYTES`` or more are marked
        to go to ``location``, each at an offset aligned to ``EXTERNAL_ALIGN`` (so that
        runtimes can memory-map them); their bytes are still inline."""
        model = onnx.ModelProto()
        model.CopyFrom(self._model)
        offset = 0
        for tensor in model.graph.initializer:
            if len(tensor.raw_data) < EXTERNAL_MIN_BYTES:
                continue
            offset = -(-offset // EXTERNAL_ALIGN) * EXTERNAL_ALIGN
            external_data_helper.set_external_data(tensor, location, offset, len(tensor.raw_data))
            offset += len(tensor.raw_data)
        return model

    def digest(self) -> str:
        """16 hex digits of the SHA-256 of the tensors that go to the data file, with their
        names and sizes: equal tensors, equal name; other tensors, another name."""
        h = hashlib.sha256()
        for tensor in self._model.graph.initializer:
            if len(tensor.raw_data) >= EXTERNAL_MIN_BYTES:
                h.update(f"{tensor.name}\0{tensor.data_type}\0{len(tensor.raw_data)}\0".encode())
                h.update(tensor.raw_data)
        return h.hexdigest()[:16]

    def write(self, path: str | Path) -> list[Path]:
        """Write the model at ``path`` and its tensors beside it, as one unit: on any
        failure the previous model and the tensors it names are as they were."""
        if str(path) == "-":
            raise BackendError("{external_data=True} writes two files and cannot go to standard output",
                               hint="write the model to a file, FILE.onnx; the tensors go to a file beside it")
        real = destination(path)
        if real is None:
            raise BackendError("{external_data=True} writes two files, `{path}` and its `.data`, and "
                               "cannot write them to a device or FIFO",
                               hint="write the model to a file, FILE.onnx, in a folder", path=path)
        model_path = real
        data_path = model_path.with_name(self.data_name(model_path, self.digest()))
        sweep(model_path)
        work = temp_dir(model_path)
        try:
            model = self.external(data_path.name)
            # onnx writes the tensors to `location` in the folder it is given, at their offsets
            external_data_helper.write_external_data_tensors(model, str(work))
            data_tmp = work / data_path.name
            data_tmp.touch()  # a model with no tensor that large still gets its (empty) file
            seal(data_tmp, data_path)
            publish_addressed(model_path, model.SerializeToString(deterministic=True), data_tmp, data_path,
                              lambda: self.companions(model_path))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return [model_path, data_path]
