"""The open op registry (issue 21): a primitive is a core entry plus whatever lowerings are
registered for it, back ends are added without touching a primitive, and a look is only
how a diagram draws an op."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")

import resdsl  # noqa: E402
from conftest import ROOT  # noqa: E402
from resdsl import stats, tables  # noqa: E402
from resdsl.backends import TARGETS, Target, dot, register  # noqa: E402
from resdsl.backends.torch_lowering import SourceCall, torch_lowering  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.looks import LOOKS, Look, register_look  # noqa: E402
from resdsl.passes import reductions  # noqa: E402
from resdsl.primitives import PRIMITIVES, Primitive, Traits  # noqa: E402
from resdsl.roles import feature_points  # noqa: E402

SOFTSIGN_SPEC = """network soft {
    input [3, 16, 16]
    conv1: conv(8, 3)
    act: softsign()
    softsign()
    global_avgpool()
    flatten()
    fc: linear(4)
}
"""


@pytest.fixture
def softsign():
    """`softsign`: a core entry and a torch lowering, nothing else (no ONNX, no look)."""
    prim = resdsl.register_primitive(Primitive(
        "softsign", (), lambda attrs, shapes: (shapes[0], 0, 0), "activation: x / (1 + |x|)",
        traits=Traits(activation=True)))
    torch_lowering("softsign", module=SourceCall("nn.Softsign"), function=SourceCall("F.softsign"))
    yield prim
    PRIMITIVES.remove("softsign")


def test_a_primitive_with_a_core_entry_and_a_torch_lowering_builds_in_torch(softsign):
    net = resdsl.loads(SOFTSIGN_SPEC)
    model = resdsl.build(net, seed=0).eval()
    assert "nn.Softsign()" in resdsl.backends.torch_source.emit(net) and "F.softsign(" in \
        resdsl.backends.torch_source.emit(net)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        h = torch.nn.functional.softsign(torch.nn.functional.softsign(model.conv1(x)))
        torch.testing.assert_close(model(x), model.fc(h.mean((2, 3))))


def test_a_target_without_its_lowering_is_a_diagnostic_naming_the_primitive(softsign, tmp_path, capsys):
    spec = tmp_path / "soft.res"
    spec.write_text(SOFTSIGN_SPEC)
    out = tmp_path / "soft.onnx"
    assert main(["compile", str(spec), "--target", "onnx", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no ONNX lowering for `softsign` (a primitive registered by register_primitive)" in err
    assert "Traceback" not in err and "internal error" not in err
    assert not out.exists()
    # the other targets are unaffected
    assert main(["compile", str(spec), "--target", "torch", "-o", str(tmp_path / "soft.py")]) == 0


def test_a_primitive_without_a_look_draws_with_the_default_look(softsign):
    assert LOOKS.get("softsign") is None
    net = resdsl.loads(SOFTSIGN_SPEC)
    layer = dot.emit(net, detail="layer")
    assert ">softsign<" in layer
    for detail in ("network", "block", "blocks"):
        assert dot.emit(net, detail=detail).startswith("//")
    assert tables.render([net], "markdown")


def test_a_new_back_end_touches_no_primitive(capsys):
    before = {kind: PRIMITIVES[kind] for kind in PRIMITIVES}
    register(Target("params", "extra_backends.param_count", "emit", ".txt", False, "parameter counts (a test's)"))
    try:
        assert main(["compile", str(ROOT / "specs" / "resnet18.res"), "--target", "params"]) == 0
        out = capsys.readouterr().out
    finally:
        del TARGETS["params"]
    assert out.splitlines()[0] == "conv1: 9,408" and out.splitlines()[-1] == "total: 11,689,512"
    assert {kind: PRIMITIVES[kind] for kind in PRIMITIVES} == before


# ---------------------------------------------------------------- looks are drawing only

LOOK_SPEC = """import std.resnet

network scaled = resnet(block = basic, depths = [1, 1], widths = [16, 32], act = hardtanh, image_size = 32,
                        num_classes = 10)

network scaled_stem {
    input [3, 32, 32]
    conv1: conv(8, KERNEL)
    ls: channel_scale()
    hardtanh()
    global_avgpool()
    flatten()
    fc: linear(10)
}
"""


@pytest.fixture
def example_plugin():
    """The example plugin's `channel_scale` and `hardtanh`, with their looks and lowerings."""
    sys.path.insert(0, str(ROOT / "examples" / "plugin"))
    try:
        import resdsl_scale

        for prim in resdsl_scale.primitives():
            resdsl.register_primitive(prim)
        yield
    finally:
        for kind in ("channel_scale", "hardtanh"):
            if kind in PRIMITIVES._prims:
                PRIMITIVES.remove(kind)
        sys.path.remove(str(ROOT / "examples" / "plugin"))
        sys.modules.pop("resdsl_scale", None)


