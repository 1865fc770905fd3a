"""Issue 25 (reliability round 3): each defect of the attack round, at its mechanism."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import resdsl
from conftest import ROOT, SPECS
from resdsl import output
from resdsl.cli import main
from resdsl.elaborate.builtins import BUILTINS
from resdsl.elaborate.values import Builtin

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
R20 = SPECS / "resnet20_cifar.res"

# ------------------------------------------------------------- 2. built-in arity, from the declaration

_CALLS = ["len([1], 2)", "len()", "abs()", "abs(1, 2)", "round(1.5, 2)", "floor(1.5, 2)", "ceil()",
          "int(1, 2)", "float()", "sum([1], [2])", "log2(1, 2)", "log()", "log(2, 2, 2)", "range()",
          "range(1, 2, 3, 4)", "min()", "max()"]


@pytest.mark.parametrize("call", _CALLS)
def test_builtin_arity_is_a_diagnostic(call, tmp_path, capsys):
    text = f"network n {{\n    input [3, 8, 8]\n    a: conv(4, 3, padding = {call})\n}}\n"
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads(text, "arity.res")
    (d,) = exc.value.diagnostics
    assert d.code == "E022" and "argument" in d.message and (d.span.line, d.span.column) == (3, 29)
    spec = tmp_path / "arity.res"
    spec.write_text(text)
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E022]" in err and "internal error" not in err


def test_every_builtin_declares_its_arity():
    """The check is from each built-in's declaration: every one has an arity, and calling it
    with one argument too many (or, where there is a least, one too few) is refused."""
    builtins = {k: v for k, v in BUILTINS.fixed.items() if isinstance(v, Builtin)}
    assert len(builtins) >= 13
    for name, fn in builtins.items():
        least, most = fn.arity
        counts = [least - 1] if least else []
        counts += [most + 1] if most is not None else []
        assert counts, name
        for n in counts:
            args = ", ".join(["1"] * n)
            with pytest.raises(resdsl.SpecError, match="E022|argument"):
                resdsl.loads(f"network n {{\n    input [3, 8, 8]\n    a: conv(4, 3, padding = {name}({args}))\n}}\n", "a.res")


# ------------------------------------------- 1. ONNX external data: a model and its tensors as one unit

_WRITER = """
import sys
from resdsl import output
from resdsl.cli import main
spec, out, rounds, *weights = sys.argv[1:]
for i in range(int(rounds)):
    code = main(["compile", spec, "--target", "onnx", "--external-data", "--weights", weights[i % len(weights)],
                 "-o", out])
    assert code == 0, code
"""


def _onnx_output(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_concurrent_external_data_writers_never_mix_runs(tmp_path):
    """Six writers alternate two weight files into one output while this test reads it: every
    model read, and the one left, loads and gives exactly one run's outputs (on main, after
    some rounds, a model from one run sat beside the other's tensors: issue 25, defect 1)."""
    from safetensors.numpy import save_file

    net = resdsl.load(R20)
    weights, refs = [], []
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    for seed in (1, 2):
        state = {k: v.detach().numpy() for k, v in resdsl.build(net, seed=seed).state_dict().items()}
        w = tmp_path / f"w{seed}.safetensors"
        save_file(state, str(w))
        weights.append(str(w))
        ref = tmp_path / f"ref{seed}" / "m.onnx"
        ref.parent.mkdir()
        assert main(["compile", str(R20), "--target", "onnx", "--external-data", "--weights", str(w),
                     "-o", str(ref)]) == 0
        refs.append(_onnx_output(ref, x))
    assert not np.array_equal(refs[0], refs[1])
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    writers = [subprocess.Popen([sys.executable, "-c", _WRITER, str(R20), str(out), "6",
                                 *(weights if i % 2 else weights[::-1])], env=ENV, stderr=subprocess.PIPE)
               for i in range(6)]
    reads = gone = 0
    while any(w.poll() is None for w in writers):
        if not out.exists():
            continue
        try:
            got = _onnx_output(out, x)
        except Exception as err:  # the tensor file an older model named was removed meanwhile
            # the file could not be opened (onnxruntime 1.18 says "Invalid fd was supplied: -1", or
            # only the errno, ENOENT, "SystemError : 2", naming no file); it may be back already,
            # written again by a writer of the same weights
            enoent = re.search(r"SystemError : 2\b", str(err))
            assert enoent or re.search(r"m\.onnx\.[0-9a-f]{16}\.data", str(err)), err
            assert enoent or any(w in str(err) for w in ("does not exist", "No such file", "Invalid fd")), err
            gone += 1
            continue
        reads += 1
        assert any(np.array_equal(got, ref) for ref in refs), "a model beside another run's tensors"
    for w in writers:
        assert w.wait() == 0, w.stderr.read().decode()
    final = _onnx_output(out, x)
    assert any(np.array_equal(final, ref) for ref in refs)
    assert reads > 0
    left = sorted(p.name for p in out.parent.iterdir())
    assert len(left) == 2 and left[0] == "m.onnx" and left[1].startswith("m.onnx.") and left[1].endswith(".data")


