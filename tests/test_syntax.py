"""The parser's own machinery: the bracket-depth scan, the one E004 path, and syntax-error
hints that stay right when several threads parse at once.

The diagnostics of whole invalid specs are in ``cases/invalid`` (``test_invalid.py``);
``nesting_too_deep_beside_comments.res`` is the file-level case for the scan below.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import resdsl
from resdsl import limits, syntax
from resdsl.syntax import nesting, parser

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------------ one bracket-depth scan


@pytest.mark.parametrize("text, depth", [
    ("x = f(a[1], (2))", 2),
    ('x = "((((("  # ((((', 0),
    ('x = ["]]]]", (1)]  # ))))', 2),
    ('x = "\\"(("', 0),  # an escaped quote does not end the string
    ("# ((((\nx = (1)", 1),
    ("x = )))(", 1),  # a stray closer is not negative depth
])
def test_nesting_skips_strings_and_comments(text, depth):
    assert nesting.bracket_depth(text)[0] == depth


def _spec(body: str) -> str:
    return f"network n {{\n    input [3, 8, 8]\n{body}\n}}\n"


def test_brackets_in_comments_and_strings_never_count(tmp_path):
    deep = limits.MAX_BRACKET_DEPTH * 3
    body = (f"    # {'(' * deep}\n"
            f"    note = \"{'[' * deep}\"\n"
            f"    require true, \"{'{' * deep}\"\n"
            f"    c: conv(8, 3)")
    assert resdsl.loads(_spec(body), str(tmp_path / "ok.res")).params > 0


@pytest.mark.parametrize("before", [
    "    # " + "(" * 150 + ")" * 150,  # brackets that pile up in a comment
    '    s = "' + "{" * 150 + "}" * 150 + '"',  # or in a string
    "    # " + ")" * 150,  # closers in a comment do not cancel real openers
])
def test_the_diagnostic_points_at_the_deepest_real_bracket(tmp_path, before):
    n = limits.MAX_BRACKET_DEPTH + 1  # with the body's `{`, one past the limit
    text = _spec(f"{before}\n    x = {'[' * n}1{']' * n}")
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads(text, str(tmp_path / "deep.res"))
    (d,) = exc.value.diagnostics
    assert (d.code, d.span.line, d.span.column) == ("E004", 4, 9 + n - 1)
    assert d.message == f"brackets nest more than {limits.MAX_BRACKET_DEPTH} deep"


# ------------------------------------------------------------------ one E004 path


def test_e004_is_reported_in_one_place():
    """Every E004 goes through ``syntax.too_deep``: no other module writes the code."""
    sites = [(path, i) for path in sorted((ROOT / "resdsl").rglob("*.py"))
             for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if "E.NESTING_TOO_DEEP" in line]
    assert len(sites) == 1, sites
    path, line = sites[0]
    source = path.read_text(encoding="utf-8").splitlines()
    assert "def too_deep(" in "\n".join(source[line - 8:line])
    assert syntax.too_deep.__module__ == "resdsl." + path.relative_to(ROOT / "resdsl").with_suffix("").as_posix().replace("/", ".")


def _under_recursion_limits(run):
    """``run()`` under ever larger recursion limits just above the current stack, until it
    returns a :class:`resdsl.SpecError` (a RecursionError escaping means the limit was too
    low to get as far as the code under test)."""
    depth = 0
    frame = sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    before = sys.getrecursionlimit()
    try:
        for extra in range(30, 600, 3):
            sys.setrecursionlimit(depth + extra)
            try:
                run()
            except resdsl.SpecError as err:
                return err.diagnostics
            except RecursionError:
                continue
            finally:
                sys.setrecursionlimit(before)
        return None
    finally:
        sys.setrecursionlimit(before)


def test_python_stack_running_out_in_the_parser_is_e004():
    text = _spec("    x = " + "[" * 60 + "1" + "]" * 60)
    found = _under_recursion_limits(lambda: syntax.parse(text, "deep.res"))
    assert found is not None
    (d,) = found
    # brackets far below the limit: the start of the file, not a bracket, is the best guess
    assert (d.code, d.span.line, d.span.column) == ("E004", 1, 1)
    assert d.message == "the expression nests too deeply" and d.hint


def test_python_stack_running_out_in_an_alias_is_e004(tmp_path):
    path = str(tmp_path / "alias.res")
    text = ("block b(x = 0) {\n    input [3, 8, 8]\n}\n"
            f"block a = b(x = {'[' * 60}1{']' * 60})\n"
            "network n {\n    input [3, 8, 8]\n}\n")
    resdsl.loads(text, path)  # parsed (and cached) at the normal limit

    def load():
        resdsl.loads(text, path)

    found = _under_recursion_limits(load)
    assert found is not None
    (d,) = [d for d in found if d.code == "E004"]
    assert (d.span.line, d.span.column) == (4, 11)  # the alias's value
    assert d.message == "the expression nests too deeply" and d.hint


# ------------------------------------------------------------------ hints without shared state

_BROKEN = [
    # (spec body, the hint it must get)
    ("    c: conv(8, 3\n    r: relu()", "is never closed"),
    ("    c: conv(8, 3))", "closes nothing"),
    ("    c: conv(8 3)", "is a `,` missing before this?"),
    ("    c: conv(8, 3) r: relu()", "put each statement on its own line"),
    ("    c conv(8, 3)", "a layer's name is followed by `:`"),
    ("    x = \n    r: relu()", "a value is missing at the end of this line"),
    ("    if x = 1 {\n        r: relu()\n    }", "compare with `==`"),
]


def _hints(text: str) -> list[tuple[int, int, str]]:
    with pytest.raises(resdsl.SpecError) as exc:
        syntax.parse(text, "broken.res")
    return [(d.span.line, d.span.column, d.hint) for d in exc.value.diagnostics]


def _variants() -> list[str]:
    # The same mistakes below a varying number of lines: an unclosed bracket's hint names
    # its line, so a hint computed from another parse's state would show.
    return [_spec("    # padding\n" * pad + body) for pad in range(6) for body, _ in _BROKEN]


def test_hints_name_the_mistake():
    for body, hint in _BROKEN:
        found = _hints(_spec(body))
        assert any(hint in h for _, _, h in found), (body, found)


def test_hints_are_right_when_threads_parse_at_once(monkeypatch):
    monkeypatch.setattr(parser, "_IDLE", [])  # no idle parser: the threads build their own at once
    texts = _variants()
    expected = {text: _hints(text) for text in texts}
    start = threading.Barrier(6)
    wrong: list[tuple[str, list, list]] = []
    raised: list[BaseException] = []  # a thread's exception would otherwise only be a warning

    def worker(k: int) -> None:
        start.wait()
        try:
            for i in range(3 * len(texts)):
                text = texts[(i * 7 + k * 5) % len(texts)]  # each thread in its own order
                got = _hints(text)
                if got != expected[text]:
                    wrong.append((text, got, expected[text]))
        except BaseException as err:
            raised.append(err)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, mid-parse
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert not raised, raised
    assert not wrong, wrong[:3]


def test_a_parse_inside_a_parse_gets_its_own_parser():
    """Reentrant: a parser in use is never handed out again, so nested parses keep
    separate states."""
    with parser._parser() as (outer, outer_seen):
        assert _hints(_spec(_BROKEN[0][0]))[0][2].startswith("the `(` at line")
        with parser._parser() as (inner, inner_seen):
            assert inner is not outer and inner_seen is not outer_seen
        assert outer_seen.opened == [] and outer_seen.last is None