def _results(text: str, checkpoint: dict) -> dict:
    """Everything meaning decides, for the networks of ``text``: stats, table structure and
    text (activations and scales are not table lines), roles, transplant."""
    net = resdsl.loads(text.replace("KERNEL", "3"), network="scaled")
    stem = resdsl.loads(text.replace("KERNEL", "3"), network="scaled_stem")
    table = tables.build([net])
    _, report = resdsl.transplant(stem, checkpoint)
    return {
        "stats": (stats.summary(net), stats.summary(stem), stats.render([net, stem])),
        "table": ([(r.name, r.output, r.cells) for r in table.rows], tables.render([net], "markdown")),
        "depth": tables.depth(net),
        "roles": (net.stem_pool, net.stem_feature, feature_points(net), reductions(net)),
        "transplant": report.to_dict(),
    }


def test_changing_a_plugins_look_changes_no_meaning(example_plugin):
    # a checkpoint whose conv1 does not fit (5×5 where the spec has 3×3): what follows it
    # is copied or re-initialised by what it is, never by how it is drawn
    other = resdsl.loads(LOOK_SPEC.replace("KERNEL", "5"), network="scaled_stem")
    checkpoint = resdsl.build(other, seed=1).state_dict()
    before = _results(LOOK_SPEC, checkpoint)
    for kind in ("channel_scale", "hardtanh"):
        # drawn as something else entirely: a conv listed in tables, a norm, a residual merge
        register_look(kind, Look(lambda op: "3×3 conv, 8", "conv", symbol="+", table=lambda op, s: "3×3, 8",
                                 head=lambda op: "fc"), replace=True)
    assert LOOKS.get("hardtanh").category == "conv"
    assert _results(LOOK_SPEC, checkpoint) == before
    register_look("channel_scale", Look(lambda op: "channel scale", "norm"), replace=True)
    assert _results(LOOK_SPEC, checkpoint) == before
    assert "ls.gamma" in before["transplant"]["copied"]


# ---------------------------------------------------------------- facts declared, not found by name


def test_reductions_read_the_declared_resolution_factor_only():
    # space_to_depth: an attribute called `stride` that is no subsampling of this op's, and a
    # block size that is: only the declared factor counts
    def rule(attrs, shapes):
        c, h, w = shapes[0]
        b = attrs["block"]
        return (c * b * b, h // b, w // b), 0, 0

    resdsl.register_primitive(Primitive(
        "space_to_depth", (resdsl.param("block", "int", 2), resdsl.param("stride", "int", 3)), rule,
        "H×W blocks moved to channels", traits=Traits(resolution="block")))
    try:
        net = resdsl.loads("network n {\n    input [3, 16, 16]\n    s: space_to_depth()\n"
                           "    c: conv(8, 3, stride = 2)\n}\n")
        assert reductions(net) == {"s": 2, "c": 4}
    finally:
        PRIMITIVES.remove("space_to_depth")


@pytest.mark.parametrize("kind, attrs, shape", [
    ("conv", {"out_channels": 8, "kernel_size": 3, "stride": 2, "padding": None, "dilation": 2, "groups": 1,
              "bias": False}, (4, 16, 16)),
    ("maxpool", {"kernel_size": 3, "stride": None, "padding": 1, "dilation": 1, "ceil_mode": True}, (4, 16, 16)),
    ("avgpool", {"kernel_size": 2, "stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
     (4, 16, 16)),
])
def test_shape_rules_never_change_the_attributes_they_are_given(kind, attrs, shape):
    prim = PRIMITIVES[kind]
    given = dict(attrs)
    complete = prim.complete(given)
    assert given == attrs and None not in complete.values()
    frozen = dict(complete)
    prim.infer(complete, [shape])
    assert complete == frozen


def test_a_plugin_entry_made_before_the_builtins_module_is_imported_stays():
    """Built-in entries register when the module that reads their table is first imported
    (resdsl.tables imports builtin_looks): a plugin that replaced a built-in's look before
    that keeps its entry, and the import does not fail."""
    import subprocess

    code = ("import sys, resdsl\n"
            "from resdsl.looks import LOOKS, Look, register_look\n"
            "assert 'resdsl.builtin_looks' not in sys.modules\n"
            "register_look('relu', Look(lambda op: 'mine', 'act'), replace=True)\n"
            "from resdsl import tables\n"
            "assert LOOKS.origin('relu') != 'builtin' and LOOKS.get('conv') is not None\n"
            "print(LOOKS.get('relu').text(None))\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "mine"
