"""Writing results: atomically to a file, or to standard output.

A result is written to a temporary file in the destination folder and renamed over the
target only once complete, so a failure at any point leaves no partial file and an
existing output untouched.

What is not a regular file is never replaced: a character device (``/dev/null``) or a
FIFO is written to directly, as a shell redirection would; anything else (a socket, a
block device) is refused. A symbolic link to a regular file stays a link: the file it
points to is replaced. Temporary files are named ``.NAME.resdsl-PID-XXXX.tmp``; one left
behind by a process that no longer runs (killed with SIGKILL) is removed by the next
write to the same target.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .diagnostics import UsageError

#: Temporary files and folders of this module: `.NAME.resdsl-PID-RANDOM(.tmp)`.
TEMP_TAG = "resdsl"


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` (``-`` for standard output) all at once or not at all."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if str(path) == "-":
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    target = destination(path)
    if target is None:  # a device or a FIFO: there is nothing to replace atomically
        write_stream(path, payload)
        return
    tmp = stage(target, payload, path)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stage(target: Path, payload: bytes, shown: str | Path | None = None) -> str:
    """``payload`` in a new temporary file beside ``target`` (a regular file's path, from
    :func:`destination`), synced, with the permissions the file it will replace has (or a
    new file would get); the caller renames it into place. Removed again on failure."""
    fd, tmp = temp_file(target)
    try:
        with os.fdopen(fd, "wb") as f:
            write_all(f, payload, shown if shown is not None else target)
        seal(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def seal(tmp: str | Path, target: Path) -> None:
    """Make a finished temporary file ready to replace ``target``: its bytes on disk, and
    the permissions of the file it replaces (or of a new file, under the umask)."""
    fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    if target.exists():  # keep the permissions of the file we replace
        os.chmod(tmp, target.stat().st_mode & 0o777)
    else:
        os.chmod(tmp, 0o666 & ~_umask())


def temp_dir(target: Path) -> Path:
    """A new temporary folder beside ``target`` (``.NAME.resdsl-PID-XXXX``), for a writer
    that makes its files by name (onnx's external data); :func:`sweep` removes it if left."""
    sweep(target)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", dir=target.parent))


def replace_all(staged: Sequence[tuple[str | Path, Path]]) -> None:
    """Rename each staged temporary file over its target, in this order, all or nothing:
    if a rename fails, the targets already replaced get their previous files back (kept
    as hard links, or copies, until the last rename), and new ones are removed. Put first
    what the later files point to (an ONNX model's tensors before the model)."""
    if not staged:
        return
    keep = temp_dir(staged[0][1])
    done: list[tuple[Path, Path | None]] = []
    try:
        for i, (tmp, target) in enumerate(staged):
            backup = None
            if target.exists() and i < len(staged) - 1:  # the last one's rename is the commit
                backup = keep / str(i)
                try:
                    os.link(target, backup)
                except OSError:  # a file system without hard links
                    shutil.copy2(target, backup)
            os.replace(tmp, target)
            done.append((target, backup))
        done.clear()
    finally:
        for target, backup in reversed(done):  # a later rename failed: undo the earlier ones
            if backup is not None:
                os.replace(backup, target)
            else:
                target.unlink(missing_ok=True)
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        shutil.rmtree(keep, ignore_errors=True)


def destination(path: str | Path) -> Path | None:
    """The regular file to replace for ``path`` (a link's target), or None for a character
    device or FIFO, which is written to directly. Raises for a folder, a missing folder, an
    empty name and things that cannot be written (sockets, block devices)."""
    if str(path) == "":
        raise UsageError("the output file name is empty", hint="give -o FILE, or -o - for stdout")
    target = Path(path)
    if str(path).endswith(os.sep):
        raise IsADirectoryError(errno.EISDIR, "that is a folder, give a file name", str(path))
    try:
        mode = os.stat(target).st_mode  # follows links: what a write would reach
    except FileNotFoundError:
        mode = None
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "that is a folder, give a file name", str(path))
    if mode is not None and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
        return None
    if mode is not None and not stat.S_ISREG(mode):
        kind = "socket" if stat.S_ISSOCK(mode) else "block device" if stat.S_ISBLK(mode) else "special file"
        raise UsageError(f"`{path}` is a {kind}, not a file: refusing to write to it",
                         hint="give the name of a regular file, or -o - for stdout")
    if mode is not None and _system_path(target):  # /dev/stdout redirected to a file: never rename there
        return None
    if target.is_symlink():  # replace what the link points to, and keep the link
        target = Path(os.path.realpath(target))
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(target.parent))
    return target


def _system_path(path: Path) -> bool:
    """A path in /dev or /proc, or a link into them (/dev/stdout → /proc/self/fd/1)."""
    system = ("/dev/", "/proc/")
    if str(path.absolute()).startswith(system):
        return True
    try:
        return os.readlink(path).startswith(system)
    except OSError:
        return False


def write_stream(path: str | Path, payload: bytes) -> None:
    """Write to a device or FIFO (or a file reached through /proc) in place: opened for
    writing without creating, truncating or renaming anything."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from None
    with os.fdopen(fd, "wb", buffering=0) as f:
        write_all(f, payload, path)


def write_all(f, payload: bytes, path: str | Path) -> None:
    """Write everything; an error (a full disk: ENOSPC) names the file it was for."""
    try:
        view = memoryview(payload)
        while view:
            n = f.write(view)
            view = view[n:] if n is not None else view[len(view):]
        f.flush()
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), str(path)) from None


def temp_file(target: Path) -> tuple[int, str]:
    """A new temporary file beside ``target`` (``.NAME.resdsl-PID-XXXX.tmp``), after removing
    the ones dead processes of ours left for the same target."""
    sweep(target)
    return tempfile.mkstemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", suffix=".tmp",
                            dir=target.parent)


def sweep(target: Path) -> None:
    """Remove temporary files and folders that a resdsl process which no longer runs left
    beside ``target`` (only our own naming pattern, only for this target)."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(?:data\.)?" + TEMP_TAG + r"-(\d+)-\w+(?:\.tmp)?")
    try:
        entries = list(os.scandir(target.parent))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m or _alive(int(m.group(1))):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                for inner in os.scandir(entry.path):
                    os.unlink(inner.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:  # another process's, or already gone
            pass


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def place_folder(tmp: Path, target: Path, *, replace: bool = False) -> None:
    """Rename the finished folder ``tmp`` (made by :func:`temp_dir` beside ``target``) to
    ``target``, so that the folder appears complete or not at all: into place when
    ``target`` is missing or an empty folder; over a folder that holds files only with
    ``replace`` (it is moved aside first, and back if the rename fails). ``tmp`` is removed
    if it cannot be placed."""
    aside = None
    try:
        if target.is_dir() and not any(target.iterdir()):
            target.rmdir()
        elif target.exists() or target.is_symlink():
            if not (replace and target.is_dir() and not target.is_symlink()):
                raise FileExistsError(errno.EEXIST, "it exists and is not an empty folder", str(target))
            aside = temp_dir(target)
            os.rename(target, aside / "previous")
        try:
            os.rename(tmp, target)
        except BaseException:
            if aside is not None:
                os.rename(aside / "previous", target)
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
