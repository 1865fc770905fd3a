"""Writing results: atomically to a file, a folder, or to standard output.

:func:`safe_write` is the one entry point every writer uses (the CLI's commands, the ONNX
back end's external data, bundles): it refuses to replace a file the run reads, never
follows a symbolic link out of the folder it names, and publishes a file, or a folder of
files, as one unit.

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

import contextlib
import errno
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from .diagnostics import UsageError

#: Temporary files and folders of this module: `.NAME.resdsl-PID-RANDOM(.tmp)`.
TEMP_TAG = "resdsl"


def safe_write(path: str | Path, data: bytes | str | Mapping[str, bytes | str], *,
               reads: Iterable[str | Path] = (), force: bool = False) -> Path | None:
    """Write ``data`` to ``path`` as one unit, or not at all; returns the path written
    (None for standard output, ``-``, a device or a FIFO).

    ``data`` is a file's content, or a mapping of relative file names to contents: a
    folder, staged beside ``path`` and renamed into place whole (an existing folder is
    replaced only when empty, or with ``force``). Raises :class:`UsageError` before
    anything is written when the output would replace one of ``reads`` (a file this run
    reads, also through a link or a hard link), when ``path`` is a link to somewhere
    outside its folder, or a name in ``/dev`` or ``/proc`` that does not exist.
    """
    refuse_inputs(path, reads, folder=isinstance(data, Mapping))
    if isinstance(data, Mapping):
        return write_folder(path, data, force=force)
    return write_atomic(path, data)


def refuse_inputs(path: str | Path, reads: Iterable[str | Path], also: Iterable[str | Path] = (),
                  folder: bool = False) -> None:
    """A :class:`UsageError` if writing ``path`` (or ``also``, files written with it) would
    replace a file in ``reads``, or, for a ``folder`` output, a file inside it."""
    if str(path) in ("-", ""):  # standard output; an empty name is refused by the writer
        return
    reads = [Path(r) for r in reads if r and not str(r).startswith("<")]
    for out in [Path(path), *map(Path, also)]:
        for read in reads:
            if same_file(out, read) or (folder and out.is_dir() and _inside(read, out)):
                raise UsageError(f"`-o {path}` would overwrite an input of this run (`{read}`)",
                                 hint="choose another output file")


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` both exist and are one file (through links, hard links, ``./``)."""
    try:
        if not (a.exists() and b.exists()):  # a file yet to be written is no input
            return False
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except (OSError, RuntimeError):  # a link loop, an unreadable folder: not the same file
        return False


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):
        return False


