"""Where the shipped data lives: the grammar, templates and spec library.

In a checkout they sit beside the package (``grammars/``, ``templates/``, ``specs/``);
an installed wheel carries them inside the package under the same names.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def data_path(*parts: str) -> Path:
    """The path of a shipped data file or folder, installed or in a checkout."""
    for root in (_HERE, _HERE.parent):
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    return _HERE.joinpath(*parts)


def std_root() -> Path:
    """The folder of the standard library (``import std.resnet`` → ``std/resnet.res``)."""
    return data_path("specs", "std")
