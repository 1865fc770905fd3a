"""Finding the standard library's call for a traced model.

The standard library's network templates (``resnet`` in ``std.resnet``, ``resnetv2`` in
``std.resnetv2``) name their layers as torchvision and timm do, so a model of the family
has the template's module paths. From the traced ops this module reads the template's
arguments — stage depths from the block paths, widths, stem, shortcut, attention, norm,
activation and block options from the layers' attributes — writes the call, and keeps it
only if the checked network it gives is the traced model op for op (:mod:`.canon`). A
model that differs anywhere is written out in full by :mod:`.structure` instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from ..primitives import PRIMITIVES
from .trace import TOp, Traced


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        return text if "e" in text or "." in text else text + ".0"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def layer(kind: str, attrs: dict) -> str:
    """``kind``, or ``kind with (a = 1)`` for the attributes that differ from the defaults."""
    prim = PRIMITIVES[kind]
    extra = [
        f"{p.name} = {_fmt(attrs[p.name])}"
        for p in prim.params
        if p.name in attrs and attrs[p.name] != p.default and p.name not in ("zero_init", "momentum")
    ]
    return kind + (f" with ({', '.join(extra)})" if extra else "")


class _Ops:
    def __init__(self, traced: Traced) -> None:
        self.traced = traced
        self.by_module: dict[str, TOp] = {}
        for op in traced.ops:
            # timm keeps unused slots as nn.Identity (`aa`, `drop_block`): not layers
            if op.module is not None and op.module not in self.by_module and op.kind != "identity":
                self.by_module[op.module] = op
        self.weighted = {m: op for m, op in self.by_module.items() if PRIMITIVES[op.kind].has_params}

    def get(self, path: str) -> TOp | None:
        return self.by_module.get(path)


def _stages(ops: _Ops, pattern: str) -> list[int]:
    depth: dict[int, set[int]] = {}
    for path in ops.weighted:
        m = re.match(pattern, path)
        if m:
            depth.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    if not depth or sorted(depth) != list(range(min(depth), min(depth) + len(depth))):
        return []
    return [max(depth[i]) + 1 for i in sorted(depth)]


def _call(template: str, name: str, args: list[tuple[str, str]]) -> str:
    head = f"network {name} = {template}("
    parts = [f"{k} = {v}" for k, v in args]
    lines, line = [], head
    for i, part in enumerate(parts):
        piece = part + ("," if i < len(parts) - 1 else ")")
        if line != head and len(line) + 1 + len(piece) > 100:
            lines.append(line.rstrip())
            line = " " * len(head)
        line += piece + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def _attention(ops: _Ops, prefix: str, out: int) -> str | None:
    """The block's attention module (`se` in the library's blocks), as an argument value."""
    fc1 = ops.get(f"{prefix}.se.fc1")
    if fc1 is not None:
        for r in (16, 4, 8, 2, 32, 1):
            reduced = max(8, int(out / r + 4) // 8 * 8)
            if reduced == fc1.attrs["out_channels"]:
                return "squeeze_excite" if r == 16 else f"squeeze_excite with (reduction = {r})"
        return None
    if ops.get(f"{prefix}.se.conv") is not None and ops.get(f"{prefix}.se.conv").kind == "channel_conv":
        return "eca"
    return None


def candidates(traced: Traced, name: str) -> Iterator[tuple[str, str]]:
    """``(imports, network line)`` for each library call that may be the traced model."""
    ops = _Ops(traced)
    c_in, h, w = (traced.input_shape + (0, 0))[:3]
    common: list[tuple[str, str]] = []
    if c_in != 3:
        common.append(("in_channels", str(c_in)))
    if h != 224 and h == w:
        common.append(("image_size", str(h)))
    yield from _resnet(ops, name, common)
    yield from _resnetv2(ops, name, common)


def _norm(op: TOp | None) -> str | None:
    if op is None:
        return None
    if op.kind == "batchnorm":
        return None if op.attrs.get("eps", 1e-5) == 1e-5 else layer("batchnorm", op.attrs)
    if op.kind == "groupnorm":
        return layer("groupnorm", op.attrs)
    return layer(op.kind, op.attrs)


def _act(ops: _Ops, prefix: str, after: TOp | None) -> str | None:
    if after is None:
        return None
    for op in ops.traced.ops[after.id + 1 : after.id + 3]:
        if (
            op.inputs == [after.id]
            and PRIMITIVES[op.kind].traits.activation
        ):
            return None if op.kind == "relu" else layer(op.kind, op.attrs)
    return None


def _resnet(ops: _Ops, name: str, common: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    depths = _stages(ops, r"^layer(\d+)\.(\d+)\.")
    fc = ops.get("fc")
    if not depths or fc is None or fc.kind != "linear":
        return
    args: list[tuple[str, str]] = []
    imports = ["std.resnet"]
    first = "layer1.0"
    conv1, conv2, conv3 = (ops.get(f"{first}.conv{i}") for i in (1, 2, 3))
    block_opts: list[str] = []
    expansion, last = 4, "conv3"
    paths = ops.get(f"{first}.conv1.paths.0.conv")
    res2 = ops.get(f"{first}.convs.0")
    splat = ops.get(f"{first}.conv2.conv")
    if paths is not None and ops.get(f"{first}.conv2.conv") is not None:  # selective kernel (SK-ResNet)
        imports.append("std.sknet")
        block, expansion, last = "sk_basic", 1, "conv2.conv"
        out = planes = width = ops.get(f"{first}.conv2.conv").attrs["out_channels"]
        groups = 1
        sk = _sk_options(ops, len(depths))
        if sk is None:
            return
        if sk:
            block_opts.append(f"sk = selective_kernel with ({', '.join(sk)})")
    elif res2 is not None and conv3 is not None:  # Res2Net: the 3×3 as a hierarchy of narrow 3×3s
        imports.append("std.res2net")
        block = "res2net_bottleneck"
        scale = 1 + sum(1 for k in range(64) if ops.get(f"{first}.convs.{k}") is not None)
        if scale != 4:
            block_opts.append(f"scale = {scale}")
        out, width, groups = conv3.attrs["out_channels"], res2.attrs["out_channels"], res2.attrs["groups"]
        planes = out // expansion
    elif splat is not None and ops.get(f"{first}.conv2.fc1") is not None and conv3 is not None:  # ResNeSt
        imports.append("std.resnest")
        block = "resnest_bottleneck"
        radix = splat.attrs["out_channels"] // max(1, conv1.attrs["out_channels"] if conv1 else 1)
        if radix != 2:
            block_opts.append(f"radix = {radix}")
        out, width = conv3.attrs["out_channels"], conv1.attrs["out_channels"]
        groups = splat.attrs["groups"] // max(radix, 1)
        planes = out // expansion
    elif conv1 is None or conv2 is None:
        return
    elif (
        (bn1 := ops.get(f"{first}.bn1")) is not None
        and conv1 is not None
        and bn1.id < conv1.id
        and conv2 is not None
    ):  # pre-activation: the block's norm comes first
        if conv3 is not None:
            block, out, width, groups = (
                "preact_bottleneck",
                conv3.attrs["out_channels"],
                conv2.attrs["out_channels"],
                conv2.attrs["groups"],
            )
            planes = out // expansion
        else:
            block, expansion, last = "preact_basic", 1, "conv2"
            out = planes = width = conv2.attrs["out_channels"]
            groups = 1
    elif conv3 is not None and conv3.kind == "conv":
        block = "bottleneck"
        out = conv3.attrs["out_channels"]
        planes = out // expansion
        width = conv2.attrs["out_channels"] if conv2.kind == "conv" else conv1.attrs["out_channels"]
        groups = conv2.attrs["groups"] if conv2.kind == "conv" else 1
        if ops.get("layer2.0.conv1") is not None and ops.get("layer2.0.conv1").attrs.get("stride") == 2:
            block_opts.append("stride_in_1x1 = true")
    elif conv2.kind == "conv":
        block, expansion, last = "basic", 1, "conv2"
        out = planes = conv2.attrs["out_channels"]
        width, groups = planes, 1
    else:
        return
    widths = []
    for i in range(len(depths)):
        op = ops.get(f"layer{i + 1}.0.{last}")
        if op is None:
            return
        widths.append(op.attrs["out_channels"] // expansion)
    args.append(("block", block if not block_opts else f"{block} with ({', '.join(block_opts)})"))
    args.append(("depths", _fmt(depths)))
    if widths != [64 * 2**i for i in range(len(depths))]:
        args.append(("widths", _fmt(widths)))
    if groups != 1:
        args.append(("groups", str(groups)))
    wpg = width * 64 // (planes * groups) if planes * groups else 64
    if wpg != 64:
        args.append(("width_per_group", str(wpg)))
    # the stem
    deep = ops.get("conv1.0")
    stem_conv = ops.get("conv1.6") if deep is not None else ops.get("conv1")
    if stem_conv is None or stem_conv.kind != "conv":
        return
    stem_width = stem_conv.attrs["out_channels"]
    stem_opts: list[str] = []
    if deep is not None:
        half = stem_width // 2
        inner = [
            deep.attrs["out_channels"],
            ops.get("conv1.3").attrs["out_channels"] if ops.get("conv1.3") else 0,
        ]
        if inner == [half, half]:
            stem = "deep_stem"
        elif inner == [3 * (half // 4), half]:
            stem = "deep_tiered_stem"
        else:
            stem, stem_opts = "deep_stem", [f"widths = {_fmt(inner)}"]
    elif (
        stem_conv.attrs["kernel_size"] == 3 and stem_conv.attrs["stride"] == 1 and ops.get("maxpool") is None
    ):
        stem = "cifar_stem"
    else:
        stem = "imagenet_stem"
    if ops.get("bn1") is None and ops.get("conv1.1") is None:  # no norm after the stem: pre-activation
        stem = {"cifar_stem": "preact_cifar_stem", "imagenet_stem": "preact_stem"}.get(stem, stem)
    pool = ops.get("maxpool.0")
    if pool is not None and pool.kind == "conv":
        stem_opts.append("replace_pool = true")
    if stem_opts:
        stem = f"{stem} with ({', '.join(stem_opts)})"
    if stem != "imagenet_stem":
        args.append(("stem", stem))
    if stem_width != 64:
        args.append(("stem_width", str(stem_width)))
    # the shortcut
    # the shortcut: a projection after a pooling (option D), on every block (option C)…
    shortcuts = {
        m.group(1, 2) + (m.group(3),): op
        for path, op in ops.weighted.items()
        if (m := re.match(r"^layer(\d+)\.(\d+)\.downsample\.(\d+)$", path))
    }
    if any(part == "1" and op.kind == "conv" for (_, _, part), op in shortcuts.items()):
        args.append(("shortcut", "option_d"))
    elif any(block != "0" for _, block, _ in shortcuts):
        args.append(("shortcut", "option_c"))
    elif not shortcuts and any(op.kind == "zeropad" for op in ops.traced.ops):
        args.append(("shortcut", "option_a"))
    elif shortcuts and not any(part == "1" for _, _, part in shortcuts):  # a bare 1×1 conv
        args.append(("shortcut", "option_b_conv"))
    # dilation instead of stride in later stages (torchvision's replace_stride_with_dilation)
    dilated = []
    for i in range(1, len(depths)):
        strided = ops.get(f"layer{i + 1}.0.conv2")
        d = ops.get(f"layer{i + 1}.1.conv2") or strided
        dilated.append(
            d is not None
            and d.attrs.get("dilation", 1) > 1
            and strided is not None
            and strided.attrs.get("stride", 1) == 1
            and (ops.get(f"layer{i + 1}.0.conv1") or strided).attrs.get("stride", 1) == 1
        )
    if any(dilated):
        args.append(("replace_stride_with_dilation", _fmt(dilated)))
    norm = _norm(ops.get("bn1") or ops.get(f"{first}.bn1"))
    if norm is not None:
        args.append(("norm", norm))
    act = _act(ops, first, ops.get(f"{first}.bn1"))
    if act is not None:
        args.append(("act", act))
    attn = _attention(ops, first, out)
    if attn is not None:
        args.append(("attn", attn))
    aa_op = next(
        (o for o in ops.traced.ops if (o.module or "").endswith(".aa") and o.kind != "identity"), None
    )
    if aa_op is not None:
        args.append(("aa", layer(aa_op.kind, {k: v for k, v in aa_op.attrs.items() if k != "stride"})))
    if any(
        op.kind == "dropout" and op.attrs.get("p", 0) > 0 and op.id < fc.id and not op.scope
        for op in ops.traced.ops
    ):
        p = next(op.attrs["p"] for op in ops.traced.ops if op.kind == "dropout" and not op.scope)
        args.append(("drop_rate", _fmt(p)))
    if ops.get("bn") is not None:
        args.append(("final_norm", "true"))
    if fc.attrs["out_features"] != 1000:
        args.append(("num_classes", str(fc.attrs["out_features"])))
    args += common
    yield "\n".join(f"import {m}" for m in imports), _call("resnet", name, args)


def _make_divisible(v: float, divisor: int) -> int:
    """timm's make_divisible: ``v`` rounded to a multiple of ``divisor``, never 10 % below."""
    r = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return r + divisor if r < 0.9 * v else r