def write_atomic(path: str | Path, data: bytes | str) -> Path | None:
    """Write ``data`` to ``path`` (``-`` for standard output) all at once or not at all."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if str(path) == "-":
        sys.stdout.buffer.write(payload)
        sys.stdout.buffer.flush()
        return
    target = destination(path)
    if target is None:  # a device or a FIFO: there is nothing to replace atomically
        write_stream(path, payload)
        return None
    tmp = stage(target, payload, path)
    try:
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def write_folder(path: str | Path, files: Mapping[str, bytes | str], *, force: bool = False) -> Path:
    """The folder ``path`` holding exactly ``files`` (relative names to contents), staged
    in a temporary folder beside it and renamed into place: a reader sees the old folder
    or the new one, never a mix. An existing non-empty folder is replaced only with
    ``force``; a link is never followed."""
    if str(path) in ("", "-"):
        raise UsageError("a folder output needs a name", hint="give -o FOLDER")
    target = Path(path)
    if target.is_symlink():
        raise UsageError(f"`{path}` is a symbolic link: refusing to write a folder through it",
                         hint="give the folder itself")
    if _system_path(target):
        raise UsageError(f"refusing to write a folder in {'/dev' if '/dev' in str(target.absolute()) else '/proc'}",
                         hint="give a folder of your own")
    if target.exists() and not target.is_dir():
        raise UsageError(f"`{path}` exists and is not a folder", hint="choose another name, or remove it")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise UsageError(f"`{path}` is a folder that is not empty: refusing to replace it",
                         hint="choose a new folder, or pass --force to replace it")
    if target.is_dir() and _holds_home_or_here(target):  # --force must never delete these
        raise UsageError(f"`{path}` holds the current folder or is the home or root folder: refusing to replace it",
                         hint="give a new folder for the output")
    if not target.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(target.parent))
    work = temp_dir(target)
    try:
        for name, content in files.items():
            rel = Path(name)
            if rel.is_absolute() or not rel.parts or ".." in rel.parts or name != rel.as_posix():
                raise ValueError(f"a file name inside a folder output must be relative, got {name!r}")
            dest = work / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            payload = content.encode("utf-8") if isinstance(content, str) else content
            with open(dest, "wb") as f:
                write_all(f, payload, target / rel)
                os.fsync(f.fileno())
            os.chmod(dest, 0o666 & ~_umask())
        os.chmod(work, 0o777 & ~_umask())
        if target.is_dir():
            old = _exchange(work, target)  # the old folder now has the temporary name
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(work, target)  # fails if another writer made it meanwhile
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return target


def _holds_home_or_here(folder: Path) -> bool:
    real = folder.resolve()
    return real == Path(real.anchor) or real == Path.home().resolve() or Path.cwd().resolve().is_relative_to(real)


def _exchange(new: Path, target: Path) -> Path:
    """Put the folder ``new`` at ``target`` in one step (Linux's renameat2 RENAME_EXCHANGE),
    or, where that is missing, in two renames; returns where the old folder went."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        at_fdcwd, rename_exchange = -100, 2
        if libc.renameat2(at_fdcwd, os.fsencode(new), at_fdcwd, os.fsencode(target), rename_exchange) == 0:
            return new
    except (OSError, AttributeError):
        pass
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", dir=target.parent))
    os.rename(target, old / "old")
    os.rename(new, target)
    return old


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (flock on the folder itself: no lock file), so
    that writers of outputs made of several files commit one after the other."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): renames are still atomic, one by one
        yield
        return
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


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
    try:  # keep the permissions of the file we replace; another writer may remove it meanwhile
        mode = target.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    os.chmod(tmp, mode)


def temp_dir(target: Path) -> Path:
    """A new temporary folder beside ``target`` (``.NAME.resdsl-PID-XXXX``), for a writer
    that makes its files by name (onnx's external data); :func:`sweep` removes it if left."""
    sweep(target)
    try:
        return Path(tempfile.mkdtemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", dir=target.parent))
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(target)) from None


def publish_addressed(target: Path, payload: bytes, part_tmp: str | Path, part: Path,
                      stale: Callable[[], Iterable[Path]]) -> None:
    """Publish ``payload`` at ``target`` together with a file it refers to by a name made
    from that file's content (``part``, staged at ``part_tmp``, sealed): the part is renamed
    to its own name first, then the main file over ``target`` (the one step that commits),
    then the parts ``stale()`` lists that are no longer ``part`` are removed. A reader or a
    crash sees the old pair or the new one, never a mix; the steps run under
    :func:`folder_lock`, so two writers to one target commit one after the other. On
    failure the old pair is untouched and nothing of ours is left."""
    main_tmp = stage(target, payload)
    try:
        with folder_lock(target.parent):
            had_part = part.exists()
            os.replace(part_tmp, part)  # a new name, or the same bytes under it: no reader affected
            try:
                os.replace(main_tmp, target)
            except BaseException:
                if not had_part:
                    part.unlink(missing_ok=True)
                raise
            for old in stale():
                if old.name != part.name:
                    old.unlink(missing_ok=True)
    finally:
        Path(main_tmp).unlink(missing_ok=True)
        Path(part_tmp).unlink(missing_ok=True)


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
    if mode is None and _system_path(target):  # `-o /dev/nul`: a typo, not a new file in /dev
        raise UsageError(f"`{path}` does not exist, and resdsl does not create files in /dev or /proc",
                         hint="check the name (`-o /dev/null`?), or give a file of your own")
    if target.is_symlink():  # replace what the link points to, and keep the link
        real = Path(os.path.realpath(target))
        if real.parent != Path(os.path.realpath(target.parent)):
            raise UsageError(f"`{path}` is a link to `{real}`, outside its folder: refusing to follow it",
                             hint="write to that file itself, or remove the link")
        target = real
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
    try:
        return tempfile.mkstemp(prefix=f".{target.name}.{TEMP_TAG}-{os.getpid()}-", suffix=".tmp",
                                dir=target.parent)
    except OSError as err:  # a read-only folder: name what the user asked for, not our temporary
        raise OSError(err.errno, err.strerror, str(target)) from None


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
                shutil.rmtree(entry.path)  # never follows links inside
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
