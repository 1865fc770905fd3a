"""Issue 22: the tensor ops of any rank (reshape, permute, transpose, matmul, softmax, slice,
pad_axis).

Each is checked against plain torch on the same input: from the in-process module
(``resdsl.build``), from the generated source and in onnxruntime (symbolic batch and, where
the sizes allow, symbolic height and width). Their shape errors are diagnostics in
``tests/cases/invalid/tensor_*.res``; MACs are checked against torch's FLOP counter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from test_onnx import assert_valid  # noqa: E402
from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from resdsl.backends import onnx_graph, torch_source  # noqa: E402

#: name → (input shape, spec body, the same computation in plain torch on a batch).
CASES: dict[str, tuple[str, str, Callable]] = {
    "reshape": ("[8, 4, 6]", "reshape([2, 4, -1])",
                lambda x: x.reshape(x.shape[0], 2, 4, 24)),
    "reshape_keep": ("[8, 4, 6]", "reshape([0, -1, 3])",
                     lambda x: x.reshape(x.shape[0], 8, 8, 3)),
    "reshape_flat": ("[8, 4, 6]", "reshape([-1])", lambda x: x.flatten(1)),
    "permute": ("[8, 4, 6]", "permute([1, 2, 0])", lambda x: x.permute(0, 2, 3, 1)),
    "permute_negative": ("[8, 4, 6]", "permute([-1, 0, -2])", lambda x: x.permute(0, 3, 1, 2)),
    "transpose": ("[8, 4, 6]", "transpose(0, 2)", lambda x: x.transpose(1, 3)),
    "transpose_negative": ("[8, 4, 6]", "transpose(-1, -2)", lambda x: x.transpose(-1, -2)),
    "softmax_last": ("[8, 4, 6]", "softmax()", lambda x: x.softmax(-1)),
    "softmax_channels": ("[8, 4, 6]", "softmax(axis = 0)", lambda x: x.softmax(1)),
    "softmax_middle": ("[8, 4, 6]", "softmax(-2)", lambda x: x.softmax(2)),
    # attention between positions: q·kᵀ over the H·W positions of 2 heads, softmax, ·v
    "attention": ("[8, 4, 6]",
                  "q: reshape([2, 4, -1])\nk: transpose(-1, -2) from q\n"
                  "a: matmul(q, k)\nsoftmax()\nmatmul(q)",
                  lambda x: (lambda q: (q @ q.transpose(-1, -2)).softmax(-1) @ q)(x.reshape(x.shape[0], 2, 4, 24))),
    # the axes before the last two broadcast: [2, 4, 24] · [1, 24, 6]
    "matmul_broadcast": ("[8, 4, 6]",
                         "q: reshape([2, 4, -1])\nv: reshape([1, 24, 8]) from input\nmatmul(q, v)",
                         lambda x: x.reshape(x.shape[0], 2, 4, 24) @ x.reshape(x.shape[0], 1, 24, 8)),
    # GCNet's attention pooling: the features weighted by a softmax over the positions
    "context": ("[8, 4, 6]",
                "parts: split([1, 7])\ncurrent = parts[0]\nreshape([1, -1])\nsoftmax()\nattn: reshape([-1, 1])\n"
                "x: reshape([0, -1]) from input\nmatmul(x, attn)\nreshape([0, 1, 1])",
                lambda x: (x.flatten(2) @ x[:, :1].reshape(x.shape[0], 1, -1).softmax(-1).transpose(1, 2))
                .reshape(x.shape[0], 8, 1, 1)),
    "slice": ("[8, 4, 6]", "slice(0, 2, 5)", lambda x: x[:, 2:5]),
    "slice_negative": ("[8, 4, 6]", "slice(-1, -4, -1)", lambda x: x[..., -4:-1]),
    "slice_step": ("[8, 4, 6]", "slice(axis = 1, start = 1, end = 100, step = 2)", lambda x: x[:, :, 1::2]),
    "pad_axis": ("[8, 4, 6]", "pad_axis(-1, after = 3)", lambda x: torch.nn.functional.pad(x, [0, 3])),
    "pad_axis_channels": ("[8, 4, 6]", "pad_axis(0, 1, 2, value = -1.5)",
                          lambda x: torch.nn.functional.pad(x, [0, 0, 0, 0, 1, 2], value=-1.5)),
    # timm's rel_logits_1d (BoTNet): relative logits [n, W, 2W-1] shifted to absolute ones
    # [n, W, W] by padding, reshaping and slicing out the padded elements (W = 4)
    "rel_to_abs": ("[3, 4, 7]",
                   "pad_axis(-1, after = 1)\nreshape([0, -1])\npad_axis(-1, after = 3)\nreshape([0, 5, 7])\n"
                   "slice(-2, 0, 4)\nslice(-1, 3, 7)",
                   lambda x: torch.nn.functional.pad(torch.nn.functional.pad(x, [0, 1]).flatten(2), [0, 3])
                   .reshape(x.shape[0], 3, 5, 7)[:, :, :4, 3:]),
}

#: the cases whose ONNX graph keeps height and width symbolic (sizes as 0 and -1 only)
DYNAMIC = ("reshape_flat", "permute", "transpose", "softmax_last", "softmax_channels", "context",
           "slice", "slice_negative", "pad_axis", "pad_axis_channels")


def spec(name: str) -> str:
    shape, body, _ = CASES[name]
    lines = "\n".join(f"    {line}" for line in body.splitlines())
    return f"network t_{name} {{\n    input {shape}\n{lines}\n}}\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_tensor_op_matches_torch(name: str, tmp_path: Path):
    net = resdsl.loads(spec(name), path=str(tmp_path / f"t_{name}.res"))
    reference = CASES[name][2]
    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(0))
    want = reference(x)
    assert tuple(want.shape[1:]) == net.output_shape
    with torch.no_grad():
        torch.testing.assert_close(resdsl.build(net).eval()(x), want, rtol=1e-5, atol=1e-6)
        source = torch_source.emit(net)
        module = import_source(source, tmp_path, f"t_{name}")
        torch.testing.assert_close(getattr(module, net.name)().eval()(x), want, rtol=1e-5, atol=1e-6)
    for dynamic in (False, True) if name in DYNAMIC else (False,):
        for opset in (onnx_graph.MIN_OPSET, onnx_graph.MAX_OPSET):
            proto = onnx_graph.build_model(net, opset=opset, dynamic_size=dynamic)
            if not dynamic:
                assert_valid(proto, net)
            session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
            got = session.run(None, {"input": x.numpy()})[0]
            torch.testing.assert_close(torch.from_numpy(got), want, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, o=opset: f"opset {o}: {m}")


def test_generated_source_reads_as_torch(tmp_path: Path):
    """The generated forward writes the torch idioms, the batch axis as ``x.shape[0]``."""
    source = torch_source.emit(resdsl.loads(spec("attention"), path=str(tmp_path / "a.res")))
    assert ".reshape(x.shape[0], 2, 4, -1)" in source
    assert ".transpose(-1, -2)" in source and " @ " in source and ".softmax(dim=-1)" in source
    source = torch_source.emit(resdsl.loads(spec("permute"), path=str(tmp_path / "p.res")))
    assert ".permute(0, 2, 3, 1)" in source
    source = torch_source.emit(resdsl.loads(spec("rel_to_abs"), path=str(tmp_path / "r.res")))
    assert "F.pad(" in source and "[:, :, 0:4]" in source and "[:, :, :, 3:7]" in source


def test_matmul_macs_are_torchs_flop_count(tmp_path: Path):
    """matmul's MACs are its multiply-accumulates, as torch's FLOP counter (FLOPs / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = resdsl.loads(spec("attention"), path=str(tmp_path / "a.res"))
    model = resdsl.build(net).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, *net.input_shape))
    assert counter.get_total_flops() == 2 * net.macs == 2 * 2 * (4 * 4 * 24 + 4 * 24 * 4)


