"""Regenerate docs/diagrams/judged/: each shipped spec's block view at `--fit text`, a few
left to right (in rows) and as network views at `--fit column`, and a
`--detail blocks --style paper` figure per family (at `--fit text` where it fits), as
40-dpi PNG previews (small enough to keep in the repository; the SVG is one
`resdsl diagram` away). Prints each figure's printed size and smallest text.

    python docs/diagrams/previews.py
"""

from __future__ import annotations

import subprocess
import warnings
from pathlib import Path

import resdsl
from resdsl.backends import BackendError, dot
from resdsl.diagnostics import Note

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "judged"
FAMILIES = {"resnet": ["resnet34", "resnet50"], "cifar": ["resnet20_cifar"], "preact": ["preact_resnet164_cifar"],
            "preact_imagenet": ["preact_resnet200"], "se": ["seresnet50"], "resnext": ["resnext50_32x4d"],
            "res2net": ["res2net50_14w_8s"], "resnest": ["resnest50d"], "sk": ["skresnet34"],
            "bit": ["resnetv2_50x1_bit"], "resnet_d": ["resnet50d"], "wrn": ["wrn16_8_cifar"],
            "eca": ["ecaresnet101d"], "blur": ["resnetblur101d"], "rs": ["resnetrs101"], "gn": ["resnet50_gn"]}


#: left-to-right block views (rows) and network views (at `--fit column`) judged too
LEFT_TO_RIGHT = ["resnet50", "resnet20_cifar", "resnest50d"]
NETWORK = ["resnet50", "resnet50d"]


def preview(text: str, name: str) -> str:
    w, h, small = dot.svg_metrics(dot.render(text, "svg"))
    png = subprocess.run(["dot", "-Tpng", "-Gdpi=40"], input=text.encode(), capture_output=True, check=True).stdout
    (OUT / f"{name}.png").write_bytes(png)
    return f"{w:.2f} × {h:.2f} in, smallest text {small:.1f} pt"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for spec in sorted(p.stem for p in (ROOT / "specs").glob("*.res")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Note)
            text = dot.emit(resdsl.load(ROOT / "specs" / f"{spec}.res"), detail="block", fit="text")
        print(f"{spec}_block", preview(text, f"{spec}_block"), "(taller than 1.4 widths)" if caught else "")
    for spec in LEFT_TO_RIGHT:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Note)
            text = dot.emit(resdsl.load(ROOT / "specs" / f"{spec}.res"), detail="block", rankdir="LR", fit="text")
        print(f"{spec}_block_lr", preview(text, f"{spec}_block_lr"), "(taller than 1.4 widths)" if caught else "")
    for spec in NETWORK:
        text = dot.emit(resdsl.load(ROOT / "specs" / f"{spec}.res"), detail="network", fit="column")
        print(f"{spec}_network", preview(text, f"{spec}_network"))
    for name, specs in FAMILIES.items():
        nets = [resdsl.load(ROOT / "specs" / f"{s}.res") for s in specs]
        try:
            text, how = dot.emit_blocks(nets, style="paper", fit="text"), ""
        except BackendError as err:
            text, how = dot.emit_blocks(nets, style="paper"), f"(not fitted: {err})"
        print(f"{name}_blocks", preview(text, f"{name}_blocks"), how)


if __name__ == "__main__":
    main()