def test_sealing_a_file_whose_target_another_writer_removes_meanwhile(tmp_path, monkeypatch):
    """A tensor file that another writer's clean-up removes between the look and the read of
    its permissions is a new file, not an error (CI's floor run on 2c59875: one of the six
    writers above failed with "cannot use `m.onnx.<digest>.data`: No such file")."""
    tmp = tmp_path / "staged"
    tmp.write_bytes(b"x")
    target = tmp_path / "m.onnx.0123456789abcdef.data"  # there when looked at, gone when read
    exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self, *a, **k: self == target or exists(self, *a, **k))
    output.seal(tmp, target)
    assert tmp.stat().st_mode & 0o777 == 0o666 & ~output._umask()


# ------------------------------------------------------- 10. devices, FIFOs and folders, read-only folders

def test_output_to_a_missing_device_name_is_refused(capsys):
    name = Path(f"/dev/resdsl-missing-{os.getpid()}")
    try:
        assert main(["stats", str(R20), "-o", str(name)]) == 2
        err = capsys.readouterr().err
        assert "does not exist" in err and "/dev" in err
        assert not name.exists()
    finally:  # on main the write made a regular file there
        name.unlink(missing_ok=True)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_an_import_that_is_a_fifo_or_folder_says_so(tmp_path, kind):
    lib = tmp_path / "lib.res"
    os.mkfifo(lib) if kind == "fifo" else lib.mkdir()
    spec = tmp_path / "net.res"
    spec.write_text('import "lib.res"\nnetwork n {\n    input [3, 8, 8]\n}\n')
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.load(spec)
    (d,) = exc.value.diagnostics
    assert d.code == "E031" and "cannot find" not in d.message
    assert ("a folder" if kind == "folder" else "not a regular file") in d.message


