"""Tables and figures of the issue-22 families against the networks they draw.

Two halves. The default environment checks the figures' skip rule on small `.res` cases whose
dataflow is known by construction: a skip is drawn only into an add one of whose operands is
the block's input or its shortcut's output (or a part of either); a sum of computing branches
(RepVGG's) has none; a join after the sum that takes the input's other part (DPN's dense path)
has its own; blocks equal up to a constant (NF-ResNet's β) group, the constant as a range, and
so do blocks equal up to their input's width (DPN's and DenseNet's growth).

The reference environment checks the nine shipped specs against timm's modules (the specs
load timm's weights strictly, so their block paths are timm's): every block's skip, or its
absence, as timm's block computes it (all its weights zeroed: an identity skip still passes
the input; with all but the shortcut's zeroed, a projection shortcut does); the blocks per
stage; each stage's first block's table line against timm's convolutions (kernel and width;
attention's convs, on 1×1 maps or to one channel, by forward hooks); every block's parameters
against timm's module's; and the table's depth header. Skipped (failed in CI's reference run)
without timm.
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

import resdsl
from conftest import load_spec
from resdsl import tables
from resdsl.backends import dot
from resdsl.ir import Role, Scope

NINE = [
    "gcresnet50t",
    "botnet26t_256",
    "nf_resnet50",
    "resnetv2_50d_evos",
    "cspresnet50",
    "dpn68",
    "dla34",
    "repvgg_a0",
    "regnety_016",
]


def _blocks(net: resdsl.Network) -> list[Scope]:
    """The outermost blocks (a block inside a block, BoTNet's rel_to_abs, belongs to it)."""
    out: list[Scope] = []

    def visit(scope: Scope) -> None:
        for child in scope.children:
            if child.role is Role.BLOCK:
                out.append(child)
            else:
                visit(child)

    visit(net.root)
    return out


def _block(net: resdsl.Network, path: str) -> Scope:
    return next(b for b in _blocks(net) if b.path == path)


# ---------------------------------------------------------------- the skip rule, by construction

SUM_OF_BRANCHES = """
network sum_of_branches {
    input [8, 8, 8]
    s: stage(block_of_branches, 1)
}
block block_of_branches() {
    a: conv(8, 3) from input
    c: conv(8, 1) from input
    n: batchnorm() from input
    add(a, c, n)
    relu()
}
"""

IDENTITY_SKIP = """
network identity_skip {
    input [8, 8, 8]
    s: stage(plain, 1)
}
block plain() {
    conv1: conv(8, 3)
    relu()
    conv2: conv(8, 3)
    add(input)
    relu()
}
"""

INNER_ADD = """
network inner_add {
    input [8, 8, 8]
    s: stage(no_skip, 1)
}
block no_skip() {
    conv1: conv(8, 3)
    c: relu()
    conv2: conv(8, 3)
    add(c)
}
"""

DUAL_PATH = """
network dual_path {
    input [8, 8, 8]
    s: stage(dual, 1)
}
block dual() {
    x_parts: split([4, 4]) from input
    current = input
    conv1: conv(8, 3)
    out_parts: split([4, 4])
    resid: add(x_parts[0], out_parts[0])
    concat(resid, x_parts[1], out_parts[1])
}
"""


def test_a_sum_of_computing_branches_has_no_skip() -> None:
    net = resdsl.loads(SUM_OF_BRANCHES)
    parts = dot.block_parts(net, _block(net, "s.0"))
    assert parts.merge == "s.0.add" and parts.skip_in is None and parts.skip_from is None
    # the three branches, weighted ones first, drawn side by side
    assert dot.anatomy.branch_lines(net, _block(net, "s.0"), parts) == [
        "3×3 conv, 8",
        "‖ 1×1 conv, 8",
        "‖ BN",
    ]
    text = dot.emit(net, detail="block")
    assert "style=dashed" not in text and "dashed" not in text
    # one layer deep: the branches run side by side (the 1×1 and BN fold into the 3×3)
    assert tables.depth(net) == 1


def test_an_add_of_the_block_input_is_a_skip() -> None:
    net = resdsl.loads(IDENTITY_SKIP)
    parts = dot.block_parts(net, _block(net, "s.0"))
    assert parts.skip_in == "input" and parts.skip_from == "input" and parts.shortcut is None
    assert "dashed" in dot.emit(net, detail="block")


def test_an_add_of_a_value_inside_the_block_is_no_skip() -> None:
    """An add whose operands are both computed in the block (a ReLU's output added back two
    layers later) is not the block's skip: the block's input reaches it only through convs."""
    net = resdsl.loads(INNER_ADD)
    parts = dot.block_parts(net, _block(net, "s.0"))
    assert parts.skip_in is None
    assert "dashed" not in dot.emit(net, detail="block")


def test_a_dual_path_block_has_a_residual_and_a_dense_skip() -> None:
    net = resdsl.loads(DUAL_PATH)
    parts = dot.block_parts(net, _block(net, "s.0"))
    assert (parts.merge, parts.skip_in, parts.dense) == ("s.0.resid", "s.0.x_parts.0", "s.0.concat")
    assert "s.0.x_parts.0" not in parts.body and "s.0.x_parts.1" not in parts.body
    text = dot.emit(net, detail="block")
    assert '"s.0/dense"' in text and text.count("dashed") == 2  # one skip into the sum, one into the concat


def test_blocks_equal_up_to_a_constant_group_with_its_range() -> None:
    net = resdsl.loads("""
network scaled {
    input [8, 8, 8]
    s: stage(scaled_block, 3, beta = 1.0 + index / 10)
}
block scaled_block(beta = 1.0) {
    multiply(1 / beta)
    conv1: conv(8, 3)
    add(input)
}
""")
    blocks = _blocks(net)
    assert [len(g) for g in dot.block_groups(net, _stages(net)[0])] == [3]
    lines = [dot.anatomy.branch_lines(net, b, dot.block_parts(net, b)) for b in blocks]
    assert dot.anatomy.group_lines(lines) == ["× 0.833–1", "3×3 conv, 8"]
    assert "blocks 0–2" in dot.emit(net, detail="block")


def test_blocks_equal_up_to_their_input_width_group() -> None:
    """DenseNet's growth (DPN's dense path): each block reads a wider input, concatenated
    block by block; what its box shows is the same, so the blocks are one group, as the DPN
    and DenseNet papers' tables write them. A width that follows the input's is a range."""
    net = resdsl.loads("""
network dense {
    input [8, 8, 8]
    s: stage(dense_layer, 4)
}
block dense_layer(growth = 4) {
    n: batchnorm()
    relu()
    conv1: conv(16, 1)
    relu()
    conv2: conv(growth, 3)
    concat(input, conv2)
}
""")
    assert [net.shape_of(b.input)[0] for b in _blocks(net)] == [8, 12, 16, 20]
    assert [len(g) for g in dot.block_groups(net, _stages(net)[0])] == [4]
    text = dot.emit(net, detail="block")
    assert "blocks 0–3" in text and "× 4" in text and "1×1 conv, 16<BR/>3×3 conv, 4" in text

    follows = resdsl.loads("""
network follows {
    input [8, 8, 8]
    s: stage(widening, 3)
}
block widening(growth = 4) {
    conv1: conv(in_channels, 1)
    relu()
    conv2: conv(growth, 3)
    concat(input, conv2)
}
""")
    assert [len(g) for g in dot.block_groups(follows, _stages(follows)[0])] == [3]
    assert "1×1 conv, 8–16<BR/>3×3 conv, 4" in dot.emit(follows, detail="block")

    # a width of the block's own that differs (its argument) is another box
    own = resdsl.loads("""
network own {
    input [8, 8, 8]
    s: stage(dense_layer, 3, growth = 4 + 4 * index)
}
block dense_layer(growth = 4) {
    conv1: conv(growth, 3)
    concat(input, conv1)
}
""")
    assert [len(g) for g in dot.block_groups(own, _stages(own)[0])] == [1, 1, 1]


def test_block_figure_panels_name_what_each_block_has() -> None:
    """A panel's name says the block's skip as the dataflow has it: RepVGG's blocks sum
    branches (no identity skip); DLA's first tree block is projected by the tree, its
    second gets the identity; BoTNet's rel_to_abs (a block inside a block) is no panel."""
    assert dot.panel_names([load_spec("repvgg_a0")]) == [
        "repvgg_block:sum-of-branches@stem",
        "repvgg_block:sum-of-branches@stages.0.1",
    ]
    assert dot.panel_names([load_spec("dla34")]) == ["dla_basic:projection", "dla_basic:identity"]
    assert not any("rel_to_abs" in name for name in dot.panel_names([load_spec("botnet26t_256")]))


def test_repvgg_branches_side_by_side_in_table_and_stem() -> None:
    """RepVGG's 3×3 and 1×1 are summed, not chained: one table line each block and in the
    stem row, and the stem box of the figures lists them side by side before the sum."""
    net = load_spec("repvgg_a0")
    table = tables.build([net])
    rows = {r.name: r.cells[0] for r in table.rows}
    assert rows["conv1"] == ("3×3, 48, stride 2 ‖ 1×1, 48, stride 2",)
    assert rows["conv2_x"] == (tables.Composition(("3×3, 48 ‖ 1×1, 48",), 2),)
    assert "3×3 conv, 48, /2<BR/>‖ 1×1 conv, 48, /2<BR/>+ ReLU" in dot.emit(net, detail="block")


def test_a_conv_written_in_res_is_a_conv_in_tables_and_figures() -> None:
    net = load_spec("nf_resnet50")
    r50 = load_spec("resnet50")
    ours, theirs = tables.build([net]), tables.build([r50])
    assert [r.cells for r in ours.rows] == [r.cells for r in theirs.rows]
    assert "1×1 scaled-std-conv, 64" in dot.emit(net, detail="block")


# ---------------------------------------------------------------- the nine specs against timm

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def timm_module():
    from test_torch_compat import _need, timm

    return _need(timm, "timm")


def _timm_model(timm, name: str):
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False).eval()
    return model


