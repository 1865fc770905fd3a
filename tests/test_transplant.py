"""Weight transplant into modified variants: `resdsl.transplant` and `resdsl transplant`.

The source checkpoint is resdsl's own build of specs/resnet50.res (whose state_dict keys
and shapes are torchvision's: tests/test_torch_compat.py checks that against torchvision
itself, and tests/test_transplant_compat.py repeats these checks with torchvision's model),
with random BN statistics, saved as safetensors and as a torch file. The checks are outside
facts about the variants: the adapted input conv answers a suitably mapped input exactly as
the original does, a new head sees the original's features, and what is new equals the
spec's seeded initialisation.
"""

from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.checkpoints import dump_checkpoint, load_checkpoint  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.weight_transplant import COUNTER_REASON, adapt_input_conv  # noqa: E402

VARIANTS = """\
import std.resnet

network resnet50 = resnet(block = bottleneck, depths = [3, 4, 6, 3])
network rgbn = resnet50 with (in_channels = 4)
network ten = resnet50 with (num_classes = 10)
network deep = resnet50 with (stem = deep_stem)
network wide4 = resnet50 with (widths = [64, 128, 256, 1024])
"""


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """BN statistics and affine terms away from their initial values, so copies show."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) * 0.5 + 0.25)
                m.bias.copy_(torch.rand(m.bias.shape, generator=gen) * 0.2 - 0.1)
                m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(1000)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The source network (eval mode), its state_dict, and the checkpoint in both formats."""
    folder = tmp_path_factory.mktemp("transplant")
    model = resdsl.build(SPECS / "resnet50.res", seed=7).eval()
    randomize_bn(model)
    state = model.state_dict()
    files = {}
    for name, fmt in (("r50.safetensors", "safetensors"), ("r50.pth", "torch")):
        files[fmt] = folder / name
        files[fmt].write_bytes(dump_checkpoint(state, fmt))
    spec = folder / "variants.res"
    spec.write_text(VARIANTS)
    return model, state, files, spec


def graft(source, network: str, fmt: str = "safetensors", seed: int = 0):
    """Transplant into a variant; the result must load strictly into the variant's module."""
    _, _, files, spec = source
    state, report = resdsl.transplant(spec, files[fmt], network=network, seed=seed)
    model = resdsl.build(spec, network=network, seed=None).eval()
    model.load_state_dict(state, strict=True)
    return model, state, report


def x_for(channels: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(2, channels, 64, 64, generator=torch.Generator().manual_seed(seed))


def assert_outputs_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))


def test_four_channel_input_copies_all_and_adapts_the_input_conv_as_timm(source):
    original, state, _, _ = source
    model, new, report = graft(source, "rgbn")
    assert [e.key for e in report.adapted] == ["conv1.weight"]
    assert "3 → 4 input channels" in report.adapted[0].reason
    assert report.initialised == [] and report.unused == []
    assert len(report.copied) == len(state) - 1 and report.params_transplanted == report.params_total
    for key in state:
        if key != "conv1.weight":
            assert torch.equal(new[key], state[key]), key
    w = state["conv1.weight"]  # timm: repeat the RGB filters cyclically, scale by 3/4
    expected = torch.cat([w, w[:, :1]], dim=1) * (3 / 4)
    assert torch.equal(new["conv1.weight"], expected)
    # the outside fact: (4/3 · RGB, 0) through the adapted conv is RGB through the original,
    # so the whole network answers as the original does
    x = x_for(3)
    with torch.no_grad():
        assert_outputs_close(model(torch.cat([x * (4 / 3), torch.zeros_like(x[:, :1])], dim=1)), original(x))


def test_new_head_sees_the_original_features(source):
    original, state, _, spec = source
    model, new, report = graft(source, "ten", seed=3)
    assert [(e.key, e.reason) for e in report.initialised] == [
        ("fc.weight", "shape 10×2048 here, 1000×2048 in the checkpoint"),
        ("fc.bias", "shape 10 here, 1000 in the checkpoint")]
    assert report.unused == [] and report.adapted == []
    fresh = resdsl.build(spec, network="ten", seed=3).state_dict()  # the spec's seeded initialisation
    assert torch.equal(new["fc.weight"], fresh["fc.weight"]) and torch.equal(new["fc.bias"], fresh["fc.bias"])
    x = x_for(3)
    with torch.no_grad():
        ours, theirs = resdsl.values(model, x), resdsl.values(original, x)
    assert torch.equal(ours["avgpool"], theirs["avgpool"])
    assert model(x).shape == (2, 10)


