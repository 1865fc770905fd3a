"""Issue 20 against timm and torchvision themselves: timm's model interface on every shipped
spec that timm has a model of (same shapes from forward_features, forward_head,
forward_intermediates and after reset_classifier, the same feature_info, the same optimizer
groups, gradients for every parameter), timm's data-config resolution and optimizer factory
taking a resdsl model, the zoo weights each spec records matching by name and shape, and
`create_model(pretrained=...)` through timm's and torchvision's own loaders pointed at local
files (never the network). Skipped, with the reason, without torchvision and timm (see
tests/test_torch_compat.py); CI's reference run requires them."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from test_torch_compat import _need, _randomize, timm, torchvision  # noqa: E402

import resdsl  # noqa: E402
from conftest import SPEC_NAMES  # noqa: E402

#: The shipped specs that timm has a model of, by the same name.
TIMM_NAMES = ["ecaresnet101d", "res2net50_14w_8s", "resnest50d", "resnet101", "resnet152", "resnet18", "resnet200",
              "resnet34", "resnet50", "resnet50_gn", "resnet50d", "resnetblur101d", "resnetrs101",
              "resnetv2_50x1_bit", "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d", "seresnet50",
              "seresnext26t_32x4d", "skresnet34", "wide_resnet101_2", "wide_resnet50_2",
              "cspresnet50", "dla34", "regnety_016", "repvgg_a0", "dpn68", "gcresnet50t", "nf_resnet50",
              "botnet26t_256", "resnetv2_50d_evos"]
QUICK = {"resnet18", "resnet50d", "resnetv2_50x1_bit", "res2net50_14w_8s", "skresnet34"}
#: Known gaps: none.
GAPS: dict[str, str] = {}
NAMES = [n if n in QUICK else pytest.param(n, marks=[pytest.mark.slow] + (
    [pytest.mark.xfail(strict=True, reason=GAPS[n])] if n in GAPS else [])) for n in TIMM_NAMES]


@pytest.fixture(autouse=True)
def _own_random_state():
    """Unseeded builds draw from torch's global generator: leave it as it was for the tests
    that follow."""
    with torch.random.fork_rng(devices=[]):
        yield


def _pair(name: str):
    """timm's model and ours with timm's (randomised) weights, in eval mode."""
    theirs = _need(timm, "timm").create_model(name, pretrained=False)
    _randomize(theirs)
    ours = resdsl.create_model(name, seed=0)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs.eval(), ours.eval()


def test_the_specs_timm_has_are_listed():
    have = {n for n in SPEC_NAMES if _need(timm, "timm").is_model(n)}
    assert have == set(TIMM_NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_timm_interface_as_timms_model(name):
    theirs, ours = _pair(name)
    # small inputs, but where timm's model is tied to its input size (BoTNet's position
    # tables), that size
    size = ours.pretrained_cfg["input_size"][1:] if theirs.pretrained_cfg.get("fixed_input_size") else (64, 64)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
        a, b = ours.forward_features(x), theirs.forward_features(x)
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        assert ours.forward_head(a, pre_logits=True).shape == theirs.forward_head(b, pre_logits=True).shape
        final, maps = ours.forward_intermediates(x)
        their_final, their_maps = theirs.forward_intermediates(x)
        assert final.shape == their_final.shape and [m.shape for m in maps] == [m.shape for m in their_maps]
        early = ours.forward_intermediates(x, indices=[1, 2], stop_early=True, intermediates_only=True)
        assert [m.shape for m in early] == [m.shape for m in theirs.forward_intermediates(
            x, indices=[1, 2], stop_early=True, intermediates_only=True)]
    assert [(f["num_chs"], f["reduction"]) for f in ours.feature_info] == \
        [(f["num_chs"], f["reduction"]) for f in theirs.feature_info]
    for attr in ("num_classes", "num_features", "head_hidden_size"):
        assert getattr(ours, attr) == getattr(theirs, attr), attr
    cfg, their_cfg = ours.pretrained_cfg, theirs.pretrained_cfg
    assert {"input_size", "pool_size", "crop_pct", "interpolation", "mean", "std", "first_conv",
            "classifier", "num_classes"} <= set(cfg)
    assert (cfg["first_conv"], cfg["classifier"]) == (their_cfg["first_conv"], their_cfg["classifier"])
    assert cfg.get("fixed_input_size", False) == their_cfg.get("fixed_input_size", False)
    assert ours.get_submodule(cfg["classifier"]) is ours.get_classifier()
    # timm's optimizer groups (layer-wise decay): every parameter in the same layer as timm's
    from timm.models import group_parameters
    for coarse in (False, True):
        assert group_parameters(ours, ours.group_matcher(coarse), reverse=True) == \
            group_parameters(theirs, theirs.group_matcher(coarse), reverse=True)
    # a new head, none, and no pooling: timm's shapes
    with torch.no_grad():
        for args in ((7,), (0,), (0, "")):
            ours.reset_classifier(*args)
            theirs.reset_classifier(*args)
            assert ours(x).shape == theirs(x).shape, args


@pytest.mark.parametrize("name", NAMES)
def test_prune_intermediate_layers_as_timms(name):
    """Pruned to the stem's map, to the first two stages' (the head goes with the stages after
    them), and to the last two maps with the final norm and the head: the same parameters are
    left as in timm's model, the same widths, and the same outputs and feature maps."""
    for indices, prune_norm, prune_head in (([0], False, False), ([1, 2], False, False), (2, True, True)):
        theirs, ours = _pair(name)
        size = ours.pretrained_cfg["input_size"][1:] if theirs.pretrained_cfg.get("fixed_input_size") else (64, 64)
        x = torch.randn(2, 3, *size)
        args = (indices, prune_norm, prune_head)
        assert ours.prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head) == \
            theirs.prune_intermediate_layers(indices, prune_norm=prune_norm, prune_head=prune_head), args
        assert {k for k, _ in ours.named_parameters()} == {k for k, _ in theirs.named_parameters()}, args
        for attr in ("num_classes", "num_features", "head_hidden_size"):
            assert getattr(ours, attr) == getattr(theirs, attr), (attr, args)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4, msg=str(args))
            for a, b in zip(ours.forward_intermediates(x, indices, intermediates_only=True),
                            theirs.forward_intermediates(x, indices, intermediates_only=True), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=str(args))


