"""``resdsl import MODEL -o OUT.res``: the command line of :func:`resdsl.from_torch`."""

from __future__ import annotations

import json
import sys
import warnings

from ..diagnostics import UsageError
from ..output import safe_write
from .trace import ImportFailure

EXIT_OK, EXIT_IMPORT = 0, 1


def _input_size(text: str) -> tuple[int, int, int]:
    try:
        size = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise UsageError(f"--input-size: `{text}` is not C,H,W", hint="for example --input-size 3,224,224")
    return size  # type: ignore[return-value]


def run(args) -> int:
    """Import ``args.model`` and write the spec to ``args.output`` only once it is checked."""
    size = _input_size(args.input_size)
    try:
        kwargs = json.loads(args.kwargs)
    except json.JSONDecodeError as err:
        raise UsageError(
            f"--kwargs: not JSON: {err}", hint="for example --kwargs '{\"num_classes\": 10}'"
        ) from None
    if not isinstance(kwargs, dict):
        raise UsageError(
            "--kwargs: a JSON object of keyword arguments",
            hint="for example --kwargs '{\"num_classes\": 10}'",
        )
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("`resdsl import` needs torch", hint="pip install torch") from None
    from . import from_torch, load_factory

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # factories' deprecation chatter is not the user's business here
            model = load_factory(args.model, kwargs)
            text = from_torch(model, size, name=args.name, source=args.model)
    except ImportFailure as err:
        print(f"resdsl: {err.render()}", file=sys.stderr)
        return EXIT_IMPORT
    safe_write(args.output, text)
    if args.output != "-":
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK
