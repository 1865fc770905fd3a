"""The `resdsl` command line.

Messages go to standard error, results to standard output or ``-o FILE``. Exit status:
0 clean, 1 spec errors, 2 usage or internal error.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .backends import SEED, TARGETS, BackendError, Option, OptionError, fill, target_options
from .diagnostics import Note, SourceCache, SpecError, UsageError, did_you_mean, printable
from .ir import Network
from .loader import Loader
from .output import refuse_inputs, safe_write
from .primitives import PluginError
from .resources import shipped_spec, shipped_specs
from .version import __version__

EXIT_OK, EXIT_SPEC, EXIT_USAGE = 0, 1, 2

def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; the back ends' flags only for ``command`` (all without one), so
    that `resdsl check` imports no back end to read their declarations."""
    p = argparse.ArgumentParser(prog="resdsl", description="Compile ResNet-family specs (.res).")
    p.add_argument("--version", action="version", version=f"resdsl {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def spec_command(name: str, help: str, many: bool = True) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.add_argument("specs" if many else "spec", nargs="+" if many else None, metavar="SPEC",
                       help="a .res file, or the name of a shipped spec (resnet50)")
        c.add_argument("--network", metavar="NAME",
                       help="the network to use (default: the last one the file defines)")
        c.add_argument("--allow-large", action="store_true",
                       help="accept networks over the size budget (1 G parameters, 32 GiB of "
                            "activations per sample)")
        return c

    spec_command("check", "check specs and report diagnostics")
    stats = spec_command("stats", "per-stage shapes, blocks, parameters and MACs")
    stats.add_argument("--format", choices=("table", "markdown", "json"), default="table")
    stats.add_argument("-o", "--output", metavar="FILE", default="-", help="write here (default: stdout)")

    comp = spec_command("compile", "lower a spec (or a folder save_pretrained wrote) to a back end", many=False)
    _add_set(comp)
    comp.add_argument("--target", required=True, choices=sorted(TARGETS),
                      help="; ".join(f"{t.name}: {t.help}" for t in TARGETS.values()))
    comp.add_argument("-o", "--output", metavar="FILE",
                      help="write here; `-` for stdout (default for text targets)")
    if command in (None, "compile"):
        _add_options(comp, target_options())

    diagram = spec_command("diagram", "draw a spec (the format follows -o: .svg, .pdf, .png, .dot)")
    diagram.add_argument("-o", "--output", metavar="FILE", default="-",
                         help="write here (default: DOT text on stdout)")
    diagram.add_argument("--format", choices=("dot", "svg", "pdf", "png"),
                         help="output format (default: from the extension of -o, else dot)")
    if command in (None, "diagram"):
        _add_options(diagram, target_options([TARGETS["dot"]]), group=False)

    graft = spec_command("transplant", "load a checkpoint into a (modified) network by name and shape, "
                         "adapting the input conv to another channel count", many=False)
    graft.add_argument("--from", dest="checkpoint", required=True, metavar="CHECKPOINT",
                       help="the weights to transplant: a .safetensors file or a torch state_dict (.pt/.pth)")
    graft.add_argument("-o", "--output", required=True, metavar="FILE",
                       help="the new state_dict: .safetensors, or .pt/.pth (torch.save of a plain dict)")
    graft.add_argument("--seed", type=_parse(SEED), default=0, metavar="SEED",
                       help="seed for the tensors not taken from the checkpoint (default 0)")
    graft.add_argument("--format", choices=("text", "json"), default="text",
                       help="the report: text on stderr (default), or JSON on stdout")
    graft.add_argument("--allow-nonfinite", action="store_true",
                       help="accept NaN or infinite values in the weights")
    _add_set(graft)

    models = sub.add_parser("models", help="list the models create_model knows (shipped specs, RESDSL_PATH)",
                            description="list the models create_model knows: the shipped specs and the specs "
                                        "in the folders of RESDSL_PATH")
    models.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                        help="a shell-style pattern (default: *)")
    models.add_argument("--pretrained", action="store_true",
                        help="only those with zoo weights, each with its weights' references")

    save = spec_command("save", "write a model folder (spec, model.safetensors, config.json) that "
                        "create_model and compile rebuild", many=False)
    save.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write")
    save.add_argument("--pretrained", metavar="WEIGHTS",
                      help="weights: a checkpoint file, timm:NAME.TAG or torchvision:ENUM.VALUE (fetched by "
                           "that package), or `default` for the spec's first zoo weights")
    save.add_argument("--seed", type=_parse(SEED), default=0, metavar="SEED",
                      help="seed for the tensors not taken from the weights (default 0)")
    save.add_argument("--force", action="store_true", help="replace DIR if it is not empty")
    save.add_argument("--verbose", action="store_true", help="print the transplant report of --pretrained")
    _add_set(save)

    table = spec_command("table", "an architecture table like He et al. 2015, Table 1: a column per spec")
    table.add_argument("--format", choices=("markdown", "latex", "csv"), default="markdown")
    table.add_argument("-o", "--output", metavar="FILE", default="-", help="write here (default: stdout)")
    table.add_argument("--fragment", action="store_true",
                       help="latex: a table float to \\input into a paper (needs booktabs), not a document")
    table.add_argument("--caption", metavar="TEXT", help="latex: the table's caption")
    table.add_argument("--label", metavar="LABEL", help="latex: the table's \\label, e.g. tab:arch")
    table.add_argument("--spec-listing", action="store_true",
                       help="latex: add each spec file as a minted listing (needs -shell-escape and "
                            "resdsl[docs], whose Pygments lexer minted finds as `resdsl`)")
    imp = sub.add_parser("import", help="write an existing torch model as a .res spec (checked before writing)",
                         description="write an existing torch model as a .res spec, checked before writing")
    imp.add_argument("model", metavar="MODEL",
                     help="package.module:factory (torchvision.models:resnet50) or timm:NAME")
    imp.add_argument("-o", "--output", default="-", metavar="FILE", help="write here (default: stdout)")
    imp.add_argument("--kwargs", default="{}", metavar="JSON", help="keyword arguments for the factory, as JSON")
    imp.add_argument("--input-size", default="3,224,224", metavar="C,H,W",
                     help="the input the model is traced and checked with (default 3,224,224)")
    imp.add_argument("--name", metavar="NAME", help="the network's name (default: from MODEL)")
    return p


