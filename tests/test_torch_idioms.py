"""Issue 19: `resdsl.build` returns a real module tree of the generated classes, so the
fine-tuning idioms of torchvision and timm users work on every shipped spec as they do on
torchvision's resnet50: a new head is the one that runs, replaced norms and hooks on a
block run, blocks are callable, the model scripts, pickles and seeds from torch's global
generator. (Against torchvision's own tree: `tests/test_torch_compat.py`.)"""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from test_torch_module import DEEP, small  # noqa: E402
from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPEC_NAMES  # noqa: E402

#: every shipped spec; the default run takes one of each family's layouts (the rest are slow)
QUICK = {"resnet18", "resnet50d", "resnet20_cifar", "preact_resnet164_cifar", "resnetv2_50x1_bit", "res2net50_14w_8s",
         "resnest50d", "skresnet34"}
NAMES = [n if n in QUICK else pytest.param(n, marks=pytest.mark.slow) for n in SPEC_NAMES if n not in DEEP]


def _classifier(model: nn.Module, net: resdsl.Network) -> tuple[str, nn.Module]:
    """The last module of the network (the classifier: `fc`, or a conv head)."""
    path = [op.module for op in net.ops if op.module is not None][-1]
    return path, model.get_submodule(path)


@pytest.mark.parametrize("name", NAMES)
def test_idioms_act_on_the_module_tree(name):
    net = small(name)
    model = resdsl.build(net, seed=0).eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        before = model(x)
    # a hook on every top-level child fires, in order, and every container has a forward
    fired: list[str] = []
    handles = [child.register_forward_hook(lambda m, i, o, n=child_name: fired.append(n))
               for child_name, child in model.named_children()]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    # (a container of dotted names — a ModuleList of stages, BiT's `head` of `head.fc` —
    # holds modules but is not called itself)
    assert fired == [n for n, c in model.named_children() if not isinstance(c, nn.ModuleList) and type(c) is not nn.Module]
    # replacing a norm by a module of one's own: the new one runs
    calls = []

    class Counting(nn.Identity):
        def forward(self, t):
            calls.append(1)
            return t

    norm_path = next(op.module for op in net.ops if op.kind in ("batchnorm", "groupnorm", "layernorm"))
    parent, _, leaf = norm_path.rpartition(".")
    original_norm = model.get_submodule(norm_path)
    setattr(model.get_submodule(parent) if parent else model, leaf, Counting())
    with torch.no_grad():
        model(x)
    assert calls, f"the module put at {norm_path} never ran"
    setattr(model.get_submodule(parent) if parent else model, leaf, original_norm)
    # a new head is the head: 7 classes out
    path, head = _classifier(model, net)
    if isinstance(head, nn.Linear):
        replacement = nn.Linear(head.in_features, 7)
    else:
        replacement = nn.Conv2d(head.in_channels, 7, head.kernel_size, head.stride, head.padding, bias=True)
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, replacement)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        setattr(model.get_submodule(parent) if parent else model, leaf, head)
        torch.testing.assert_close(model(x), before)
    # pickled whole (torch.save) and back, in this process
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    again = torch.load(buffer, weights_only=False)
    with torch.no_grad():
        torch.testing.assert_close(again(x), before)
    assert type(pickle.loads(pickle.dumps(model))) is type(model)


@pytest.mark.parametrize("name", ["resnet50", "resnet50d", "seresnet50", "resnext50_32x4d", "preact_resnet164_cifar",
                                  "resnet20_cifar"])
