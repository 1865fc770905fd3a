"""Loading specs: files, imports, the standard library, and picking the network to build.

``import std.resnet`` reads ``std/resnet.res`` from the standard library shipped with
the package; ``import "common.res"`` (or ``import common``) reads a file relative to the
importing one. Imports may not leave the folder of the spec being compiled (or the
standard library): absolute paths and ``..`` escapes are refused, cycles are
diagnostics. An import makes the imported file's own definitions visible.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from . import limits
from .diagnostics import Diagnostic, Diagnostics, SourceCache, Span, SpecError, did_you_mean
from .elaborate import (
    BUILTINS,
    FAILED,
    IMPLICIT_NAMES,
    DefValue,
    Elaborator,
    ModuleEnv,
    PrimValue,
    type_name,
)
from .errors import E
from .ir import Network
from .resources import shipped_spec, std_root
from .syntax import Alias, Definition, Import, Module, parse

_PARSED: dict[tuple[str, str], Module] = {}  # (path, text) → AST; the std library parses once


def _parse_cached(text: str, path: str) -> Module:
    key = (path, text)
    if key not in _PARSED:
        if len(_PARSED) > 256:
            _PARSED.clear()
        _PARSED[key] = parse(text, path)
    return _PARSED[key]


def decode(data: bytes, path: str) -> str:
    """UTF-8 text, or a SpecError (E003) pointing at the first bad byte."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[: err.start]
        line = before.count(b"\n") + 1
        col = err.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError([Diagnostic(E.NOT_UTF8, f"the file is not valid UTF-8 (byte 0x{data[err.start]:02x})",
                                    Span(path, line, col, line, col + 1),
                                    hint="save the spec as UTF-8 text")]) from None
    if "\x00" in text:
        i = text.index("\x00")
        line = text.count("\n", 0, i) + 1
        col = i - (text.rfind("\n", 0, i) + 1) + 1
        raise SpecError([Diagnostic(E.NOT_UTF8, "the file contains a NUL character",
                                    Span(path, line, col, line, col + 1),
                                    hint="is this a binary file?")])
    return text.removeprefix("\ufeff")


def check_arguments(fn: str, *, path: object = None, text: object = None, network: object = None,
                    flags: dict[str, object] | None = None, text_given: bool = False) -> None:
    """The public API's arguments checked at the boundary (``resdsl.load``, ``loads``,
    ``build``…), with :class:`TypeError` in the API's own words, so a wrong argument is
    never an error from deep inside (``AttributeError: removeprefix``, difflib…)."""
    if text_given:
        if isinstance(text, bytes | bytearray | memoryview):
            raise TypeError(f"{fn}: `text` is the spec as a str, not bytes: decode it first, "
                            "text.decode('utf-8')")
        if not isinstance(text, str):
            raise TypeError(f"{fn}: `text` is the spec's text, a str, not {described(text)}")
    if path is not None and not isinstance(path, str | os.PathLike):
        raise TypeError(f"{fn}: `path` is a file name (str or pathlib.Path), not {described(path)}")
    if path is not None and "\x00" in os.fspath(path):  # no file system takes one
        raise ValueError(f"{fn}: `path` holds a NUL character: {described(path)}")
    if network is not None and not isinstance(network, str):
        raise TypeError(f"{fn}: `network` is the name of a network the file defines (a str), "
                        f"not {described(network)}")
    for name, value in (flags or {}).items():
        if not isinstance(value, bool):
            raise TypeError(f"{fn}: `{name}` is True or False, not {described(value)}")


def described(value: object) -> str:
    shown = repr(value)
    return f"{type(value).__name__} {shown if len(shown) <= 40 else shown[:37] + '...'}"


