"""The `torch` target: generated PyTorch source against the in-process module and torch itself."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import resdsl  # noqa: E402
from conftest import ROOT, SPEC_NAMES, load_spec  # noqa: E402
from resdsl.backends.torch_model import build  # noqa: E402
from resdsl.backends.torch_source import Namespace, camel, emit  # noqa: E402
from resdsl.cli import main  # noqa: E402

#: Quick variants that still cover every block structure of the shipped specs (basic with
#: option A, pre-activation basic and bottleneck, ResNet-D, SE); every shipped spec as it
#: is runs in the slow suite.
QUICK = {"resnet20_cifar": "", "preact_resnet164_cifar": "depths = [2, 2, 2]",
         "wrn16_8_cifar": "image_size = 16", "resnet50d": "depths = [2, 1, 1, 1], image_size = 64",
         "seresnet50": "depths = [2, 1, 1, 1], image_size = 64"}
CASES = [*(pytest.param(n, id=f"{n}-quick") for n in QUICK),
         *(pytest.param(n, marks=pytest.mark.slow) for n in SPEC_NAMES)]


def import_source(text: str, folder: Path, name: str):
    """Import generated source as a module of its own (nothing of resdsl needed)."""
    path = folder / f"{name}.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location(f"generated_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def constructor(module, net: resdsl.Network):
    """The generated constructor function: named after the network."""
    return getattr(module, net.name)


def variant(spec: str, overrides: str) -> resdsl.Network:
    """A shipped spec with overrides, e.g. a smaller image size to keep tests fast."""
    text = (ROOT / "specs" / f"{spec}.res").read_text()
    return resdsl.loads(text + f"\nnetwork variant = {spec} with ({overrides})\n",
                        path=str(ROOT / "specs" / f"{spec}.res"))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("generated")
    cache = {}

    def get(net: resdsl.Network, key: str):
        if key not in cache:
            cache[key] = import_source(emit(net), folder, key)
        return cache[key]
    return get


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_generated_source_is_ruff_clean_and_standalone(name, tmp_path):
    text = emit(load_spec(name))
    tree = ast.parse(text)
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert imported == {"torch"}
    assert f"from {name}.res" in text.splitlines()[0] and resdsl.__version__ in text.splitlines()[0]
    if importlib.util.find_spec("ruff") is None:  # pinned in the `test` extra
        pytest.skip("ruff is not installed: pip install -e '.[test]' brings the pinned version")
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--config",
                           str(ROOT / "pyproject.toml"), str(path)], capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    fmt = subprocess.run([sys.executable, "-m", "ruff", "format", "--no-cache", "--check", "--config",
                          str(ROOT / "pyproject.toml"), str(path)], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_emit_is_deterministic():
    net = load_spec("seresnet50")
    assert emit(net) == emit(resdsl.load(ROOT / "specs" / "seresnet50.res"))


def test_one_class_per_block_structure():
    text = emit(load_spec("resnet50"))
    classes = [n.name for n in ast.parse(text).body if isinstance(n, ast.ClassDef)]
    # torchvision's Bottleneck, split by structure: with and without the projection shortcut
    assert classes == ["BottleneckDownsample", "Bottleneck", "Resnet50"]
    assert "def resnet50(seed: int | None = None) -> Resnet50:" in text
    assert "_t" not in text and "getattr" not in text


def randomize_batchnorms(model: torch.nn.Module) -> None:
    """BN statistics and affine terms away from their initial values, kept small so that
    even 1000-layer networks stay finite in eval mode."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.0, 0.3)
                m.bias.uniform_(-0.1, 0.1)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", CASES)
def test_same_state_dict_seeded_weights_and_outputs(name, generated, request):
    quick = "slow" not in request.node.keywords
    net = variant(name, QUICK[name]) if quick and QUICK[name] else load_spec(name)
    theirs = constructor(generated(net, f"{name}_{quick}"), net)(seed=0).eval()
    ours = build(net, seed=0).eval()
    a, b = theirs.state_dict(), ours.state_dict()
    assert list(a) == list(b)
    # same registration order and the same initialisation: identical seeded weights
    assert all(torch.equal(a[k], b[k]) for k in a)
    # and with other weights (BN statistics included), identical outputs
    randomize_batchnorms(ours)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        y = ours(x)
        assert torch.isfinite(y).all()
        assert torch.equal(theirs(x), y)


