"""Checkpoint files: safetensors read without pickle, torch pickles with weights_only=True."""

from __future__ import annotations

import io
import os
import pickle

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")
onnx = pytest.importorskip("onnx")

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402
from resdsl.checkpoints import (  # noqa: E402
    CheckpointError,
    checkpoint_format,
    dump_checkpoint,
    load_checkpoint,
)
from resdsl.cli import main  # noqa: E402

SPEC = str(SPECS / "resnet20_cifar.res")


@pytest.fixture(scope="module")
def state():
    return resdsl.build(SPEC, seed=3).state_dict()


def _equal(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)  # safetensors keeps no order
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


@pytest.fixture
def no_pickle(monkeypatch):
    """Any use of torch.load or pickle fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used on the safetensors path")

    monkeypatch.setattr(torch, "load", refuse)
    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


def test_safetensors_is_read_without_pickle(state, tmp_path, no_pickle):
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file(dict(state), path)  # written by the safetensors package itself
    assert checkpoint_format(path) == "safetensors"
    _equal(load_checkpoint(path), dict(state))


def test_format_follows_content_not_name(state, tmp_path, no_pickle):
    """A safetensors file named .pth is still read as safetensors (and without pickle)."""
    path = tmp_path / "weights.pth"
    path.write_bytes(safetensors_torch.save(dict(state)))
    _equal(load_checkpoint(path), dict(state))


def test_torch_files_load_with_weights_only(state, tmp_path, monkeypatch):
    path, legacy = tmp_path / "w.pt", tmp_path / "legacy.pt"
    torch.save(state, path)
    torch.save(state, legacy, _use_new_zipfile_serialization=False)
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    for p in (path, legacy):
        assert checkpoint_format(p) == "torch"
        _equal(load_checkpoint(p), dict(state))
    assert [c.get("weights_only") for c in calls] == [True, True]


def test_a_torch_pickle_named_safetensors_is_refused(state, tmp_path):
    path = tmp_path / "w.safetensors"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="named like a safetensors file but holds a torch pickle"):
        load_checkpoint(path)


def test_wrappers_and_prefixes_are_removed_with_notes(state, tmp_path):
    path = tmp_path / "ckpt.pth"
    torch.save({"epoch": 3, "optimizer": {}, "model": {f"module.{k}": v for k, v in state.items()}}, path)
    notes: list[str] = []
    _equal(load_checkpoint(path, notes=notes), dict(state))
    assert notes == ["took the state_dict from the `model` entry of `ckpt.pth` (it also holds: epoch, optimizer)",
                     "dropped the `module.` prefix (DataParallel) from every key of `ckpt.pth`"]
    torch.save({"state_dict": dict(state)}, path)
    _equal(load_checkpoint(path), dict(state))


class Payload:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


@pytest.mark.filterwarnings("ignore:Validating sparse tensor invariants")  # torch 2.14, for sparse.pt
def test_bad_files_are_clear_errors(state, tmp_path):
    """Each gives a CheckpointError naming the file, never another exception."""
    good = io.BytesIO()
    torch.save(state, good)
    st = safetensors_torch.save(dict(state))
    marker = tmp_path / "pwned"
    cases = {
        "empty.pt": (b"", "neither a safetensors file nor a torch checkpoint"),
        "text.pt": (b"hello, weights", "neither a safetensors file nor a torch checkpoint"),
        "half.pt": (good.getvalue()[:5000], "cannot read weights `half.pt`"),
        "half.safetensors": (st[:-7], "not a valid safetensors file"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / name)
    torch.save({"fc.weight": Payload(str(marker))}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refusing to load `evil.pt`.*could run code") as err:
        load_checkpoint(tmp_path / "evil.pt")
    assert "state_dict()" in err.value.hint and not marker.exists()
    for name, obj, message in [("tensor.pt", torch.zeros(2), "holds a Tensor, not a state_dict"),
                               ("mixed.pt", {"a": torch.zeros(1), "b": 3}, "not a tensor: `b`"),
                               ("empty_dict.pt", {}, "holds an empty mapping"),
                               ("sparse.pt", {"a": torch.eye(2).to_sparse()}, "without dense data: a")]:
        torch.save(obj, tmp_path / name)
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(tmp_path / name)


def test_dump_round_trips_in_both_formats(state, tmp_path):
    for fmt, name in (("safetensors", "a.safetensors"), ("torch", "a.pt")):
        (tmp_path / name).write_bytes(dump_checkpoint(state, fmt, {"resdsl.network": "x"}))
        _equal(load_checkpoint(tmp_path / name), dict(state))
    with safetensors_torch.safe_open(tmp_path / "a.safetensors", "pt") as f:
        assert f.metadata() == {"format": "pt", "resdsl.network": "x"}
    with pytest.raises(ValueError, match="unknown checkpoint format"):
        dump_checkpoint(state, "npz")


def test_onnx_weights_read_safetensors_without_pickle(state, tmp_path, no_pickle):
    """`compile --target onnx --weights x.safetensors`: the same model as from the state_dict."""
    path = tmp_path / "w.safetensors"
    safetensors_torch.save_file(dict(state), path)
    net = resdsl.load(SPEC)
    from_file = onnx.load_from_string(onnx_graph.emit(net, weights=path))
    assert from_file.graph == onnx.load_from_string(onnx_graph.emit(net, weights=dict(state))).graph
    assert {p.key: p.value for p in from_file.metadata_props}["resdsl.weights"] == "file w.safetensors"
    out = tmp_path / "m.onnx"
    assert main(["compile", SPEC, "--target", "onnx", "--weights", str(path), "-o", str(out)]) == 0
    assert out.read_bytes() == onnx_graph.emit(net, weights=path)


def test_onnx_weights_errors_name_the_file(state, tmp_path, capsys):
    path = tmp_path / "w.safetensors"
    path.write_bytes(safetensors_torch.save(dict(state))[:-3])
    out = tmp_path / "m.onnx"
    assert main(["compile", SPEC, "--target", "onnx", "--weights", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "resdsl: error: cannot read weights `w.safetensors`: not a valid safetensors file" in err
    assert "Traceback" not in err and not out.exists()