class Loader:
    """Loads one spec (and what it imports) and elaborates its network."""

    def __init__(self, sources: SourceCache | None = None, *, allow_large: bool = False) -> None:
        self.sources = sources or SourceCache()
        self.allow_large = allow_large
        self.envs: dict[str, ModuleEnv] = {}
        self.diags = Diagnostics()
        self.elab = Elaborator()
        self.root: Path | None = None
        #: False for text with no file behind it (``loads`` without a path): it has no
        #: folder, so only the standard library can be imported
        self.has_folder = True
        self.broken: set[str] = set()  # modules with a failed import

    # ------------------------------------------------------------------- API

    def load(self, path: str | Path, text: str | None = None, network: str | None = None) -> Network:
        """Load a spec file (or ``text`` under that name) and return its checked network."""
        path = Path(path)
        self.root = path.resolve().parent
        if text is not None:
            text = text.removeprefix("\ufeff")  # as for files: a byte-order mark is not content
        env = self.module(path, text, (), None)
        if env is None:
            self.finish()
        return self.build(env, network)

    def build(self, env: ModuleEnv, network: str | None) -> Network:
        self.finish()  # errors in definitions first: they would cascade into "no network"
        if network is None:
            if not env.networks:
                self.diags.error(E.NO_NETWORK, "the spec defines no network", Span(env.path, 1, 1, 1, 2),
                                 hint="add `network name = ...` or `network name { ... }`")
                self.finish()
            network = env.networks[-1]
        value = env.names.get(network)
        if not isinstance(value, DefValue) or value.kind != "network":
            nets = [n for n, v in env.names.items() if isinstance(v, DefValue) and v.kind == "network"]
            self.diags.error(E.NO_NETWORK, f"no network named `{network}`", Span(env.path, 1, 1, 1, 2),
                             hint=did_you_mean(network, nets) or f"networks here: {', '.join(nets) or 'none'}")
            self.finish()
        span = env.sites.get(network, Span(env.path, 1, 1, 1, 2))
        missing = [p.name for p in value.definition.params
                   if p.default is None and p.name not in dict(value.bound)]
        if missing:
            self.diags.error(E.NO_NETWORK, f"network `{network}` needs arguments: {', '.join(missing)}",
                             span, hint=f"define a variant: `network mine = {network}({missing[0]} = ...)`")
            self.finish()
        net = self.elab.network(value, span, network, env.path)
        self.diags.extend(self.elab.take_diagnostics())
        self.finish()
        assert net is not None
        if not self.allow_large:
            self.check_budget(net, span)
        return net

    def check_budget(self, net: Network, span: Span) -> None:
        """Refuse networks too large to build on an ordinary machine (nothing is allocated yet)."""
        weights = 4 * net.params
        activations = 4 * sum(math.prod(op.shape) for op in net.ops)
        hint = "pass --allow-large (allow_large=True from Python) to build it anyway"
        if net.params > limits.MAX_PARAMS:
            self.diags.error(E.OVER_BUDGET, f"network `{net.name}` has {net.params:,} parameters, more than "
                             f"the limit of {limits.MAX_PARAMS:,}", span,
                             label=f"{weights / 2**30:.1f} GiB of float32 weights", hint=hint)
        if activations > limits.MAX_ACTIVATION_BYTES:
            self.diags.error(E.OVER_BUDGET, f"network `{net.name}` needs {activations / 2**30:.1f} GiB of "
                             f"activations per sample, more than the limit of "
                             f"{limits.MAX_ACTIVATION_BYTES / 2**30:.0f} GiB", span,
                             label=f"input {'×'.join(map(str, net.input_shape))}", hint=hint)
        self.finish()

    def finish(self) -> None:
        if self.diags:
            raise SpecError([self.import_hint(d) for d in self.diags.items])

    def import_hint(self, d: Diagnostic) -> Diagnostic:
        """An unknown name that a loaded file or the standard library defines: say which
        import brings it in (imports are not transitive, and `import std.resnet` is easy to
        forget)."""
        name = self.elab.unknown_name(d)
        if name is None:
            return d
        std = std_root()
        for env in self.envs.values():
            key = env.path
            if name not in env.own or key == d.span.path:
                continue
            if Path(key).is_relative_to(std):
                target = "std." + ".".join(Path(key).relative_to(std).with_suffix("").parts)
            else:
                rel = os.path.relpath(key, os.path.dirname(d.span.path) or ".")
                target = '"' + Path(rel).as_posix() + '"'
            return dataclasses.replace(d, hint=f"`{name}` is defined in {Path(key).name}, which "
                                                f"this file does not import: add `import {target}`")
        for path in sorted(std.rglob("*.res")):
            try:
                module = _parse_cached(path.read_text(encoding="utf-8"), str(path))
            except (OSError, UnicodeDecodeError, SpecError):
                continue
            if any(isinstance(item, (Definition, Alias)) and item.name == name for item in module.items):
                target = "std." + ".".join(path.relative_to(std).with_suffix("").parts)
                return dataclasses.replace(d, hint=f"`{name}` is in the standard library: add "
                                                    f"`import {target}` at the top of the file")
        return d

    # ------------------------------------------------------------------- modules

    def module(self, path: Path, text: str | None, stack: tuple[str, ...], at: Span | None) -> ModuleEnv | None:
        key = str(path)
        # A module is its real file: the same file under two names (links, `a/../a.res`)
        # loads once, so links cannot fan imports out and its names do not clash (E011).
        ident = os.path.realpath(key)
        if ident in stack:
            chain = " → ".join(Path(p).name for p in (*stack[stack.index(ident):], ident))
            self.diags.error(E.IMPORT_CYCLE, f"import cycle: {chain}", at or Span(key, 1, 1, 1, 2),
                             hint="move the shared definitions into a file both can import")
            return None
        if ident in self.envs:
            return self.envs[ident]
        if len(stack) > limits.MAX_IMPORT_DEPTH:
            self.diags.error(E.IMPORT_CYCLE, "imports nest too deeply", at or Span(key, 1, 1, 1, 2))
            return None
        try:
            if text is None:
                data = self.read(path, key, at)
                if data is None:
                    return None
                text = decode(data, key)
            self.sources.add(key, text)
            ast = _parse_cached(text, key)
        except OSError as err:
            self.diags.error(E.IMPORT_NOT_FOUND, f"cannot read `{key}`: {err.strerror or err}",
                             at or Span(key, 0, 0, 0, 0))
            return None
        except SpecError as err:
            self.diags.extend(err.diagnostics)
            return None
        is_std = key.startswith(str(std_root()))
        env = ModuleEnv(key, is_std)
        self.envs[ident] = env
        origin: dict[str, str] = {}  # imported name → the file that defines it
        for item in ast.items:
            if isinstance(item, Import):
                sub_path = self.resolve(item, path)
                sub = self.module(sub_path, None, (*stack, ident), item.span) if sub_path else None
                if sub is None:  # its names are unknown here; the import's error says why
                    self.broken.add(key)
                    continue
                for name, (value, _) in sub.own.items():
                    if name in origin and origin[name] != sub.path:
                        self.diags.error(E.DEFINED_TWICE, f"`{name}` is defined by two imports, "
                                         f"`{Path(origin[name]).name}` and `{Path(sub.path).name}`",
                                         item.span, hint="rename it in one of the files")
                    origin[name] = sub.path
                    env.names[name] = value
        for item in ast.items:
            if isinstance(item, (Definition, Alias)):
                self.define(env, item)
        return env

    def read(self, path: Path, key: str, at: Span | None) -> bytes | None:
        """A spec file's bytes, or None after a diagnostic. Only regular files are read (a
        device or a FIFO could be endless or block), and no more than the size limit."""
        where = at or Span(key, 0, 0, 0, 0)
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                self.diags.error(E.IMPORT_NOT_FOUND, f"cannot read `{key}`: it is not a regular file", where,
                                 hint="a spec is a .res text file")
                return None
            if info.st_size > limits.MAX_SOURCE_BYTES:
                self.too_large(key, at)
                return None
            with open(path, "rb") as f:
                data = f.read(limits.MAX_SOURCE_BYTES + 1)  # it may have grown since
        except OSError as err:
            self.diags.error(E.IMPORT_NOT_FOUND, f"cannot read `{key}`: {err.strerror or err}", where)
            return None
        if len(data) > limits.MAX_SOURCE_BYTES:
            self.too_large(key, at)
            return None
        return data

    def too_large(self, key: str, at: Span | None) -> None:
        what = "the file" if at is None else f"the imported file `{Path(key).name}`"
        self.diags.error(E.TOO_LARGE, f"{what} is larger than {limits.MAX_SOURCE_BYTES:,} bytes",
                         Span(key, 1, 1, 1, 2) if at is None else at)

    def define(self, env: ModuleEnv, item: Definition | Alias) -> None:
        if item.name in env.own:
            first = env.own[item.name][1]
            self.diags.error(E.DEFINED_TWICE, f"`{item.name}` is defined twice", item.name_span,
                             label=f"first defined at line {first.line}", hint="rename one of them")
            return
        if item.name in BUILTINS:
            self.diags.error(E.DEFINED_TWICE, f"`{item.name}` is a built-in name", item.name_span,
                             hint="choose another name for the definition")
            return
        if isinstance(item, Definition):
            implicit = [p for p in item.params if p.name in IMPLICIT_NAMES]
            if implicit and item.kind != "network":
                p = implicit[0]
                self.diags.error(E.DEFINED_TWICE, f"`{p.name}` cannot be a parameter: every {item.kind} "
                                 "defines it from its input", p.span,
                                 hint=f"rename the parameter (e.g. `{p.name}_`); `{p.name}` is "
                                      f"the {IMPLICIT_NAMES[p.name]} of the tensor the {item.kind} reads")
                env.names[item.name] = FAILED
                return
            current = next((p for p in item.params if p.name == "current"), None)
            if current is not None:
                self.diags.error(E.DEFINED_TWICE, "`current` cannot be a parameter: it is the running value",
                                 current.span, hint="rename the parameter")
                env.names[item.name] = FAILED
                return
            value = DefValue(item, env)
        else:
            value = self.elab.evaluate(item.value, env.names)
            if value is FAILED:
                found = self.elab.take_diagnostics()
                if env.path in self.broken:  # an unknown name is most likely the failed import's
                    found = [d for d in found if d.code != E.UNKNOWN_NAME]
                self.diags.extend(found)
                env.names[item.name] = FAILED
                return
            if isinstance(value, PrimValue) and item.kind == "module":
                pass
            elif isinstance(value, DefValue) and item.kind == "stage" and value.kind not in ("network", "stage"):
                # any definition can be a stage: `stage level1 = conv_level with (stride = 2)`
                value = dataclasses.replace(value, as_kind="stage")
            elif not isinstance(value, DefValue) or value.kind != item.kind:
                what = "any definition but a network" if item.kind == "stage" else f"a {item.kind} definition"
                self.diags.error(E.WRONG_TYPE, f"`{item.kind} {item.name}` must be a {item.kind}, got "
                                 f"{type_name(value)}", item.value.span,
                                 hint=f"the right side names {what}, with "
                                      "arguments: `base(x = 1)` or `base with (x = 1)`")
                env.names[item.name] = FAILED
                return
        env.own[item.name] = (value, item.name_span)
        env.sites[item.name] = item.value.span if isinstance(item, Alias) else item.name_span
        env.names[item.name] = value
        if item.kind == "network":
            env.networks.append(item.name)

    def resolve(self, imp: Import, importer: Path) -> Path | None:
        """The file an import names, or None after a diagnostic."""
        target = imp.target
        std = std_root()
        if imp.is_file:
            if Path(target).is_absolute() or target.startswith("~"):
                self.diags.error(E.IMPORT_OUTSIDE_FOLDER, f"absolute import `{target}` is not allowed", imp.span,
                                 hint="import files by a path relative to the importing spec")
                return None
            if not target.endswith(".res"):
                # only specs: a diagnostic's excerpt must never show another file's contents (`.env`)
                self.diags.error(E.IMPORT_NOT_A_SPEC, f"`{target}` is not a .res file: only specs can be imported",
                                 imp.span, hint="name a .res file, e.g. `import \"common.res\"`")
                return None
            candidate = importer.parent / target
            roots = [self.root or importer.resolve().parent]
        elif target == "std" or target.startswith("std."):
            rel = target.split(".")[1:]
            candidate = std.joinpath(*rel).with_suffix(".res") if rel else std
            roots = [std]
        else:
            candidate = importer.parent.joinpath(*target.split(".")).with_suffix(".res")
            roots = [self.root or importer.resolve().parent]
        if not self.has_folder and roots[0] != std:  # never the current folder by default
            self.diags.error(E.IMPORT_OUTSIDE_FOLDER, f"cannot import `{target}`: a spec given as text, without a path, "
                             "has no folder to import from", imp.span,
                             hint="pass the path the text stands for (`loads(text, path)`); the "
                                  "standard library (`import std.resnet`) is always available")
            return None
        try:
            if importer.resolve().is_relative_to(std.resolve()):
                roots.append(std)
            resolved = candidate.resolve()
        except (OSError, RuntimeError) as err:  # a symbolic link loop
            self.diags.error(E.IMPORT_NOT_FOUND, f"cannot resolve the import `{target}`: "
                             f"{getattr(err, 'strerror', None) or 'a symbolic link loop'}", imp.span,
                             hint="check the symbolic links on the way to the file")
            return None
        # `lib/../a.res` is `a.res`: the same module key, so cycles are recognised.
        candidate = Path(os.path.normpath(candidate))
        if not any(resolved.is_relative_to(r.resolve()) for r in roots):
            self.diags.error(E.IMPORT_OUTSIDE_FOLDER, f"import `{target}` leaves the spec's folder", imp.span,
                             hint="keep imported files beside the spec or below its folder")
            return None
        try:
            found = candidate.is_file()
        except OSError:  # e.g. a name longer than the file system allows
            found = False
        if found and resolved.suffix != ".res":  # a `x.res` link to `.env`
            self.diags.error(E.IMPORT_NOT_A_SPEC, f"`{target}` is a link to `{resolved.name}`, which is not a .res "
                             "file: only specs can be imported", imp.span,
                             hint="import the spec itself")
            return None
        try:
            there = not found and (candidate.exists() or candidate.is_symlink())
        except OSError:  # a name longer than the file system allows: not there
            there = False
        if there:  # a folder, a FIFO, a device
            what = "a folder" if candidate.is_dir() else "not a regular file"
            self.diags.error(E.IMPORT_NOT_FOUND, f"cannot import `{target}`: `{candidate.name}` is {what}", imp.span,
                             hint="import a .res file")
            return None
        if not found:
            options = [p.stem for p in candidate.parent.glob("*.res")] if candidate.parent.is_dir() else []
            prefix = "std." if not imp.is_file and target.startswith("std") else ""
            hint = did_you_mean(prefix + candidate.stem, [prefix + o for o in options])
            self.diags.error(E.IMPORT_NOT_FOUND, f"cannot find the import `{target}`", imp.span,
                             hint=hint or (f"the standard library has: "
                                           f"{', '.join(sorted(p.stem for p in std_root().glob('*.res')))}"
                                           if prefix else f"looked for {candidate.name} beside the spec"))
            return None
        return candidate


