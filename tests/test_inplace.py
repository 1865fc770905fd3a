"""In-place activations and residual adds: where the IR's dataflow allows them, and
training that is unchanged by them.

:func:`resdsl.passes.inplace_ops` decides; the in-process module and the generated source
both read that decision. The proof is a training step — forward, loss, backward, an SGD
step with momentum, a second forward — whose outputs, gradients, updated weights and
running statistics equal those of the same network built out of place, for every shipped
spec (at two narrow blocks per stage and a small input by default; at full size with ``-m slow``).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_torch_source import import_source  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPEC_NAMES, SPECS, load_spec  # noqa: E402
from resdsl.backends.torch_model import build, values  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402
from resdsl.passes import inplace_ops  # noqa: E402
from resdsl.primitives import PRIMITIVES  # noqa: E402


def reduced(name: str, blocks: int = 2) -> resdsl.Network:
    """The shipped spec with ``blocks`` blocks per stage (a projection block and an
    identity-shortcut one: every kind of block the full network has) and narrow stages
    (32, 32, 64, 64 channels; grouped, split and squeezed widths still divide), so the
    default suite stays quick; every op and every wire of the full network is there."""
    path = SPECS / f"{name}.res"
    full = load_spec(name)
    stages = sum(1 for s in full.root.walk() if s.role is resdsl.Role.STAGE)
    depths = ", ".join([str(blocks)] * stages)
    widths = ", ".join(str(w) for w in [32, 32, 64, 64, 64][:stages])
    overrides = OWN_REDUCTION.get(name, f"depths = [{depths}], widths = [{widths}]")
    return resdsl.loads(path.read_text(encoding="utf-8") + f"\nnetwork small = {name} with ({overrides})\n",
                        path=str(path), network="small")


#: Templates without `depths` and `widths`: RegNet works its stages out itself (its first four
#: blocks: stages of 48 and 128 channels, each with a projecting and an identity block); DLA
#: keeps its trees (every wire) on narrower levels; DPN two blocks in its first stage, one in
#: the others (each kind of dual-path block: projecting, normal, downsampling). BoTNet's
#: self-attention is sized by its input (timm's fixed input size): the small input is declared.
OWN_REDUCTION = {"regnety_016": "depth = 4", "dla34": "channels = [16, 16, 32, 32, 64, 64]",
                 "dpn68": "k_sec = [2, 1, 1, 1]",
                 "botnet26t_256": "depths = [2, 2, 2, 2], widths = [32, 32, 64, 64], image_size = 32"}


def training_step(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Everything one SGD step touches, by name: output, loss, gradients, the updated
    weights and buffers, and the output after the step."""
    model.train()
    params = list(model.parameters())
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9) if params else None
    x = x.clone().requires_grad_()  # the input's gradient too
    torch.manual_seed(7)  # dropout and drop-path draw the same masks in both models
    out = model(x)
    loss = out.square().mean() + out.mean()
    loss.backward()
    found = {"output": out.detach().clone(), "loss": loss.detach().clone(), "grad:input": x.grad.clone()}
    found |= {f"grad:{n}": p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    if opt is not None:
        opt.step()
    found |= {f"state:{n}": v.clone() for n, v in model.state_dict().items()}
    torch.manual_seed(8)
    with torch.no_grad():
        found["output after the step"] = model(x).clone()
    return found


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        # the same kernels on the same values: equal, not merely close
        assert torch.equal(got[key], value), key


def sample(net: resdsl.Network) -> torch.Tensor:
    channels, height, width = net.input_shape
    size = min(height, width, 32)  # the last stage sees 1×1: quick, and still every op
    return torch.randn(2, channels, size, size, generator=torch.Generator().manual_seed(0))


def check_spec(net: resdsl.Network, tmp_path, with_source: bool = True) -> None:
    x = sample(net)
    plain = training_step(build(net, seed=0, inplace=False), x)
    model = build(net, seed=0)
    assert_same(training_step(model, x), plain)
    if with_source:
        generated = getattr(import_source(emit(net, seed=0), tmp_path, net.name), net.name)(seed=0)
        assert_same(training_step(generated, x), plain)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_training_step_in_place_equals_out_of_place(name, tmp_path):
    net = reduced(name)
    assert inplace_ops(net), "every shipped spec has a ReLU or an add that may run in place"
    check_spec(net, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", SPEC_NAMES)
def test_training_step_in_place_equals_out_of_place_full_depth(name, tmp_path):
    check_spec(load_spec(name), tmp_path)


# ---------------------------------------------------------------- what the pass decides


def test_resnet50_runs_every_relu_and_add_in_place_as_torchvision():
    net = load_spec("resnet50")
    chosen = inplace_ops(net)
    relus_and_adds = {op.name for op in net.ops if PRIMITIVES[op.kind].inplace}
    assert chosen == relus_and_adds
    assert len(chosen) == 1 + 16 * 4  # the stem's ReLU; three ReLUs and the add per block
    source = emit(net)
    assert "nn.ReLU()" not in source and source.count("nn.ReLU(inplace=True)") == 3  # two block classes, the stem
    assert "out += x" in source and "out += shortcut" in source


def test_values_read_elsewhere_stay_out_of_place():
    net = resdsl.loads("""network t {
    input [4, 8, 8]
    a: conv(4, 3)
    b: relu()
    c: conv(4, 1)
    d: add(b, c)
    e: relu()
    f: relu() from input
    g: sigmoid() from c
    h: relu()
    s: batchnorm() from g
    m: multiply(s, h)
    n: relu() from s
    add(m, n)
}""")
    chosen = inplace_ops(net)
    assert "b" in chosen  # a conv's output, read once
    assert "d" not in chosen  # b is also read by c
    assert "e" in chosen  # an add's output
    assert "f" not in chosen  # the network input is the caller's
    assert "h" not in chosen  # a sigmoid's backward reads its output
    assert "n" not in chosen  # s is also read by the multiply
    # the final add overwrites the multiply's output, which nothing else reads
    assert net.output in chosen


def test_feature_outputs_are_never_overwritten():
    net = reduced("resnet50", 1)
    model = build(net, seed=0, out_indices=(0, 1, 2, 3, 4)).eval()
    plain = build(net, seed=0, out_indices=(0, 1, 2, 3, 4), inplace=False).eval()
    x = sample(net)
    with torch.no_grad():
        for a, b in zip(model(x), plain(x), strict=True):
            assert torch.equal(a, b)


def test_a_block_never_overwrites_its_input():
    # NF-ResNet's first block starts `act1` on the stem's output: in place it overwrote the
    # tensor the block was given, which a checkpointed block saves for its recomputation
    net = resdsl.loads("""block pre_act(out) {
    act1: relu()
    conv1: conv(out, 3)
    act2: relu()
}
network t {
    input [4, 8, 8]
    stem: conv(4, 3)
    layer1: stage(pre_act(4), 2)
}""")
    chosen = inplace_ops(net)
    assert "layer1.0.act1" not in chosen and "layer1.1.act1" not in chosen
    assert "layer1.0.act2" in chosen  # made inside its own block
    model = build(net, seed=0)
    model.set_grad_checkpointing()
    model.train()
    model(sample(net)).square().mean().backward()  # raised: "modified by an inplace operation"


def test_a_module_applied_twice_runs_in_place_only_if_both_applications_may():
    net = resdsl.loads("""network t {
    input [4, 8, 8]
    a: conv(4, 3)
    r: relu()
    b: conv(4, 3)
    c: add(b, a)
    r
}""")
    # the first application's input (a) is read again by the add: neither runs in place
    assert not {"r", "r#2"} & inplace_ops(net)
    assert "c" in inplace_ops(net)


def test_values_are_those_of_the_out_of_place_network():
    net = reduced("seresnet50", 1)
    model, plain = build(net, seed=0).eval(), build(net, seed=0, inplace=False).eval()
    x = sample(net)
    with torch.no_grad():
        got, want = values(model, x), values(plain, x)
    for name, value in want.items():
        assert torch.equal(got[name], value), name
