"""In-place training against the external oracle: torchvision's and timm's own in-place
ResNets (``ReLU(inplace=True)``, ``out += identity``).

With the reference's weights loaded (``strict=True``), one training step of resdsl's
module and of the generated source — forward, loss, backward, SGD with momentum, forward
again — must give the reference's outputs, gradients, updated weights and running
statistics. Skipped where torchvision or timm cannot be imported; with
``RESDSL_REQUIRE_REFERENCE=1`` (CI's reference run) that is a failure instead.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_inplace import training_step  # noqa: E402
from test_torch_compat import _need, timm, torchvision  # noqa: E402
from test_torch_source import import_source  # noqa: E402

from conftest import load_spec  # noqa: E402
from resdsl.backends.torch_model import build  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402


def _compare(reference: torch.nn.Module, name: str, tmp_path) -> None:
    state = reference.state_dict()
    net = load_spec(name)
    ours = build(net, seed=0)
    ours.load_state_dict(state, strict=True)
    generated = getattr(import_source(emit(net), tmp_path, name), name)()
    generated.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    want = training_step(reference, x)
    for model in (ours, generated):
        got = training_step(model, x)
        assert got.keys() == want.keys()
        for key, value in want.items():
            # same kernels in the same order as far as the reference goes; allow float
            # reassociation in reductions
            scale = max(1.0, float(value.abs().max())) if value.numel() else 1.0
            torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-5 * scale, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2"])
def test_training_step_equals_torchvision(name, tmp_path):
    models = _need(torchvision, "torchvision").models
    _compare(getattr(models, name)(weights=None), name, tmp_path)


@pytest.mark.parametrize("name", ["seresnet50", "resnet50d"])
def test_training_step_equals_timm(name, tmp_path):
    _compare(_need(timm, "timm").create_model(name, pretrained=False), name, tmp_path)
