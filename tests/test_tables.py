"""Architecture tables against the papers they imitate.

He et al. 2015 ("Deep Residual Learning for Image Recognition"), Table 1: the layer
composition of ResNet-18/34/50/101/152 and its FLOPs row (1.8, 3.6, 3.8, 7.6, 11.3 ×10⁹
multiply-adds). Xie et al. 2017 (ResNeXt), Table 1 and Hu et al. 2018 (SENet), Table 1
for the grouped and squeeze-and-excitation notations. Parameter counts are torchvision's
published ones.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import resdsl
from conftest import ROOT, SPEC_NAMES, SPECS, load_spec
from resdsl import tables
from resdsl.cli import main
from resdsl.diagnostics import UsageError

HE2015 = ["resnet18", "resnet34", "resnet50_v1", "resnet101_v1", "resnet152_v1"]
PAPER_FLOPS = [1.8, 3.6, 3.8, 7.6, 11.3]  # ×10⁹, Table 1
TORCHVISION_PARAMS = [11_689_512, 21_797_672, 25_557_032, 44_549_160, 60_192_808]

# Table 1 of He et al. 2015, transcribed: (layer name, output size, per-model cells)
BASIC = "[3×3, {0}; 3×3, {0}]"
BOTTLENECK = "[1×1, {0}; 3×3, {0}; 1×1, {1}]"
PAPER_ROWS = [
    ("conv1", "112×112", ["7×7, 64, stride 2"] * 5),
    ("conv2_x", "56×56", [f"3×3 max pool, stride 2<br>{b} × {n}" for b, n in
                          [(BASIC.format(64), 2), (BASIC.format(64), 3), (BOTTLENECK.format(64, 256), 3),
                           (BOTTLENECK.format(64, 256), 3), (BOTTLENECK.format(64, 256), 3)]]),
    ("conv3_x", "28×28", [f"{BASIC.format(128)} × 2", f"{BASIC.format(128)} × 4",
                          f"{BOTTLENECK.format(128, 512)} × 4", f"{BOTTLENECK.format(128, 512)} × 4",
                          f"{BOTTLENECK.format(128, 512)} × 8"]),
    ("conv4_x", "14×14", [f"{BASIC.format(256)} × 2", f"{BASIC.format(256)} × 6",
                          f"{BOTTLENECK.format(256, 1024)} × 6", f"{BOTTLENECK.format(256, 1024)} × 23",
                          f"{BOTTLENECK.format(256, 1024)} × 36"]),
    ("conv5_x", "7×7", [f"{BASIC.format(512)} × 2", f"{BASIC.format(512)} × 3",
                        f"{BOTTLENECK.format(512, 2048)} × 3", f"{BOTTLENECK.format(512, 2048)} × 3",
                        f"{BOTTLENECK.format(512, 2048)} × 3"]),
    ("", "1×1", ["average pool, 1000-d fc"] * 5),
]


def _markdown_rows(text: str) -> list[list[str]]:
    lines = text.strip().splitlines()
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


@pytest.fixture(scope="module")
def he2015() -> str:
    return tables.render([load_spec(n) for n in HE2015], "markdown")


def test_he2015_table1_structure(he2015: str) -> None:
    rows = _markdown_rows(he2015)
    assert rows[0] == ["layer name", "output size", "18-layer", "34-layer", "50-layer", "101-layer", "152-layer"]
    body = rows[2:-2]
    assert [(r[0], r[1], r[2:]) for r in body] == PAPER_ROWS


def test_he2015_flops_row(he2015: str) -> None:
    flops = _markdown_rows(he2015)[-2]
    assert flops[0] == "FLOPs"
    for cell, paper in zip(flops[2:], PAPER_FLOPS, strict=True):
        m = re.fullmatch(r"(\d+\.\d)×10⁹", cell)
        assert m, cell
        assert abs(float(m.group(1)) - paper) <= 0.1 + 1e-9, (cell, paper)  # one unit of the last digit


def test_params_row(he2015: str) -> None:
    params = _markdown_rows(he2015)[-1]
    assert params[2:] == [f"{p / 1e6:.1f}×10⁶" for p in TORCHVISION_PARAMS]
    assert params[2:] == ["11.7×10⁶", "21.8×10⁶", "25.6×10⁶", "44.5×10⁶", "60.2×10⁶"]


def test_resnext_and_se_notation() -> None:
    text = tables.render([load_spec("resnext50_32x4d"), load_spec("seresnet50")])
    rows = {r[0]: r for r in _markdown_rows(text)}
    # ResNeXt paper, Table 1: conv2 [1×1, 128; 3×3, 128, C=32; 1×1, 256] × 3, 4.2×10⁹ FLOPs, 25.0×10⁶ params
    assert rows["conv2_x"][2].endswith("[1×1, 128; 3×3, 128, C=32; 1×1, 256] × 3")
    assert rows["FLOPs"][2] == "4.2×10⁹" and rows["params"][2] == "25.0×10⁶"
    # SENet paper, Table 1: conv2 [1×1, 64; 3×3, 64; 1×1, 256; fc, [16, 256]] × 3
    assert rows["conv2_x"][3].endswith("[1×1, 64; 3×3, 64; 1×1, 256; fc, [16, 256]] × 3")
    assert rows["conv5_x"][3] == "[1×1, 512; 3×3, 512; 1×1, 2048; fc, [128, 2048]] × 3"


def test_cifar_and_deep_stem() -> None:
    text = tables.render([load_spec("resnet110_cifar"), load_spec("resnet50d")])
    rows = {r[0]: r for r in _markdown_rows(text)}
    # He et al. 2015 §4.2: 3×3 conv, then 3 stages of 2n layers on 32, 16, 8 maps; n = 18 for 110 layers
    assert rows["conv1"][2] == "3×3, 16" and rows["conv1"][1] == "32×32 / 112×112"
    assert rows["conv4_x"][2] == "[3×3, 64; 3×3, 64] × 18" and rows["conv5_x"][2] == ""
    assert rows["conv1"][3] == "3×3, 32, stride 2<br>3×3, 32<br>3×3, 64"
    assert tables.depth(load_spec("resnet110_cifar")) == 110


def test_a_padding_before_the_stem_pool_goes_with_the_pool() -> None:
    # BiT's stem is conv, pad(1), max pool: the conv's map is 112×112; the padding only
    # serves the pool, which the paper's layout lists with the first stage (the stem's
    # final pooling, Network.stem_pool). Until roles recorded it, the row read 114×114.
    rows = {r[0]: r for r in _markdown_rows(tables.render([load_spec("resnetv2_50x1_bit")]))}
    assert rows["conv1"][1:] == ["112×112", "7×7, 64, stride 2"]
    assert rows["conv2_x"][2].startswith("3×3 max pool, stride 2<br>")


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_spec(name: str) -> None:
    for fmt in tables.FORMATS:
        assert tables.render([load_spec(name)], fmt)


def test_csv_matches_markdown(he2015: str) -> None:
    text = tables.render([load_spec(n) for n in HE2015], "csv")
    rows = list(csv.reader(io.StringIO(text)))
    md = _markdown_rows(he2015)
    assert rows[0] == md[0]
    for c, m in zip(rows[1:-2], md[2:-2], strict=True):
        assert [cell.replace("\n", "<br>") for cell in c] == m
    assert rows[-2][0] == "MACs"  # what the row holds; the paper's "FLOPs" are multiply-adds too
    assert rows[-2][2:] == [str(load_spec(n).macs) for n in HE2015]  # exact numbers in CSV
    assert rows[-1][2:] == [str(p) for p in TORCHVISION_PARAMS]


def test_latex_document(tmp_path: Path) -> None:
    text = tables.render([load_spec(n) for n in HE2015], "latex")
    assert text.startswith("%") and r"\documentclass{article}" in text and r"\usepackage{booktabs}" in text
    assert text.rstrip().endswith(r"\end{document}")
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"\multicolumn{5}{c}{3$\times$3 max pool, stride 2}" in text
    assert r"$11.3\times10^{9}$" in text and "& 50-layer &" in text
    assert text.isascii()
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed: the document was checked, not compiled")
    (tmp_path / "t.tex").write_text(text)
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                          capture_output=True, timeout=120)
    log = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0, log[-2000:]
    assert (tmp_path / "t.pdf").read_bytes().startswith(b"%PDF")
    assert "Overfull" not in log


def test_latex_escapes_specials() -> None:
    assert tables._tex("a_b & 100% #1 {x} ~ ^ \\") == \
        r"a\_b \& 100\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"


def test_engineering_notation() -> None:
    assert tables.engineering(11_282_415_616) == ("11.3", 9)
    assert tables.engineering(999_960) == ("1.0", 6)
    assert tables.engineering(269_722) == ("269.7", 3)
    assert tables.engineering(108) == ("108", 0)


def test_cli_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    specs = [str(ROOT / "specs" / f"{n}.res") for n in HE2015]
    out = tmp_path / "t.tex"
    assert main(["table", *specs, "--format", "latex", "-o", str(out)]) == 0
    assert out.read_text() == tables.render([load_spec(n) for n in HE2015], "latex")
    assert main(["table", *specs]) == 0
    assert "11.3×10⁹" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        main(["table", *specs, "--format", "html"])
    assert err.value.code == 2
    with pytest.raises(UsageError):
        tables.render([load_spec("resnet18")], "html")


def test_depth_counts_layers_as_the_papers_of_the_modern_family_do():
    """Selective-kernel and split-attention modules stand in for one conv; Res2Net's
    numbered convs are one layer; attention modules (SE, ECA) and shortcuts count nothing."""
    expected = {"skresnet34": 34, "res2net50_14w_8s": 50, "ecaresnet101d": 103, "resnet50_gn": 50,
                "resnetv2_50x1_bit": 50, "seresnet50": 50, "resnet50d": 52}
    for name, layers in expected.items():
        if name in SPEC_NAMES:
            assert tables.depth(load_spec(name)) == layers, name


def test_one_grid_renderer_for_stats_and_tables():
    """`stats` and `table` lay out markdown with the same renderer (resdsl.grid): the same
    rows give the same lines, whichever asks."""
    from resdsl.grid import grid

    rows = [["a|b", "1"], ["c", "22"]]
    assert grid(["x", "y"], rows, ["l", "r"], markdown=False) == "x     y\n---  --\na|b   1\nc    22"
    assert grid(["x", "y"], rows, ["l", "r"], markdown=True, escape=lambda s: s.replace("|", "\\|")) == (
        "| x    |  y |\n|:-----|---:|\n| a\\|b |  1 |\n| c    | 22 |")
    assert grid(["x", "y"], rows, ["l", "c"], markdown=True, pad=False) == (
        "| x | y |\n|:---|:---:|\n| a|b | 1 |\n| c | 22 |")
    with pytest.raises(ValueError):
        grid(["x"], [], ["x"], markdown=True)
    for module in ("stats", "tables"):
        source = (Path(resdsl.__file__).parent / f"{module}.py").read_text()
        assert "from .grid import grid" in source and '" | ".join' not in source


def test_depth_label_follows_the_name_or_the_spec():
    """Deep stems add convs that the family's names do not count: resnet50d is headed
    50-layer (52 weighted layers counted); WRN counts its projections; a spec states it."""
    from resdsl.tables import depth, depth_label

    r50d = resdsl.load(SPECS / "resnet50d.res")
    assert (depth(r50d), depth_label(r50d)) == (52, 50)
    assert "| 50-layer |" in tables.render([r50d], "markdown")
    # two columns of one depth: each headed by its name alone
    assert tables.headers([r50d, resdsl.load(SPECS / "resnet50.res")]) == ("resnet50d", "resnet50")
    assert depth_label(resdsl.load(SPECS / "wrn16_8_cifar.res")) == 16
    assert depth_label(resdsl.load(SPECS / "resnet18.res")) == 18
    stated = resdsl.loads("import std.resnet\nnetwork toy = resnet(block = basic, depths = [1, 1], "
                          "widths = [8, 16], depth_label = 10)")
    assert (depth(stated), depth_label(stated)) == (6, 10)
    by_hand = resdsl.loads("network mine(depth_label = \"two\") {\n input [3, 8, 8]\n c: conv(4, 3)\n"
                           " fc: conv(2, 1)\n}")
    assert "| two-layer |" in tables.render([by_hand], "markdown")
    assert depth_label(resdsl.loads("network n_1 {\n input [3, 8, 8]\n c: conv(4, 3)\n}")) == 1


def test_modern_blocks_rows():
    """ResNeSt: radix groups, not cardinality (its split-attention conv has groups = radix
    2); SK: the two kernel paths side by side; Res2Net: the 7 scale convs summarised; BiT:
    the 1×1-conv classifier in the head row."""
    names = ["resnest50d", "skresnet34", "res2net50_14w_8s", "resnetv2_50x1_bit"]
    rows = {r[0]: r for r in _markdown_rows(tables.render([load_spec(n) for n in names]))}
    rest, sk, r2, bit = rows["conv2_x"][2:]
    assert rest.endswith("[1×1, 64; 3×3, 128, radix 2; fc, [32, 128]; 1×1, 256] × 3") and "C=2" not in rest
    assert sk.endswith("[3×3, 64 ‖ 3×3, 64, dilation 2; fc, [16, 128]; 3×3, 64] × 3")
    assert r2.endswith("[1×1, 112; 3×3, 14 (×7); 1×1, 256] × 3")
    assert rows[""][5] == "average pool, 1000-d fc (1×1 conv)"
    latex = tables.render([load_spec("skresnet34")], "latex")
    assert r"3$\times$3, 64 $\|$ 3$\times$3, 64, dilation 2" in latex and latex.isascii()


def test_latex_fragment_inputs_into_a_paper(tmp_path: Path) -> None:
    """`--fragment`: a table float with caption and label, no preamble, that a paper
    `\\input`s (tests/latex/paper.tex); compiled with pdflatex where it is installed."""
    nets = [load_spec(n) for n in HE2015]
    text = tables.render(nets, "latex", fragment=True, caption="Architectures for ImageNet (100% like the paper)",
                         label="tab:arch")
    code = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
    assert r"\documentclass" not in code and r"\begin{document}" not in code and r"\usepackage" not in code
    assert text.count(r"\begin{table}") == 1 and text.rstrip().endswith(r"\end{table}")
    assert r"\caption{Architectures for ImageNet (100\% like the paper)}" in text and r"\label{tab:arch}" in text
    assert text.isascii()
    paper = ROOT / "tests" / "latex" / "paper.tex"
    (tmp_path / "paper.tex").write_text(paper.read_text())
    (tmp_path / "arch.tex").write_text(text)
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex is not installed (CI installs TeX Live): the fragment was checked, not compiled")
    for _ in range(2):  # the second run resolves \ref
        proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                              cwd=tmp_path, capture_output=True, timeout=120)
        log = proc.stdout.decode("utf-8", "replace")
        assert proc.returncode == 0, log[-2000:]
    assert (tmp_path / "paper.pdf").read_bytes().startswith(b"%PDF")
    assert "undefined" not in log.lower(), log[-2000:]


def test_cli_fragment_options(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "t.tex"
    assert main(["table", "resnet18", "--format", "latex", "--fragment", "--caption", "A", "--label", "tab:a",
                 "-o", str(out)]) == 0
    assert out.read_text() == tables.render([load_spec("resnet18")], "latex", fragment=True, caption="A",
                                            label="tab:a")
    for bad in (["--fragment"], ["--caption", "x"], ["--format", "csv", "--label", "a"],
                ["--format", "latex", "--fragment", "--spec-listing"], ["--format", "latex", "--label", "{ }"]):
        target = tmp_path / "bad.tex"
        assert main(["table", "resnet18", *bad, "-o", str(target)]) == 2, bad
        assert "Traceback" not in capsys.readouterr().err
        assert not target.exists()
