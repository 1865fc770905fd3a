"""The Pygments lexer for `.res`: every shipped spec and documented example lexes cleanly."""

from __future__ import annotations

import re
import tomllib
from importlib import import_module

import pytest

pygments = pytest.importorskip("pygments")
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String  # noqa: E402

import resdsl  # noqa: E402
from conftest import ROOT, SPECS  # noqa: E402
from resdsl.lexer import ResdslLexer  # noqa: E402
from resdsl.primitives import PRIMITIVES  # noqa: E402

FILES = sorted([*SPECS.glob("*.res"), *SPECS.glob("std/*.res"), *(ROOT / "tests/cases/valid").rglob("*.res")])


def _doc_examples() -> list[tuple[str, str]]:
    """The ```res blocks of the docs and the README (not ```res-bad, which show errors)."""
    out = []
    for md in sorted([*(ROOT / "docs").glob("*.md"), ROOT / "README.md"]):
        for i, m in enumerate(re.finditer(r"^```res\n(.*?)^```", md.read_text(encoding="utf-8"), re.S | re.M)):
            out.append((f"{md.name}#{i + 1}", m.group(1)))
    return out


EXAMPLES = _doc_examples()


def tokens(text: str) -> list[tuple[object, str]]:
    return list(ResdslLexer().get_tokens(text))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shipped_specs_lex_without_errors(path):
    text = path.read_text(encoding="utf-8")
    toks = tokens(text)
    assert [v for t, v in toks if t in Error] == []
    assert "".join(v for _, v in toks).rstrip("\n") == text.rstrip("\n")  # nothing lost


def test_documented_examples_lex_without_errors():
    assert len(EXAMPLES) >= 8  # the docs have eight: a wrong pattern here must not pass vacuously
    for name, text in EXAMPLES:
        assert [v for t, v in tokens(text) if t in Error] == [], name


def test_tokens_are_what_a_reader_expects():
    text = ('import std.resnet\n'
            'block tiny(planes, stride = 1) {\n'
            '    conv1: conv(planes, 3, stride = stride)  # a comment\n'
            '    0: batchnorm(eps = 1e-5)\n'
            '    if stride != 1 and not false { relu() } \n'
            '    require planes > 0, "planes must be positive"\n'
            '}\n')
    kinds = {(v, t) for t, v in tokens(text) if v.strip()}
    for value, kind in [("import", Keyword.Namespace), ("std.resnet", Name.Namespace),
                        ("block", Keyword.Declaration), ("tiny", Name.Function), ("conv1", Name.Label),
                        ("conv", Name.Builtin), ("batchnorm", Name.Builtin), ("relu", Name.Builtin),
                        ("0", Name.Label), ("stride", Name.Variable), ("1e-5", Number.Float),
                        ("3", Number.Integer), ("# a comment", Comment.Single), ("if", Keyword),
                        ("and", Operator.Word), ("false", Keyword.Constant), ("require", Keyword),
                        ('"planes must be positive"', String.Double), ("!=", Operator)]:
        assert (value, kind) in kinds, (value, kind)


def test_every_primitive_is_a_builtin_and_bad_characters_are_errors():
    for name in PRIMITIVES:
        assert tokens(f"x = {name}()")[4][0] is Name.Builtin, name
    assert any(t in Error for t, _ in tokens("conv1: conv(64, 3) $"))


def test_the_entry_point_names_the_lexer():
    """pyproject registers the lexer for `pygments.lexers`; the object it names is this lexer.
    (That an installed resdsl is then found by `pygmentize -l resdsl` was checked by hand in a
    fresh venv: see the issue note.)"""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    target = project["entry-points"]["pygments.lexers"]["resdsl"]
    module, _, attr = target.partition(":")
    assert getattr(import_module(module), attr) is ResdslLexer
    assert ResdslLexer.name == "resdsl" and ResdslLexer.aliases == ["resdsl", "res"]
    assert ResdslLexer.filenames == ["*.res"]
    assert any("pygments" in dep for dep in project["optional-dependencies"]["docs"])


def test_the_lexer_is_found_by_name_when_installed():
    """Where this resdsl is the installed one, Pygments finds the lexer through the entry point."""
    from importlib.metadata import entry_points

    from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
    if not any(ep.name == "resdsl" for ep in entry_points(group="pygments.lexers")):
        pytest.skip("the installed resdsl predates the lexer's entry point (reinstall: pip install -e .)")
    assert type(get_lexer_by_name("resdsl")).__name__ == "ResdslLexer"
    assert type(get_lexer_for_filename("resnet50.res")).__name__ == "ResdslLexer"


def test_latex_table_lists_each_spec_with_minted(tmp_path, capsys):
    from resdsl import tables
    from resdsl.cli import main

    specs = [SPECS / "resnet18.res", SPECS / "resnet50.res", SPECS / "resnet18.res"]
    out = tmp_path / "t.tex"
    assert main(["table", *map(str, specs), "--format", "latex", "--spec-listing", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    plain = tables.render([resdsl.load(p) for p in specs], "latex")
    assert text.startswith(plain.split(r"\end{document}")[0].split(r"\usepackage{booktabs}")[0])
    assert r"\usepackage{minted}" in text and text.endswith("\\end{document}\n")
    listings = re.findall(r"\\begin\{minted\}\[fontsize=\\footnotesize\]\{resdsl\}\n(.*?)\n\\end\{minted\}", text, re.S)
    assert listings == [SPECS.joinpath(n).read_text(encoding="utf-8").rstrip("\n")
                        for n in ("resnet18.res", "resnet50.res")]  # each file once, in order
    assert r"\caption{\texttt{resnet50.res}}" in text
    assert main(["table", str(specs[0]), "--spec-listing"]) == 2
    assert "applies to --format latex only" in capsys.readouterr().err
    evil = tmp_path / "evil.res"
    evil.write_text("# \\end{minted}\nimport std.resnet\nnetwork r = resnet(block = basic, depths = [1, 1, 1, 1])\n")
    assert main(["table", str(evil), "--format", "latex", "--spec-listing", "-o", str(tmp_path / "e.tex")]) == 2
    assert "cannot be listed with minted" in capsys.readouterr().err and not (tmp_path / "e.tex").exists()
