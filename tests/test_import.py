"""``resdsl.from_torch`` and ``resdsl import`` with torch alone (issue 23).

A shipped spec's generated module imports back to a spec that builds the same network (the
standard library's call where the spec is one); a lab's own ``nn.Module`` imports to one
definition per distinct block structure, with its names; what cannot be mapped is a clear
error naming the module path and class, never a traceback and never a file. torchvision's
and timm's models are in ``tests/test_import_compat.py`` (reference environment).
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

import resdsl  # noqa: E402
from resdsl.cli import main  # noqa: E402
from resdsl.importer import ImportFailure  # noqa: E402
from resdsl.resources import shipped_spec  # noqa: E402

SIZE = (3, 32, 32)


def _same_network(a: resdsl.Network, b: resdsl.Network) -> None:
    assert a.params == b.params and a.macs == b.macs and a.output_shape == b.output_shape
    assert {k: op.kind for k, op in a.modules().items() if op.params} == {
        k: op.kind for k, op in b.modules().items() if op.params
    }


def _statement(text: str) -> str:
    """The network statement of a spec, on one line, without what only sets the initial
    weights (zero_init_last) or the declared input size."""
    body = " ".join(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("#", "import"))
    )
    return body.replace(", zero_init_last = true", "").replace(", image_size = 32", "")


@pytest.mark.parametrize("name", ["resnet18", "resnet20_cifar", "wrn16_8_cifar", "skresnet34"])
def test_shipped_spec_generated_module_imports_back(name):
    # the shipped spec's generated module (resdsl.build) imports to the shipped spec's own call
    model = resdsl.build(name, seed=0)
    text = resdsl.from_torch(model, SIZE)
    shipped = shipped_spec(name).read_text(encoding="utf-8")
    assert _statement(text) == _statement(shipped)
    again = resdsl.loads(text)
    original = resdsl.loads(
        shipped + f"\nnetwork small = {resdsl.load(name).name} with (image_size = 32)",
        path=str(shipped_spec(name)),
    )
    _same_network(again, original)
    built = resdsl.build(again, seed=1).eval()
    built.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(built(x), model.eval()(x), rtol=1e-4, atol=1e-4)


class Unit(nn.Module):
    """A lab's block: conv-norm-act twice, a squeeze-excite gate written with torch calls,
    a projection where the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm_a = nn.BatchNorm2d(c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm_b = nn.BatchNorm2d(c_out, eps=1e-3)
        self.gate = nn.Conv2d(c_out, c_out, 1)
        self.proj = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x):
        y = torch.relu(self.norm_a(self.conv_a(x)))
        y = self.norm_b(self.conv_b(y))
        y = y * torch.sigmoid(self.gate(y.mean((2, 3), keepdim=True)))
        return torch.relu(y + (x if self.proj is None else self.proj(x)))


class LabNet(nn.Module):
    def __init__(self, depths=(2, 3), widths=(16, 32), classes: int = 7) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.SiLU()
        )
        blocks, c = [], widths[0]
        for i, (d, w) in enumerate(zip(depths, widths)):
            stage = [Unit(c, w, 1 if i == 0 else 2)] + [Unit(w, w, 1) for _ in range(d - 1)]
            blocks.append(nn.Sequential(*stage))
            c = w
        self.stages = nn.Sequential(*blocks)
        self.head = nn.Linear(c, classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_a_lab_module_imports_to_definitions_with_its_names():
    torch.manual_seed(0)
    model = LabNet()
    text = resdsl.from_torch(model, SIZE, name="labnet")
    net = resdsl.loads(text)
    assert net.name == "labnet" and net.params == sum(p.numel() for p in model.parameters())
    assert "block unit(" in text and "for i in range(1, " in text
    built = resdsl.build(net).eval()
    assert set(built.state_dict()) == set(model.state_dict())
    built.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(built(x), model.eval()(x), rtol=1e-4, atol=1e-5)
    # deeper stages share the definitions: the spec does not grow with depth
    deeper = resdsl.from_torch(LabNet(depths=(4, 6)), SIZE, name="labnet")
    assert len(deeper.splitlines()) == len(text.splitlines())
    # the same model gives the same spec, byte for byte
    assert resdsl.from_torch(model, SIZE, name="labnet") == text


class Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.rnn = nn.Sequential(nn.Conv2d(8, 8, 1), nn.PixelShuffle(2))

    def forward(self, x):
        return self.rnn(self.conv(x))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Conv2d(3, 8, 3), Switch())

    def forward(self, x):
        return self.inner(x)


