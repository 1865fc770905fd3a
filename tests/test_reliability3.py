"""Issue 25 (reliability round 3): each defect of the attack round, at its mechanism."""

from __future__ import annotations

import pytest

import resdsl
from resdsl.cli import main
from resdsl.elaborate.builtins import BUILTINS
from resdsl.elaborate.values import Builtin

# ------------------------------------------------------------- 2. built-in arity, from the declaration

_CALLS = ["len([1], 2)", "len()", "abs()", "abs(1, 2)", "round(1.5, 2)", "floor(1.5, 2)", "ceil()",
          "int(1, 2)", "float()", "sum([1], [2])", "log2(1, 2)", "log()", "log(2, 2, 2)", "range()",
          "range(1, 2, 3, 4)", "min()", "max()"]


@pytest.mark.parametrize("call", _CALLS)
def test_builtin_arity_is_a_diagnostic(call, tmp_path, capsys):
    text = f"network n {{\n    input [3, 8, 8]\n    a: conv(4, 3, padding = {call})\n}}\n"
    with pytest.raises(resdsl.SpecError) as exc:
        resdsl.loads(text, "arity.res")
    (d,) = exc.value.diagnostics
    assert d.code == "E022" and "argument" in d.message and (d.span.line, d.span.column) == (3, 29)
    spec = tmp_path / "arity.res"
    spec.write_text(text)
    assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "error[E022]" in err and "internal error" not in err


def test_every_builtin_declares_its_arity():
    """The check is from each built-in's declaration: every one has an arity, and calling it
    with one argument too many (or, where there is a least, one too few) is refused."""
    builtins = {k: v for k, v in BUILTINS.fixed.items() if isinstance(v, Builtin)}
    assert len(builtins) >= 13
    for name, fn in builtins.items():
        least, most = fn.arity
        counts = [least - 1] if least else []
        counts += [most + 1] if most is not None else []
        assert counts, name
        for n in counts:
            args = ", ".join(["1"] * n)
            with pytest.raises(resdsl.SpecError, match="E022|argument"):
                resdsl.loads(f"network n {{\n    input [3, 8, 8]\n    a: conv(4, 3, padding = {name}({args}))\n}}\n", "a.res")
