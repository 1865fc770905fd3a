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
    """`-o /dev/stdout` with stdout redirected to a file: the output lands in the file."""
    out = tmp_path / "out.txt"
    with open(out, "wb") as f:
        proc = subprocess.run([sys.executable, "-m", "resdsl.cli", "stats", str(R20), "-o", "/dev/stdout"],
                              stdout=f, stderr=subprocess.PIPE, env=ENV, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert "resnet20_cifar" in out.read_text()
    assert os.path.islink("/dev/stdout")


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
    spec = tmp_path / "m.onnx.data"
    spec.write_text(R20.read_text())
    assert main(["compile", str(spec), "--target", "onnx", "--external-data",
                 "-o", str(tmp_path / "m.onnx")]) == 2
    assert "would overwrite an input" in capsys.readouterr().err
    assert spec.read_text() == R20.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx.data"]


# ----------------------------------------------------------------- 8. smaller

def test_huge_static_batch_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["compile", str(R20), "--target", "onnx", "--static-batch", "99999999999999999999",
              "-o", str(tmp_path / "m.onnx")])
    assert exc.value.code == 2
    assert "--static-batch" in capsys.readouterr().err


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