def _inputs_of(model, paths: list[str], x) -> dict:
    """The input each module at ``paths`` gets in one forward pass (``x`` from timm's size)."""
    got: dict[str, object] = {}
    hooks = []
    for path in paths:
        module = model.get_submodule(path)
        hooks.append(module.register_forward_pre_hook(lambda m, args, p=path: got.setdefault(p, args)))
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return got


def _zeroed_output(block, args, keep: tuple[str, ...] = ()):
    """``block``'s output on ``args`` with every weight zeroed (except under the module
    paths ``keep``) and its norms' statistics neutral."""
    import copy

    def kept(name: str) -> bool:
        return any(name == k or name.startswith(k + ".") for k in keep)

    block = copy.deepcopy(block).eval()
    with torch.no_grad():
        for name, p in block.named_parameters():
            if not kept(name):
                p.zero_()
        for name, m in block.named_modules():
            if kept(name):
                continue
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.zero_()
                m.running_var.fill_(1.0)
        out = block(*args)
    return torch.cat(out, dim=1) if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", NINE)
def test_skips_are_timms(timm_module, name: str) -> None:
    """Every block's skip as drawn, against timm's block: zeroed, an identity skip still
    passes the input (an add of computing branches does not); a projection shortcut passes it
    when only the shortcut keeps its weights."""
    net = load_spec(name)
    model = _timm_model(timm_module, name)
    blocks = _blocks(net)
    x = torch.rand(1, *net.input_shape)
    inputs = _inputs_of(model, [b.path for b in blocks], x)
    drawn = {}
    for block in blocks:
        parts = dot.block_parts(net, block)
        timm_block = model.get_submodule(block.path)
        args = inputs[block.path]
        outside = parts.merge is not None and parts.merge not in set(block.op_names())
        if outside and (parts.skip_projected or net.shape_of(block.input) != net.shape_of(block.output)):
            # DLA: the tree adds a projection after the block; timm's block alone cannot
            drawn[block.path] = parts.skip_in is not None
            continue
        if parts.shortcut is None:
            passes = bool(_zeroed_output(timm_block, args).abs().max() > 1e-6)
            assert passes == (parts.skip_in is not None), (block.path, passes)
        else:  # the shortcut we draw (and the pre-activation it reads) carry the input around
            rel = len(block.path) + 1
            keep = {parts.shortcut.path[rel:]} | {
                net.op(n).module[rel:] for n in parts.pre if net.op(n).module
            }
            keep |= {c.path[rel:] for c in block.children if set(c.op_names()) <= set(parts.pre)}
            assert _zeroed_output(timm_block, args, keep=tuple(keep)).abs().max() > 1e-6, block.path
        drawn[block.path] = parts.skip_in is not None
    if name == "repvgg_a0":  # a sum of branches everywhere: no block has a skip
        assert not any(drawn.values())
    else:  # the residual families: every block has one
        assert all(drawn.values()), [p for p, s in drawn.items() if not s]


