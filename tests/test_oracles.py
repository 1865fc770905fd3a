"""Every shipped spec against published figures.

Sources: torchvision's model documentation (parameters and GFLOPS, i.e. conv + linear
multiply-accumulates at 224×224); He et al. 2015 (Table 1 FLOPs; CIFAR-10 table);
He et al. 2016 (pre-activation); Zagoruyko & Komodakis 2016 (Wide ResNet); timm.
"""

from __future__ import annotations

import pytest

import resdsl
from conftest import SPEC_NAMES, load_spec

# torchvision: exact parameter counts and GFLOPS as documented.
TORCHVISION = {
    "resnet18": (11_689_512, 1.814), "resnet34": (21_797_672, 3.664),
    "resnet50": (25_557_032, 4.089), "resnet101": (44_549_160, 7.801),
    "resnet152": (60_192_808, 11.514), "resnext50_32x4d": (25_028_904, 4.23),
    "resnext101_32x8d": (88_791_336, 16.414), "resnext101_64x4d": (83_455_272, 15.46),
    "wide_resnet50_2": (68_883_240, 11.398), "wide_resnet101_2": (126_886_696, 22.753),
}

# timm: exact parameter counts of its models of these names. The modern family members
# (issue 10) were read from timm 1.0.31 as
# sum(p.numel() for p in timm.create_model(name, pretrained=False).parameters()).
TIMM = {"resnet200": 64_673_832, "resnet50d": 25_576_264, "seresnet50": 28_088_024,
        "seresnext26t_32x4d": 16_806_976, "resnetrs101": 63_618_696, "resnet50_gn": 25_557_032,
        "ecaresnet101d": 44_568_563, "resnetblur101d": 44_568_392, "resnetv2_50x1_bit": 25_549_352,
        "skresnet34": 22_282_376, "res2net50_14w_8s": 25_059_816, "resnest50d": 27_483_240,
        # the families of issue 22 (std.regnet, std.cspnet, std.repvgg, std.dla, std.dpn), timm 1.0.31 likewise
        "regnety_016": 11_202_430, "cspresnet50": 21_616_168, "repvgg_a0": 9_108_968, "dla34": 15_742_104,
        "dpn68": 12_611_602,
        # attention written with the tensor ops (issue 22: std.byobnet), timm 1.0.31 likewise
        "gcresnet50t": 25_897_080, "botnet26t_256": 12_488_672,
        # normalizer-free (issue 22: std.nfnet, param and conv_with), timm 1.0.31 likewise
        "nf_resnet50": 25_557_032,
        # EvoNorm-S0 written in .res (issue 22: std.resnetv2's evonorm_s0), timm 1.0.31 likewise
        "resnetv2_50d_evos": 25_591_368}

# He et al. 2015, Table 1: FLOPs (multiply-adds) ×10⁹ of the stride-on-1×1 originals,
# printed to one decimal.
HE2015_FLOPS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50_v1": 3.8, "resnet101_v1": 7.6,
                "resnet152_v1": 11.3}

# Rounded paper figures (millions of parameters): He et al. 2015 (CIFAR-10, option A),
# Zagoruyko & Komodakis 2016, He et al. 2016 (which counts conv and fc weights only).
PAPER_PARAMS_M = {
    "resnet20_cifar": 0.27, "resnet32_cifar": 0.46, "resnet44_cifar": 0.66,
    "resnet56_cifar": 0.85, "resnet110_cifar": 1.7, "resnet1202_cifar": 19.4,
    "wrn40_4_cifar": 8.9, "wrn16_8_cifar": 11.0, "wrn28_10_cifar": 36.5,
    "preact_resnet164_cifar": 1.7, "preact_resnet1001_cifar": 10.2,
}


def test_every_spec_has_an_oracle():
    covered = {*TORCHVISION, *TIMM, *HE2015_FLOPS, *PAPER_PARAMS_M, "preact_resnet200"}
    assert set(SPEC_NAMES) <= covered, set(SPEC_NAMES) - covered


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_params_and_gflops(name):
    net = load_spec(name)
    params, gflops = TORCHVISION[name]
    assert net.params == params
    # torchvision prints GFLOPS with up to three decimals
    assert round(net.macs / 1e9, 3) == pytest.approx(gflops, abs=0.0011)


@pytest.mark.parametrize("name", sorted(TIMM))
def test_timm_params(name):
    assert load_spec(name).params == TIMM[name]


@pytest.mark.parametrize("name", sorted(HE2015_FLOPS))
def test_he2015_table1_flops(name):
    # The table prints one decimal; the paper's own rounding is loose (1.81 → 1.8,
    # 3.66 → 3.6), so allow one unit of the last printed digit.
    assert abs(load_spec(name).macs / 1e9 - HE2015_FLOPS[name]) < 0.1


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_paper_params_within_two_percent(name):
    assert load_spec(name).params / 1e6 == pytest.approx(PAPER_PARAMS_M[name], rel=0.02)


def test_preact_resnet200_matches_resnet200_but_for_norm_placement():
    # Pre-activation moves BNs (the stem loses one, a final one appears, the projection
    # shortcuts lose theirs); conv and fc weights are identical to ResNet-200's.
    pre, post = load_spec("preact_resnet200"), load_spec("resnet200")
    weights = lambda net: sum(op.params for op in net.ops if op.kind in ("conv", "linear"))  # noqa: E731
    assert weights(pre) == weights(post)
    assert pre.macs == post.macs


@pytest.mark.parametrize("name", ["resnet50", "resnet18", "resnet20_cifar", "wrn28_10_cifar"])
def test_stage_shapes_by_hand(name):
    expected = {
        "resnet50": [(256, 56, 56), (512, 28, 28), (1024, 14, 14), (2048, 7, 7)],
        "resnet18": [(64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)],
        "resnet20_cifar": [(16, 32, 32), (32, 16, 16), (64, 8, 8)],
        "wrn28_10_cifar": [(160, 32, 32), (320, 16, 16), (640, 8, 8)],
    }[name]
    net = load_spec(name)
    stages = [s for s in net.root.children if s.role is resdsl.Role.STAGE]
    assert [net.shape_of(s.output) for s in stages] == expected