def _add_set(c: argparse.ArgumentParser) -> None:
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter of the network, as `with (KEY = VALUE)` in a spec "
                        "(VALUE is .res text: 10, 0.1, true, [3, 4, 23, 3], deep_stem); repeatable")


def _overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--set`` pairs as parameter → .res text."""
    out: dict[str, str] = {}
    for pair in getattr(args, "overrides", []) or []:
        key, eq, value = pair.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key.isidentifier() or not value:
            raise UsageError(f"--set {pair}: expected KEY=VALUE, such as num_classes=10",
                             hint="VALUE is written as in a spec: 10, 0.1, true, [3, 4, 23, 3], deep_stem")
        if "\n" in value or "\r" in value:
            raise UsageError(f"--set {key}: the value spans several lines")
        out[key] = value
    return out


def _add_options(c: argparse.ArgumentParser, options: dict[str, tuple[Option, tuple[str, ...]]],
                 group: bool = True) -> None:
    """A flag for each back-end option, from its declaration; with ``group``, under a
    heading naming the targets it applies to. Values are kept as text: ``_given_options``
    checks them once it knows the option applies to the target (``--target torch --opset
    12`` is an option that does not apply, not a bad opset)."""
    groups: dict[tuple[str, ...], argparse._ArgumentGroup] = {}
    for option, targets in options.values():
        where = c
        if group:
            if targets not in groups:
                groups[targets] = c.add_argument_group(f"options for --target {', '.join(targets)}")
            where = groups[targets]
        text = fill(option.help, cli_spelling)
        if option.switch:
            where.add_argument(option.flag, action="store_true", help=text)
        else:
            shown = "{" + ",".join(map(str, option.choices)) + "}" if option.choices else None
            where.add_argument(option.flag, metavar=option.metavar or shown, help=text)


def _given_options(args: argparse.Namespace, options: dict[str, tuple[Option, tuple[str, ...]]],
                   target: str) -> dict[str, Any]:
    """The back-end options given on the command line, for ``target``: each one checked to
    apply to it, then parsed and checked by its declaration."""
    given = {}
    for name, (option, targets) in options.items():
        value = getattr(args, name, None)
        if value is None or value is False:  # `--seed 0` is a value, not an absent option
            continue
        if target not in targets:
            raise UsageError(f"`{option.flag}` does not apply to --target {target}",
                             hint=f"it applies to: {', '.join(targets)}")
        try:
            given[name] = value if option.switch else option.parse(value)
        except OptionError as err:
            message, hint = err.words(cli_spelling)
            raise UsageError(f"{option.flag}: {message}", hint=hint) from None
    return given


def _parse(option: Option):
    """argparse's ``type`` for ``option``: its own parsing and checks, its words as flags."""
    def parse(text: str):
        try:
            return option.parse(text)
        except OptionError as err:
            raise argparse.ArgumentTypeError("; ".join(filter(None, err.words(cli_spelling)))) from None

    parse.__name__ = option.name  # argparse names the type in some messages
    return parse


