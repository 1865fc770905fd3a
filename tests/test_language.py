"""The language behaves as docs/language.md says.

Expected values come from outside the code under test: parameter counts and MACs
worked out by hand from the layer formulas, torch's own output shapes for convolution
and pooling, torchvision's documented parameter counts and its dilation rule
(``replace_stride_with_dilation``), and timm's linear drop-path schedule. The small
specs live in ``tests/cases/valid/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import resdsl
from resdsl import cli
from resdsl.ir import Network
from resdsl.primitives import PRIMITIVES

ROOT = Path(__file__).resolve().parent.parent
VALID = Path(__file__).resolve().parent / "cases" / "valid"


def load(name: str) -> Network:
    return resdsl.load(VALID / name)


def resnet(args: str, name: str = "n") -> Network:
    return resdsl.loads(f"import std.resnet\nnetwork {name} = resnet({args})\n")


def attrs(net: Network, name: str) -> dict:
    return dict(net.op(name).attrs)


# ---------------------------------------------------------------- every valid case


@pytest.mark.parametrize("path", sorted(VALID.glob("*.res")) + [VALID / "imports" / "main.res"],
                         ids=lambda p: p.stem)
def test_valid_cases_check_clean(path):
    net = resdsl.load(path)
    assert net.ops and net.params > 0


# ---------------------------------------------------------------- statements chain


def test_two_layer_counts_by_hand():
    net = load("two_layer.res")
    # conv 3→16, 3×3, no bias: 16·3·3·3 weights, each applied at 32·32 positions.
    conv = 16 * 3 * 3 * 3
    bn = 2 * 16  # scale and shift
    fc = 16 * 10 + 10  # weights and bias
    assert net.params == conv + bn + fc == 634
    assert net.macs == conv * 32 * 32 + 16 * 10
    assert [op.name for op in net.ops] == ["conv1", "bn1", "relu", "pool", "avgpool", "flatten", "fc"]
    # each statement reads the previous value
    for prev, op in zip(net.ops, net.ops[1:]):
        assert op.inputs == (prev.name,)
    assert [op.shape for op in net.ops] == [(16, 32, 32), (16, 32, 32), (16, 32, 32), (16, 16, 16),
                                           (16, 1, 1), (16,), (10,)]
    assert attrs(net, "conv1")["padding"] == 1  # (3 - 1) // 2 · dilation, filled in
    assert attrs(net, "pool")["stride"] == 2  # pooling stride defaults to the kernel
    # a named layer is its module; an unnamed parameter-free op has none
    assert net.op("conv1").module == "conv1" and net.op("flatten").module is None


# ---------------------------------------------------------------- dataflow


def test_add_with_two_names_joins_exactly_those():
    net = load("branches.res")
    assert net.op("add").inputs == ("a", "b")
    assert net.op("b").inputs == ("input",)


def test_from_branch_keeps_the_running_value():
    net = load("branches.res")
    assert net.op("block.proj").inputs == ("add",)  # `from input`: the block's input
    assert net.op("block.squeeze").inputs == ("block.relu",)
    # the gate multiplies the running value (relu), not the branch
    assert net.op("block.multiply").inputs == ("block.relu", "block.gate")
    assert net.op("block.multiply").shape == (16, 16, 16)  # a 16×1×1 gate broadcasts
    # add(x): the running value + x
    assert net.op("block.add").inputs == ("block.multiply", "block.proj")


def test_reused_layer_shares_its_module_and_weights():
    net = load("branches.res")
    again = net.op("block.relu#2")
    assert again.module == "block.relu" and again.params == 0
    assert again.inputs == ("block.add",)
    assert net.output == "block.relu#2"
    # weights are counted once: conv1 + bn1 + proj + a + b
    assert net.params == 16 * 8 * 9 + 32 + 16 * 8 + 2 * 8 * 8 * 9


# ---------------------------------------------------------------- definitions


def test_unnamed_call_is_inlined_and_named_call_is_a_module():
    net = load("stem_and_variants.res")
    names = [op.name for op in net.ops]
    assert names[:3] == ["conv1", "bn1", "relu"]  # the stem's layers at the top level
    assert "classifier.fc" in names
    stem, head = net.root.children
    assert stem.inline and stem.path == "" and stem.role is resdsl.Role.STEM
    assert not head.inline and head.path == "classifier" and head.role is resdsl.Role.MODULE


def test_main_network_is_the_last_and_with_is_a_delta():
    net = load("stem_and_variants.res")
    assert net.name == "wider_100"
    # width 32 (from `wider`), classes 100 (the call on top of it)
    assert dict(net.root.args) == {"width": 32, "classes": 100}
    assert net.params == 32 * 3 * 9 + 2 * 32 + 32 * 100 + 100
    base = resdsl.load(VALID / "stem_and_variants.res", network="base")
    assert base.params == 16 * 3 * 9 + 2 * 16 + 16 * 10 + 10


def test_with_delta_reproduces_resnext():
    """ResNeXt-50 32×4d is ResNet-50 with two overrides (torchvision's counts)."""
    net = resdsl.loads("import std.resnet\n"
                       "network resnet50 = resnet(block = bottleneck, depths = [3, 4, 6, 3])\n"
                       "network resnext = resnet50 with (groups = 32, width_per_group = 4)\n")
    assert net.params == 25_028_904
    assert resnet("block = bottleneck, depths = [3, 4, 6, 3]").params == 25_557_032


def test_with_on_a_block():
    net = resnet("block = bottleneck with (se = true), depths = [3, 4, 6, 3], zero_init_last = true")
    assert net.params == 28_088_024  # timm's seresnet50
    assert net.op("layer1.0.se.fc1").module == "layer1.0.se.fc1"


def test_implicit_input_sizes_in_definitions():
    net = resdsl.loads("""
block probe(planes) {
    require in_channels == 5 and in_height == 12 and in_width == 10, "implicit sizes"
    conv1: conv(in_channels * planes, 1)
}
network n {
    input [5, 12, 10]
    p: probe(3)
}
""")
    assert net.op("p.conv1").shape == (15, 12, 10)
    assert net.sized_by_input  # it read the input's height and width


def test_a_network_reading_no_input_size_is_not_sized_by_it():
    # in_channels alone, as every conv does, leaves the network free of its input's size
    net = resdsl.loads("""
block probe(planes) {
    conv1: conv(in_channels * planes, 1)
}
network n {
    input [5, 12, 10]
    p: probe(3)
}
""")
    assert not net.sized_by_input and not resnet("block = basic, depths = [1, 1, 1, 1]").sized_by_input
    # a local variable of that name is the body's own, not the input's
    assert not resdsl.loads("""
block probe(planes) {
    in_height = 3
    conv1: conv(in_height * planes, 1)
}
network n {
    input [5, 12, 10]
    p: probe(3)
}
""").sized_by_input


def test_imports_resolve_relative_to_the_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # not the spec's folder
    net = resdsl.load(VALID / "imports" / "main.res")
    names = [op.name for op in net.ops]
    # parts/blocks.res imports `shortcuts` (parts/shortcuts.res): a projection, as 16 == 16
    # and stride 1 make it empty
    assert names == ["conv1", "block1.conv1", "block1.bn1", "block1.relu", "block1.conv2",
                     "block1.bn2", "block1.add", "block1.relu#2"]
    assert net.op("block1.add").inputs == ("block1.bn2", "conv1")


# ---------------------------------------------------------------- expressions and control


def test_expressions_loops_and_labels():
    net = load("control.res")
    assert [op.name for op in net.ops] == ["conv1", "act1", "conv2", "act2", "conv3", "act3", "head"]
    assert net.op("conv1").shape == (8, 64, 64)
    assert net.op("conv2").shape == (16, 32, 32)  # 1×1, stride 2, padding 0
    assert net.op("conv3").shape == (32, 16, 16)  # 3×3, stride 2, padding 1
    assert attrs(net, "head")["out_channels"] == 64 and attrs(net, "head")["bias"] is True
    assert {op.kind for op in net.ops if op.name.startswith("act")} == {"relu"}
    # the `else` branch, through a variant of the imported network
    other = resdsl.loads('import "control.res"\nnetwork other = control(act = "silu")\n',
                         str(VALID / "variant.res"))
    assert {op.kind for op in other.ops if op.name.startswith("act")} == {"silu"}


@pytest.mark.parametrize("expr, value", [
    ("7 // 2", 3), ("7 % 4", 3), ("-7 // 2", -4), ("2 ** 3 * 2", 16), ("-2 ** 2", -4),
    ("7 / 2 == 3.5", True), ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("[1, 2] + [3]", [1, 2, 3]),
    ("[4, 5, 6][-1]", 6), ("len([1, 2, 3])", 3), ("sum([1, 2, 3])", 6), ("min(3, 1, 2)", 1),
    ("max([3, 1, 2])", 3), ("abs(-4)", 4), ("int(7.9)", 7), ("round(2.6)", 3),
    ("range(2, 8, 3)", [2, 5]), ("1 if 2 > 1 and not false else 0", 1),
    ("true or 1 / 0 == 0", True),  # `or` short-circuits
    ("\"a\" + \"b\" == \"ab\"", True), ("1 == 1.0", True), ("1 == true", False),
])
def test_expression_values(expr, value):
    # Carry the value out through a list length and a require, so any type can be checked.
    net = resdsl.loads(f"network n(v = {expr}) {{\n    input [1, 4, 4]\n    c: conv(1, 1)\n}}\n")
    got = dict(net.root.args)["v"]
    assert (list(got) if isinstance(got, tuple) else got) == value


# ---------------------------------------------------------------- stages


def test_stage_first_block_takes_the_stride_and_index_is_per_block():
    net = load("stage_index.res")
    shapes = [net.op(f"layer1.{i}.conv1").shape for i in range(3)]
    # extra = 4 · index: 8, 12, 16 channels; only block 0 is strided
    assert shapes == [(8, 16, 16), (12, 16, 16), (16, 16, 16)]
    assert [attrs(net, f"layer1.{i}.conv1")["stride"] for i in range(3)] == [2, 1, 1]
    (stage,) = net.root.children
    assert stage.role is resdsl.Role.STAGE and [b.name for b in stage.children] == ["0", "1", "2"]


def test_drop_path_is_linear_over_all_blocks():
    """timm: block i of N gets drop_path_rate · i / (N - 1), from 0 to the rate."""
    rate, depths = 0.2, [3, 4, 6, 3]
    net = resnet(f"block = bottleneck, depths = {depths}, drop_path_rate = {rate}")
    total = sum(depths)
    blocks = [f"layer{s + 1}.{b}" for s, d in enumerate(depths) for b in range(d)]
    for i, block in enumerate(blocks):
        expected = rate * i / (total - 1)
        ops = [op for op in net.ops if op.name == f"{block}.drop_path"]
        if i == 0:
            assert not ops  # rate 0: no layer at all
        else:
            assert ops[0].attr("p") == pytest.approx(expected)
    assert net.op("layer4.2.drop_path").attr("p") == pytest.approx(rate)
    # drop-path has no weights: the count stays ResNet-50's
    assert net.params == 25_557_032


def test_dilation_as_torchvision():
    """torchvision's resnet50(replace_stride_with_dilation=[False, True, True]): output
    stride 8, the same weights, and in each dilated stage the first block keeps the
    previous dilation while the others take the new one."""
    net = resnet("block = bottleneck, depths = [3, 4, 6, 3], "
                 "replace_stride_with_dilation = [false, true, true]")
    assert net.params == 25_557_032
    assert net.shape_of(net.op("layer4.2.relu#3").name) == (2048, 28, 28)  # 224 / 8
    dil = {f"layer{s}.{b}": attrs(net, f"layer{s}.{b}.conv2")["dilation"]
           for s, d in ((2, 4), (3, 6), (4, 3)) for b in range(d)}
    assert dil["layer2.0"] == dil["layer2.3"] == 1
    assert dil["layer3.0"] == 1 and dil["layer3.1"] == dil["layer3.5"] == 2
    assert dil["layer4.0"] == 2 and dil["layer4.1"] == dil["layer4.2"] == 4
    # padding follows the dilation, so the 3×3s keep the size
    assert attrs(net, "layer4.1.conv2")["padding"] == 4
    # the stride moves to nowhere: the first block of layer3/4 still projects, unstrided
    assert attrs(net, "layer3.0.downsample.0")["stride"] == 1


def test_dilated_network_runs_in_torch():
    torch = pytest.importorskip("torch")
    net = resdsl.loads("import std.resnet\nnetwork n = resnet(block = basic, depths = [1, 1, 1, 1], "
                       "replace_stride_with_dilation = [false, true, true], image_size = 64)\n")
    model = resdsl.build(net).eval()
    feats = {}
    model.get_submodule("layer4.0.bn2").register_forward_hook(lambda m, i, o: feats.setdefault("x", o))
    with torch.no_grad():
        model(torch.zeros(1, 3, 64, 64))
    assert tuple(feats["x"].shape) == (1, 512, 8, 8) == (1, *net.shape_of("layer4.0.bn2"))


def test_zero_init_marks_the_last_bn_of_each_branch():
    net = resnet("block = bottleneck, depths = [3, 4, 6, 3], zero_init_last = true")
    bns = [op for op in net.ops if op.kind == "batchnorm"]
    zero = {op.name for op in bns if op.attr("zero_init")}
    blocks = [f"layer{s + 1}.{b}" for s, d in enumerate([3, 4, 6, 3]) for b in range(d)]
    assert zero == {f"{b}.bn3" for b in blocks}
    off = resnet("block = bottleneck, depths = [3, 4, 6, 3]")
    assert not any(op.attr("zero_init") for op in off.ops if op.kind == "batchnorm")


def test_zero_init_reaches_torch():
    torch = pytest.importorskip("torch")
    net = resdsl.loads("import std.resnet\nnetwork n = resnet(block = basic, depths = [1, 1, 1, 1], "
                       "zero_init_last = true, image_size = 32)\n")
    sd = resdsl.build(net).state_dict()
    assert torch.count_nonzero(sd["layer1.0.bn2.weight"]) == 0
    assert torch.all(sd["layer1.0.bn1.weight"] == 1)


# ---------------------------------------------------------------- shape rules vs torch


@pytest.mark.parametrize("size", [1, 2, 5, 7, 8, 13, 32])
@pytest.mark.parametrize("k, s, p, d", [(1, 1, 0, 1), (3, 1, 1, 1), (3, 2, 1, 1), (7, 2, 3, 1),
                                        (3, 2, 0, 1), (3, 1, 2, 2), (5, 3, 2, 1)])
def test_conv_output_size_matches_torch(size, k, s, p, d):
    torch = pytest.importorskip("torch")
    x = torch.zeros(1, 2, size, size)
    try:
        want = tuple(torch.nn.functional.conv2d(x, torch.zeros(4, 2, k, k), stride=s, padding=p,
                                                dilation=d).shape[1:])
    except RuntimeError:
        want = None  # torch refuses: the spec must not check clean either
    assert_shape_like_torch(f"c: conv(4, {k}, stride = {s}, padding = {p}, dilation = {d})", size, want)


@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
@pytest.mark.parametrize("size", [1, 2, 3, 6, 7, 14, 15])
@pytest.mark.parametrize("k, s, p, ceil", [(3, 2, 1, False), (3, 2, 1, True), (2, 2, 0, True),
                                           (3, 2, 0, True), (2, 1, 1, True), (3, 3, 1, True)])
def test_pool_output_size_matches_torch(kind, size, k, s, p, ceil):
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional.max_pool2d if kind == "maxpool" else torch.nn.functional.avg_pool2d
    try:
        want = tuple(fn(torch.zeros(1, 2, size, size), k, s, p, ceil_mode=ceil).shape[1:])
    except RuntimeError:
        want = None
    assert_shape_like_torch(f"c: {kind}({k}, stride = {s}, padding = {p}, ceil_mode = {str(ceil).lower()})",
                            size, want)


def assert_shape_like_torch(layer: str, size: int, want: tuple | None) -> None:
    """A one-layer network on a 2×size×size input: refused where torch refuses (``want`` is
    None or has a zero), else the layer `c` has torch's output shape."""
    spec = f"network n {{\n    input [2, {size}, {size}]\n    {layer}\n}}\n"
    if want is None or 0 in want:
        with pytest.raises(resdsl.SpecError):
            resdsl.loads(spec)
    else:
        assert resdsl.loads(spec).op("c").shape == want


def test_zeropad_is_option_a():
    """He et al. 2015 option A: subsample by the stride, pad the new channels with zeros."""
    net = resdsl.loads("network n {\n    input [16, 31, 32]\n    z: zeropad(32, stride = 2)\n}\n")
    assert net.op("z").shape == (32, 16, 16) and net.params == 0


def test_grouped_conv_params():
    net = resdsl.loads("network n {\n    input [64, 8, 8]\n    c: conv(128, 3, groups = 32, bias = true)\n}\n")
    assert net.params == 128 * (64 // 32) * 9 + 128


# ---------------------------------------------------------------- the documentation

DOCS = {name: (ROOT / "docs" / name).read_text(encoding="utf-8")
        for name in ("language.md", "tutorial.md")}
_FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```$", re.S | re.M)


def doc_blocks(kind: str) -> list[tuple[str, str, str]]:
    """(document, block, the block after it) for each fenced block of ``kind``."""
    out = []
    for name, text in DOCS.items():
        fences = _FENCE.findall(text)
        for i, (lang, body) in enumerate(fences):
            if lang == kind:
                after = fences[i + 1][1] if i + 1 < len(fences) else ""
                out.append((name, body, after))
    return out


def test_docs_cover_every_primitive_and_parameter():
    doc = DOCS["language.md"]
    for kind, prim in PRIMITIVES.items():
        if getattr(prim, "origin", "builtin") != "builtin":  # a plugin documents itself
            continue
        assert f"`{kind}`" in doc, kind
        for p in prim.params:
            assert f"`{p.name}`" in doc, (kind, p.name)


@pytest.mark.parametrize("doc, spec", [(d, b) for d, b, _ in doc_blocks("res")],
                         ids=lambda v: v if v.endswith(".md") else "")
def test_doc_examples_check_clean(doc, spec, tmp_path):
    path = tmp_path / "example.res"
    path.write_text(spec, encoding="utf-8")
    assert resdsl.load(path).params > 0


@pytest.mark.parametrize("spec, output", [(b, a) for _, b, a in doc_blocks("res-bad")],
                         ids=lambda v: re.search(r"E\d{3}", v)[0] if "error[" in v else "")
def test_doc_diagnostics_are_what_check_prints(spec, output, tmp_path, monkeypatch, capsys):
    (tmp_path / "bad.res").write_text(spec, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["check", "bad.res"]) == 1
    assert capsys.readouterr().err == output


# ---------------------------------------------------------------- the language's own words


def test_reserved_names_are_the_grammars_words_and_the_built_ins():
    """`RESERVED` is derived, not a hand list: every word the grammar quotes, every kind of
    definition and every built-in name, and nothing else."""
    from resdsl import language
    from resdsl.elaborate import BUILTINS
    from resdsl.primitives import RESERVED

    grammar = (ROOT / "grammars" / "resdsl.lark").read_text(encoding="utf-8")
    words = set(re.findall(r'"([a-z]+)"', grammar))
    assert {"if", "for", "require", "input", "from", "with", "none", "block", "head"} <= words
    assert RESERVED == words | set(BUILTINS.fixed)
    assert set(BUILTINS.fixed) == {*language.BUILTIN_FUNCTIONS, *language.BUILTIN_VALUES}
    assert not RESERVED & set(PRIMITIVES)


@pytest.mark.parametrize("kind", ["current", "require", "head", "log2"])
def test_a_primitive_cannot_take_a_reserved_name(kind):
    from dataclasses import replace

    with pytest.raises(ValueError, match="built-in name of the language"):
        resdsl.register_primitive(replace(PRIMITIVES["relu"], kind=kind, origin="test"))
    assert kind not in PRIMITIVES


# ---------------------------------------------------------------- tensors as values (issue 10)


def test_split_gives_named_parts_with_sizes_and_index():
    net = load("dataflow.res")
    parts = [op for op in net.ops if op.name.startswith("layer1.0.spx.")]
    assert [op.name for op in parts] == [f"layer1.0.spx.{i}" for i in range(4)]
    assert {op.kind for op in parts} == {"split"} and {op.module for op in parts} == {None}
    assert [dict(op.attrs)["index"] for op in parts] == [0, 1, 2, 3]
    assert {dict(op.attrs)["sizes"] for op in parts} == {(8, 8, 8, 8)}
    assert {op.inputs for op in parts} == {("layer1.0.relu",)}
    given = resdsl.loads("network n {\n    input [3, 8, 8]\n    c: conv(10, 1)\n"
                         "    p: split([2, 8])\n    y: concat(p[1], p[0])\n}\n")
    assert given.op("p.1").shape == (8, 8, 8) and dict(given.op("p.1").attrs)["sizes"] == (2, 8)
    assert given.op("y").inputs == ("p.1", "p.0") and given.op("y").shape == (10, 8, 8)


def test_res2net_loop_reads_the_parts_and_concats_a_list():
    net = load("dataflow.res")
    # first block (is_first): every conv reads its own part; the last part is pooled
    assert [net.op(f"layer1.0.convs.{i}").inputs for i in range(3)] == [
        (f"layer1.0.spx.{i}",) for i in range(3)]
    assert net.op("layer1.0.pool").inputs == ("layer1.0.spx.3",)
    assert net.op("layer1.0.concat").inputs == ("layer1.0.relu#2", "layer1.0.relu#3",
                                                "layer1.0.relu#4", "layer1.0.pool")
    # later blocks: sp = sp + spx[i] before each conv after the first (`add(sp, spx[i])`)
    assert net.op("layer1.1.add").inputs == ("layer1.1.relu#2", "layer1.1.spx.1")
    assert net.op("layer1.1.convs.1").inputs == ("layer1.1.add",)
    assert net.op("layer1.1.concat").inputs[-1] == "layer1.1.spx.3"
    # interleaved containers: convs.{i} and bns.{i}
    assert [op.module for op in net.ops if op.module and op.module.startswith("layer1.0.")
            and op.kind in ("conv", "batchnorm")][:5] == [
        "layer1.0.conv1", "layer1.0.bn1", "layer1.0.convs.0", "layer1.0.bns.0", "layer1.0.convs.1"]


def test_named_paths_container_and_attention():
    net = load("dataflow.res")
    block = "stages.0.blocks.0"
    assert net.op(f"{block}.add").inputs == (f"{block}.paths.0", f"{block}.paths.1")  # add(paths)
    assert dict(net.op(f"{block}.paths.1").attrs)["dilation"] == 2
    assert net.op(f"{block}.attn.fc_select").module == f"{block}.attn.fc_select"
    assert net.op(f"{block}.multiply").inputs == (f"{block}.paths.0", f"{block}.w.0")
    assert net.op(f"{block}.add#2").inputs == (f"{block}.multiply", f"{block}.multiply#2")
    assert net.op(f"{block}.d").kind == "subtract"
    assert net.op(f"{block}.d").inputs == (f"{block}.multiply", f"{block}.add#2")
    assert net.op("0").module == "0" and net.op("head.fc").module == "head.fc"


def test_layer_valued_parameters_and_none():
    net = load("dataflow.res")
    assert attrs(net, "bn1")["eps"] == 1e-3  # norm = batchnorm with (eps = 1e-3); bn1: norm()
    assert not any(op.name.startswith("se") for op in net.ops)  # attn = none: no layer
    other = resdsl.loads('import "dataflow.res"\nnetwork m = n(attn = conv with (kernel_size = 1))\n',
                         str(VALID / "variant.res"))
    assert attrs(other, "se")["out_channels"] == 16 and attrs(other, "se")["kernel_size"] == 1


def test_current_reads_and_moves_the_running_value():
    net = resdsl.loads("""network n {
    input [3, 8, 8]
    a: conv(4, 1)
    b: conv(4, 1) from input
    x = current
    current = b
    relu()
    y: add(x, current)
}
""")
    assert net.op("relu").inputs == ("b",)
    assert net.op("y").inputs == ("a", "relu")


def test_running_value_is_prepended_only_for_one_tensor():
    src = "network n {{\n    input [4, 8, 8]\n    a: tanh()\n    b: relu() from input\n" \
          "    c: sigmoid() from input\n    {stmt}\n}}\n"
    assert resdsl.loads(src.format(stmt="y: add(b)")).op("y").inputs == ("a", "b")
    assert resdsl.loads(src.format(stmt="y: add(b, c)")).op("y").inputs == ("b", "c")
    assert resdsl.loads(src.format(stmt="y: add([b, c])")).op("y").inputs == ("b", "c")
    assert resdsl.loads(src.format(stmt="y: add(c) from b")).op("y").inputs == ("b", "c")
    assert resdsl.loads(src.format(stmt="y: subtract(b)")).op("y").inputs == ("a", "b")
    assert resdsl.loads(src.format(stmt="y: concat(b)")).op("y").inputs == ("b",)
    assert resdsl.loads(src.format(stmt="y: concat(b, c)")).op("y").shape == (8, 8, 8)


def test_a_label_does_not_hide_a_callable():
    net = resdsl.loads("network n {\n    input [4, 8, 8]\n    relu: relu()\n    c: conv(4, 1)\n"
                       "    r2: relu()\n    y: add(relu, r2) from input\n}\n")
    assert net.op("r2").kind == "relu" and net.op("y").inputs == ("input", "relu", "r2")


def test_stage_passes_its_own_keyword_names_to_the_block():
    src = """block b(planes, depth = 1, stride = 1) {
    for i in range(depth) {
        conv{i}: conv(planes, 3, stride = stride if i == 0 else 1)
    }
}

network n {
    input [3, 16, 16]
    layer1: stage(b, 2, stride = 2, planes = 4, depth = 3)
    layer2: stage(b with (depth = 2), 1, planes = 4)
}
"""
    net = resdsl.loads(src)
    assert [op.name for op in net.ops if op.name.startswith("layer1.1.")] == [
        "layer1.1.conv0", "layer1.1.conv1", "layer1.1.conv2"]
    assert net.op("layer1.0.conv0").shape == (4, 8, 8)
    assert [op.name for op in net.ops if op.name.startswith("layer2.")] == [
        "layer2.0.conv0", "layer2.0.conv1"]


@pytest.mark.parametrize("expr, value", [
    ("log2(8)", 3.0), ("log(1)", 0.0), ("log(81, 3)", 4.0), ("ceil(2.1)", 3), ("floor(-2.5)", -3),
    ("none == none", True), ("none != 0", True), ("conv != none", True), ("none", None),
    ("int(abs(log2(256) + 1) / 2)", 4),  # ECA's kernel size for 256 channels (timm: k = 5 after odd)
])
def test_new_builtins_and_none(expr, value):
    net = resdsl.loads(f"network n(v = {expr}) {{\n    input [1, 4, 4]\n    c: conv(1, 1)\n}}\n")
    assert dict(net.root.args)["v"] == value


def test_dataflow_block_runs_in_torch_with_the_inferred_shapes():
    torch = pytest.importorskip("torch")
    net = load("dataflow.res")
    model = resdsl.build(net, seed=0).eval()
    keys = set(model.state_dict())
    assert {"layer1.0.convs.0.weight", "layer1.0.bns.2.running_var", "0.weight",
            "stages.0.blocks.0.paths.1.weight", "stages.0.blocks.0.attn.fc_reduce.weight",
            "head.fc.weight"} <= keys
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert tuple(out.shape) == (2, *net.output_shape)


def test_the_loaders_interface_to_the_elaborator():
    """A failed file-level expression is FAILED, its diagnostics are handed over once, and
    an `unknown name` diagnostic says which name (the loader's import hint needs it)."""
    from dataclasses import replace

    from resdsl.elaborate import FAILED, Elaborator
    from resdsl.syntax import parse

    alias = parse("network n = nope(x = 1)\n", "t.res").items[0]
    elab = Elaborator()
    assert elab.evaluate(alias.value, {}) is FAILED
    [d] = elab.take_diagnostics()
    assert (d.code, elab.unknown_name(d)) == ("E010", "nope")
    assert elab.take_diagnostics() == [] and elab.unknown_name(replace(d, code="E011")) is None