def _sk_options(ops: _Ops, stages: int) -> list[str] | None:
    """The `selective_kernel` options whose attention widths are the model's (timm's
    make_divisible of out · rd_ratio), or None."""
    found = []
    for path, op in ops.weighted.items():
        m = re.match(r"^(layer\d+\.\d+)\.conv1\.attn\.fc_reduce$", path)
        if m:
            found.append(
                (ops.get(f"{m.group(1)}.conv2.conv").attrs["out_channels"], op.attrs["out_channels"])
            )
    for ratio, text, divisor in (
        (1 / 16, "1 / 16", 8),
        (1 / 8, "1 / 8", 16),
        (1 / 8, "1 / 8", 8),
        (1 / 16, "1 / 16", 16),
        (1 / 4, "1 / 4", 8),
    ):
        if all(_make_divisible(o * ratio, divisor) == a for o, a in found):
            return [
                o
                for o in (
                    f"rd_ratio = {text}" if text != "1 / 16" else "",
                    f"rd_divisor = {divisor}" if divisor != 8 else "",
                )
                if o
            ]
    return None


def _resnetv2(ops: _Ops, name: str, common: list[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    depths = _stages(ops, r"^stages\.(\d+)\.blocks\.(\d+)\.")
    head, stem = ops.get("head.fc"), ops.get("stem.conv")
    if not depths or head is None or stem is None:
        return
    args: list[tuple[str, str]] = [("depths", _fmt(depths))]
    factor = stem.attrs["out_channels"] // 64
    widths = []
    for i in range(len(depths)):
        conv3 = ops.get(f"stages.{i}.blocks.0.conv3")
        if conv3 is None:
            return
        widths.append(conv3.attrs["out_channels"] // 4 // max(factor, 1))
    if widths != [64 * 2**i for i in range(len(depths))]:
        args.append(("widths", _fmt(widths)))
    if factor != 1:
        args.append(("width_factor", str(factor)))
    if stem.kind != "std_conv":
        args.append(
            ("conv_layer", layer(stem.kind, {k: v for k, v in stem.attrs.items() if k in ("eps", "bias")}))
        )
    elif stem.attrs.get("eps", 1e-6) != 1e-6:
        args.append(("conv_layer", f"std_conv with (eps = {_fmt(stem.attrs['eps'])})"))
    norm = ops.get("stages.0.blocks.0.norm1")
    if (
        norm is not None
        and norm.kind != "groupnorm"
        or norm is not None
        and (norm.attrs.get("groups"), norm.attrs.get("eps")) != (32, 1e-5)
    ):
        args.append(("norm", layer(norm.kind, norm.attrs)))
    if head.attrs["out_channels"] != 1000:
        args.append(("num_classes", str(head.attrs["out_channels"])))
    args += common
    yield "import std.resnetv2", _call("resnetv2", name, args)