def test_deep_stem_is_new_and_everything_after_it_copies(source):
    _, state, _, spec = source
    _, new, report = graft(source, "deep", seed=5)
    fresh = resdsl.build(spec, network="deep", seed=5).state_dict()
    stem = [k for k in new if k.startswith(("conv1.", "bn1."))]
    assert {e.key for e in report.initialised} == set(stem)
    for key in stem:
        assert torch.equal(new[key], fresh[key]), key
    # bn1 exists in both, with the same shape: it stays new, its statistics were the 7×7 conv's
    assert [e.reason for e in report.initialised if e.key == "bn1.running_mean"] == [
        "follows `conv1.6`, which is not from the checkpoint: its statistics would not fit"]
    assert [(e.key, e.reason) for e in report.unused] == [("conv1.weight", "no such tensor in deep")]
    rest = [k for k in new if k not in stem]
    assert sorted(report.copied) == sorted(rest) and len(rest) == len(state) - 6
    assert all(torch.equal(new[k], state[k]) for k in rest)
    text = report.render()
    assert "bn1.{weight, bias, running_mean, running_var, num_batches_tracked}: follows `conv1.6`" in text
    # a new BN's counter is new with it, not a missing counter of a copied BN
    assert "conv1.1.{weight, bias, running_mean, running_var, num_batches_tracked}: not in the checkpoint" in text
    assert "BN counters" not in text


def test_changed_width_is_listed_tensor_by_tensor(source):
    _, state, _, _ = source
    _, new, report = graft(source, "wide4")
    skipped = {e.key: e.reason for e in report.initialised}
    assert skipped["layer4.0.conv1.weight"] == "shape 1024×1024×1×1 here, 512×1024×1×1 in the checkpoint"
    assert skipped["fc.weight"] == "shape 1000×4096 here, 1000×2048 in the checkpoint"
    assert "fc.bias" not in skipped and torch.equal(new["fc.bias"], state["fc.bias"])
    assert all(k.startswith(("layer4.", "fc.")) for k in skipped)
    # a BN whose conv changed width changes width too: listed by shape, not copied
    assert skipped["layer4.0.bn1.weight"] == "shape 1024 here, 512 in the checkpoint"


def test_the_input_conv_is_found_from_the_graph_not_by_name(tmp_path):
    """A network whose first conv is called `entry`; other shape changes are not adapted."""
    spec = tmp_path / "odd.res"
    spec.write_text("network src(c = 3, mid = 8) {\n    input [c, 16, 16]\n    entry: conv(8, 3)\n"
                    "    mix: conv(mid, 1)\n    pool: global_avgpool()\n    flatten()\n    head: linear(5)\n}\n"
                    "network dst = src with (c = 2, mid = 4)\n")
    source = resdsl.build(spec, network="src", seed=1).state_dict()
    state, report = resdsl.transplant(spec, source, network="dst")
    assert [e.key for e in report.adapted] == ["entry.weight"]
    assert torch.equal(state["entry.weight"], source["entry.weight"][:, :2] * (3 / 2))
    assert [e.key for e in report.initialised] == ["mix.weight", "head.weight"]


def test_fewer_input_channels_cut_and_rescale(tmp_path):
    """timm's rule for 3 → 2: the first two filters' channels, scaled by 3/2."""
    spec = tmp_path / "two.res"
    spec.write_text("import std.resnet\nnetwork r = resnet(block = basic, depths = [1, 1, 1, 1])\n"
                    "network r2 = r with (in_channels = 2)\n")
    source = resdsl.build(spec, network="r", seed=1).state_dict()
    state, report = resdsl.transplant(spec, source, network="r2")
    assert torch.equal(state["conv1.weight"], source["conv1.weight"][:, :2] * 1.5)
    assert "3 → 2 input channels: channels cut to 2, scaled by 3/2" in report.adapted[0].reason