def cli_spelling(name: str, value: str | None) -> str:
    """An option named in a back end's message, as its flag: ``--detail layer``."""
    flag = "--" + name.replace("_", "-")
    return flag if value in (None, "True") else f"{flag} {value}"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process is, so that temporary files are cleaned up."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    # the command is the first word that is no option (`resdsl` itself takes no values)
    args = _parser(next((a for a in argv if not a.startswith("-")), None)).parse_args(argv)
    sources = SourceCache()
    previous = None
    try:  # SIGTERM unwinds like Ctrl-C, so partial outputs are removed on the way out
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread: leave signals alone
        pass
    try:
        return _run(args, sources)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace, sources: SourceCache) -> int:
    try:
        return COMMANDS[args.command](args, sources)
    except SpecError as err:
        print(err.render(sources), file=sys.stderr)
        return EXIT_SPEC
    except (UsageError, BackendError) as err:  # paths from the command line may hold control characters
        # a back end words its errors for Python (`weights`); here they name the flags (--weights)
        message, hint = err.words(cli_spelling) if isinstance(err, BackendError) else (str(err), err.hint)
        print(f"resdsl: error: {printable(message)}", file=sys.stderr)
        if hint:
            print(f"  = help: {printable(hint)}", file=sys.stderr)
        return EXIT_USAGE
    except PluginError as err:  # a plugin's bug: named, never reported as resdsl's
        print(f"resdsl: error[E058]: {printable(str(err))}", file=sys.stderr)
        print("  = help: this is a bug in that plugin: report it to its authors, or uninstall it",
              file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        print(f"resdsl: {'terminated' if isinstance(err, Terminated) else 'interrupted'}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # a path the user gave cannot be read or written
        where = f" `{err.filename}`" if err.filename else ""
        print(printable(f"resdsl: error: cannot use{where}: {err.strerror or err}"), file=sys.stderr)
        return EXIT_USAGE
    except Exception:  # a bug in resdsl, not in the spec
        print("resdsl: internal error; please report it with this trace:\n" + traceback.format_exc(),
              file=sys.stderr)
        return EXIT_USAGE


def load_spec(path: str, network: str | None, sources: SourceCache, allow_large: bool = False,
              overrides: dict[str, str] | None = None) -> Network:
    """Load a spec file; a bare name like ``resnet50`` that is no file names a shipped spec.
    ``overrides`` (parameter → .res text) apply as a ``with`` delta (``--set``)."""
    from .models import BUNDLE_CONFIG, ModelError, Recipe, load_network

    if not path:  # Path("") is the current folder
        raise UsageError("an empty name is not a spec", hint="name a .res file")
    if Path(path).is_dir():
        if (Path(path) / BUNDLE_CONFIG).is_file():
            raise UsageError(f"`{path}` is a model folder: only `resdsl compile` takes one",
                             hint="or name its .res file")
        raise UsageError(f"`{path}` is a folder, not a spec", hint="name a .res file")
    if overrides:
        if not Path(path).is_file() and shipped_spec(path) is not None:
            path = str(shipped_spec(path))
        if Path(path).is_file():
            try:
                return load_network(Recipe(Path(path), network, overrides), sources=sources,
                                    allow_large=allow_large)
            except ModelError as err:
                raise UsageError(err.message, hint=err.hint) from None
    if Path(path).exists() and not Path(path).is_file():  # a device or FIFO: never read it
        raise UsageError(f"`{path}` is not a regular file", hint="name a .res file")
    if not Path(path).is_file():
        shipped = shipped_spec(path)
        if shipped is None:
            hint = did_you_mean(Path(path).stem, shipped_specs())
            raise UsageError(f"cannot read `{path}`: no such file",
                             hint=hint.replace("?", " (a shipped spec)?") if hint else
                             "name a .res file, or a shipped spec such as `resnet50`")
        path = str(shipped)
    return Loader(sources, allow_large=allow_large).load(path, network=network)


def load_specs(args, sources: SourceCache) -> list[Network]:
    """Every spec of ``args.specs``; diagnostics from all of them in one SpecError."""
    nets, errors = [], []
    for path in args.specs:
        try:
            nets.append(load_spec(path, args.network, sources, args.allow_large))
        except SpecError as err:
            errors.extend(err.diagnostics)
    if errors:
        raise SpecError(errors)
    return nets


def _check(args, sources: SourceCache) -> int:
    errors, failed = [], 0
    for path in args.specs:
        try:
            load_spec(path, args.network, sources, args.allow_large)
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


def refuse_overwrite(output: str, reads: Iterable[str | Path], also: Iterable[Path] = ()) -> None:
    """A usage error if writing ``output`` (or the files in ``also`` that go with it) would
    replace a file this run reads: a spec, an import, the weights."""
    refuse_inputs(output, reads, also)


def _stats(args, sources: SourceCache) -> int:
    from .stats import render
    refuse_overwrite(args.output, args.specs)
    nets = load_specs(args, sources)
    refuse_overwrite(args.output, sources.paths())
    safe_write(args.output, render(nets, args.format) + "\n", reads=sources.paths())
    return EXIT_OK


def _compile(args, sources: SourceCache) -> int:
    target = TARGETS[args.target]
    options = _given_options(args, target_options(), target.name)
    output = args.output
    if output is None:
        if target.binary:
            raise UsageError(f"--target {target.name} writes a binary file: give `-o FILE`",
                             hint=f"e.g. -o {Path(args.spec).stem}{target.extension}")
        output = "-"
    # never write over what this run reads (ONNX external data replaces OUT.<digest>.data too)
    reads = [args.spec] + ([options["weights"]] if options.get("weights") else [])
    also = []
    if options.get("external_data") and output != "-":  # the tensor files the write replaces
        from .backends.onnx_graph import data_files
        also = data_files(output)
    refuse_overwrite(output, reads, also)
    if Path(args.spec).is_dir():  # a folder save_pretrained wrote: its network, with its weights
        net = _bundle(args, sources, options, target.name)
    else:
        net = load_spec(args.spec, args.network, sources, args.allow_large, _overrides(args))
    refuse_overwrite(output, [*sources.paths(), *([options["weights"]] if options.get("weights") else [])], also)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Note)
        data = target.load()(net, **options)
    for w in caught:  # notes are for the user; anything else goes on as a warning
        if issubclass(w.category, Note):
            print(f"resdsl: note: {printable(str(w.message))}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if isinstance(data, bytes | str):
        safe_write(output, data, reads=[*reads, *sources.paths()])
        written = [output]
    else:  # several files that belong together (ONNX external data): written all or nothing
        written = data.write(output)
    if output != "-":
        print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
    return EXIT_OK


def _diagram(args, sources: SourceCache) -> int:
    from .backends import dot
    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lower().lstrip(".") if args.output != "-" else "dot"
        if suffix not in ("dot", "gv", "svg", "pdf", "png"):
            raise UsageError(f"cannot tell the format of `{args.output}` from its extension",
                             hint="use .svg, .pdf, .png or .dot, or give --format")
        fmt = "dot" if suffix == "gv" else suffix
    if fmt in ("pdf", "png") and args.output == "-" and sys.stdout.isatty():
        raise UsageError(f"{fmt} is binary: give `-o FILE`", hint=f"e.g. -o {Path(args.specs[0]).stem}.{fmt}")
    options = _given_options(args, target_options([TARGETS["dot"]]), "dot")
    refuse_overwrite(args.output, args.specs)
    nets = load_specs(args, sources)
    refuse_overwrite(args.output, sources.paths())
    if len(nets) > 1 and (options.get("detail") != "blocks" or "scope" in options):
        raise UsageError("several specs can only be drawn together as a block figure",
                         hint="add --detail blocks, or draw one spec at a time")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", Note)
        if len(nets) > 1:
            options.pop("detail")
            text = dot.emit_blocks(nets, **options)
        else:
            text = dot.emit(nets[0], **options)
        data = text if fmt == "dot" else dot.render(text, fmt)
    for w in caught:  # what --fit could not meet, said, not hidden
        if issubclass(w.category, Note):
            print(f"resdsl: note: {printable(str(w.message))}", file=sys.stderr)
    safe_write(args.output, data, reads=sources.paths())
    if args.output != "-":
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _table(args, sources: SourceCache) -> int:
    from .tables import add_listings, render
    for flag, given in (("--spec-listing", args.spec_listing), ("--fragment", args.fragment),
                        ("--caption", args.caption is not None), ("--label", args.label is not None)):
        if given and args.format != "latex":
            raise UsageError(f"`{flag}` applies to --format latex only", hint="add --format latex")
    if args.spec_listing and args.fragment:
        raise UsageError("`--spec-listing` needs a document, and `--fragment` writes none",
                         hint="drop one of them")
    refuse_overwrite(args.output, args.specs)
    nets = load_specs(args, sources)
    refuse_overwrite(args.output, sources.paths())
    text = render(nets, args.format, fragment=args.fragment, caption=args.caption, label=args.label)
    if args.spec_listing:  # each file once, in the order given
        files = list(dict.fromkeys(Path(n.source) for n in nets))
        text = add_listings(text, [(f.name, f.read_text(encoding="utf-8-sig")) for f in files])
    safe_write(args.output, text, reads=sources.paths())
    return EXIT_OK


def _transplant(args, sources: SourceCache) -> int:
    import json

    from .checkpoints import FORMATS, CheckpointError, dump_checkpoint
    from .weight_transplant import transplant
    refuse_overwrite(args.output, [args.spec, args.checkpoint])  # first: the worst mistake
    fmt = FORMATS.get(Path(args.output).suffix.lower())
    if fmt is None:
        raise UsageError(f"cannot tell the format of `{args.output}` from its extension",
                         hint="use .safetensors, or .pt / .pth for torch.save")
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        raise UsageError(f"cannot read the checkpoint `{args.checkpoint}`: "
                         + ("it is a folder" if checkpoint.is_dir() else "no such file"))
    net = load_spec(args.spec, args.network, sources, args.allow_large, _overrides(args))
    refuse_overwrite(args.output, sources.paths())
    try:
        state, report = transplant(net, checkpoint, seed=args.seed, allow_nonfinite=args.allow_nonfinite)
    except CheckpointError as err:
        raise UsageError(str(err), hint=err.hint) from None
    if not report.placed:
        raise UsageError(f"no tensor of `{checkpoint.name}` fits {net.name}: nothing was written",
                         hint="is this the checkpoint of a network of the same family? "
                              "compare its keys with `resdsl stats` of the spec")
    safe_write(args.output, dump_checkpoint(state, fmt, {"resdsl.network": net.name,
                                                         "resdsl.transplanted_from": checkpoint.name}),
               reads=[args.checkpoint, *sources.paths()])
    if args.format == "json":
        safe_write("-", json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        print(report.render(), file=sys.stderr)
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK


def _import(args, sources: SourceCache) -> int:
    from .importer.command import run

    return run(args)


def _bundle(args, sources: SourceCache, options: dict[str, Any], target: str) -> Network:
    """The network of a model folder, and its weights as ``--weights`` where the target takes them."""
    from .backends import target_options
    from .models import ModelError, bundle_network

    if args.network or _overrides(args):
        raise UsageError("a model folder fixes its network and overrides: --network and --set do not apply")
    try:
        net, weights = bundle_network(Path(args.spec), sources, args.allow_large)
    except ModelError as err:
        raise UsageError(err.message, hint=err.hint) from None
    if "weights" not in options and target in target_options().get("weights", (None, ()))[1]:
        options["weights"] = str(weights)
    return net


def _models(args, sources: SourceCache) -> int:
    from .models import list_models, pretrained_tags
    names = list_models(args.pattern, pretrained=args.pretrained)
    if not names:
        print(f"resdsl: no model matches `{printable(args.pattern)}`", file=sys.stderr)
        return EXIT_SPEC
    lines = [f"{n}  {' '.join(pretrained_tags(n))}" if args.pretrained else n for n in names]
    safe_write("-", "\n".join(lines) + "\n")
    return EXIT_OK


def _save(args, sources: SourceCache) -> int:
    from .checkpoints import CheckpointError
    from .models import ModelError, Recipe, build_model, find_spec, save_pretrained
    try:
        spec = Path(args.spec) if Path(args.spec).is_file() else find_spec(args.spec).spec
        recipe = Recipe(spec, args.network, _overrides(args))
        pretrained = True if args.pretrained == "default" else (args.pretrained or False)
        model = build_model(recipe, pretrained=pretrained, seed=args.seed, allow_large=args.allow_large,
                            sources=sources)
        report = getattr(model, "transplant_report", None)
        if args.verbose and report is not None:
            print(report.render(), file=sys.stderr)
        folder = save_pretrained(model, args.output, force=args.force)
    except (ModelError, CheckpointError) as err:
        raise UsageError(getattr(err, "message", str(err)), hint=getattr(err, "hint", "") or "") from None
    print(f"wrote {folder}", file=sys.stderr)
    return EXIT_OK


COMMANDS = {"check": _check, "stats": _stats, "compile": _compile, "diagram": _diagram, "table": _table,
            "transplant": _transplant, "models": _models, "save": _save,
            "import": _import}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
