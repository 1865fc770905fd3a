"""Invalid specs and the diagnostics they must give.

Every ``tests/cases/invalid/NAME.res`` is one case; files in subfolders (``lib/``) are
only imported by cases. A case opens with comments: what it gets wrong, then one line
per diagnostic that ``resdsl check`` must print, in the order it prints them (sorted
by position)::

    # expect: LINE:COL CODE TEXT
    # expect: lib/cycle_b.res:LINE:COL CODE TEXT

``LINE:COL`` is where the diagnostic points (1-based, counting these comment lines);
a path before it, relative to this folder, says the diagnostic is in an imported file.
``TEXT`` must occur in the rendered diagnostic (its message, label, hint or note).
The list is exact: a diagnostic too many or too few fails the case.

Each case runs the CLI in-process (``resdsl.cli.main(["check", path])``) and checks
the exit status (1), the diagnostics (path, line, column, code, text), that nothing
looks like a Python traceback, and the shape of every rendered diagnostic: a
``path:line:col: error[Ennn]: message`` header, the source line as an excerpt and a
caret under the column. The same cases through the API (``resdsl.load``) raise
:class:`resdsl.SpecError` with the same diagnostics.

To add a case, write the spec with its header comments and run this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import resdsl
from resdsl import cli
from resdsl.diagnostics import EXCERPT_WIDTH, printable

ROOT = Path(__file__).resolve().parent.parent
CASES = Path(__file__).resolve().parent / "cases" / "invalid"
CASE_PATHS = sorted(CASES.glob("*.res"))

_EXPECT = re.compile(r"^# expect: (?:(?P<path>[^\s:]+\.res):)?(?P<line>\d+):(?P<col>\d+) "
                     r"(?P<code>E\d{3})(?: (?P<text>.*))?$")
_HEADER = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error\[(?P<code>E\d{3})\]: (?P<msg>.+)$")


@dataclass(frozen=True)
class Expected:
    path: str  # relative to CASES
    line: int
    col: int
    code: str
    text: str


def expectations(case: Path) -> list[Expected]:
    # Latin-1 reads every byte: the non-UTF-8 case still has an ASCII header.
    out = []
    for raw in case.read_bytes().decode("latin-1").splitlines():
        if not raw.startswith("#"):
            break
        m = _EXPECT.match(raw)
        if m:
            text = (m["text"] or "").encode("latin-1").decode("utf-8")
            out.append(Expected(m["path"] or case.name, int(m["line"]), int(m["col"]), m["code"], text))
    return out


def split_blocks(stderr: str) -> list[list[str]]:
    """The rendered diagnostics, one list of lines each (the summary line dropped)."""
    blocks: list[list[str]] = []
    for line in stderr.splitlines():
        if _HEADER.match(line):
            blocks.append([line])
        elif blocks and not line.startswith("found "):
            blocks[-1].append(line)
    return blocks


def source_line(path: Path, number: int) -> str:
    text = path.read_bytes().decode("utf-8", errors="replace")
    return printable(text.splitlines()[number - 1].expandtabs(1))  # control characters are shown as ␀, ␛…


def test_corpus_is_large_enough():
    assert len(CASE_PATHS) >= 40
    for case in CASE_PATHS:
        assert expectations(case), f"{case.name} has no `# expect:` line"


@pytest.mark.parametrize("case", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_invalid_spec(case: Path, capsys):
    expected = expectations(case)
    status = cli.main(["check", str(case)])
    out, err = capsys.readouterr()
    assert status == 1, err
    assert out == ""
    assert "Traceback" not in err and "internal error" not in err, err
    blocks = split_blocks(err)
    got = []
    for block in blocks:
        m = _HEADER.match(block[0])
        assert m, block[0]
        path = Path(m["path"])
        got.append((path.resolve().relative_to(CASES).as_posix(), int(m["line"]), int(m["col"]),
                    m["code"]))
        # The excerpt: a gutter, the source line itself, and a caret under the column.
        line, col = int(m["line"]), int(m["col"])
        gutter = " " * len(str(line))
        assert block[1] == f"{gutter} |", block
        text, shown = source_line(path, line), block[2][len(gutter) + 3:]
        assert block[2].startswith(f"{line} | "), block
        caret = block[3]
        assert caret.startswith(f"{gutter} | "), block
        marks = caret[len(gutter) + 3:]
        if len(text) <= EXCERPT_WIDTH:
            assert shown == text and marks.index("^") == col - 1, block
        else:  # a window of the line, cut with `…`, still with the caret under the column
            window = shown.strip("…")
            assert window in text and len(window) == EXCERPT_WIDTH, block
            offset = text.index(window) - shown.index(window)
            assert marks.index("^") + offset == col - 1, block
    assert got == [(e.path, e.line, e.col, e.code) for e in expected], err
    for block, e in zip(blocks, expected):
        assert e.text in "\n".join(block), (e.text, block)
    n = len(expected)
    assert err.rstrip().endswith(f"found {n} error{'s' * (n != 1)} in 1 of 1 spec")


@pytest.mark.parametrize("case", CASE_PATHS, ids=[p.stem for p in CASE_PATHS])
def test_invalid_spec_api(case: Path):
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.load(case)
    got = [(Path(d.span.path).resolve().relative_to(CASES).as_posix(), d.span.line, d.span.column, d.code)
           for d in info.value.diagnostics]
    assert got == [(e.path, e.line, e.col, e.code) for e in expectations(case)]


def test_check_reports_several_specs_together(capsys):
    """`check` goes on past a failing spec and counts the failures."""
    good = ROOT / "specs" / "resnet18.res"
    bad = [CASES / "unknown_name.res", CASES / "several_errors.res"]
    status = cli.main(["check", str(bad[0]), str(good), str(bad[1])])
    err = capsys.readouterr().err
    assert status == 1
    n = sum(len(expectations(p)) for p in bad)
    assert err.rstrip().endswith(f"found {n} errors in 2 of 3 specs")


def _codes_in_source() -> set[str]:
    sources = [*(ROOT / "resdsl").glob("*.py"), *(ROOT / "resdsl" / "elaborate").glob("*.py")]
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    return set(re.findall(r'"(E0\d\d)"', text))


def test_every_code_has_a_case():
    covered = {e.code for case in CASE_PATHS for e in expectations(case)}
    # E031 `cannot read` (an unreadable file) and E017 for a file over the size limit
    # share their codes with cases here; every code needs at least one.
    # E058 is a plugin's bug: it needs an installed plugin, so its cases are in
    # test_hostile_plugins.py, one per way a plugin can fail.
    assert _codes_in_source() - {"E058"} <= covered, _codes_in_source() - covered


def test_every_code_is_documented():
    doc = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    missing = {code for code in _codes_in_source() if f"`{code}`" not in doc}
    assert not missing, missing


def test_loads_reports_string_sources():
    """Text given to `loads` gets the same rendering, with its excerpt."""
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.loads("network n {\n    input [3, 8, 8]\n    c: conv(8, 3, strde = 2)\n}\n", "mem.res")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E020", 3, 19)
    assert d.hint == "did you mean `stride`?"
