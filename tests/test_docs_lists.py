"""What docs/language.md lists is what resdsl has (issue 22): the standard library's modules
under "Files, imports" are the files shipped in specs/std, and the layer names it lists as
reserved (E054) are exactly the ones the front end refuses."""

from __future__ import annotations

import re

import pytest

import resdsl
from conftest import ROOT, SPECS
from resdsl.torch_names import MODEL_ATTRIBUTES, RESERVED_LABELS

DOC = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")


def _section(title: str) -> str:
    start = DOC.index(title)
    end = DOC.index("\n#", start + len(title))
    return DOC[start:end]


def test_files_and_imports_lists_every_standard_module():
    listed = re.findall(r"^\s*\| `std\.(\w+)` \|", _section("## Files, imports"), re.M)
    shipped = sorted(p.stem for p in (SPECS / "std").glob("*.res"))
    assert sorted(listed) == shipped
    for name in shipped:  # and each is described in the standard library's section
        assert f"`std.{name}`" in DOC[DOC.index("## The standard library"):]


def test_reserved_layer_names_are_listed():
    text = _section("### Reserved layer names")
    listed = set(re.findall(r"`(\w+)`", text))
    assert RESERVED_LABELS <= listed and MODEL_ATTRIBUTES <= listed
    # nothing listed as reserved that the front end accepts (the examples `class`, `None` aside)
    assert listed - RESERVED_LABELS - MODEL_ATTRIBUTES <= {"conv1", "add_module", "head", "global_pool",
                                                         "class", "None", "lambda", "self", "input", "E054",
                                                         "E011", "_"}


@pytest.mark.parametrize("name", sorted(RESERVED_LABELS))
def test_each_listed_name_is_refused(name):
    with pytest.raises(resdsl.SpecError) as err:
        resdsl.loads(f"network n {{\n    input [3, 8, 8]\n    {name}: conv(4, 3)\n}}\n")
    assert [d.code for d in err.value.diagnostics] == ["E054"]
