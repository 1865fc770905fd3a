"""Build once (issue 14): no default initialisation that the init pass then overwrites.

Convolutions (``conv`` and BiT's ``std_conv``) are made without their ``reset_parameters`` in process
(``torch_layers.uninitialised``) and with ``nn.utils.skip_init`` (on the meta device, then
given uninitialised storage on the default device) in the generated source, and
initialised once by the registry's init (Kaiming-normal weight, zero bias); batch norms in
process too (unit scale, zero shift). Seeded weights
stay equal between the two (``tests/test_torch_source.py`` and the registry conformance test
compare them); here: no default draw is wasted, and the default device is honoured.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_torch_source import import_source  # noqa: E402

from conftest import load_spec  # noqa: E402
from resdsl.backends.torch_module import ResDSLNetwork, build  # noqa: E402
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
        model = ResDSLNetwork(net)
        generated = import_source(emit(net), tmp_path, "resnet18").resnet18(seed=None)
    assert {p.device.type for p in [*model.parameters(), *generated.parameters()]} == {"meta"}


def test_batch_norms_are_initialised_once(monkeypatch):
    resets = []
    original = torch.nn.BatchNorm2d.reset_parameters
    monkeypatch.setattr(torch.nn.BatchNorm2d, "reset_parameters", lambda self: resets.append(self) or original(self))
    model = build(load_spec("resnet18"), seed=0)
    assert resets == []  # the init pass sets scale and shift; the running statistics are made so
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(type(m) is torch.nn.BatchNorm2d and "reset_parameters" not in vars(m) for m in bns)
    for m in bns:
        for tensor, value in ((m.weight, 1), (m.bias, 0), (m.running_mean, 0), (m.running_var, 1),
                              (m.num_batches_tracked, 0)):
            assert bool((tensor == value).all())
    bns[0].reset_parameters()  # the class's own, as for any BatchNorm2d
    assert resets == [bns[0]]