#: A block applied with other sizes: its class takes the sizes as constructor parameters.
FOLD = """block fold(n) {
    c: conv(8, 1)
    reshape([n, 0, -1])
    softmax()
    reshape([-1, 4, 6])
    reshape([n, -1])
    softmax()
    reshape([8, 4, 6])
}

network t_fold {
    input [8, 4, 6]
    f1: fold(2)
    f2: fold(4)
}
"""


def test_sizes_that_differ_between_instances_of_a_class(tmp_path: Path):
    """Sizes that become a constructor parameter, with a 0 among them and without, in the
    generated source: scripted, traced and ruff-clean, and equal to plain torch."""
    from test_registry import ruff_clean

    net = resdsl.loads(FOLD, path=str(tmp_path / "t_fold.res"))
    model = resdsl.build(net, seed=0).eval()
    source = torch_source.emit(net, seed=0)
    assert "self.reshape_shape" in source  # the sizes are the class's parameters
    generated = import_source(source, tmp_path, "t_fold").t_fold(seed=0).eval()
    ruff_clean(tmp_path / "t_fold.py")
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))

    def reference(x):
        for name, n in (("f1", 2), ("f2", 4)):
            x = getattr(model, name).c(x)
            x = x.reshape(x.shape[0], n, 4, -1).softmax(-1).reshape(x.shape[0], n, -1).softmax(-1)
            x = x.reshape(x.shape[0], 8, 4, 6)
        return x

    with torch.no_grad():
        want = reference(x)
        torch.testing.assert_close(model(x), want)
        torch.testing.assert_close(generated(x), want)
        with warnings.catch_warnings():  # torch ≥ 2.10 deprecates scripting, and still supports it
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(generated)
        torch.testing.assert_close(scripted(x), want)
        torch.testing.assert_close(torch.fx.symbolic_trace(generated)(x), want)
    proto = onnx_graph.build_model(net, weights=model.state_dict())
    assert_valid(proto, net)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), want,
                               rtol=1e-5, atol=1e-6)


def test_matmul_with_a_learned_tensor_of_fewer_axes(tmp_path: Path):
    """A learned tensor (no batch axis) broadcasts over the heads and the batch, as torch's
    matmul broadcasts it: q · w with q [2, 4, 24] per sample and w [24, 5]."""
    net = resdsl.loads("network t_rel {\n    input [8, 4, 6]\n    q: reshape([2, 4, 24])\n"
                       '    w: param([24, 5], init = "normal")\n    matmul(q, w)\n}\n', path=str(tmp_path / "r.res"))
    assert net.output_shape == (2, 4, 5) and net.macs == 2 * 4 * 5 * 24
    model = resdsl.build(net, seed=0).eval()
    state = model.state_dict()
    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(0))
    want = x.reshape(3, 2, 4, 24) @ state["w"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), want)
        generated = import_source(torch_source.emit(net, seed=0), tmp_path, "t_rel").t_rel(seed=0).eval()
        generated.load_state_dict(state)
        torch.testing.assert_close(generated(x), want)
    proto = onnx_graph.build_model(net, weights=state)
    assert_valid(proto, net)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), want,
                               rtol=1e-5, atol=1e-5)