# ---------------------------------------------------------------- the API's loading
# resdsl.load and resdsl.loads live here, so that the layers above the front end (back ends,
# the importer, transplant) load specs without importing the package root.


def load(path: str | Path, *, network: str | None = None, allow_large: bool = False) -> Network:
    """Load the spec at ``path`` and return its checked network.

    ``path`` is a ``.res`` file, or the bare name of a shipped spec (``"resnet50"``, see
    :func:`list_specs`) when no such file exists, as on the command line. The network is
    the last one the file defines, or the one named ``network``. Networks over the size
    budget (``resdsl.limits``) are refused unless ``allow_large``. Raises
    :class:`SpecError` with every diagnostic found.
    """
    check_arguments("load", path=path, network=network, flags={"allow_large": allow_large})
    if path is None:
        raise TypeError("load: `path` is a file name (str or pathlib.Path), not None")
    if isinstance(path, str) and not Path(path).exists():
        path = shipped_spec(path) or path
    return Loader(allow_large=allow_large).load(path, network=network)


def loads(text: str, path: str | Path | None = None, *, network: str | None = None,
          allow_large: bool = False) -> Network:
    """Like :func:`load`, for spec text; ``path`` names it in diagnostics.

    Imports of files resolve relative to ``path``'s folder; without a path the text has no
    folder (the current one is never assumed), so only the standard library can be imported.
    """
    check_arguments("loads", text=text, text_given=True, path=path, network=network,
                    flags={"allow_large": allow_large})
    loader = Loader(allow_large=allow_large)
    if path is None:
        path, loader.has_folder = "<string>", False
    return loader.load(path, text=text, network=network)


def check_seed(seed: object, fn: str = "build") -> None:
    # the CLI's range for --seed (resdsl.backends.SEED)
    if seed is None:
        return
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{fn}: `seed` is an integer or None, not {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= 2**63 - 1:
        raise ValueError(f"{fn}: `seed` lies between 0 and 2**63 - 1, not {seed}")


def check_out_indices(out_indices: object, fn: str = "build") -> None:
    if out_indices is not None and (isinstance(out_indices, str | bytes) or not isinstance(out_indices, Sequence)
                                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in out_indices)):
        raise TypeError(f"{fn}: `out_indices` is a sequence of integers, such as (1, 2, 3, 4), not {out_indices!r}")