def test_a_refused_write_names_the_target_not_the_temporary(tmp_path, monkeypatch, capsys):
    """A read-only folder (simulated: the tests may run as root, whom permissions do not stop)."""
    import errno
    import tempfile

    def refuse(*args, dir=None, prefix="", **kw):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, prefix + "x.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    out = tmp_path / "stats.txt"
    assert main(["stats", str(R20), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"cannot use `{out}`: Permission denied" in err and ".tmp" not in err


# ----------------------------------------------------------------- the one safe writer (resdsl.output.safe_write)

def test_safe_write_never_follows_a_link_out_of_its_folder(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    real = tmp_path / "b" / "real.txt"
    real.write_text("theirs")
    link = tmp_path / "a" / "out.txt"
    link.symlink_to(real)
    for command in (["stats", str(R20)], ["table", str(R20)], ["compile", str(R20), "--target", "torch"]):
        assert main([*command, "-o", str(link)]) == 2
        assert "outside its folder" in capsys.readouterr().err
    assert real.read_text() == "theirs" and link.is_symlink()
    with pytest.raises(output.UsageError, match="outside its folder"):
        output.safe_write(link, "x")


def test_safe_write_refuses_its_inputs(tmp_path):
    spec = tmp_path / "in.res"
    spec.write_text("x")
    hard = tmp_path / "hard.res"
    os.link(spec, hard)
    for out in (spec, hard, tmp_path / "." / "in.res"):
        with pytest.raises(output.UsageError, match="would overwrite an input"):
            output.safe_write(out, "new", reads=[spec])
    with pytest.raises(output.UsageError, match="would overwrite an input"):  # a folder that holds one
        output.safe_write(tmp_path, {"a.txt": "new"}, reads=[spec], force=True)
    assert spec.read_text() == "x"


def test_safe_write_publishes_a_folder_as_one_unit(tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    assert output.safe_write(bundle, {"spec.res": "a", "weights/w.bin": b"\0\1"}) == bundle
    assert sorted(str(p.relative_to(bundle)) for p in bundle.rglob("*")) == ["spec.res", "weights",
                                                                            "weights/w.bin"]
    with pytest.raises(output.UsageError, match="not empty"):  # never into a non-empty folder without force
        output.safe_write(bundle, {"spec.res": "b"})
    assert (bundle / "spec.res").read_text() == "a"
    # a failure while staging leaves the old folder whole, and nothing temporary
    real_write = output.write_all

    def failing(f, payload, path):
        if str(path).endswith("two"):
            raise OSError(28, "No space left on device", str(path))
        return real_write(f, payload, path)

    monkeypatch.setattr(output, "write_all", failing)
    with pytest.raises(OSError):
        output.safe_write(bundle, {"one": "1", "two": "2"}, force=True)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    assert (bundle / "spec.res").read_text() == "a"
    output.safe_write(bundle, {"new.res": "b"}, force=True)  # replaced whole: no old file stays
    assert sorted(p.name for p in bundle.iterdir()) == ["new.res"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]
    for bad in ("../x", "/abs", "a/../../x", ""):
        with pytest.raises(ValueError):
            output.safe_write(tmp_path / "other", {bad: "x"})
    link = tmp_path / "link"
    link.symlink_to(bundle)
    with pytest.raises(output.UsageError, match="symbolic link"):
        output.safe_write(link, {"a": "b"}, force=True)
    # --force replaces an old output, never the folder the user works in, home or the root
    monkeypatch.chdir(bundle)
    for mine in (bundle, tmp_path, Path("."), Path(".."), Path("/")):
        with pytest.raises(output.UsageError, match="holds the current folder or is the home or root"):
            output.safe_write(mine, {"a": "b"}, force=True)
    monkeypatch.setenv("HOME", str(tmp_path / "other"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x").write_text("mine")
    with pytest.raises(output.UsageError, match="home"):
        output.safe_write(tmp_path / "other", {"a": "b"}, force=True)
    assert (tmp_path / "other" / "x").read_text() == "mine"


# ------------------------------------------- 5. malformed safetensors headers: one reader, the package's

def _safetensors(path: Path, header: str | bytes, body: bytes = b"\0" * 16) -> Path:
    h = header.encode() if isinstance(header, str) else header
    path.write_bytes(len(h).to_bytes(8, "little") + h + body)
    return path


_BAD_HEADERS = {
    "deep": '{"a":' + "[" * 3000 + "]" * 3000 + "}",
    "infinite_shape": '{"conv1.weight":{"dtype":"F32","shape":[Infinity],"data_offsets":[0,4]}}',
    "huge_shape": '{"conv1.weight":{"dtype":"F32","shape":[99999999999,99999999999],"data_offsets":[0,4]}}',
    "overlap": '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],'
               '"data_offsets":[4,12]}}',
    "past_the_end": '{"a":{"dtype":"F32","shape":[64],"data_offsets":[0,256]}}',
    "bf16_past_the_end": '{"a":{"dtype":"BF16","shape":[64],"data_offsets":[0,128]}}',
    "negative": '{"a":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}}',
    "dtype": '{"a":{"dtype":"F99","shape":[4],"data_offsets":[0,16]}}',
}


@pytest.mark.parametrize("name", sorted(_BAD_HEADERS))
def test_malformed_safetensors_is_a_checkpoint_error_on_every_path(tmp_path, capsys, name):
    from resdsl.checkpoints import CheckpointError, load_arrays, load_checkpoint

    bad = _safetensors(tmp_path / "w.safetensors", _BAD_HEADERS[name])
    for read in (load_arrays, load_checkpoint):
        with pytest.raises(CheckpointError, match="not a valid safetensors file"):
            read(bad)
    out = tmp_path / "m.onnx"
    assert main(["compile", str(R20), "--target", "onnx", "--weights", str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a valid safetensors file" in err and "internal error" not in err
    assert main(["transplant", str(R20), "--from", str(bad), "-o", str(tmp_path / "t.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "not a valid safetensors file" in err and "internal error" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


# -------------------------------------- 6. transplant: the same non-finite and complex rules as --weights

@pytest.fixture(scope="module")
def r20_state():
    return {k: v.detach().clone() for k, v in resdsl.build(resdsl.load(R20), seed=3).state_dict().items()}


@pytest.mark.parametrize("spoil", ["nan", "inf", "float64_overflow"])
def test_transplant_refuses_nonfinite_weights(tmp_path, capsys, r20_state, spoil):
    import torch

    from resdsl.checkpoints import CheckpointError

    state = dict(r20_state)
    if spoil == "float64_overflow":  # finite in float64, infinite as the network's float32
        state = {k: v.double() * 1e300 if v.is_floating_point() else v for k, v in state.items()}
    else:
        w = state["conv1.weight"].clone()
        w[0, 0, 0, 0] = float(spoil)
        state["conv1.weight"] = w
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        resdsl.transplant(R20, state)
    resdsl.transplant(R20, state, allow_nonfinite=True)  # asked for: allowed, with a note
    ckpt, out = tmp_path / "w.pt", tmp_path / "t.safetensors"
    torch.save(state, ckpt)
    assert main(["transplant", str(R20), "--from", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "--allow-nonfinite" in err and not out.exists()
    assert main(["transplant", str(R20), "--from", str(ckpt), "-o", str(out), "--allow-nonfinite"]) == 0
    assert "kept NaN or infinite values" in capsys.readouterr().err and out.exists()


def test_transplant_refuses_complex_and_takes_numpy(r20_state):
    import torch

    from resdsl.checkpoints import CheckpointError

    state = dict(r20_state)
    state["fc.weight"] = state["fc.weight"].to(torch.complex64)
    with pytest.raises(CheckpointError, match="complex"):
        resdsl.transplant(R20, state)
    arrays = {k: v.numpy() for k, v in r20_state.items()}  # numpy arrays, as safetensors.numpy gives
    got, report = resdsl.transplant(R20, arrays)
    assert report.placed == len(r20_state)
    assert all(torch.equal(got[k], v) for k, v in r20_state.items())


@pytest.mark.parametrize("wrap", ["state_dict", "module"])
def test_weights_says_when_it_unwraps(tmp_path, capsys, r20_state, wrap):
    import torch

    wrapped = ({"state_dict": r20_state, "epoch": 3} if wrap == "state_dict"
               else {f"module.{k}": v for k, v in r20_state.items()})
    ckpt = tmp_path / "w.pt"
    torch.save(wrapped, ckpt)
    assert main(["compile", str(R20), "--target", "onnx", "--weights", str(ckpt),
                 "-o", str(tmp_path / "m.onnx")]) == 0
    err = capsys.readouterr().err
    assert "resdsl: note:" in err
    assert ("`state_dict` entry" in err and "epoch" in err) if wrap == "state_dict" else "`module.` prefix" in err


# ------------------------------------------- 3, 4. name-path depth; long sums in the generated source

@pytest.mark.parametrize("parts", [65, 1000, 5000])
def test_a_deep_layer_path_is_a_diagnostic(parts):
    import time

    name = ".".join(["a"] * parts)
    start = time.monotonic()
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads(f"network n {{\n    input [3, 8, 8]\n    {name}: conv(4, 3)\n}}\n", "deep.res")
    assert [d.code for d in exc.value.diagnostics] == ["E057"]
    assert time.monotonic() - start < 5


def test_the_deepest_allowed_path_works_everywhere():
    import torch

    from resdsl.backends import onnx_graph

    net = resdsl.loads(f"network n {{\n    input [3, 8, 8]\n    {'.'.join(['a'] * 64)}: conv(4, 3)\n}}\n",
                       "deep.res")
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        ref = resdsl.build(net, seed=0).eval()(x).numpy()
    got = _onnx_output_bytes(onnx_graph.emit(net, seed=0), x.numpy())
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def _onnx_output_bytes(model: bytes, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("inplace", [True, False])
def test_a_sum_of_3000_tensors_compiles_and_agrees(inplace):
    """The generated source once wrote `a + a + …` 3,000 terms long, which Python cannot
    compile; now `sum([...], first)`, left to right like the infix form: bit-equal."""
    import torch

    from resdsl.backends import onnx_graph, torch_source

    n = 3000
    text = (f"network n {{\n    input [3, 8, 8]\n    a: conv(4, 3, padding = 1)\n    b: relu()\n"
            f"    s: add({', '.join(['a', 'b'] * (n // 2))})\n}}\n")
    net = resdsl.loads(text, "sum.res")
    src = torch_source.emit(net)
    assert max(map(len, src.splitlines())) < 40_000
    model = resdsl.build(net, seed=0, inplace=inplace).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        got = model(x)
        a = model.a(x)
        b = torch.relu(a)
        want = a.clone()
        for t in ([b, a] * (n // 2))[:n - 1]:  # left to right, as the infix form
            want = want + t
    assert torch.equal(got, want)
    onnx_out = _onnx_output_bytes(onnx_graph.emit(net, seed=0), x.numpy())
    np.testing.assert_allclose(onnx_out, want.numpy(), rtol=1e-4, atol=1e-3)  # 3,000 float32 adds of conv outputs


def test_a_product_over_the_limit_is_a_diagnostic():
    text = (f"network n {{\n    input [3, 8, 8]\n    a: conv(4, 3, padding = 1)\n"
            f"    m: multiply({', '.join(['a'] * 257)})\n}}\n")
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads(text, "prod.res")
    assert [d.code for d in exc.value.diagnostics] == ["E017"]
    assert "over the limit of 256" in exc.value.diagnostics[0].message


# ------------------------------------------------- 9. the Python API's arguments, checked at the boundary

_SPEC_TEXT = "network n {\n    input [3, 8, 8]\n    a: conv(4, 3)\n}\n"


def _one_conv():
    """A network of one conv: no stem followed by stages."""
    return resdsl.loads(_SPEC_TEXT, "one_conv.res")


def _torch_module():
    """A torch module resdsl did not build."""
    import torch

    return torch.nn.ReLU()


@pytest.mark.parametrize("call, error, words", [
    (lambda: resdsl.loads(None), TypeError, "loads: `text` is the spec's text, a str, not NoneType"),
    (lambda: resdsl.loads(3), TypeError, "loads: `text` is the spec's text, a str, not int"),
    (lambda: resdsl.loads(_SPEC_TEXT.encode()), TypeError, "not bytes: decode it first"),
    (lambda: resdsl.loads(_SPEC_TEXT, 3), TypeError, "loads: `path` is a file name"),
    (lambda: resdsl.loads(_SPEC_TEXT, network=3), TypeError, "loads: `network` is the name of a network"),
    (lambda: resdsl.load(R20, network=3), TypeError, "load: `network` is the name of a network"),
    (lambda: resdsl.load(None), TypeError, "load: `path` is a file name"),
    (lambda: resdsl.load(3), TypeError, "load: `path` is a file name"),
    (lambda: resdsl.load(R20, allow_large=1), TypeError, "load: `allow_large` is True or False"),
    (lambda: resdsl.build(R20, seed=2**64), ValueError, "build: `seed` lies between 0 and 2**63 - 1"),
    (lambda: resdsl.build(R20, seed=-1), ValueError, "build: `seed` lies between"),
    (lambda: resdsl.build(R20, seed=1.5), TypeError, "build: `seed` is an integer or None"),
    (lambda: resdsl.build(R20, seed="3"), TypeError, "build: `seed` is an integer or None"),
    (lambda: resdsl.build(R20, out_indices=3), TypeError, "build: `out_indices` is a sequence of integers"),
    (lambda: resdsl.build(resdsl.load(R20), network="x"), TypeError, "a Network is already one"),
    (lambda: resdsl.build(R20, inplace="no"), TypeError, "build: `inplace` is True or False"),
    (lambda: resdsl.build(None), TypeError, "build: `spec` is a spec path"),
    (lambda: resdsl.transplant(R20, 3), TypeError, "transplant: `checkpoint` is a file name or a state_dict"),
    (lambda: resdsl.transplant(R20, {}, seed=-2), ValueError, "transplant: `seed` lies between"),
    (lambda: resdsl.register_primitive(None), TypeError, "register_primitive: `prim` is a resdsl Primitive"),
    # found by the fuzz campaign's `api` source
    (lambda: resdsl.build("a\x00b"), ValueError, "build: `path` holds a NUL character"),
    (lambda: resdsl.values(3, None), TypeError, "values: `model` is a module built by resdsl.build, not int"),
    (lambda: resdsl.values(_torch_module(), None), TypeError, "values: `model` (ReLU) was not built by resdsl.build"),
    (lambda: resdsl.values(resdsl.build(R20, seed=0), {}), TypeError, "values: `x` is a batch of"),
    (lambda: resdsl.fold_batchnorms(None), TypeError, "fold_batchnorms: `model` is a module built by resdsl.build"),
    (lambda: resdsl.save_pretrained([1, 2], "out"), TypeError, "save_pretrained: `model` is a module built by"),
    (lambda: resdsl.save_pretrained(resdsl.build(R20, seed=0), 3), TypeError, "save_pretrained: `folder` is a folder"),
    (lambda: resdsl.list_models(0), TypeError, "list_models: `pattern` is a shell-style pattern"),
    (lambda: resdsl.list_models("*", pretrained=[]), TypeError, "list_models: `pretrained` is True or False"),
    (lambda: resdsl.pretrained_tags({}), TypeError, "pretrained_tags: `name` is a shipped spec's name"),
    (lambda: resdsl.create_model(_torch_module()), TypeError, "create_model: `name_or_path` is a model's name"),
    (lambda: resdsl.create_model(R20, num_classes="x"), TypeError, "create_model: `num_classes` is a count"),
    (lambda: resdsl.create_model(R20, out_indices=3), TypeError, "create_model: `out_indices` is a sequence"),
    (lambda: resdsl.build(_one_conv(), out_indices=[1]), ValueError, "`out_indices`: n has no stem followed by"),
])
def test_api_misuse_is_worded_by_the_api(call, error, words):
    with pytest.raises(error) as exc:
        call()
    assert words in str(exc.value)


# ----------------------------------------- safe writes, per writing command: kill -9 mid-write, refusals

_KILLED = """
import os, sys, time
from resdsl import output
marker = sys.argv[1]
def slow_fsync(fd):
    open(marker, "w").close()
    time.sleep(120)
output.os.fsync = slow_fsync
from resdsl.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _commands(tmp_path: Path) -> dict[str, tuple[list[str], list[Path]]]:
    """Each writing command, and the files it writes."""
    out = tmp_path / "out"
    return {
        "stats": (["stats", str(R20), "-o", str(out / "s.txt")], [out / "s.txt"]),
        "table": (["table", str(R20), "-o", str(out / "t.md")], [out / "t.md"]),
        "diagram": (["diagram", str(R20), "--format", "dot", "-o", str(out / "d.dot")], [out / "d.dot"]),
        "compile_torch": (["compile", str(R20), "--target", "torch", "-o", str(out / "m.py")], [out / "m.py"]),
        "compile_onnx": (["compile", str(R20), "--target", "onnx", "-o", str(out / "m.onnx")], [out / "m.onnx"]),
        "compile_onnx_external": (["compile", str(R20), "--target", "onnx", "--external-data",
                                   "-o", str(out / "x.onnx")], [out / "x.onnx"]),
        "transplant": (["transplant", str(R20), "--from", str(tmp_path / "w.safetensors"),
                        "-o", str(out / "t.safetensors")], [out / "t.safetensors"]),
    }


@pytest.fixture
def weights_file(tmp_path):
    from safetensors.numpy import save_file

    state = {k: v.detach().numpy() for k, v in resdsl.build(resdsl.load(R20), seed=1).state_dict().items()}
    save_file(state, str(tmp_path / "w.safetensors"))
    return tmp_path / "w.safetensors"


@pytest.mark.parametrize("command", ["stats", "table", "diagram", "compile_torch", "compile_onnx",
                                     "compile_onnx_external", "transplant"])
def test_a_killed_write_leaves_the_old_output(tmp_path, weights_file, command):
    import signal
    import time

    argv, files = _commands(tmp_path)[command]
    (tmp_path / "out").mkdir()
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    marker = tmp_path / "writing"
    if command.startswith("compile_onnx") or command == "transplant":  # other weights: another output
        argv = [*argv, "--seed", "5"]
    else:  # another spec: another output
        argv = [a if a != str(R20) else str(SPECS / "resnet32_cifar.res") for a in argv]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(marker), *argv], env=ENV,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no write"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    after = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")}
    assert after == before  # the old outputs, whole; only our temporaries beside them
    assert main(_commands(tmp_path)[command][0]) == 0  # the next run sweeps what the killed one left
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(before)


@pytest.mark.parametrize("command", ["stats", "table", "diagram", "compile_torch", "compile_onnx",
                                     "compile_onnx_external", "transplant"])
def test_no_writing_command_replaces_an_input(tmp_path, weights_file, capsys, command):
    argv, _ = _commands(tmp_path)[command]
    spec = tmp_path / "in.res"
    spec.write_text(R20.read_text())
    hard = tmp_path / "hard.res"
    os.link(spec, hard)
    argv = [str(spec) if a == str(R20) else a for a in argv]
    victims = [spec, hard] + ([weights_file] if command == "transplant" else [])
    for victim in victims:
        bad = argv[:-1] + [str(victim)]
        assert main(bad) == 2
        assert "would overwrite an input" in capsys.readouterr().err
    assert spec.read_text() == R20.read_text()


# ----------------------------------------------- the fuzz campaign's findings (tests/cases/fuzz/*.res)

FUZZ_CASES = sorted((ROOT / "tests" / "cases" / "fuzz").glob("*.res"))


@pytest.mark.parametrize("case", FUZZ_CASES, ids=[p.stem for p in FUZZ_CASES])
def test_campaign_findings_stay_fixed(case):
    """Each finding of benchmarks/fuzz_campaign.py, through the campaign's own property: every
    back end, compared with the others."""
    import warnings

    import test_fuzz_backends

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert test_fuzz_backends.check_everywhere(case.read_text(), 0, onnx_runs=2)
