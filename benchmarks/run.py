"""The benchmark suite in one command: every figure issue 14 asks for, written to
``benchmarks/results.md`` with the command that produced it.

Run it in the reference environment, which has torchvision and timm:

    PYTHONPATH=. /root/.cache/resdsl/ref-venv/bin/python benchmarks/run.py

Fairness rules (issue 14): every comparison is interleaved, the order of the contenders
reversed every other round; each figure is the median over rounds of the per-round ratio
(ours / reference), with its min–max and the number of rounds; compile times and whole-
process ONNX times are measured in fresh processes, alternating, each with an empty
inductor cache. Absolute times on a shared machine swing with load: read the ratios.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"


def summary(ratios: list[float]) -> str:
    return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}–{max(ratios):.3f}, n={len(ratios)})"


def interleaved(contenders: dict, rounds: int, reference: str) -> dict[str, list[float]]:
    """Run each contender once per round, order reversed every other round; ratios to
    ``reference`` per round."""
    names = list(contenders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            t = time.perf_counter()
            contenders[name]()
            times[name].append(time.perf_counter() - t)
    return {n: [a / b for a, b in zip(times[n], times[reference])] for n in names if n != reference} | \
        {f"{reference} (ms)": [t * 1000 for t in times[reference]]}


# ---------------------------------------------------------------- eager forward


def _reference_model(name: str):
    import timm
    import torchvision

    if hasattr(torchvision.models, name):  # the ResNets: torchvision's own
        return getattr(torchvision.models, name)(weights=None), "torchvision"
    return timm.create_model(name, pretrained=False), "timm"  # seresnet50 and the families of issue 22


def eager(names: list[str], batch: int, size: int, rounds: int, lines: list[str]) -> None:
    import torch

    import resdsl
    from resdsl.backends.torch_model import fold_batchnorms
    from resdsl.backends.torch_source import emit

    sys.path.insert(0, str(ROOT / "tests"))
    from test_torch_source import import_source

    lines += ["## Eager forward (CPU), ratio to the reference, same run", "",
              f"Batch {batch} at {size}×{size}, eval, `torch.inference_mode`, {torch.get_num_threads()} "
              "threads. Ratio < 1: resdsl is faster.", "",
              "| network | reference | format | resdsl.build | generated source | BN-folded resdsl.build "
              "| reference (ms, median) |", "|---|---|---|---|---|---|---|"]
    tmp = Path(tempfile.mkdtemp())
    folded_vs_default: dict[str, list[float]] = {}
    for name in names:
        net = resdsl.load(SPECS / f"{name}.res")
        ref, ref_name = _reference_model(name)
        ref.eval()
        ours = resdsl.build(net).eval()
        ours.load_state_dict(ref.state_dict())
        gen = getattr(import_source(emit(net), tmp, name), name)().eval()
        gen.load_state_dict(ref.state_dict())
        folded = fold_batchnorms(ours)
        ref_default = copy.deepcopy(ref)  # stays in the default format: the BN-folding target's reference
        x = torch.randn(batch, 3, size, size)
        for fmt in ("default", "channels_last"):
            mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
            models = {m: mod.to(memory_format=mf) for m, mod in
                      (("ref", ref), ("ours", ours), ("gen", gen), ("folded", folded))}
            xf = x.contiguous(memory_format=mf)
            with torch.inference_mode():
                want = models["ref"](xf)
                # untrained weights make logits in the thousands: the tolerance follows their scale
                # (folding BN rounds differently, and a ReLU near zero can flip)
                scale = want.abs().max().item()
                for m in ("ours", "gen", "folded"):
                    torch.testing.assert_close(models[m](xf), want, rtol=1e-3, atol=1e-3 * scale)
                for m in models.values():  # warm-up
                    m(xf)
                calls = {m: (lambda mod=mod, xf=xf: mod(xf)) for m, mod in models.items()}
                if fmt == "channels_last":
                    ref_default(x)
                    calls["ref_default"] = lambda m=ref_default, x=x: m(x)
                r = interleaved(calls, rounds, "ref")
                if fmt == "channels_last":  # folded channels_last against the reference, default format
                    folded_vs_default[name] = [a / b for a, b in zip(r["folded"], r["ref_default"])]
            lines.append(f"| {name} | {ref_name} | {fmt} | {summary(r['ours'])} | {summary(r['gen'])} | "
                         f"{summary(r['folded'])} | {statistics.median(r['ref (ms)']):.0f} |")
            print(lines[-1], flush=True)
    lines += ["", "The BN-folded column is `fold_batchnorms(resdsl.build(net))` in that format, "
              "against the reference *unfolded* in the same format.", "",
              "BN-folded resdsl in channels_last against the reference eager in the default format "
              "(the issue's target ≤ 0.75), same rounds:", ""]
    lines += [f"- {name}: **{summary(r)}**" for name, r in folded_vs_default.items()]
    lines.append("")


# ---------------------------------------------------------------- build


def build_time(rounds: int, lines: list[str]) -> None:
    import torch
    import torchvision

    import resdsl

    net = resdsl.load(SPECS / "resnet152.res")
    calls = {"ours": lambda: resdsl.build(net, seed=0), "ref": lambda: torchvision.models.resnet152()}
    for f in calls.values():
        f()
    r = interleaved(calls, rounds, "ref")
    lines += ["## Build: `resdsl.build(resnet152)` / `torchvision.models.resnet152()`", "",
              f"In one process, interleaved, {torch.get_num_threads()} threads: **{summary(r['ours'])}**; "
              f"torchvision {statistics.median(r['ref (ms)']):.0f} ms (median).", ""]
    print(lines[-2], flush=True)


# ---------------------------------------------------------------- fresh processes


_COMPILE = """
import sys, time, torch
which, size = sys.argv[1], int(sys.argv[2])
if which == "ours":
    import resdsl
    model = resdsl.build(resdsl.load(sys.argv[3]))