def test_adapt_input_conv_keeps_dtype_and_identity():
    w = torch.randn(4, 3, 3, 3, generator=torch.Generator().manual_seed(0)).half()
    assert adapt_input_conv(w, 3) is w
    out = adapt_input_conv(w, 5)
    assert out.dtype == torch.float16 and out.shape == (4, 5, 3, 3)
    assert torch.equal(out, (torch.cat([w.float(), w.float()[:, :2]], 1) * (3 / 5)).half())


def test_counters_missing_from_the_checkpoint_are_counted_not_listed(tmp_path):
    spec = SPECS / "resnet18.res"
    source = {k: v for k, v in resdsl.build(spec, seed=1).state_dict().items()
              if not k.endswith("num_batches_tracked")}
    state, report = resdsl.transplant(spec, {"state_dict": source})
    assert {e.reason for e in report.initialised} == {COUNTER_REASON}
    assert "20 BN counters (num_batches_tracked): not in the checkpoint" in report.render()
    assert report.notes == ["took the state_dict from the `state_dict` entry of the checkpoint"]
    assert report.to_dict()["params"] == {"total": 11_689_512, "transplanted": 11_689_512}


def test_half_precision_checkpoints_are_cast_with_a_note(small):
    spec, _, state = small
    new, report = resdsl.transplant(spec, {k: v.half() if v.is_floating_point() else v for k, v in state.items()})
    assert report.notes == ["converted tensors: float16 → float32"]
    assert new["layer1.0.conv1.weight"].dtype == torch.float32
    assert torch.equal(new["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"].half().float())


class Payload:
    """Unpickling this would create a directory: the weights_only loader must refuse it."""

    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


# ------------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """resnet18 and a one-channel variant: fast enough for the CLI's many cases."""
    folder = tmp_path_factory.mktemp("cli")
    spec = folder / "grey18.res"
    spec.write_text("import std.resnet\n\nnetwork resnet18 = resnet(block = basic, depths = [2, 2, 2, 2])\n"
                    "network stereo18 = resnet18 with (in_channels = 6)\n"
                    "network grey18 = resnet18 with (in_channels = 1, num_classes = 2)\n")
    original = resdsl.build(SPECS / "resnet18.res", seed=2).eval()
    randomize_bn(original)
    state = original.state_dict()
    ckpt = folder / "r18.pth"
    ckpt.write_bytes(dump_checkpoint(state, "torch"))
    (folder / "r18.safetensors").write_bytes(dump_checkpoint(state, "safetensors"))
    return spec, ckpt, state


def test_one_channel_input_sums_rgb(small):
    """A grey image replicated to RGB through the original = the grey image through the adapted net."""
    spec, ckpt, state = small
    new, report = resdsl.transplant(spec, ckpt)
    assert torch.equal(new["conv1.weight"], state["conv1.weight"].sum(dim=1, keepdim=True))
    assert "summed" in report.adapted[0].reason
    model, original = resdsl.build(spec, seed=None).eval(), resdsl.build(SPECS / "resnet18.res").eval()
    model.load_state_dict(new, strict=True)
    original.load_state_dict(state, strict=True)
    grey = x_for(1)
    with torch.no_grad():  # the head is new (2 classes): compare the features it reads
        assert_outputs_close(resdsl.values(model, grey)["avgpool"], resdsl.values(original, grey.expand(-1, 3, -1, -1))["avgpool"])


def test_six_channels_repeat_rgb_and_halve(small):
    """RGB repeated twice (a stereo pair of one image) through the adapted net = RGB through the original."""
    spec, ckpt, state = small
    new, report = resdsl.transplant(spec, ckpt, network="stereo18")
    assert "3 → 6 input channels: channels repeated cyclically to 6, scaled by 3/6" in report.adapted[0].reason
    model, original = resdsl.build(spec, network="stereo18").eval(), resdsl.build(SPECS / "resnet18.res").eval()
    model.load_state_dict(new, strict=True)
    original.load_state_dict(state, strict=True)
    x = x_for(3)
    with torch.no_grad():
        assert_outputs_close(model(torch.cat([x, x], dim=1)), original(x))


