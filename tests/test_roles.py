"""Roles in the IR: what each instance is comes from the elaborator, and back ends read it.

A back end never recognises a definition kind, a definition's name or the standard
library's words; a block written by a user lowers as the same block in the standard
library does.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import resdsl
from conftest import ROOT, load_spec
from resdsl.ir import Role
from resdsl.lexer import KINDS
from resdsl.resources import std_root

# ---------------------------------------------------------------- roles and the stem


def test_roles_follow_definition_kinds():
    net = load_spec("resnet50")
    stem, *stages = [c for c in net.root.children]
    assert net.root.role is Role.NETWORK
    assert stem.role is Role.STEM and stem.inline
    assert [s.role for s in stages] == [Role.STAGE] * 4
    block = stages[0].children[0]
    assert block.role is Role.BLOCK and block.definition == "bottleneck"
    assert [c.role for c in block.children] == [Role.SHORTCUT]


@pytest.mark.parametrize("spec, pool, feature", [
    ("resnet50", ("maxpool",), "relu"),  # conv-BN-ReLU, max pool
    ("resnetv2_50x1_bit", ("stem.pad", "stem.pool"), "stem.conv"),  # a `module` as the stem; pad, pool
    ("resnetblur101d", ("maxpool.0", "maxpool.1"), "relu"),  # a stride-1 max pool, then a blur pool
    ("resnetrs101", (), "relu"),  # a strided conv-BN-ReLU in the pool's place
    ("resnet20_cifar", (), "relu"),  # nothing downsamples
])
def test_the_stem_end_is_recorded_once(spec, pool, feature):
    net = load_spec(spec)
    assert net.stem_pool == pool
    assert net.stem_feature == feature


def test_a_network_without_stages_has_no_stem():
    net = resdsl.loads("network flat() {\n    input [3, 32, 32]\n    conv1: conv(8, 3)\n"
                       "    pool: maxpool(2)\n    global_avgpool()\n    flatten()\n    fc: linear(10)\n}\n")
    assert net.stem_pool == () and net.stem_feature is None


def test_a_stem_that_is_only_a_pool_keeps_it():
    net = resdsl.loads("import std.resnet\nnetwork n() {\n    input [3, 32, 32]\n    pool: maxpool(2)\n"
                       "    layer1: stage(basic, 1, planes = 3)\n    global_avgpool()\n    flatten()\n"
                       "    fc: linear(10)\n}\n")
    assert net.stem_pool == () and net.stem_feature == "pool"


# ---------------------------------------------------------------- a user's copy of a std block


def _definition(text: str, kind: str, name: str) -> str:
    """The text of ``kind name(…) { … }`` in a std file (it ends at a `}` in column 0)."""
    m = re.search(rf"(?ms)^{kind} {name}\(.*?^}}\n", text)
    assert m, name
    return m.group()


def _renamed(text: str, names: dict[str, str]) -> str:
    return re.sub(r"\b(" + "|".join(names) + r")\b", lambda m: names[m.group()], text)


#: The words of the copy: other definition names, parameter and variable names, none of
#: which the standard library uses. Each as long as the word it replaces, so that renaming
#: the generated source back keeps its line breaks.
USER_WORDS = {"bottleneck": "funnelling", "planes": "middle", "width": "inner",
              "squeeze_excite": "attention_gate", "channels": "quantity", "reduced": "smaller"}


def _network(block: str, planes: str, overrides: str) -> str:
    return f"""
network tiny() {{
    input [3, 64, 64]
    imagenet_stem(16)
    layer1: stage({block}, 2, {planes} = 16{overrides})
    layer2: stage({block}, 2, stride = 2, {planes} = 32{overrides})
    layer3: stage({block}, 2, stride = 2, {planes} = 64{overrides})
    avgpool: global_avgpool()
    flatten()
    fc: linear(10)
}}
"""


@pytest.mark.parametrize("overrides", ["", ", se = true", ", zero_init_last = true, drop_path_rate = 0.1 * index",
                                       ", groups = 4, width_per_group = 8", ", shortcut = option_d"])
def test_a_user_copy_of_bottleneck_lowers_as_the_standard_one(overrides):
    from resdsl.backends.torch_source import emit

    std = (std_root() / "resnet.res").read_text()
    copy = _renamed(_definition(std, "module", "squeeze_excite") + _definition(std, "block", "bottleneck"),
                    USER_WORDS)
    assert "planes" not in copy and "squeeze_excite" not in copy
    standard = emit(resdsl.loads("import std.resnet\n" + _network("bottleneck", "planes", overrides)))
    user = emit(resdsl.loads("import std.resnet\n" + copy + _network("funnelling", "middle", overrides)))
    # the names the spec gives (classes after definitions, parameters after the
    # definitions' parameters) are the user's; everything else is the same
    user = user.replace("Funnelling", "Bottleneck").replace("AttentionGate", "SqueezeExcite")
    assert _renamed(user, {"funnelling": "bottleneck", "attention_gate": "squeeze_excite", "middle": "planes",
                           "quantity": "channels"}) == standard
    if "se" in overrides:
        assert "SqueezeExcite(channels=planes * 4, " in standard


# ---------------------------------------------------------------- back ends read roles


#: Files that must decide structure from the IR's roles and dataflow only.
READERS = [*sorted((ROOT / "resdsl" / "backends").glob("*.py")), ROOT / "resdsl" / "tables.py",
           ROOT / "resdsl" / "stats.py", ROOT / "resdsl" / "passes.py"]

#: Attributes whose value names a definition, a scope or a definition kind.
_NAMED = {"kind", "role", "definition", "name", "path", "key", "hint"}


def _std_words() -> set[str]:
    """The standard library's definition and parameter names (``bottleneck``, ``planes``)."""
    words: set[str] = set()
    for path in std_root().glob("*.res"):
        text = re.sub(r"#.*", "", path.read_text())
        for m in re.finditer(rf"(?m)^(?:{'|'.join(KINDS)})\s+(\w+)\s*(\((?:[^()]|\([^()]*\))*\))?", text):
            words.add(m.group(1))
            params = m.group(2) or ""
            words.update(re.findall(r"(?:\(|,)\s*([A-Za-z_]\w*)\s*(?==|,|\))", params))
    return words - {"true", "false", "none"}


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _named(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in _NAMED or isinstance(node, ast.Name) and node.id in _NAMED


def _structure_words(path: Path) -> set[str]:
    """String literals a file compares a kind, role, name or path with, or looks for at the
    start or end of a string (``name.endswith("planes")``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare) and any(_named(s) for s in [node.left, *node.comparators]):
            for side in [node.left, *node.comparators]:
                found |= _strings(side)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr in ("startswith", "endswith"):
            for arg in node.args:
                found |= _strings(arg)
    return found


def test_the_std_words_are_found():
    assert {"bottleneck", "planes", "width", "squeeze_excite", "channels", "option_b", "imagenet_stem"} \
        <= _std_words()


@pytest.mark.parametrize("path", READERS, ids=lambda p: p.name)
def test_no_back_end_decides_structure_by_kind_or_name(path):
    found = _structure_words(path)
    assert not found & {*KINDS, "stage"}, "read the scope's `role` (resdsl.ir.Role) instead"
    assert not found & _std_words(), "decide from roles and the dataflow, not from the standard library's words"


def test_the_check_catches_the_old_habits(tmp_path):
    old = tmp_path / "old.py"
    old.write_text('def f(scope, name):\n    if scope.kind == "shortcut":\n        return 1\n'
                   '    return name.endswith(("channels", "planes", "width"))\n')
    assert _structure_words(old) >= {"shortcut", "planes", "width"}