else:
    import torchvision
    model = torchvision.models.resnet50()
model.eval()
x = torch.randn(2, 3, size, size)
compiled = torch.compile(model)
t = time.perf_counter()
with torch.inference_mode():
    compiled(x)
print(time.perf_counter() - t)
"""

_EXPORT = """
import sys, time
t = time.perf_counter()
import torch, torchvision
from safetensors.torch import load_file
model = torchvision.models.resnet50()
model.load_state_dict(load_file(sys.argv[1]))
model.eval()
torch.onnx.export(model, (torch.randn(1, 3, 224, 224),), sys.argv[2], dynamo=False, opset_version=17,
                  input_names=["input"], dynamic_axes={"input": {0: "batch"}})
"""


def fresh(rounds: int, commands: dict[str, list[str]], env: dict | None = None, parse=None) -> dict:
    """Each command in a fresh process per round, alternating; wall time, or what ``parse``
    reads from its stdout."""
    names = list(commands)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            with tempfile.TemporaryDirectory() as cache:
                e = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache, TRITON_CACHE_DIR=cache, **(env or {}))
                t = time.perf_counter()
                out = subprocess.run(commands[name], capture_output=True, text=True, env=e, check=True)
                wall = time.perf_counter() - t
            times[name].append(parse(out.stdout) if parse else wall)
    return times


def compile_time(rounds: int, lines: list[str]) -> None:
    py = sys.executable
    spec = str(SPECS / "resnet50.res")
    t = fresh(rounds, {"ours": [py, "-c", _COMPILE, "ours", "224", spec],
                       "ref": [py, "-c", _COMPILE, "ref", "224"]},
              env={"PYTHONPATH": str(ROOT)}, parse=lambda s: float(s.strip().splitlines()[-1]))
    ratios = [a / b for a, b in zip(t["ours"], t["ref"])]
    lines += ["## Cold `torch.compile` (resnet50, first call, fresh process and empty inductor cache each)", "",
              f"resdsl / torchvision: **{summary(ratios)}**; torchvision {statistics.median(t['ref']):.1f} s, "
              f"resdsl {statistics.median(t['ours']):.1f} s (medians).", ""]
    print(lines[-2], flush=True)


def onnx_time(rounds: int, lines: list[str]) -> None:
    import torchvision
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp())
    weights = tmp / "resnet50.safetensors"
    save_file(torchvision.models.resnet50().state_dict(), weights)
    py = sys.executable
    # the `resdsl` command, run from this checkout
    ours = [py, "-c", "import sys; from resdsl.cli import main; sys.exit(main(sys.argv[1:]))", "compile", str(SPECS / "resnet50.res"), "--target", "onnx",
            "--weights", str(weights), "-o", str(tmp / "ours.onnx")]
    t = fresh(rounds, {"ours": ours, "ref": [py, "-c", _EXPORT, str(weights), str(tmp / "ref.onnx")],
                       "fold": [*ours[:-2], "--fold-bn", "-o", str(tmp / "folded.onnx")]},
              env={"PYTHONPATH": str(ROOT)})
    lines += ["## ONNX, whole process (resnet50 from safetensors)", "",
              "`resdsl compile --target onnx --weights resnet50.safetensors` against a process that "
              "imports torch and torchvision, loads the same safetensors and calls "
              "`torch.onnx.export(..., dynamo=False)` (fresh processes, alternating):", "",
              f"- resdsl / torch.onnx.export: **{summary([a / b for a, b in zip(t['ours'], t['ref'])])}** "
              f"(resdsl {statistics.median(t['ours']):.2f} s, export {statistics.median(t['ref']):.2f} s)",
              f"- `--fold-bn` / plain resdsl: {summary([a / b for a, b in zip(t['fold'], t['ours'])])}", ""]
    print("\n".join(lines[-3:]), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=15, help="rounds of in-process comparisons")
    parser.add_argument("--process-rounds", type=int, default=4, help="rounds of fresh-process comparisons")
    parser.add_argument("--networks", default="resnet50,resnet152,resnext50_32x4d,seresnet50")
    parser.add_argument("--only", default="eager,build,onnx,compile", help="parts to run")
    parser.add_argument("-o", "--output", default=str(ROOT / "benchmarks" / "results.md"))
    args = parser.parse_args()
    import torch

    load = os.getloadavg()
    python = Path(sys.executable).as_posix().replace(Path.home().as_posix(), "~", 1)  # no machine paths
    command = "PYTHONPATH=. " + " ".join([python, "benchmarks/run.py", *sys.argv[1:]])
    lines = ["# Benchmark results (issue 14)", "",
             f"`{command}` — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
             f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cores, load "
             f"average at the start {load[0]:.1f}. No GPU was lent to this task: CPU figures only.", "",
             "Each figure: median of the per-round ratio ours / reference, (min–max, n = rounds).", ""]
    parts = args.only.split(",")
    if "eager" in parts:
        eager(args.networks.split(","), args.batch, args.size, args.rounds, lines)
    if "build" in parts:
        build_time(args.rounds, lines)
    if "onnx" in parts:
        onnx_time(args.process_rounds, lines)
    if "compile" in parts:
        compile_time(args.process_rounds, lines)
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    Path(args.output).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
