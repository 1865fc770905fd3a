"""Transplant from torchvision's real resnet50, checked against torchvision and timm.

torchvision's resnet50 (random weights, randomised BN statistics) is saved as safetensors
and as a torch file and transplanted into variants of specs/resnet50.res. The input conv
must equal timm's ``adapt_input_conv`` bit for bit, and every variant must give
torchvision's outputs on the part that was copied. Skipped where torchvision or timm cannot
be imported, and failed instead under ``RESDSL_REQUIRE_REFERENCE=1`` (CI's reference run,
as tests/test_torch_compat.py).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from test_torch_compat import _need, _randomize, timm, torchvision  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPECS  # noqa: E402
from resdsl.checkpoints import dump_checkpoint  # noqa: E402

VARIANTS = """\
import std.resnet

network resnet50 = resnet(block = bottleneck, depths = [3, 4, 6, 3])
network rgbn = resnet50 with (in_channels = 4)
network grey = resnet50 with (in_channels = 1)
network two = resnet50 with (in_channels = 2)
network ten = resnet50 with (num_classes = 10)
network deep = resnet50 with (stem = deep_stem)
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """torchvision's resnet50 in eval mode, its checkpoint files and the variants' spec."""
    models = _need(torchvision, "torchvision").models
    model = models.resnet50(weights=None).eval()
    _randomize(model)
    folder = tmp_path_factory.mktemp("transplant_compat")
    files = {}
    for name, fmt in (("tv.safetensors", "safetensors"), ("tv.pth", "torch")):
        files[fmt] = folder / name
        files[fmt].write_bytes(dump_checkpoint(model.state_dict(), fmt))
    spec = folder / "variants.res"
    spec.write_text(VARIANTS)
    return model, files, spec


def _ours(reference, network: str, fmt: str = "safetensors"):
    _, files, spec = reference
    state, report = resdsl.transplant(spec, files[fmt], network=network)
    model = resdsl.build(spec, network=network, seed=None).eval()
    model.load_state_dict(state, strict=True)
    return model, state, report


def _x(channels: int) -> torch.Tensor:
    return torch.randn(2, channels, 96, 96, generator=torch.Generator().manual_seed(4))


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(1.0, float(b.abs().max())))


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
@pytest.mark.parametrize("channels", [4, 1, 2])
def test_input_conv_adapts_as_timm_and_the_network_follows_torchvision(reference, fmt, channels):
    adapt = _need(timm, "timm").models.adapt_input_conv
    tv, _, _ = reference
    ours, state, report = _ours(reference, {4: "rgbn", 1: "grey", 2: "two"}[channels], fmt)
    expected = adapt(channels, tv.conv1.weight.detach().clone())
    assert torch.equal(state["conv1.weight"], expected)  # bit for bit
    assert [e.key for e in report.adapted] == ["conv1.weight"] and not report.initialised and not report.unused
    # torchvision's resnet50 with its first conv adapted as timm does
    tv4 = torchvision.models.resnet50(weights=None, num_classes=1000).eval()
    tv4.conv1 = torch.nn.Conv2d(channels, 64, 7, 2, 3, bias=False)
    tv4.load_state_dict(tv.state_dict() | {"conv1.weight": expected}, strict=True)
    x = _x(channels)
    with torch.no_grad():
        _close(ours(x), tv4(x))


def test_ten_class_head_sees_torchvisions_features(reference):
    tv, _, _ = reference
    ours, state, report = _ours(reference, "ten")
    assert [e.key for e in report.initialised] == ["fc.weight", "fc.bias"]
    x = _x(3)
    with torch.no_grad():
        features = torch.flatten(tv.avgpool(tv.layer4(tv.layer3(tv.layer2(tv.layer1(
            tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))))), 1)
        _close(resdsl.values(ours, x)["avgpool"].flatten(1), features)
        assert ours(x).shape == (2, 10)


def test_deep_stem_is_new_and_the_rest_is_torchvisions(reference):
    tv, _, _ = reference
    ours, state, report = _ours(reference, "deep")
    assert {e.key.split(".")[0] for e in report.initialised} == {"conv1", "bn1"}
    assert [e.key for e in report.unused] == ["conv1.weight"]
    x = _x(3)
    with torch.no_grad():
        stem = resdsl.values(ours, x)["maxpool"]  # whatever the new stem makes, the rest answers as torchvision's
        expected = tv.fc(torch.flatten(tv.avgpool(tv.layer4(tv.layer3(tv.layer2(tv.layer1(stem))))), 1))
        _close(ours(x), expected)


def test_the_shipped_spec_takes_torchvisions_checkpoint_unchanged(reference):
    tv, files, _ = reference
    state, report = resdsl.transplant(SPECS / "resnet50.res", files["torch"])
    assert len(report.copied) == len(tv.state_dict()) and not (report.adapted or report.initialised or report.unused)
    assert all(torch.equal(state[k], v) for k, v in tv.state_dict().items())