@pytest.mark.parametrize("name", ["resnet50d", "resnetv2_50x1_bit",
                                  pytest.param("res2net50_14w_8s", marks=pytest.mark.slow)])
def test_gradients_checkpointing_script_and_fx_as_timm(name):
    theirs, ours = _pair(name)
    x = torch.randn(2, 3, 64, 64)
    for model in (ours, theirs):
        model.train()
        model.zero_grad()
        model(x).square().mean().backward()
    their_grads = dict(theirs.named_parameters())
    for key, p in ours.named_parameters():
        assert p.grad is not None, key
        torch.testing.assert_close(p.grad, their_grads[key].grad, rtol=1e-3, atol=1e-5, msg=key)
    ours.set_grad_checkpointing()
    grads = {k: p.grad.clone() for k, p in ours.named_parameters()}
    ours.zero_grad()
    ours(x).square().mean().backward()
    for key, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, grads[key], rtol=1e-4, atol=1e-6, msg=key)
    ours.set_grad_checkpointing(False)
    ours.eval()  # (its BN statistics moved on with the extra training steps: compared with itself)
    with torch.no_grad():
        want = ours(x)
        torch.testing.assert_close(torch.jit.script(ours)(x), want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(torch.fx.symbolic_trace(ours)(x), want, rtol=1e-4, atol=1e-4)


def test_timm_data_config_and_optimizer_factory_take_a_resdsl_model(tmp_path):
    _need(timm, "timm")
    from timm.data import resolve_data_config
    from timm.optim import create_optimizer_v2

    reference = timm.create_model("resnet50d.ra2_in1k", pretrained=False)
    path = tmp_path / "resnet50d.pth"
    torch.save(reference.state_dict(), path)
    model = resdsl.create_model("resnet50d", pretrained="timm:resnet50d.ra2_in1k",
                                pretrained_cfg_overlay={"file": str(path)})
    assert resolve_data_config({}, model=model) == resolve_data_config({}, model=reference)
    assert resolve_data_config({}, model=resdsl.create_model("resnet20_cifar"))["input_size"] == (3, 32, 32)
    opt = create_optimizer_v2(model, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    want = create_optimizer_v2(reference, "adamw", lr=1e-3, weight_decay=0.05, layer_decay=0.75)
    # the same groups: scales and decay per parameter, matched by name
    names = {id(p): n for n, p in model.named_parameters()}
    their_names = {id(p): n for n, p in reference.named_parameters()}

    def groups(optimizer, by_id):
        return {by_id[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in optimizer.param_groups for p in g["params"]}

    assert groups(opt, names) == groups(want, their_names)


def test_zoo_weights_through_timms_and_torchvisions_loaders(tmp_path, monkeypatch):
    _need(timm, "timm")
    _need(torchvision, "torchvision")
    # timm: its loader, pointed at a local file
    reference = timm.create_model("resnet50d.ra2_in1k", pretrained=False)
    _randomize(reference)
    path = tmp_path / "resnet50d.pth"
    torch.save(reference.state_dict(), path)
    model = resdsl.create_model("resnet50d", pretrained="timm:resnet50d.ra2_in1k",
                                pretrained_cfg_overlay={"file": str(path)}).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.eval()(x), rtol=1e-4, atol=1e-4)
    assert model.transplant_report.placed == len(reference.state_dict())
    assert model.pretrained_cfg["interpolation"] == reference.pretrained_cfg["interpolation"]
    changed = resdsl.create_model("resnet50d", pretrained="timm:resnet50d.ra2_in1k", num_classes=10, in_chans=1,
                                  pretrained_cfg_overlay={"file": str(path)})
    assert [e.key for e in changed.transplant_report.adapted] == ["conv1.0.weight"]
    assert changed(torch.randn(1, 1, 64, 64)).shape == (1, 10)
    with pytest.raises(resdsl.ModelError, match="timm has no model"):
        resdsl.create_model("resnet50d", pretrained="timm:no_such_model.tag")
    # torchvision: its loader and torch.hub's cache, holding a state_dict file
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    weights = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    tv = torchvision.models.resnet50()
    _randomize(tv)
    torch.save(tv.state_dict(), cache / weights.url.rsplit("/", 1)[-1])
    model = resdsl.create_model("resnet50", pretrained="torchvision:ResNet50_Weights.IMAGENET1K_V2").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), tv.eval()(x), rtol=1e-4, atol=1e-4)
    assert model.pretrained_cfg["crop_pct"] == round(224 / 232, 4)
    with pytest.raises(resdsl.ModelError, match="torchvision has no weights"):
        resdsl.create_model("resnet50", pretrained="torchvision:ResNet50_Weights.NOPE")