class Switch(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


def test_a_module_without_primitive_is_a_clear_error():
    with pytest.raises(ImportFailure) as err:
        resdsl.from_torch(Odd(), SIZE)
    assert err.value.code == "E070"
    assert "`rnn.1`" in err.value.message and "PixelShuffle" in err.value.message
    assert "register_primitive" in err.value.hint


def test_data_dependent_control_flow_is_a_clear_error():
    with pytest.raises(ImportFailure) as err:
        resdsl.from_torch(Branchy(), SIZE)
    assert err.value.code == "E071"
    assert "`inner.1`" in err.value.message and "Switch" in err.value.message


class SharedInside(nn.Module):
    def __init__(self, shared):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.shared = shared

    def forward(self, x):
        return self.shared(self.conv(x))


class TwoPlaces(nn.Module):
    """`act` runs at the top and again inside `block`: no one place for it in a spec."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU())
        self.block = SharedInside(self.act)

    def forward(self, x):
        return self.block(self.act(self.stem(x)))


def test_a_module_run_from_two_places_is_a_clear_error():
    with pytest.raises(ImportFailure) as err:
        resdsl.from_torch(TwoPlaces(), SIZE)
    assert err.value.code == "E073"
    assert err.value.message == "the module `act` runs in two places" and "two parents" in err.value.hint


def test_cli_import_writes_only_a_checked_spec(tmp_path, capsys, monkeypatch):
    import sys
    import types

    lab = types.ModuleType("lab_models_for_import")
    lab.labnet, lab.odd = LabNet, Odd
    monkeypatch.setitem(sys.modules, "lab_models_for_import", lab)
    out = tmp_path / "lab.res"
    assert (
        main(
            [
                "import",
                "lab_models_for_import:labnet",
                "-o",
                str(out),
                "--input-size",
                "3,32,32",
                "--kwargs",
                '{"classes": 5}',
            ]
        )
        == 0
    )
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Imported from lab_models_for_import:labnet (torch ")
    assert resdsl.loads(text).output_shape == (5,)
    bad = tmp_path / "odd.res"
    assert main(["import", "lab_models_for_import:odd", "-o", str(bad), "--input-size", "3,32,32"]) == 1
    err = capsys.readouterr().err
    assert "error[E070]" in err and "PixelShuffle" in err and "Traceback" not in err
    assert not bad.exists() and list(tmp_path.iterdir()) == [out]
    assert main(["import", "lab_models_for_import:missing", "-o", str(bad)]) == 1
    assert "error[E074]" in capsys.readouterr().err
    assert main(["import", "lab_models_for_import:labnet", "--input-size", "3,32"]) == 2


def test_a_recogniser_that_is_wrong_is_caught_before_anything_is_written(monkeypatch):
    # a batch norm recognised with another eps builds something else: the check says where
    from resdsl.importer.recognisers import RECOGNISERS

    bn = RECOGNISERS.require("batchnorm")
    wrong = lambda call: {**bn(call), "eps": 0.5} if bn(call) is not None else None  # noqa: E731
    monkeypatch.setitem(RECOGNISERS._entries, "batchnorm", (wrong, "builtin"))
    with pytest.raises(ImportFailure) as err:
        resdsl.from_torch(LabNet(), SIZE)
    assert err.value.code == "E072"
    assert "the first difference is at `stem.1`" in err.value.message


@pytest.mark.slow
@pytest.mark.parametrize("name", resdsl.list_specs())
def test_every_shipped_spec_imports_back_to_the_same_network(name):
    # built at the small size itself: a network whose tables follow its input size (BoTNet's
    # position embeddings) does not run at another
    original = resdsl.loads(
        shipped_spec(name).read_text(encoding="utf-8")
        + f"\nnetwork small = {resdsl.load(name).name} with (image_size = 32)",
        path=str(shipped_spec(name)),
    )
    model = resdsl.build(original, seed=0)
    again = resdsl.loads(resdsl.from_torch(model, SIZE))
    _same_network(again, original)


class Clipped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.clip = nn.Hardtanh(-0.5, 2.0)

    def forward(self, x):
        return self.clip(self.conv(x))


def test_a_plugin_primitive_declares_its_own_recogniser():
    # the example plugin's `hardtanh`, given a recogniser: a model that uses nn.Hardtanh imports
    import sys

    from conftest import ROOT
    from resdsl.importer.recognisers import register_recogniser
    from resdsl.primitives import PRIMITIVES

    with pytest.raises(ImportFailure) as err:
        resdsl.from_torch(Clipped(), SIZE)
    assert "`clip`" in err.value.message and "Hardtanh" in err.value.message

    def recognise(call):
        m = call.module
        return {"min_val": m.min_val, "max_val": m.max_val} if type(m) is nn.Hardtanh else None

    sys.path.insert(0, str(ROOT / "examples" / "plugin"))
    try:
        import resdsl_scale

        (hardtanh,) = [p for p in resdsl_scale.primitives() if p.kind == "hardtanh"]
        resdsl.register_primitive(hardtanh)
        register_recogniser("hardtanh", recognise)
        text = resdsl.from_torch(Clipped(), SIZE, name="clipped")
        assert "clip: hardtanh(min_val = -0.5, max_val = 2.0)" in text
    finally:
        if "hardtanh" in PRIMITIVES._prims:
            PRIMITIVES.remove("hardtanh")
        sys.path.remove(str(ROOT / "examples" / "plugin"))
        sys.modules.pop("resdsl_scale", None)


# ---------------------------------------------------------------- issue 22's tensor ops
# Small modules written as timm writes its attention and normalizer-free layers: each imports,
# and from_torch has checked strict loading and equal outputs; the spec is checked again here.


def _imports(model: nn.Module, size=(8, 8, 8)) -> str:
    text = resdsl.from_torch(model, size, name="m")
    built = resdsl.build(resdsl.loads(text), seed=1).eval()
    built.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, *size)
    with torch.no_grad():
        torch.testing.assert_close(built(x), model.eval()(x), rtol=1e-4, atol=1e-5)
    return text


class Context(nn.Module):  # timm's GlobalContext: reshape, softmax over positions, matmul
    def __init__(self) -> None:
        super().__init__()
        self.conv_attn = nn.Conv2d(8, 1, 1)
        self.fc = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        attn = self.conv_attn(x).reshape(b, 1, h * w)
        attn = torch.nn.functional.softmax(attn, dim=-1).unsqueeze(3)
        context = (x.reshape(b, c, h * w).unsqueeze(1) @ attn).view(b, c, 1, 1)
        return x * self.fc(context).sigmoid()


class Learned(nn.Module):  # a parameter read in forward, permute and transpose, a mean over an axis
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.randn(8, 1, 1))

    def forward(self, x):
        y = (x * self.scale).permute(0, 2, 3, 1).transpose(1, 2)
        return y.mean(dim=-1, keepdim=True) - y.var(-1, unbiased=False, keepdim=True).add(1e-5).rsqrt()


class ScaledStd(nn.Module):  # timm's ScaledStdConv2d: F.batch_norm of the weight, F.conv2d with it
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 8, 3, 3))
        self.bias = nn.Parameter(torch.randn(4))
        self.gain = nn.Parameter(torch.rand(4, 1, 1, 1) + 0.5)

    def forward(self, x):
        w = torch.nn.functional.batch_norm(
            self.weight.reshape(1, 4, -1),
            None,
            None,
            weight=(self.gain * 0.5).view(-1),
            training=True,
            momentum=0.0,
            eps=1e-6,
        ).reshape_as(self.weight)
        return torch.nn.functional.conv2d(x, w, self.bias, 2, 1)


class GroupNormStd(nn.Module):  # resdsl's own scaled_std_conv: F.group_norm of the weight, of the map
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 8, 3, 3))

    def forward(self, x):
        w = torch.nn.functional.group_norm(self.weight, 1, eps=1e-6)
        return torch.nn.functional.group_norm(torch.nn.functional.conv2d(x, w, padding=1), 1)


class GroupStd(nn.Module):  # EvoNorm's group_std: a grouped reshape, var, expand back
    def forward(self, x):
        b, c, h, w = x.shape
        g = x.reshape(b, 2, c // 2, h, w)
        std = g.float().var(dim=(2, 3, 4), unbiased=False, keepdim=True).add(1e-5).sqrt()
        return x / std.expand(g.shape).reshape(b, c, h, w)


class RelLogits(nn.Module):  # BoTNet's rel_logits_1d: the batch merged with an axis, pad_axis, slices
    def __init__(self) -> None:
        super().__init__()
        self.rel = nn.Parameter(torch.randn(15, 8))

    def forward(self, x):
        b, c, h, w = x.shape
        q = x.permute(0, 2, 3, 1)  # b, h, w, c
        y = (q @ self.rel.transpose(-1, -2)).reshape(-1, w, 2 * w - 1)
        y = torch.nn.functional.pad(y, [0, 1]).flatten(1)
        y = torch.nn.functional.pad(y, [0, w - 1]).reshape(-1, w + 1, 2 * w - 1)
        return y[:, :w, w - 1 :].reshape(b, h, w, w)


@pytest.mark.parametrize(
    "module, kinds",
    [
        (Context, ("reshape(", "softmax(", "matmul(")),
        (Learned, ("scale: param([8, 1, 1])", "permute(", "transpose(", "mean([", "var([", "rsqrt()")),
        (
            ScaledStd,
            (
                "weight: param([4, 8, 3, 3])",
                "gain: param(",
                "var([0, 2], keepdim = true, correction = 0)",
                "conv_with(",
            ),
        ),
        # a parameter has no batch axis: group_norm's first dim is its output channels
        (GroupNormStd, ("standardize([1, 2, 3], eps = 1e-06) from weight", "standardize([0, 1, 2])")),
        (GroupStd, ("groups = 2", "sqrt()", "divide(")),
        (RelLogits, ("pad_axis(", "slice(", "rel: param([15, 8])")),
    ],
)
def test_tensor_ops_import(module, kinds):
    text = _imports(module().eval())
    for kind in kinds:
        assert kind in text, text


def test_an_op_no_primitive_computes_names_the_function_and_module():
    class Cumulative(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    model = nn.Sequential(nn.Conv2d(3, 8, 1), Cumulative())
    with pytest.raises(ImportFailure) as err:
        resdsl.from_torch(model, SIZE)
    assert err.value.code == "E070"
    assert "`torch.cumsum`" in err.value.message and "`1`" in err.value.message


class Powers(nn.Module):  # x.square(), x ** 0.5, torch.pow(x, -0.5), x.pow(-1): products and roots
    def forward(self, x):
        y = x.square().mean(dim=(2, 3), keepdim=True) + 1.0
        return x * y**0.5 + torch.pow(y, -0.5) - (y + 1.0).pow(-1)


def test_powers_import():
    text = _imports(Powers().eval())
    for kind in ("multiply(current, current)", "sqrt()", "rsqrt()", "reciprocal()"):
        assert kind in text, text


class Slopes(nn.Module):  # the functions of LeakyReLU and ELU, with their slopes
    def forward(self, x):
        return torch.nn.functional.leaky_relu(x, 0.2) + torch.nn.functional.elu(x, alpha=0.5)


def test_activation_functions_with_slopes_import():
    text = _imports(Slopes().eval())
    assert "leaky_relu(negative_slope = 0.2)" in text and "elu(alpha = 0.5)" in text, text
