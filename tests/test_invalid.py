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

The codes themselves are the catalogue ``resdsl/errors.py``: every code a spec can cause
has a case here; the few no spec can cause (``NOT_FROM_A_SPEC``) name the test that covers
each; ``docs/language.md``'s diagnostics section and ``docs/importing.md``'s table are
checked against the catalogue.

To add a case, write the spec with its header comments and run this file.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import resdsl
from resdsl import cli
from resdsl.diagnostics import EXCERPT_WIDTH, printable
from resdsl.errors import IMPORTING_DOC, LANGUAGE_DOC, E

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


#: The codes no spec can cause, and the test that covers each instead (checked below: the
#: test exists and names the code).
NOT_FROM_A_SPEC = {
    # a plugin's bug: it needs an installed plugin, one case per way a plugin can fail
    E.PLUGIN_FAILED: "test_hostile_plugins.py::test_a_broken_shape_rule_is_a_diagnostic_naming_the_plugin",
    # `resdsl import`'s, about a torch model rather than a spec
    E.TORCH_UNSUPPORTED: "test_import.py::test_a_module_without_primitive_is_a_clear_error",
    E.TORCH_UNTRACEABLE: "test_import.py::test_data_dependent_control_flow_is_a_clear_error",
    E.TORCH_NOT_FAITHFUL: "test_import.py::test_a_recogniser_that_is_wrong_is_caught_before_anything_is_written",
    E.TORCH_NOT_WRITABLE: "test_import.py::test_a_module_run_from_two_places_is_a_clear_error",
    E.TORCH_NO_MODEL: "test_import.py::test_cli_import_writes_only_a_checked_spec",
}


def test_every_code_a_spec_can_cause_has_a_case():
    # E031 `cannot read` (an unreadable file) and E017 for a file over the size limit
    # share their codes with cases here; every code needs at least one.
    covered = {e.code for case in CASE_PATHS for e in expectations(case)}
    assert covered <= set(E), covered - set(E)
    assert set(E) - set(NOT_FROM_A_SPEC) == covered, set(E) - set(NOT_FROM_A_SPEC) - covered


@pytest.mark.parametrize("code", NOT_FROM_A_SPEC, ids=str)
def test_the_other_codes_are_covered_by_the_named_test(code):
    file, name = NOT_FROM_A_SPEC[code].split("::")
    source = (ROOT / "tests" / file).read_text(encoding="utf-8")
    test = next((node for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.FunctionDef) and node.name == name), None)
    assert test is not None, f"{file} has no test `{name}`"
    body = ast.get_source_segment(source, test)
    assert code.value in body or f"E.{code.name}" in body, f"`{name}` does not check {code}"


def _resdsl_sources() -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in sorted((ROOT / "resdsl").rglob("*.py"))}


def test_raise_sites_name_their_code():
    """Codes are written `E.NAME` (resdsl/errors.py), never as a string: no code outside
    the catalogue, and none of the catalogue unused."""
    literals = [f"{p.relative_to(ROOT)}:{i}" for p, text in _resdsl_sources().items() if p.name != "errors.py"
                for i, line in enumerate(text.splitlines(), 1) if re.search(r"""["'][EW]\d{3}["']""", line)]
    assert not literals, literals
    text = "\n".join(_resdsl_sources().values())
    unused = [code for code in E if not re.search(rf"\bE\.{code.name}\b", text)]
    assert not unused, unused


def _github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_the_documentation_is_the_catalogue():
    """docs/language.md's diagnostics section has one row and one section per spec code, in
    order, titled as in the catalogue; docs/importing.md lists the `resdsl import` codes."""
    spec_codes = [code for code in E if code.doc == LANGUAGE_DOC]
    doc = (ROOT / LANGUAGE_DOC).read_text(encoding="utf-8")
    section = doc[doc.index("\n## Diagnostics\n"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    assert re.findall(r"^\| `(E\d{3})` \|", section, re.M) == spec_codes
    headings = re.findall(r"^### (.*`E\d{3}`.*)$", section, re.M)
    assert headings == [code.heading for code in spec_codes]
    for heading, code in zip(headings, spec_codes):
        assert f"{LANGUAGE_DOC}#{_github_anchor(heading)}" == code.anchor
    assert set(re.findall(r"E\d{3}", doc)) <= set(E), set(re.findall(r"E\d{3}", doc)) - set(E)

    import_codes = [code for code in E if code.doc == IMPORTING_DOC]
    assert import_codes and spec_codes + import_codes == list(E)
    importing = (ROOT / IMPORTING_DOC).read_text(encoding="utf-8")
    assert re.findall(r"^\| `(E\d{3})` \|", importing, re.M) == import_codes
    heading = next(h for h in re.findall(r"^## (.+)$", importing, re.M)
                   if import_codes[0].anchor.endswith("#" + _github_anchor(h)))
    assert heading == "When it cannot"


def test_loads_reports_string_sources():
    """Text given to `loads` gets the same rendering, with its excerpt."""
    with pytest.raises(resdsl.SpecError) as info:
        resdsl.loads("network n {\n    input [3, 8, 8]\n    c: conv(8, 3, strde = 2)\n}\n", "mem.res")
    (d,) = info.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E020", 3, 19)
    assert d.hint == "did you mean `stride`?"
