"""Issue 13, "reliability, round two": devices and inputs are never replaced, every
resource is bounded, no spec text gives a traceback, weights are checked.

Device nodes are made in a temporary folder (``os.mknod``, which needs root or
CAP_MKNOD; those tests skip without it): never the machine's own /dev/null or /dev/full.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, SPECS
from resdsl import output
from resdsl.cli import main

ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
R20 = SPECS / "resnet20_cifar.res"


def device(folder: Path, name: str, minor: int) -> Path:
    """A character device like /dev/null (1, 3) or /dev/full (1, 7), made in ``folder``."""
    path = folder / name
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    except PermissionError:
        pytest.skip("making device nodes needs root (CAP_MKNOD)")
    return path


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


# ----------------------------------------------------------------- 1. devices and FIFOs

@pytest.mark.parametrize("command", [
    ["compile", str(R20), "--target", "torch"],
    ["compile", str(R20), "--target", "onnx"],
    ["stats", str(R20)],
    ["table", str(R20)],
    ["diagram", str(R20), "--format", "dot"],
])
def test_null_device_is_written_to_not_replaced(tmp_path, capsys, command):
    null = device(tmp_path, "null", 3)
    assert main([*command, "-o", str(null)]) == 0, capsys.readouterr().err
    assert is_char_device(null)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temporary file left


def test_full_device_gives_a_usage_error_naming_the_file(tmp_path, capsys):
    full = device(tmp_path, "full", 7)
    assert main(["compile", str(R20), "--target", "torch", "-o", str(full)]) == 2
    err = capsys.readouterr().err
    assert f"`{full}`" in err and "No space left on device" in err and "Traceback" not in err
    assert is_char_device(full)


def test_disk_full_on_a_regular_file_names_the_file(tmp_path, capsys, monkeypatch):
    import errno

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output.os, "fsync", no_space)
    out = tmp_path / "model.py"
    assert main(["compile", str(R20), "--target", "torch", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err
    assert list(tmp_path.iterdir()) == []


def test_fifo_is_streamed_to(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    assert main(["stats", str(R20), "--format", "json", "-o", str(fifo)]) == 0
    data, _ = reader.communicate(timeout=60)
    assert b'"resnet20_cifar"' in data
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_socket_is_refused(tmp_path, capsys):
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        assert main(["stats", str(R20), "-o", str(path)]) == 2
    assert "socket" in capsys.readouterr().err
    assert stat.S_ISSOCK(os.lstat(path).st_mode)


def test_external_data_refuses_a_device(tmp_path, capsys):
    null = device(tmp_path, "null", 3)
    assert main(["compile", str(R20), "--target", "onnx", "--external-data", "-o", str(null)]) == 2
    assert "device or FIFO" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]


def test_link_to_stdout_is_not_renamed_over(tmp_path):
    """`-o LINK` where LINK → /proc/self/fd/1 (what /dev/stdout is), with stdout redirected to a
    file: the output lands in the file and the link stays. The link is our own: a broken
    writer then replaces it, never the machine's /dev/stdout."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        proc = subprocess.run([sys.executable, "-m", "resdsl.cli", "stats", str(R20), "-o", str(link)],
                              stdout=f, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "resnet20_cifar" in out.read_text()
    assert link.is_symlink() and os.readlink(link) == "/proc/self/fd/1"


