"""`resdsl compile --target onnx`: weights files, options, external data, atomic writes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from test_onnx import assert_close, assert_valid, run_onnx, trained_like

import resdsl
from conftest import SPECS
from resdsl.backends import onnx_graph
from resdsl.cli import main

SPEC = str(SPECS / "resnet20_cifar.res")


@pytest.fixture(scope="module")
def trained():
    """resnet20_cifar with trained-like weights, an input and torch's output for it."""
    net = resdsl.load(SPEC)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = trained_like(net, seed=11)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x).numpy()
    torch.set_num_threads(before)
    return net, model.state_dict(), x.numpy(), ref


def compile_(*args: str) -> int:
    return main(["compile", SPEC, "--target", "onnx", *args])


def test_weights_file_gives_torchs_output(trained, tmp_path):
    net, state, x, ref = trained
    weights, out = tmp_path / "w.pth", tmp_path / "m.onnx"
    torch.save(state, weights)
    assert compile_("--weights", str(weights), "-o", str(out)) == 0
    model = onnx.load(out)
    assert {p.key: p.value for p in model.metadata_props}["resdsl.weights"] == "file w.pth"
    assert_valid(model, net)
    assert_close(run_onnx(str(out), x), ref)
    folded = tmp_path / "f.onnx"
    assert compile_("--weights", str(weights), "--fold-bn", "--opset", "13", "-o", str(folded)) == 0
    assert not any(n.op_type == "BatchNormalization" for n in onnx.load(folded).graph.node)
    assert_close(run_onnx(str(folded), x), ref)


def test_checkpoint_wrappers_are_unwrapped(trained, tmp_path):
    """Training scripts save {"state_dict": …, "epoch": …}; DataParallel prefixes `module.`."""
    net, state, x, ref = trained
    wrapped = {"epoch": 90, "state_dict": {f"module.{k}": v for k, v in state.items()}}
    weights = tmp_path / "ckpt.pt"
    torch.save(wrapped, weights)
    assert_close(run_onnx(onnx_graph.emit(net, weights=weights), x), ref)


def test_checkpoints_without_bn_counters_load(trained):
    net, state, x, ref = trained
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    assert_close(run_onnx(onnx_graph.emit(net, weights=state), x), ref)


