"""The Graphviz back end: golden DOT files, escaping, collapsing, rendering, the CLI.

Golden files live in ``tests/cases/dot/``; a test fails when the DOT differs. To accept
new output after a deliberate change, regenerate them and review the diff::

    RESDSL_ACCEPT=1 python -m pytest tests/test_dot.py -k golden

Rendering tests need Graphviz's ``dot`` and are skipped, with a reason, without it
(CI installs it). Validity of DOT text is checked twice: by Graphviz itself when it is
installed, and always by parsing every HTML-like label with an XML parser (Graphviz
parses them with expat) and checking that quoted ids never leak.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest

import resdsl
from conftest import ROOT, SPEC_NAMES, load_spec
from resdsl.backends import TARGETS, OptionError, dot
from resdsl.cli import main
from resdsl.ir import Network, Scope

CASES = ROOT / "tests" / "cases" / "dot"
ACCEPT = os.environ.get("RESDSL_ACCEPT") == "1"
HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's `dot` is not installed (CI installs it)")

#: (golden file stem, specs, emit options)
GOLDENS = [
    ("resnet18_network", ["resnet18"], {"detail": "network", "annotate": "shapes,params,macs"}),
    ("resnet50_block", ["resnet50"], {"detail": "block"}),
    ("resnet152_block_paper", ["resnet152"], {"detail": "block", "style": "paper"}),
    ("preact_resnet164_cifar_block", ["preact_resnet164_cifar"], {"detail": "block", "rankdir": "LR"}),
    ("resnet20_cifar_layer_paper", ["resnet20_cifar"], {"detail": "layer", "style": "paper"}),
    ("resnet50d_layer_layer2.0", ["resnet50d"], {"detail": "layer", "scope": "layer2.0"}),
    ("seresnet50_blocks", ["seresnet50"], {"detail": "blocks"}),
    ("resnet34_resnet50_blocks_paper", ["resnet34", "resnet50"], {"style": "paper"}),
]


def _emit(specs: list[str], options: dict) -> str:
    nets = [load_spec(s) for s in specs]
    return dot.emit(nets[0], **options) if len(nets) == 1 else dot.emit_blocks(nets, **options)


# ---------------------------------------------------------------- a DOT checker without Graphviz

_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


def _html_spans(line: str) -> list[str]:
    """The HTML-like strings of a DOT line: `<` … the matching `>`, nested."""
    spans, depth, start = [], 0, 0
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == '"' and depth == 0:
            m = _QUOTED.match(line, i)
            assert m, f"unterminated quoted string in {line!r}"
            i = m.end()
            continue
        if ch == "<":
            if depth == 0:
                start = i
            depth += 1
        elif ch == ">" and not (depth == 0 and line[i - 1] == "-"):
            depth -= 1
            assert depth >= 0, f"stray `>` in {line!r}"
            if depth == 0:
                spans.append(line[start + 1:i])
        i += 1
    assert depth == 0, f"unbalanced `<` in {line!r}"
    return spans


def check_dot(text: str) -> None:
    """Every statement on one line, braces balanced, ids quoted, HTML labels well-formed XML."""
    assert text.endswith("}\n") and "digraph resdsl {" in text
    depth = 0
    for line in text.splitlines():
        if line.startswith("//"):
            continue
        for span in _html_spans(line):
            ET.fromstring(f"<x>{span}</x>")  # raises on anything Graphviz's expat would reject
        bare = line
        for span in _html_spans(line):
            bare = bare.replace(f"<{span}>", "<>", 1)
        bare = _QUOTED.sub('""', bare)
        assert '"' not in bare.replace('""', ""), f"stray quote in {line!r}"
        depth += bare.count("{") - bare.count("}")
        assert depth >= 0
        body = bare.strip()
        assert body in ("}", "digraph resdsl {") or body.endswith(("];", ";", "{")), line
    assert depth == 0


def node_count(text: str) -> int:
    return sum(1 for line in text.splitlines() if re.match(r'\s*"[^"]*" \[label=', line))


def _render_check(text: str) -> ET.Element:
    """Graphviz's own verdict: `dot -Tsvg` succeeds without warnings and gives valid XML."""
    proc = subprocess.run(["dot", "-Tsvg"], input=text.encode(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Warning" not in proc.stderr and b"Error" not in proc.stderr, proc.stderr.decode()
    return ET.fromstring(proc.stdout)


# ---------------------------------------------------------------- goldens and determinism


@pytest.mark.parametrize("stem,specs,options", GOLDENS, ids=[g[0] for g in GOLDENS])
def test_golden(stem: str, specs: list[str], options: dict) -> None:
    text = _emit(specs, options)
    path = CASES / f"{stem}.dot"
    if ACCEPT or not path.exists():
        if not ACCEPT:
            pytest.fail(f"{path} is missing: run with RESDSL_ACCEPT=1 to create it")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed (RESDSL_ACCEPT=1 to accept)"
    check_dot(text)


def test_deterministic_across_loads() -> None:
    """Node ids come from spec paths: a fresh load gives byte-identical DOT."""
    path = ROOT / "specs" / "resnext50_32x4d.res"
    for detail in ("network", "block", "layer", "blocks"):
        a = dot.emit(resdsl.load(path), detail=detail)
        b = dot.emit(resdsl.load(path), detail=detail)
        assert a == b
        assert not re.search(r"0x[0-9a-f]{6,}", a)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_every_spec_every_detail(name: str) -> None:
    net = load_spec(name)
    for detail in ("network", "block", "blocks"):
        check_dot(dot.emit(net, detail=detail, annotate="shapes,params,macs"))
    if len(net.ops) < 400:  # the largest networks are slow to check line by line, not to emit
        check_dot(dot.emit(net, detail="layer", style="paper"))


# ---------------------------------------------------------------- what the block level shows


def test_resnet152_block_level_is_compact() -> None:
    text = dot.emit(load_spec("resnet152"), detail="block")
    assert node_count(text) < 60
    # the paper's stage depths 3, 8, 36, 3: one first block plus the collapsed rest
    for stage, rest in (("layer1", 2), ("layer2", 7), ("layer3", 35), ("layer4", 2)):
        assert f'"cluster_{stage}.1/plate" {{\n' in text and f"<B>× {rest}</B>" in text, stage
    if HAVE_DOT:
        svg = _render_check(text)
        nodes = [g for g in svg.iter("{http://www.w3.org/2000/svg}g") if g.get("class") == "node"]
        assert len(nodes) == node_count(text) < 60


def test_identity_and_projection_skips_differ() -> None:
    text = dot.emit(load_spec("resnet50"), detail="block")
    dashed = [line for line in text.splitlines() if "->" in line and 'style="dashed"' in line]
    shortcut_nodes = re.findall(r'"(layer\d\.0/shortcut)" \[label=<(.*?)>, ', text)
    # torchvision's ResNet-50: option B, a 1×1 projection in the first block of each stage only
    assert [n for n, _ in shortcut_nodes] == ["layer1.0/shortcut", "layer2.0/shortcut", "layer3.0/shortcut",
                                              "layer4.0/shortcut"]
    assert [label for _, label in shortcut_nodes] == ["1×1 conv, 256<BR/>BN", "1×1 conv, 512, /2<BR/>BN",
                                                      "1×1 conv, 1024, /2<BR/>BN", "1×1 conv, 2048, /2<BR/>BN"]
    assert len(dashed) == 4  # one identity skip in each collapsed group's plate
    projection = [line for line in text.splitlines() if "/shortcut" in line and "->" in line and "invis" not in line]
    assert len(projection) == 8 and not any("dashed" in line for line in projection)


def test_option_a_shortcut_is_drawn_as_zero_padding() -> None:
    text = dot.emit(load_spec("resnet20_cifar"), detail="block")
    assert "zero-pad to 32, /2" in text and "zero-pad to 64, /2" in text


def test_blocks_differing_in_arguments_do_not_collapse() -> None:
    """Stochastic depth gives every block its own drop rate: nothing is identical."""
    net = resdsl.loads("import std.resnet\nnetwork r = resnet(block = basic, depths = [2, 2, 2, 2], "
                       "drop_path_rate = 0.1)", str(ROOT / "specs" / "x.res"))
    text = dot.emit(net, detail="block")
    assert " × " not in re.sub(r"\d+×\d+", "", text.replace("3×3", "").replace("1×1", ""))
    assert node_count(text) > node_count(dot.emit(load_spec("resnet18"), detail="block"))


def test_preactivation_branch_point() -> None:
    """Pre-activation: the projection reads the block's BN-ReLU output, the identity the raw input."""
    net = load_spec("preact_resnet164_cifar")
    parts = dot.block_parts(net, net.root.children[1].children[0])
    assert parts.pre == ("layer1.0.bn1", "layer1.0.relu") and parts.skip_from == "layer1.0.relu"
    ident = dot.block_parts(net, net.root.children[1].children[1])
    assert ident.pre == () and ident.shortcut is None and ident.skip_from == "layer1.0.add"
    text = dot.emit(net, detail="block")
    assert '"layer1.0/pre" -> "layer1.0/shortcut"' in text


def test_block_types_like_the_papers_figures() -> None:
    """Fig. 2 of He et al. 2015 (basic, bottleneck) and its projection variants."""
    assert [b.path for b in dot.block_types(load_spec("resnet34"))] == ["layer1.0", "layer2.0"]
    assert [b.path for b in dot.block_types(load_spec("resnet50"))] == ["layer1.0", "layer1.1"]
    text = dot.emit_blocks([load_spec("resnet34"), load_spec("resnet50"), load_spec("resnet101")])
    assert text.count("subgraph") == 4  # resnet101 adds no new block type
    assert "identity shortcut" in text and "projection shortcut" in text


def test_annotations() -> None:
    net = load_spec("resnet50")
    plain = dot.emit(net, detail="network", annotate="none")
    assert "label=<3×224×224>" not in plain and "params" not in plain
    full = dot.emit(net, detail="network", annotate=["shapes", "params", "macs"])
    # torchvision's ResNet-50 layer4: 14,964,736 parameters
    assert "14.96M params" in full and "2048×7×7" in full and "MACs" in full
    with pytest.raises(OptionError, match="unknown annotation `flops`"):
        dot.emit(net, annotate="flops")


def test_layer_scope() -> None:
    net = load_spec("resnet18")
    text = dot.emit(net, detail="layer", scope="layer3.0")
    ids = set(re.findall(r'^\s*"([^"]+)" \[label=', text, re.M))
    assert {"layer3.0.conv1", "layer3.0.downsample.0", "layer3.0.add"} <= ids
    assert not any(i.startswith(("layer2.1.conv", "layer3.1.")) for i in ids)
    with pytest.raises(OptionError) as err:
        dot.emit(net, detail="layer", scope="layer3.9")
    assert "layer3" in err.value.hint
    with pytest.raises(OptionError):
        dot.emit(net, detail="block", scope="layer3.0")


# ---------------------------------------------------------------- escaping


HOSTILE = 'evil"}\n<b>&amp; {x} \\ ]; -> "'


def _rename(net: Network, f) -> Network:
    """The same network with every op and scope renamed by ``f``."""
    def scope(s: Scope) -> Scope:
        return dataclasses.replace(
            s, name=f(s.name), path=f(s.path) if s.path else s.path, definition=f(s.definition),
            items=tuple(f(i) if isinstance(i, str) else scope(i) for i in s.items),
            input=f(s.input) if s.input != "input" else s.input, output=f(s.output))
    ops = tuple(dataclasses.replace(op, name=f(op.name), inputs=tuple(i if i == "input" else f(i) for i in op.inputs))
                for op in net.ops)
    return dataclasses.replace(net, name=f(net.name), source=f(net.source), ops=ops, root=scope(net.root),
                               output=f(net.output))


@pytest.mark.parametrize("detail", ["network", "block", "layer", "blocks"])
def test_hostile_names(detail: str) -> None:
    net = _rename(load_spec("resnet20_cifar"), lambda s: f"{s}{HOSTILE}")
    text = dot.emit(net, detail=detail, annotate="shapes,params,macs")
    check_dot(text)
    assert "&lt;b&gt;&amp;amp;" in text  # escaped, not interpreted
    if HAVE_DOT:
        svg = _render_check(text)
        titles = "".join(t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title"))
        assert "layer1.0.conv1" in titles or detail != "layer"


def test_hostile_spec_via_loads() -> None:
    """What a spec can name (identifiers) in a file whose path is hostile."""
    net = resdsl.loads("import std.resnet\nnetwork r = resnet(block = basic, depths = [1, 1], widths = [8, 16], "
                       "image_size = 32, stem = cifar_stem, stem_width = 8)",
                       str(ROOT / "specs" / 'we"ird\n}{<dir>.res'))
    text = dot.emit(net)
    check_dot(text)
    assert text.splitlines()[0] == '// r (we"ird }{<dir>.res), drawn by resdsl'


def test_quote_id_is_injective_and_safe() -> None:
    names = ["a.b", 'a"b', "a%22b", "a\\", "a\nb", "a b", "layer1.0/body", "é"]
    ids = [dot.quote_id(n) for n in names]
    assert len(set(ids)) == len(ids)
    for i in ids:
        assert re.fullmatch(r'"[A-Za-z0-9_.#/%-]*"', i)


# ---------------------------------------------------------------- rendering


def _png_size(data: bytes) -> tuple[int, int]:
    """Check the PNG signature and every chunk's CRC, inflate the image data and check
    its length against IHDR; returns (width, height)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    idat = b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks.setdefault(kind, body)
        if kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert kind == b"IEND"
    width, height, bits, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color]
    assert len(zlib.decompress(idat)) == height * (1 + (width * channels * bits + 7) // 8)
    return width, height


@needs_dot
def test_render_svg_pdf_png() -> None:
    net = load_spec("resnet50")
    svg = dot.emit_svg(net, detail="block")
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "× 5" in "".join(root.itertext())
    pdf = dot.emit_pdf(net, detail="network", style="paper")
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert pdf == dot.emit_pdf(net, detail="network", style="paper")  # no timestamp
    png = dot.emit_png(net, detail="blocks", style="paper")
    width, height = _png_size(png)
    assert width > 300 and height > 300


def test_missing_dot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = str(ROOT / "specs" / "resnet18.res")
    assert main(["compile", spec, "--target", "svg", "-o", str(tmp_path / "r.svg")]) == 2
    err = capsys.readouterr().err
    assert "`dot`" in err and "apt-get install graphviz" in err and "brew install graphviz" in err
    assert not (tmp_path / "r.svg").exists()
    (tmp_path / "old.png").write_bytes(b"precious")  # an existing output stays as it was
    assert main(["compile", spec, "--target", "png", "-o", str(tmp_path / "old.png")]) == 2
    assert (tmp_path / "old.png").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]
    assert main(["compile", spec, "--target", "dot", "-o", str(tmp_path / "r.dot")]) == 0
    check_dot((tmp_path / "r.dot").read_text())


def test_render_goes_through_the_graphviz_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    """The package runs `dot`; its ExecutableNotFound, or no package at all, is our exit 2
    with install hints, and no file is written."""
    import graphviz

    calls = []

    def missing(*args, **kwargs):
        calls.append(args)
        raise graphviz.ExecutableNotFound(["dot"])

    monkeypatch.setattr(graphviz, "pipe", missing)
    spec = str(ROOT / "specs" / "resnet18.res")
    assert main(["diagram", spec, "-o", str(tmp_path / "r.png")]) == 2
    assert calls and calls[0][:2] == ("dot", "png")
    assert "apt-get install graphviz" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "graphviz", None)  # the package is not installed
    assert main(["diagram", spec, "-o", str(tmp_path / "r.svg")]) == 2
    assert "resdsl[diagrams]" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- the command line


def test_targets_registered() -> None:
    for name in ("dot", "svg", "pdf", "png"):
        assert TARGETS[name].module == "dot"
    assert TARGETS["pdf"].binary and TARGETS["png"].binary and not TARGETS["dot"].binary


def test_cli_compile_dot_options(tmp_path: Path) -> None:
    out = tmp_path / "r.dot"
    spec = str(ROOT / "specs" / "resnet50.res")
    assert main(["compile", spec, "--target", "dot", "--detail", "network", "--style", "paper",
                 "--rankdir", "lr", "--annotate", "params", "-o", str(out)]) == 0
    text = out.read_text()
    assert text == dot.emit(load_spec("resnet50"), detail="network", style="paper", rankdir="LR",
                            annotate="params")
    assert main(["compile", spec, "--target", "torch", "--detail", "block", "-o", str(tmp_path / "x.py")]) == 2


def test_cli_diagram(tmp_path: Path) -> None:
    specs = [str(ROOT / "specs" / f"{n}.res") for n in ("resnet34", "resnet50")]
    assert main(["diagram", specs[0], "-o", str(tmp_path / "a.dot")]) == 0
    assert (tmp_path / "a.dot").read_text() == dot.emit(load_spec("resnet34"))
    assert main(["diagram", *specs, "-o", str(tmp_path / "b.dot")]) == 2  # needs --detail blocks
    assert main(["diagram", *specs, "--detail", "blocks", "-o", str(tmp_path / "b.dot")]) == 0
    assert main(["diagram", specs[0], "-o", str(tmp_path / "a.txt")]) == 2
    if HAVE_DOT:
        assert main(["diagram", specs[0], "--detail", "network", "-o", str(tmp_path / "a.svg")]) == 0
        ET.parse(tmp_path / "a.svg")


COMMITTED = [
    ("resnet50.svg", ["specs/resnet50.res", "--detail", "block", "--fit", "text"],
     ("× 5", "1×1 conv, 2048, /2", "layer4 · 2048×7×7")),
    ("basic_vs_bottleneck.svg", ["specs/resnet34.res", "specs/resnet50.res", "--detail", "blocks", "--style", "paper",
                                 "--panels", "basic:identity,bottleneck:projection", "--fit", "column"],
     ("identity shortcut", "projection shortcut", "3×3 conv, 64", "1×1 conv, 256")),
]


@pytest.mark.parametrize("name,args,labels", COMMITTED, ids=[c[0] for c in COMMITTED])
def test_committed_diagram_is_current(name: str, args: list[str], labels: tuple[str, ...]) -> None:
    """docs/diagrams/*.svg are what their documented commands make (same DOT, same SVG)."""
    svg = ROOT / "docs" / "diagrams" / name
    text = svg.read_text()
    assert " ".join(args) in (ROOT / "docs" / "diagrams" / "README.md").read_text()
    for label in labels:
        assert label in text
    ET.fromstring(text)
    if HAVE_DOT:
        proc = subprocess.run([sys.executable, "-m", "resdsl.cli", "diagram", *args, "--format", "svg"],
                              cwd=ROOT, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
        fresh = proc.stdout.decode()
        # another Graphviz version may lay out differently; the same version must agree byte for byte
        version = re.compile(r"<!-- Generated by graphviz version [^>]*-->")
        if version.search(fresh).group() == version.search(text).group():
            assert fresh == text, f"regenerate {name}: see docs/diagrams/README.md"


# ---------------------------------------------------------------- paper-ready figures


def test_block_view_labels() -> None:
    """Shortcut boxes list their BN (on a line of its own: the box stays narrow); the ReLU
    after an add is written in the add's node (no floating xlabel); no edge has a label
    (dot doubles the ranks of a labelled graph): shapes are under `input`, in the stem's
    and head's boxes and in each stage's title."""
    text = dot.emit(load_spec("resnet50"), detail="block")
    assert '"layer1.0/shortcut" [label=<1×1 conv, 256<BR/>BN>' in text
    assert '"layer2.0/shortcut" [label=<1×1 conv, 512, /2<BR/>BN>' in text
    assert "xlabel" not in text and not re.search(r"->[^\n]*label=", text)
    assert "layer2 · 512×28×28" in text and ">3×224×224</FONT>" in text and ">64×56×56</FONT>" in text
    assert '"layer1.0/merge" [label=<<B>+</B> ReLU>' in text
    assert '"layer1.0/merge" -> "layer1.1/in";' in text  # into the plate of layer1.1–2
    d = dot.emit(load_spec("resnet50d"), detail="block")
    assert '"layer2.0/shortcut" [label=<2×2 avg pool, /2<BR/>1×1 conv, 512<BR/>BN>' in d
    assert '"layer1.0/shortcut" [label=<1×1 conv, 256<BR/>BN>' in d  # option D at stride 1: no identity line


def test_modern_blocks_keep_their_widths() -> None:
    """SK's selective-kernel module and ResNeSt's split attention are named with their
    convs' widths, parallel paths marked ‖, radix groups as radix; SE stays a name."""
    sk = dot.emit(load_spec("skresnet34"), detail="block")
    assert "selective-kernel<BR/>3×3 conv, 128, /2<BR/>‖ 3×3 conv, 128, /2, dilation 2<BR/>3×3 conv, 128>" in sk
    rs = dot.emit(load_spec("resnest50d"), detail="block")
    assert "split-attn<BR/>3×3 conv, 256, radix 2<BR/>" in rs and "groups 2" not in rs
    se = dot.emit(load_spec("seresnet50"), detail="block")
    assert "1×1 conv, 512<BR/>squeeze-excite>" in se


def test_identity_in_a_shortcut_is_no_box() -> None:
    """option_d at stride 1 is `identity()` then a 1×1 conv: the block figure draws the
    conv, fed straight from the block's input, and no `identity` box."""
    text = dot.emit(load_spec("resnet50d"), detail="blocks", style="paper")
    assert ">identity<" not in text and "identity()" not in text
    assert '"layer1.0/in" -> "layer1.0.downsample.1"' in text


@needs_dot
@pytest.mark.parametrize("rankdir", ["TB", "LR"])
def test_block_figure_panels_follow_the_arguments(rankdir: str) -> None:
    """Panels of two specs come in the order given: left to right in TB, top to bottom
    in LR (measured on the rendered SVG)."""
    nets = [load_spec("resnet34"), load_spec("resnet50")]
    svg = ET.fromstring(dot.render(dot.emit_blocks(nets, rankdir=rankdir), "svg"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    where = []
    for g in svg.iterfind(".//s:g[@class='cluster']", ns):
        words = " ".join("".join(t.itertext()) for t in g.iterfind("s:text", ns))
        first = g.find("s:text", ns).attrib
        x, y = float(first["x"]), float(first["y"])
        where.append(("resnet34" in words, x if rankdir == "TB" else y))
    assert len(where) == 4
    firsts = [pos for is34, pos in where if is34]
    seconds = [pos for is34, pos in where if not is34]
    assert max(firsts) < min(seconds), where


def test_scaling_constants_printed_as_a_paper_does() -> None:
    """NF-ResNet's β (timm: 1/√(1 + n·α²), α = 0.2, n the blocks before in the stage, reset
    at each transition) in three significant digits, one value and a group's range alike;
    never six digits (`× 0.928477`)."""
    text = dot.emit(load_spec("nf_resnet50"), detail="block")
    beta = [1 / (1 + n * 0.2**2) ** 0.5 for n in range(7)]
    for n in (3, 4, 6):  # the first block of stages 1-3 (stage 0's first block has β 1)
        assert f"× {beta[n]:.3f}>" in text, n
    assert f"× {beta[2]:.3f}–{beta[1]:.3f}" in text  # stage 0's blocks 1-2
    assert not re.search(r"\d\.\d{4,}", text)


def test_fmt_constant() -> None:
    from resdsl.looks import fmt_constant

    xs = (0.9284767, 0.5, 1.0, 1024.0, 1234.5, 0.70710678)
    assert [fmt_constant(x) for x in xs] == ["0.928", "0.5", "1", "1024", "1234", "0.707"]