def test_symlinked_output_stays_a_link(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    assert main(["stats", str(R20), "-o", str(link)]) == 0
    assert link.is_symlink() and "resnet20_cifar" in real.read_text()


# ----------------------------------------------------------------- 2. inputs are never overwritten

@pytest.mark.parametrize("command", [
    ["stats"], ["table"], ["diagram", "--format", "dot"], ["compile", "--target", "dot"],
])
def test_no_command_overwrites_its_spec(tmp_path, capsys, command):
    spec = tmp_path / "r20.res"
    spec.write_text(R20.read_text())
    link = tmp_path / "link.res"
    link.symlink_to(spec)
    hard = tmp_path / "hard.res"
    os.link(spec, hard)
    for out in (spec, link, hard):
        assert main([command[0], str(spec), *command[1:], "-o", str(out)]) == 2
        assert "would overwrite an input" in capsys.readouterr().err
    assert spec.read_text() == R20.read_text()


def test_no_command_overwrites_an_import(tmp_path, capsys):
    lib = tmp_path / "lib.res"
    lib.write_text("module m(w) {\n    c: conv(w, 3)\n}\n")
    spec = tmp_path / "net.res"
    spec.write_text('import "lib.res"\nnetwork n {\n    input [3, 8, 8]\n    a: m(4)\n}\n')
    for command in (["stats"], ["compile", "--target", "torch"]):
        assert main([command[0], str(spec), *command[1:], "-o", str(lib)]) == 2
        assert "would overwrite an input" in capsys.readouterr().err
    assert lib.read_text().startswith("module m")


def test_external_data_does_not_overwrite_an_input(tmp_path, capsys):
    spec = tmp_path / "m.onnx.0123456789abcdef.data"  # named like a tensor file the write replaces
    spec.write_text(R20.read_text())
    assert main(["compile", str(spec), "--target", "onnx", "--external-data",
                 "-o", str(tmp_path / "m.onnx")]) == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert spec.read_text() == R20.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]


# ----------------------------------------------------------------- 8. smaller