@pytest.mark.parametrize("change, listed", [
    (lambda s: s.pop("layer2.0.conv1.weight"), ["1 missing", "layer2.0.conv1.weight"]),
    (lambda s: s.update({"head.weight": torch.zeros(3)}), ["1 unexpected", "head.weight"]),
    (lambda s: s.update({"fc.weight": torch.zeros(10, 32)}), ["1 wrongly shaped", "fc.weight (10×32, expected 10×64)"]),
])
def test_weights_that_do_not_fit_are_listed_and_nothing_is_written(trained, tmp_path, capsys, change, listed):
    _, state, _, _ = trained
    state = dict(state)
    change(state)
    weights, out = tmp_path / "w.pt", tmp_path / "m.onnx"
    torch.save(state, weights)
    out.write_bytes(b"previous")
    assert compile_("--weights", str(weights), "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert all(part in err for part in listed), err
    assert out.read_bytes() == b"previous" and sorted(os.listdir(tmp_path)) == ["m.onnx", "w.pt"]


class Payload:
    """Unpickling this would create a directory: torch's weights_only loader must refuse it."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


def test_a_pickle_with_code_is_refused(tmp_path, capsys):
    weights, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    torch.save({"fc.weight": Payload(str(marker))}, weights)
    assert compile_("--weights", str(weights), "-o", str(tmp_path / "m.onnx")) == 2
    err = capsys.readouterr().err
    assert "refusing to load" in err and "state_dict()" in err
    assert not marker.exists() and not (tmp_path / "m.onnx").exists()


def test_unreadable_weights_are_usage_errors(tmp_path, capsys):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert compile_("--weights", str(junk), "-o", str(tmp_path / "m.onnx")) == 2
    assert compile_("--weights", str(tmp_path / "absent.pt"), "-o", str(tmp_path / "m.onnx")) == 2
    err = capsys.readouterr().err
    assert "cannot read weights" in err and "no such file" in err
    assert sorted(os.listdir(tmp_path)) == ["junk.pt"]


def test_cli_options(tmp_path, capsys):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert compile_("--seed", "0", "--static-batch", "4", "-o", str(a)) == 0
    assert compile_("--static-batch", "4", "-o", str(b)) == 0
    assert a.read_bytes() == b.read_bytes()  # seed 0 is the default, and output is reproducible
    dims = onnx.load(a).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [4, 3, 32, 32]
    assert compile_("--opset", "0", "-o", str(a)) == 2  # the declaration's check: a usage error
    assert "error: --opset: opset 0 is not supported by the onnx target" in capsys.readouterr().err
    assert compile_("--seed", "1") == 2  # binary: -o required
    assert main(["compile", SPEC, "--target", "torch", "--opset", "17"]) == 2
    err = capsys.readouterr().err
    assert "-o FILE" in err and "does not apply to --target torch" in err
    assert compile_("--seed", "1", "--weights", str(a), "-o", str(b)) == 2  # the API's error, in flags
    assert "resdsl: error: --seed and --weights exclude each other" in capsys.readouterr().err


def test_external_data_beside_the_model(trained, tmp_path, capsys):
    net, state, x, ref = trained
    weights, out = tmp_path / "w.pt", tmp_path / "m.onnx"
    torch.save(state, weights)
    assert compile_("--weights", str(weights), "--external-data", "-o", str(out)) == 0
    (data,) = onnx_graph.data_files(out)  # named by its content: m.onnx.<16 hex digits>.data
    assert f"wrote {out}, {data}" in capsys.readouterr().err
    assert data.stat().st_size > 4 * 250_000  # resnet20's ~0.27 M parameters live there
    assert out.stat().st_size < 100_000
    onnx.checker.check_model(str(out), full_check=True)
    model = onnx.load(out)  # loads the tensors too
    assert_valid(model, net)
    assert_close(run_onnx(str(out), x), ref)
    inline = onnx.load_from_string(onnx_graph.emit(net, weights=state))
    for got, want in zip(model.graph.initializer, inline.graph.initializer):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(got), onnx.numpy_helper.to_array(want))
    # Reproducible, and only the two files.
    first = (out.read_bytes(), data.read_bytes())
    assert compile_("--weights", str(weights), "--external-data", "-o", str(out)) == 0
    assert (out.read_bytes(), data.read_bytes()) == first
    assert sorted(os.listdir(tmp_path)) == sorted(["m.onnx", data.name, "w.pt"])
    assert compile_("--external-data", "-o", "-") == 2
    assert "standard output" in capsys.readouterr().err


@pytest.mark.parametrize("had_data", [False, True])
def test_external_data_write_is_all_or_nothing(tmp_path, monkeypatch, had_data):
    """The model cannot be renamed into place (the commit): the previous model and the
    tensor file it names stay as they were, and the new tensor file is taken away."""
    model = onnx_graph.emit(resdsl.load(SPEC), external_data=True)
    out, data = tmp_path / "m.onnx", tmp_path / "m.onnx.00000000000000aa.data"
    out.write_bytes(b"previous")
    if had_data:
        data.write_bytes(b"previous tensors")
    real = os.replace

    def failing(src, dst):
        if str(dst).endswith(".onnx"):
            raise OSError("disk full")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing)
    with pytest.raises(OSError, match="disk full"):
        model.write(out)
    monkeypatch.undo()
    assert out.read_bytes() == b"previous"
    assert data.read_bytes() == b"previous tensors" if had_data else not data.exists()
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", data.name][:1 + had_data]


def test_external_data_writes_past_the_limit_refused_without_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(onnx_graph, "PROTOBUF_LIMIT", 100_000)
    out = tmp_path / "m.onnx"
    assert compile_("-o", str(out)) == 2
    assert "--external-data" in capsys.readouterr().err and not out.exists()
    assert compile_("--external-data", "-o", str(out)) == 0
    onnx.checker.check_model(str(out), full_check=True)


# ---------------------------------------------------------------- no torch where none is needed (issue 14)

_NO_TORCH = """
import sys
from resdsl.cli import main
code = main(sys.argv[1:])
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
print("torch modules:", loaded)
sys.exit(code if code else (3 if loaded else 0))
"""


def _compile_without_torch(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SPECS.parent), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-c", _NO_TORCH, "compile", *args, "--target", "onnx",
                           "-o", str(tmp_path / "out.onnx")], capture_output=True, text=True, env=env)


def test_onnx_from_safetensors_never_imports_torch(trained, tmp_path):
    from safetensors.torch import save_file

    net, state, x, ref = trained
    weights = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, weights)
    for extra in ([], ["--fold-bn"]):
        result = _compile_without_torch(tmp_path, SPEC, "--weights", str(weights), *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "torch modules: []" in result.stdout
        assert_close(run_onnx(str(tmp_path / "out.onnx"), x), ref)


def test_onnx_of_a_network_without_weights_never_imports_torch(tmp_path):
    spec = tmp_path / "plain.res"
    spec.write_text("network plain {\n    input [3, 8, 8]\n    relu()\n    maxpool(2)\n    global_avgpool()\n}\n")
    result = _compile_without_torch(tmp_path, str(spec))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torch modules: []" in result.stdout


def test_bfloat16_safetensors_are_widened_with_a_note(trained, tmp_path, capsys):
    from safetensors.torch import save_file

    net, state, x, ref = trained
    weights = tmp_path / "w.safetensors"
    save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}, weights)
    assert compile_("--weights", str(weights), "-o", str(tmp_path / "m.onnx")) == 0
    assert "bfloat16 tensors; converted to float32" in capsys.readouterr().err
    # the same numbers torch gets from the bfloat16 weights
    model = resdsl.build(net)
    model.load_state_dict({k: v.to(torch.bfloat16).float() if v.is_floating_point() else v
                           for k, v in state.items()})
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x)).numpy()
    assert_close(run_onnx(str(tmp_path / "m.onnx"), x), want)