def test_script_blocks_sequential_and_sync_bn(name):
    net = small(name) if name in SPEC_NAMES else resdsl.load(name)
    model = resdsl.build(net, seed=0).eval()
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        # torchvision's feature-extractor idiom: the children in order, less the head
        children = list(model.children())
        stages = [s.path for s in net.root.children if s.role is resdsl.Role.STAGE]
        first = model.get_submodule(stages[0])
        assert isinstance(first[0], nn.Module) and first[0](torch.randn(1, *net.shape_of(
            net.root.children[[s.path for s in net.root.children].index(stages[0])].input))).dim() == 4
        trunk = nn.Sequential(*children[:[n for n, _ in model.named_children()].index(stages[-1]) + 1])
        assert trunk(x).shape[1:] == net.shape_of(net.root.children[[s.path for s in net.root.children]
                                                                   .index(stages[-1])].output)
    # torch before 2.2 makes the SyncBatchNorms in training mode; torchvision's modules get the same
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(model).eval()
    bns = [m for m in synced.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(isinstance(m, nn.SyncBatchNorm) for m in bns)
    with torch.no_grad():  # SyncBN runs as BN in eval mode without a process group
        torch.testing.assert_close(synced(x), expected)


def test_seed_none_draws_from_the_global_generator():
    net = resdsl.load("resnet18")
    torch.manual_seed(5)
    a = resdsl.build(net)
    torch.manual_seed(5)
    b = resdsl.build(net)
    torch.manual_seed(6)
    c = resdsl.build(net)
    assert torch.equal(a.conv1.weight, b.conv1.weight) and not torch.equal(a.conv1.weight, c.conv1.weight)
    assert torch.equal(resdsl.build(net, seed=3).conv1.weight, resdsl.build(net, seed=3).conv1.weight)


def test_seeded_builds_in_threads_are_the_sequential_ones():
    from concurrent.futures import ThreadPoolExecutor

    net = resdsl.load("resnet18")
    want = resdsl.build(net, seed=7).state_dict()
    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: resdsl.build(net, seed=7), range(4)))
    for model in models:
        assert all(torch.equal(v, want[k]) for k, v in model.state_dict().items())


def test_features_hold_only_what_they_need():
    net = resdsl.load("resnet50")
    model = resdsl.build(net, seed=0, out_indices=(1, 2))
    # timm's features_only=True, out_indices=(1, 2) for resnet50 has 1,444,928 parameters
    assert sum(p.numel() for p in model.parameters()) == 1_444_928
    assert model.feature_info.channels() == [256, 512] and model.feature_info.reduction() == [4, 8]
    assert model.feature_info.module_name() == ["layer1", "layer2"]
    # a training step uses every parameter (DDP's requirement)
    model.train()
    sum(f.sum() for f in model(torch.randn(2, 3, 64, 64))).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_build_takes_bare_names_and_refuses_bad_arguments():
    assert "resnet50" in resdsl.list_specs()
    assert type(resdsl.build("resnet18")).__name__ == "Resnet18"
    net = resdsl.load("resnet18")
    with pytest.raises(TypeError, match="seed"):
        resdsl.build(net, seed=1.5)
    with pytest.raises(ValueError, match="seed"):
        resdsl.build(net, seed=-1)
    with pytest.raises(ValueError, match="seed"):
        resdsl.build(net, seed=2**64)
    with pytest.raises(TypeError, match="out_indices"):
        resdsl.build(net, out_indices=3)
    with pytest.raises(TypeError, match="network"):
        resdsl.build(net, network="resnet18")


def test_python_dash_m_resdsl_is_the_command():
    result = subprocess.run([sys.executable, "-m", "resdsl", "check", "resnet18"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_source_of_the_classes_is_inspectable_and_fold_needs_only_the_model():
    import inspect

    model = resdsl.build("resnet18", seed=0).eval()
    assert inspect.getsource(type(model)).startswith("class Resnet18(nn.Module):")
    folded = resdsl.fold_batchnorms(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())


def test_ddp_trains_a_feature_extractor_for_several_steps(tmp_path):
    # DDP refuses a second step when a parameter got no gradient in the first (timm's
    # features_only prunes what the features do not need for that reason)
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = DistributedDataParallel(resdsl.build("resnet50", seed=0, out_indices=(1, 2)))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(3):
            loss = sum(f.mean() for f in model(torch.randn(2, 3, 64, 64)))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        dist.destroy_process_group()
