"""Build once (issue 14): no default initialisation that the init pass then overwrites.

Convolutions (``conv`` and BiT's ``std_conv``) are made with the ``skip_init`` helper (their
``reset_parameters`` shadowed for the constructor, on the default device) in the generated
source, which ``resdsl.build`` loads, and initialised once by ``reset_parameters``
(Kaiming-normal weight, zero bias). Here: no default draw is wasted, the default device is
honoured, and ``build`` gives the generated file's weights for a seed.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_torch_source import import_source  # noqa: E402

from conftest import load_spec  # noqa: E402
from resdsl.backends.torch_model import build  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402


def _real_default_draws(monkeypatch) -> list[tuple[int, ...]]:
    """Shapes of the tensors torch's default (Kaiming-uniform) initialisation fills with real
    random numbers; draws on the meta device are free and not counted."""
    seen: list[tuple[int, ...]] = []
    original = torch.nn.init.kaiming_uniform_

    def counting(tensor, *args, **kwargs):
        if tensor.device.type != "meta":
            seen.append(tuple(tensor.shape))
        return original(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", counting)
    return seen


# resnet50: the classifier's default init is its only one (as torchvision's); BiT: its
# weight-standardised convolutions (std_conv) are built once too, and its head is a 1×1 conv
@pytest.mark.parametrize("name, draws", [("resnet50", [(1000, 2048)]), ("resnetv2_50x1_bit", [])])
def test_convolutions_get_no_default_initialisation(monkeypatch, tmp_path, name, draws):
    net = load_spec(name)
    seen = _real_default_draws(monkeypatch)
    model = build(net, seed=0)
    assert seen == draws
    seen.clear()
    generated = getattr(import_source(emit(net, seed=0), tmp_path, name), name)(seed=0)
    assert seen == draws
    for (key, a), b in zip(model.state_dict().items(), generated.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(bool(torch.isfinite(m.weight).all()) and m.weight.std() > 0 for m in convs)


def test_the_default_device_is_honoured(tmp_path):
    net = load_spec("resnet18")
    with torch.device("meta"):
        model = build(net)
        generated = import_source(emit(net), tmp_path, "resnet18").resnet18(seed=None)
    assert {p.device.type for p in [*model.parameters(), *generated.parameters()]} == {"meta"}
