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


def shipped_spec(name: str) -> Path | None:
    """The shipped spec called ``name`` (``resnet50`` or ``resnet50.res``), if there is one."""
    stem = name.removesuffix(".res")
    if not stem.isidentifier():
        return None
    path = data_path("specs", f"{stem}.res")
    return path if path.is_file() else None


def shipped_specs() -> list[str]:
    """Names of the shipped specs."""
    return sorted(p.stem for p in data_path("specs").glob("*.res"))