def test_seed_none_uses_global_rng_and_seed_default_comes_from_option(tmp_path):
    net = load_spec("resnet20_cifar")
    module = import_source(emit(net, seed=7), tmp_path, "seeded")
    a, b = module.resnet20_cifar(), build(net, seed=7)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    torch.manual_seed(1)
    c = module.resnet20_cifar(seed=None)
    torch.manual_seed(1)
    d = module.resnet20_cifar(seed=None)
    assert torch.equal(c.conv1.weight, d.conv1.weight)
    assert not torch.equal(a.conv1.weight, c.conv1.weight)


def test_stochastic_depth_and_zero_init_match_in_training(generated):
    net = variant("resnet20_cifar", "drop_path_rate = 0.3, zero_init_last = true")
    theirs = constructor(generated(net, "dp"), net)(seed=0).train()
    ours = build(net, seed=0).train()
    assert all(torch.equal(a, b) for a, b in zip(theirs.state_dict().values(), ours.state_dict().values()))
    assert not ours.get_submodule("layer1.0.bn2").weight.any()  # zero_init_last
    x = torch.randn(8, *net.input_shape)
    torch.manual_seed(5)
    y1 = theirs(x)
    torch.manual_seed(5)
    y2 = ours(x)
    assert torch.equal(y1, y2)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_toolbox_on_generated_source(generated):
    net = variant("resnet20_cifar", "drop_path_rate = 0.2")
    model = constructor(generated(net, "dp2"), net)(seed=0)
    x = torch.randn(4, *net.input_shape)
    model.eval()
    reference = model(x)
    scripted = torch.jit.script(model)
    assert torch.equal(scripted(x), reference)
    traced = torch.fx.symbolic_trace(model)
    assert torch.equal(traced(x), reference)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # fullgraph: no graph breaks
    assert torch.allclose(compiled(x), reference, atol=1e-6)
    model.train()
    traced = torch.fx.symbolic_trace(model)  # drop_path stays a call in training mode
    torch.manual_seed(0)
    a = traced(x)
    torch.manual_seed(0)
    assert torch.equal(a, model(x))


def test_cli_writes_the_torch_target(tmp_path, capsys):
    out = tmp_path / "model.py"
    assert main(["compile", str(ROOT / "specs" / "resnet20_cifar.res"), "--target", "torch",
                 "-o", str(out)]) == 0
    assert out.read_text() == emit(load_spec("resnet20_cifar"))
    # runs with only torch: as a script in a fresh interpreter, from an empty folder
    run = subprocess.run([sys.executable, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "torch.Size([1, 10])"


def test_namespace_refuses_keywords_and_non_identifiers():
    ns = Namespace(("out",))
    with pytest.raises(ValueError):
        ns.claim("class")
    with pytest.raises(ValueError):
        ns.claim("0")
    with pytest.raises(ValueError):
        ns.claim("out")
    assert ns.fresh("out") == "out_2"
    assert ns.fresh("0") == "m0"
    assert ns.fresh("class") == "class_"
    assert camel("preact_bottleneck") == "PreactBottleneck"
    assert camel("resnext50_32x4d") == "Resnext50_32x4d"


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_module_names_that_are_not_identifiers(tmp_path):
    # layers called `0` and `match` (a soft keyword) inside a block class: add_module /
    # getattr, same keys (hard keywords such as `class` are refused: E054)
    net = resdsl.loads("""
block odd(planes, stride = 1) {
    0: conv(planes, 3, stride = stride)
    match: batchnorm()
    relu: relu()
    add(input)
    relu
}
network tiny {
    input [8, 16, 16]
    stem: conv(8, 3)
    layer1: stage(odd, 2, planes = 8)
    avgpool: global_avgpool()
    flatten()
    fc: linear(4)
}
""")
    module = import_source(emit(net), tmp_path, "odd")
    theirs, ours = module.tiny(seed=0).eval(), build(net, seed=0).eval()
    assert list(theirs.state_dict()) == list(ours.state_dict())
    assert "layer1.0.match.weight" in theirs.state_dict()
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))
    torch.jit.script(theirs)


def test_inlined_definitions_read_their_callers_values(tmp_path):
    # an unnamed head is inlined: its `fc` reads the network's flatten, which is legal
    net = resdsl.loads("""
head classifier(n) {
    fc: linear(n)
}
network tiny {
    input [3, 8, 8]
    c: conv(4, 3)
    global_avgpool()
    flatten()
    classifier(10)
}
""")
    module = import_source(emit(net), tmp_path, "inlined")
    theirs, ours = module.tiny(seed=0).eval(), build(net, seed=0).eval()
    assert list(theirs.state_dict()) == list(ours.state_dict()) == ["c.weight", "fc.weight", "fc.bias"]
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(theirs(x), ours(x))
