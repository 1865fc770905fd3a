"""The `resdsl` command line.

Messages go to standard error, results to standard output or ``-o FILE``. Exit status:
0 clean, 1 spec errors, 2 usage or internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .diagnostics import SourceCache, SpecError, UsageError, did_you_mean
from .ir import Network
from .loader import Loader
from .output import write_atomic
from .resources import shipped_spec, shipped_specs

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2

#: Options of `compile`, and the targets each applies to. A back end's ``emit`` takes
#: the ones that apply to it as keyword arguments (only those the user set).
TARGET_OPTIONS: dict[str, tuple[str, ...]] = {
    "seed": ("torch", "onnx"),
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="resdsl", description="Compile ResNet-family specs (.res).")
    p.add_argument("--version", action="version", version=f"resdsl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def spec_command(name: str, help: str, many: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("specs" if many else "spec", nargs="+" if many else None, metavar="SPEC",
                       help="a .res file, or the name of a shipped spec (resnet50)")
        c.add_argument("--network", metavar="NAME",
                       help="the network to use (default: the last one the file defines)")
        return c

    spec_command("check", "check specs and report diagnostics")
    stats = spec_command("stats", "per-stage shapes, blocks, parameters and MACs")
    stats.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    stats.add_argument("-o", "--output", metavar="FILE", default="-", help="write here (default: stdout)")

    from .backends import TARGETS
    comp = spec_command("compile", "lower a spec to a back end", many=False)
    comp.add_argument("--target", required=True, choices=sorted(TARGETS),
                      help="; ".join(f"{t.name}: {t.help}" for t in TARGETS.values()))
    comp.add_argument("-o", "--output", metavar="FILE",
                      help="write here; `-` for stdout (default for text targets)")
    comp.add_argument("--seed", type=int, help="seed for initial weights (torch, onnx)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = _parser().parse_args(argv)
    sources = SourceCache()
    try:
        return COMMANDS[args.command](args, sources)
    except SpecError as err:
        print(err.render(sources), file=sys.stderr)
        return EXIT_SPEC
    except UsageError as err:
        print(f"resdsl: error: {err}", file=sys.stderr)
        if err.hint:
            print(f"  = help: {err.hint}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("resdsl: interrupted", file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # a bug in resdsl, not in the spec
        print("resdsl: internal error; please report it with this trace:\n" + traceback.format_exc(),
              file=sys.stderr)
        return EXIT_USAGE


def load_spec(path: str, network: str | None, sources: SourceCache) -> Network:
    """Load a spec file; a bare name like ``resnet50`` that is no file names a shipped spec."""
    if not Path(path).is_file():
        shipped = shipped_spec(path)
        if shipped is None:
            hint = did_you_mean(Path(path).stem, shipped_specs())
            raise UsageError(f"cannot read `{path}`: no such file",
                             hint=hint.replace("?", " (a shipped spec)?") if hint else
                             "name a .res file, or a shipped spec such as `resnet50`")
        path = str(shipped)
    return Loader(sources).load(path, network=network)


def _check(args, sources: SourceCache) -> int:
    errors, failed = [], 0
    for path in args.specs:
        try:
            load_spec(path, args.network, sources)
        except SpecError as err:
            errors.extend(err.diagnostics)
            failed += 1
    if errors:
        print(SpecError(errors).render(sources), file=sys.stderr)
    n = len(args.specs)
    if failed:
        print(f"found {len(errors)} error{'s' * (len(errors) != 1)} in {failed} of {n} "
              f"spec{'s' * (n != 1)}", file=sys.stderr)
        return EXIT_SPEC
    print(f"ok: {n} spec{'s' * (n != 1)} checked, no errors", file=sys.stderr)
    return EXIT_OK


def _stats(args, sources: SourceCache) -> int:
    from .stats import render
    nets, errors = [], []
    for path in args.specs:
        try:
            nets.append(load_spec(path, args.network, sources))
        except SpecError as err:
            errors.extend(err.diagnostics)
    if errors:
        raise SpecError(errors)
    write_atomic(args.output, render(nets, args.format) + "\n")
    return EXIT_OK


def _compile(args, sources: SourceCache) -> int:
    from .backends import TARGETS
    target = TARGETS[args.target]
    options = {}
    for name, targets in TARGET_OPTIONS.items():
        value = getattr(args, name, None)
        if value in (None, False):
            continue
        if target.name not in targets:
            raise UsageError(f"`--{name.replace('_', '-')}` does not apply to --target {target.name}",
                             hint=f"it applies to: {', '.join(targets)}")
        options[name] = value
    output = args.output
    if output is None:
        if target.binary:
            raise UsageError(f"--target {target.name} writes a binary file: give `-o FILE`",
                             hint=f"e.g. -o {Path(args.spec).stem}{target.extension}")
        output = "-"
    net = load_spec(args.spec, args.network, sources)
    data = target.load()(net, **options)
    write_atomic(output, data)
    if output != "-":
        print(f"wrote {output}", file=sys.stderr)
    return EXIT_OK


COMMANDS = {"check": _check, "stats": _stats, "compile": _compile}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