def test_every_recorded_zoo_tag_fits_by_name_and_shape():
    _need(timm, "timm")
    _need(torchvision, "torchvision")
    for name in resdsl.list_models(pretrained=True):
        with torch.device("meta"):
            ours = {k: tuple(v.shape) for k, v in resdsl.build(name).state_dict().items()}
        for ref in resdsl.pretrained_tags(name):
            package, _, weights = ref.partition(":")
            if package == "timm":
                assert weights in timm.list_pretrained(weights), ref
                with torch.device("meta"):
                    theirs = timm.create_model(weights, pretrained=False).state_dict()
            else:
                enum = torchvision.models.get_weight(weights)
                assert name in torchvision.models.list_models() and \
                    enum in list(torchvision.models.get_model_weights(name)), ref
                with torch.device("meta"):
                    theirs = torchvision.models.get_model(name).state_dict()
                assert len(enum.meta["categories"]) == ours["fc.weight"][0]
            assert ours == {k: tuple(v.shape) for k, v in theirs.items()}, ref


@pytest.mark.parametrize("name", ["resnet50d", "resnetv2_50x1_bit"])
def test_timms_feature_getter_takes_a_resdsl_model(name):
    _need(timm, "timm")
    from timm.models._features import FeatureGetterNet

    theirs = timm.create_model(name, features_only=True, out_indices=(1, 2, 3), feature_cls="getter").eval()
    ours = FeatureGetterNet(resdsl.create_model(name, seed=0), out_indices=(1, 2, 3)).eval()
    assert ours.feature_info.get_dicts(keys=("num_chs", "reduction")) == \
        theirs.feature_info.get_dicts(keys=("num_chs", "reduction"))
    # pruned as timm prunes its own: the same parameters are left
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert [f.shape for f in ours(x)] == [f.shape for f in theirs(x)]