def test_both_checkpoint_formats_give_the_same_transplant(small):
    spec, ckpt, _ = small
    a, report_a = resdsl.transplant(spec, ckpt)
    b, report_b = resdsl.transplant(spec, ckpt.with_suffix(".safetensors"))
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    assert report_a.to_dict() | {"checkpoint": ""} == report_b.to_dict() | {"checkpoint": ""}


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["transplant", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", ["out.safetensors", "out.pt", "out.PTH"])
def test_cli_writes_a_state_dict_that_loads_strictly(small, tmp_path, capsys, name):
    spec, ckpt, state = small
    out = tmp_path / name
    code, stdout, err = run(capsys, spec, "--from", ckpt, "-o", out)
    assert code == 0 and stdout == ""
    assert err.startswith("transplant r18.pth → grey18: 120 tensors from the checkpoint (119 copied, 1 adapted)")
    assert "adapted conv1.weight: input conv, 3 → 1 input channels: summed" in err
    assert "11,170,240 of 11,171,266 parameters (99.9%)" in err  # not rounded up to 100%
    assert "    fc.{weight, bias}: shape 2" not in err and "fc.weight: shape 2×512 here, 1000×512" in err
    assert f"wrote {out}" in err
    written = load_checkpoint(out)
    resdsl.build(spec).load_state_dict(written, strict=True)
    api, _ = resdsl.transplant(spec, ckpt)
    assert all(torch.equal(written[k], api[k]) for k in api)


def test_cli_json_report_on_stdout(small, tmp_path, capsys):
    spec, ckpt, _ = small
    code, stdout, err = run(capsys, spec, "--from", ckpt, "-o", tmp_path / "o.safetensors", "--format", "json")
    report = json.loads(stdout)
    assert code == 0 and report["network"] == "grey18" and report["checkpoint"] == "r18.pth"
    assert report["adapted"][0]["key"] == "conv1.weight"
    assert [e["key"] for e in report["initialised"]] == ["fc.weight", "fc.bias"]
    assert "transplant r18.pth" not in err and "wrote" in err


def test_cli_refuses_bad_requests_and_writes_nothing(small, tmp_path, capsys):
    spec, ckpt, _ = small
    before = ckpt.read_bytes()
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"previous")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    bad_spec = tmp_path / "bad.res"
    bad_spec.write_text("network n {\n    input [3, 8, 8]\n    c: conv(4, 3, strid = 1)\n}\n")
    evil = tmp_path / "evil.pt"
    torch.save({"conv1.weight": Payload(str(tmp_path / "pwned"))}, evil)
    unrelated = tmp_path / "unrelated.safetensors"
    unrelated.write_bytes(dump_checkpoint({"encoder.weight": torch.zeros(2, 2)}, "safetensors"))
    cases = [
        ((spec, "--from", ckpt, "-o", ckpt), 2, "would overwrite an input"),
        ((spec, "--from", ckpt, "-o", spec), 2, "would overwrite an input"),
        ((spec, "--from", ckpt, "-o", tmp_path / "o.npz"), 2, "cannot tell the format of"),
        ((spec, "--from", tmp_path / "absent.pt", "-o", out), 2, "no such file"),
        ((spec, "--from", tmp_path, "-o", out), 2, "it is a folder"),
        ((spec, "--from", junk, "-o", out), 2, "cannot read weights `junk.pt`"),
        ((spec, "--from", evil, "-o", out), 2, "refusing to load `evil.pt`: it holds Python objects"),
        ((bad_spec, "--from", ckpt, "-o", out), 1, "error[E020]"),
        ((spec, "--from", unrelated, "-o", out), 2, "no tensor of `unrelated.safetensors` fits grey18"),
        ((spec, "--from", ckpt, "-o", tmp_path / "nofolder" / "o.pt"), 2, "no such folder"),
    ]
    for args, status, message in cases:
        code, stdout, err = run(capsys, *args)
        assert (code, message in err) == (status, True), (args, err)
        assert "Traceback" not in err and stdout == ""
    assert ckpt.read_bytes() == before and out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.res", "evil.pt", "junk.pt", "o.safetensors",
                                                           "unrelated.safetensors"]