def _stages(net: resdsl.Network) -> list[Scope]:
    return [c for c in net.root.children if c.role is Role.STAGE]


@pytest.mark.parametrize("name", NINE)
def test_blocks_per_stage_are_timms(timm_module, name: str) -> None:
    """Each stage's blocks, counted in timm's stage module as the modules of its blocks'
    classes (a DLA tree's nested trees hold their blocks)."""
    net = load_spec(name)
    model = _timm_model(timm_module, name)
    for stage in _stages(net):
        ours = [b for b in _blocks(net) if b.path.startswith(stage.path + ".")]
        classes = tuple({type(model.get_submodule(b.path)) for b in ours})
        if not classes:
            continue
        # a stage timm has no module for (DPN's, if given stages) is skipped: its blocks'
        # paths are timm's all the same, which the other tests check block by block
        try:
            timm_stage = model.get_submodule(stage.path)
        except AttributeError:
            continue
        timms = [m for m in timm_stage.modules() if isinstance(m, classes)]
        assert len(ours) == len(timms), (stage.path, len(ours), len(timms))


_LINE = re.compile(r"(?:[a-z_]+: )?(\d+)×(\d+), (\d+)")


@pytest.mark.parametrize("name", NINE)
def test_table_lines_are_timms_convs(timm_module, name: str) -> None:
    """Each block's table line (kernel, width) against timm's Conv2d modules in the same
    block: all of them but the shortcut's and attention's (on a 1×1 map, or to one
    channel: seen by forward hooks), as a multiset."""
    net = load_spec(name)
    model = _timm_model(timm_module, name)
    x = torch.rand(1, *net.input_shape)
    shapes: dict[str, tuple] = {}

    def hook(name: str):
        def record(module, args, out) -> None:
            shapes.setdefault(name, tuple(out.shape))

        return record

    hooks = [
        m.register_forward_hook(hook(n)) for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    checked = 0
    for part in _blocks(net):  # every block, in a stage or not (dpn68's)
        parts = dot.block_parts(net, part)
        skip = parts.shortcut.path if parts.shortcut is not None else None
        want = Counter()
        for n, m in model.get_submodule(part.path).named_modules():
            full = f"{part.path}.{n}"
            if not isinstance(m, torch.nn.Conv2d) or (skip and (full == skip or full.startswith(skip + "."))):
                continue
            out = shapes[full]
            if out[2:] == (1, 1) or out[1] == 1:  # attention: weights, not features
                continue
            want[(m.kernel_size[0], m.out_channels)] += 1
        lines = tables.block_convs(net, part)
        got = Counter()
        for line in lines:
            for k, _, w in _LINE.findall(line.split(" (×")[0]):
                times = int(line.rsplit("(×", 1)[1].rstrip(")")) if "(×" in line else 1
                got[(int(k), int(w))] += times
        assert got == want, (part.path, lines, dict(want))
        checked += 1
    assert checked


@pytest.mark.parametrize("name", NINE)
def test_block_parameters_are_timms(timm_module, name: str) -> None:
    """`stats`' per-block parameters: each block's, as timm's module at its path holds."""
    net = load_spec(name)
    model = _timm_model(timm_module, name)
    for block in _blocks(net):
        theirs = sum(p.numel() for p in model.get_submodule(block.path).parameters())
        assert net.scope_params(block) == theirs, block.path
    assert net.params == sum(p.numel() for p in model.parameters())


#: The depth each table heads the spec with: the name's (the papers'), or for the two whose
#: names hold none, the weighted layers on the main path counted from timm's stages.
NAME_DEPTH = {
    "gcresnet50t": 50,
    "botnet26t_256": 26,
    "nf_resnet50": 50,
    "resnetv2_50d_evos": 50,
    "cspresnet50": 50,
    "dpn68": 68,
    "dla34": 34,
}


@pytest.mark.parametrize("name", NINE)
def test_depth_headers(timm_module, name: str) -> None:
    net = load_spec(name)
    if name in NAME_DEPTH:
        assert tables.depth_label(net) == NAME_DEPTH[name]
        return
    model = _timm_model(timm_module, name)
    if name == "repvgg_a0":  # one 3×3 layer per block (its 1×1 and identity branches fold in), stem, fc
        blocks = sum(len(s) for s in model.stages)
        assert tables.depth_label(net) == 1 + blocks + 1
    else:  # regnety_016: three convs per block (SE's fcs are attention), stem, fc
        blocks = sum(len(list(model.get_submodule(s).children())) for s in ("s1", "s2", "s3", "s4"))
        assert tables.depth_label(net) == 1 + 3 * blocks + 1