def test_huge_static_batch_is_a_usage_error(tmp_path, capsys):
    assert main(["compile", str(R20), "--target", "onnx", "--static-batch", "99999999999999999999",
                 "-o", str(tmp_path / "m.onnx")]) == 2
    assert "error: --static-batch: a batch size lies between 1 and 2**31 - 1" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_empty_names_are_usage_errors(capsys):
    assert main(["check", ""]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "folder" not in err
    assert main(["stats", str(R20), "-o", ""]) == 2
    assert "empty" in capsys.readouterr().err


def test_sigterm_removes_the_temporary_file(tmp_path):
    """Killed with SIGTERM in the middle of writing: no temporary file is left."""
    marker = tmp_path / "writing"
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    code = textwrap.dedent(f"""
        import os, sys, time
        from resdsl import output
        def slow_fsync(fd):
            open({str(marker)!r}, "w").close()
            time.sleep(60)
        output.os.fsync = slow_fsync
        from resdsl.cli import main
        sys.exit(main(["compile", {str(R20)!r}, "--target", "onnx", "-o", {str(out)!r}]))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=ENV, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "no write"
    assert len(list(out.parent.iterdir())) == 1  # the temporary file, mid-write
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "terminated" in err.decode()
    assert list(out.parent.iterdir()) == []


def test_stale_temporary_files_are_swept(tmp_path):
    out = tmp_path / "model.py"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = tmp_path / f".model.py.resdsl-{dead}-abc123.tmp"
    stale.write_text("left by a killed run")
    stale_dir = tmp_path / f".model.py.data.resdsl-{dead}-xyz"
    stale_dir.mkdir()
    (stale_dir / "previous").write_text("x")
    live = tmp_path / f".model.py.resdsl-{os.getppid()}-abc.tmp"  # a running process's: kept
    live.write_text("in progress")
    other = tmp_path / ".model.py.abc.tmp"  # not our naming pattern: kept
    other.write_text("someone else's")
    output.write_atomic(out, "x = 1\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model.py", live.name, other.name])


# ----------------------------------------------------------------- 3, 4. bounded work, no tracebacks

def _spec_error(text: str, path: Path):
    import resdsl

    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads(text, str(path))
    assert "Traceback" not in exc.value.render()
    return exc.value.diagnostics


@pytest.mark.parametrize("expr", [
    " ** ".join(["1"] * 600),
    "1 if true else " * 600 + "1",
    " + ".join(["1"] * 5000),
    "not " * 600 + "true",
    "- " * 600 + "1",
])
def test_deep_expressions_are_diagnostics(tmp_path, expr):
    (d,) = _spec_error(f"network n(x = {expr}) {{\n    input [3, 8, 8]\n}}\n", tmp_path / "deep.res")
    assert d.code == "E004" and d.span.line == 1


def test_long_strings_are_bounded(tmp_path):
    text = 'network n {\n    input [3, 8, 8]\n    s = "ab"\n    for i in range(40) {\n        s = s + s\n    }\n}\n'
    (d,) = _spec_error(text, tmp_path / "s.res")
    assert (d.code, d.span.line) == ("E017", 5) and "string" in d.message


@pytest.mark.parametrize("body, line", [
    # nested loops: 10^8 iterations
    ("for i in range(10000) {\n        for j in range(10000) {\n            x = 1\n        }\n    }", 5),
    # loops with empty bodies still count
    ("for i in range(10000) {\n        for j in range(10000) {\n        }\n    }", 4),
    # building big lists in a loop is charged by length
    ("for i in range(10000) {\n        l = range(10000)\n    }", 4),
])
def test_loops_share_one_budget(tmp_path, body, line):
    text = f"network n {{\n    input [3, 8, 8]\n    {body}\n}}\n"
    diags = _spec_error(text, tmp_path / "loops.res")
    assert [d.code for d in diags] == ["E017"]
    assert 3 <= diags[0].span.line <= line  # inside the loops, where the budget ran out
    assert "evaluation steps" in diags[0].message


def test_instances_without_ops_are_counted(tmp_path):
    text = ("block empty(stride = 1) {\n}\n"
            "block outer(stride = 1) {\n    for i in range(10000) {\n        e{i}: empty()\n    }\n}\n"
            "network n {\n    input [3, 8, 8]\n    c: conv(4, 3)\n    l: stage(outer, 10000)\n}\n")
    diags = _spec_error(text, tmp_path / "stages.res")
    assert [d.code for d in diags] == ["E017"] and "evaluation steps" in diags[0].message


def test_the_budget_admits_the_largest_networks():
    """ResNet-1202 and a 29,000-layer network elaborate well inside the budget."""
    import resdsl
    from resdsl import limits
    from resdsl.loader import Loader

    loader = Loader()
    loader.load(SPECS / "resnet1202_cifar.res")
    assert loader.elab.build.steps < limits.MAX_STEPS / 10
    loader = Loader()
    net = loader.load(SPECS / "big.res", text="import std.resnet\nnetwork n = resnet(block = bottleneck, "
                      "depths = [3, 2900, 3], widths = [16, 32, 64], image_size = 32)\n")
    assert len(net.ops) > 29_000 and loader.elab.build.steps < limits.MAX_STEPS / 2
    assert resdsl.loads("network n {\n    input [3, 8, 8]\n}\n").input_shape == (3, 8, 8)


def test_unnamed_layers_are_named_in_linear_time():
    """27,000 unnamed `relu()` took 108 s when each looked for a free `relu#k` from 2 up."""
    from resdsl.loader import Loader

    text = ("network n {\n    input [3, 8, 8]\n    for i in range(3) {\n        for j in range(9000) {\n"
            "            relu()\n        }\n    }\n}\n")
    start = time.process_time()
    net = Loader().load(SPECS / "relu.res", text=text)
    assert len(net.ops) == 27_000 and net.ops[-1].name == "relu#27000"
    assert time.process_time() - start < 30  # quadratic naming took minutes


def test_too_many_tokens_is_refused_before_parsing(tmp_path):
    text = "network n {\n    input [3, 8, 8]\n" + "    relu()\n" * 20_000 + "}\n"
    (d,) = _spec_error(text, tmp_path / "long.res")
    assert d.code == "E017" and "tokens" in d.message


# ----------------------------------------------------------------- 3, 4, 5. files and imports

def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


NET = "network n {\n    input [3, 8, 8]\n}\n"


def test_symlinked_folders_do_not_fan_imports_out(tmp_path):
    """Module keys are real paths: a file imported under many names loads once."""
    import resdsl

    _write(tmp_path / "lib.res", "module m(w) {\n    c: conv(w, 3)\n}\n")
    for name in ("d1", "d2", "d3"):
        (tmp_path / name).symlink_to(".")
    imports = "".join(f'import "{a}/{b}/{c}/lib.res"\n' for a in ("d1", "d2", "d3")
                      for b in ("d1", "d2", "d3") for c in ("d1", "d2", "d3"))
    spec = _write(tmp_path / "net.res", imports + 'import "lib.res"\n'
                  "network n {\n    input [3, 8, 8]\n    a: m(4)\n}\n")
    assert resdsl.load(spec).params == 4 * 3 * 9  # and no E011 "defined by two imports"
    (tmp_path / "alias.res").symlink_to("lib.res")
    spec2 = _write(tmp_path / "net2.res", 'import "lib.res"\nimport "alias.res"\n'
                   "network n {\n    input [3, 8, 8]\n    a: m(4)\n}\n")
    assert resdsl.load(spec2).params == 108


def test_self_import_through_symlinked_folders_is_a_cycle(tmp_path):
    (tmp_path / "d1").symlink_to(".")
    (tmp_path / "d2").symlink_to(".")
    spec = _write(tmp_path / "fan.res", 'import "d1/fan.res"\nimport "d2/fan.res"\n' + NET)
    diags = _spec_error(spec.read_text(), spec)
    assert {d.code for d in diags} == {"E030"}


def test_symlink_loop_is_a_diagnostic(tmp_path):
    (tmp_path / "a.res").symlink_to("b.res")
    (tmp_path / "b.res").symlink_to("a.res")
    spec = _write(tmp_path / "net.res", 'import "a.res"\n' + NET)
    (d,) = _spec_error(spec.read_text(), spec)
    assert (d.code, d.span.line) == ("E031", 1) and "loop" in d.message


def test_huge_import_is_refused_without_reading_it(tmp_path):
    import resource

    huge = tmp_path / "huge.res"
    with open(huge, "wb") as f:  # sparse: no disk used
        f.truncate(1 << 30)
    spec = _write(tmp_path / "net.res", 'import "huge.res"\n' + NET)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (d,) = _spec_error(spec.read_text(), spec)
    assert (d.code, d.span.line) == ("E017", 1) and "huge.res" in d.message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: it was 2 GB


def test_load_refuses_devices_and_fifos(tmp_path):
    import resdsl

    fifo = tmp_path / "fifo.res"
    os.mkfifo(fifo)
    for path in (device(tmp_path, "zero.res", 5), fifo):  # (1, 5) is /dev/zero
        with pytest.raises(resdsl.SpecError) as exc:
            resdsl.load(path)
        (d,) = exc.value.diagnostics
        assert d.code == "E031" and "not a regular file" in d.message


def test_loads_without_a_path_does_not_read_the_current_folder(tmp_path, monkeypatch):
    import resdsl

    monkeypatch.chdir(tmp_path)
    _write(tmp_path / ".env", "API_KEY=secret-value\n")
    _write(tmp_path / "lib.res", "module m(w) {\n    c: conv(w, 3)\n}\n")
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads('import "lib.res"\n' + NET)
    assert [d.code for d in exc.value.diagnostics] == ["E032"]
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads('import ".env"\n' + NET, str(tmp_path / "x.res"))
    assert [d.code for d in exc.value.diagnostics] == ["E033"]
    assert "secret-value" not in exc.value.render()
    (tmp_path / "env.res").symlink_to(".env")  # a .res name for it does not help
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads('import "env.res"\n' + NET, str(tmp_path / "x.res"))
    assert [d.code for d in exc.value.diagnostics] == ["E033"]
    assert "secret-value" not in exc.value.render()
    # the standard library always works, and a path gives the text a folder
    assert resdsl.loads('import std.resnet\nnetwork r = resnet(depths = [1, 1], widths = [8, 8])\n').params
    assert resdsl.loads('import "lib.res"\nnetwork n {\n    input [3, 8, 8]\n    a: m(4)\n}\n',
                        str(tmp_path / "x.res")).params == 108


# ----------------------------------------------------------------- 8. control characters

def test_control_characters_are_escaped_in_diagnostics(tmp_path, capsys):
    spec = tmp_path / "esc.res"
    spec.write_text('network n {\n    input [3, 8, 8]\n    require false, "red\x1b[31m bell\x07"\n}\n')
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    assert "red␛[31m bell␇" in err
    assert main(["check", str(tmp_path / "no\x1b[2Jsuch")]) == 2
    assert "\x1b" not in capsys.readouterr().err


# ----------------------------------------------------------------- 7. --weights

TINY = "network tiny {\n    input [3, 8, 8]\n    conv1: conv(4, 3)\n    bn1: batchnorm()\n    relu()\n}\n"


def _tiny_state(tmp_path: Path):
    import resdsl

    spec = _write(tmp_path / "tiny.res", TINY)
    return spec, resdsl.build(spec, seed=0).state_dict()


def _compile_with(tmp_path: Path, state: dict, *extra: str) -> int:
    import torch

    spec = tmp_path / "tiny.res"
    weights = tmp_path / "w.pt"
    torch.save(state, weights)
    return main(["compile", str(spec), "--target", "onnx", "--weights", str(weights),
                 "-o", str(tmp_path / "tiny.onnx"), *extra])


@pytest.mark.parametrize("kind", ["meta", "sparse"])
def test_meta_and_sparse_weights_are_usage_errors(tmp_path, capsys, kind):
    import torch

    _, state = _tiny_state(tmp_path)
    w = state["conv1.weight"]
    state["conv1.weight"] = w.to("meta") if kind == "meta" else w.to_sparse()
    assert _compile_with(tmp_path, state) == 2
    err = capsys.readouterr().err
    assert "internal error" not in err and "conv1.weight" in err and kind.split("_")[0] in err
    assert not (tmp_path / "tiny.onnx").exists()
    from resdsl.backends import OptionError, onnx_graph  # the API says the same
    with pytest.raises(OptionError):
        onnx_graph.emit(__import__("resdsl").load(tmp_path / "tiny.res"), weights=state)
    del torch


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e300])
def test_nonfinite_weights_need_allow_nonfinite(tmp_path, capsys, bad):
    import torch

    _, state = _tiny_state(tmp_path)
    state = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
    state["bn1.running_var"][0] = bad  # 1e300 is finite in float64, infinite in float32
    assert _compile_with(tmp_path, state) == 2
    err = capsys.readouterr().err
    assert "NaN or infinite" in err and "bn1.running_var" in err and "--allow-nonfinite" in err
    assert not (tmp_path / "tiny.onnx").exists()
    assert _compile_with(tmp_path, state, "--allow-nonfinite") == 0
    assert (tmp_path / "tiny.onnx").exists()
    del torch


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_converted_weights_get_a_note(tmp_path, capsys, dtype):
    import torch

    _, state = _tiny_state(tmp_path)
    state = {k: v.to(getattr(torch, dtype)) if v.is_floating_point() else v for k, v in state.items()}
    assert _compile_with(tmp_path, state) == 0
    err = capsys.readouterr().err
    assert f"note: the weights (file w.pt) hold 5 {dtype} tensors; converted to float32" in err
    capsys.readouterr()
    state32 = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    assert _compile_with(tmp_path, state32) == 0
    assert "note:" not in capsys.readouterr().err
