"""Torch back end: build time and CPU latency against a hand-written ResNet, same run.

- build: ``resdsl.build(net, seed=0)`` (module creation and torchvision's initialisation,
  from the checked IR) and the generated source's constructor, against constructing
  ``benchmarks/reference_resnet.py`` (plain torch, same layers and initialisation). The
  IR is loaded once beforehand (front-end time is reported on its own). Median of
  ``--repeat`` runs, taken in turn.
- latency: batch 8 at 224×224, eval mode, ``torch.inference_mode``, the same weights in
  every model: the in-process module, the generated source and the reference, eager and
  (``--compile``) through ``torch.compile`` (inductor); then the in-process module with BN
  folded into the convs (:func:`resdsl.fold_batchnorms`) in
  channels_last. Models run in turn, round-robin, so that load from other processes
  falls on all alike. Median of ``--runs``.

Run: PYTHONPATH=. python benchmarks/bench_torch.py [--build resnet50 resnet152] [--compile]
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from reference_resnet import reference  # noqa: E402

import resdsl  # noqa: E402
from resdsl.backends.torch_model import build, fold_batchnorms  # noqa: E402
from resdsl.backends.torch_source import emit  # noqa: E402


def generated(net: resdsl.Network) -> Callable[[], torch.nn.Module]:
    folder = Path(tempfile.mkdtemp())
    path = folder / f"{net.name}.py"
    path.write_text(emit(net))
    spec = importlib.util.spec_from_file_location(f"bench_{net.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, net.name)


def round_robin(fns: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def bench_build(names: list[str], repeat: int) -> None:
    print(f"## Build time (median of {repeat})\n")
    print("| network | front end (load .res) | resdsl.build | generated source | hand-written | "
          "build / hand-written | generated / hand-written |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        start = time.perf_counter()
        net = resdsl.load(ROOT / "specs" / f"{name}.res")
        load = time.perf_counter() - start
        make = generated(net)
        t = round_robin({"ours": lambda net=net: build(net, seed=0), "gen": lambda make=make: make(seed=0),
                         "ref": lambda name=name: reference(name)}, repeat)
        print(f"| {name} | {load * 1e3:.0f} ms | {t['ours'] * 1e3:.0f} ms | {t['gen'] * 1e3:.0f} ms | "
              f"{t['ref'] * 1e3:.0f} ms | {t['ours'] / t['ref']:.3f} | {t['gen'] / t['ref']:.3f} |",
              flush=True)
    print()


def bench_latency(name: str, runs: int, compile_: bool) -> None:
    net = resdsl.load(ROOT / "specs" / f"{name}.res")
    ours = build(net, seed=0).eval()
    state = ours.state_dict()
    ref = reference(name).eval()
    ref.load_state_dict(state, strict=True)
    gen = generated(net)().eval()
    gen.load_state_dict(state, strict=True)
    folded = fold_batchnorms(ours).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 224, 224)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    models: dict[str, Callable[[], object]] = {
        "resdsl.build": lambda: ours(x), "generated source": lambda: gen(x),
        "hand-written": lambda: ref(x), "resdsl.build, BN folded + channels_last": lambda: folded(x_cl),
    }
    with torch.inference_mode():
        expected = ref(x)
        for label, fn in models.items():
            torch.testing.assert_close(fn(), expected, rtol=1e-3, atol=1e-3, msg=label)
        if compile_:
            for label, model in (("resdsl.build, compiled", ours), ("hand-written, compiled", ref)):
                compiled = torch.compile(model)
                start = time.perf_counter()
                torch.testing.assert_close(compiled(x), expected, rtol=1e-3, atol=1e-3)
                print(f"(compiling {label}: {time.perf_counter() - start:.0f} s)", flush=True)
                models[label] = lambda c=compiled: c(x)
        for fn in models.values():  # warm-up
            fn()
        t = round_robin(models, runs)
    print(f"## CPU latency, {name}, batch 8 at 224×224, eval (median of {runs})\n")
    print("| model | latency | ratio |")
    print("|---|---|---|")
    base = {"resdsl.build": "hand-written", "generated source": "hand-written",
            "resdsl.build, compiled": "hand-written, compiled",
            "resdsl.build, BN folded + channels_last": "resdsl.build"}
    for label, seconds in t.items():
        ratio = f"{seconds / t[base[label]]:.3f} × {base[label]}" if label in base else ""
        print(f"| {label} | {seconds * 1e3:.0f} ms | {ratio} |")
    print()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", nargs="*", default=["resnet50", "resnet152"], help="specs to time building")
    p.add_argument("--latency", default="resnet50", help="spec to time the forward pass of")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--runs", type=int, default=10)
    p.add_argument("--compile", action="store_true", help="also torch.compile (minutes on a small CPU)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, Python {platform.python_version()}, {platform.machine()}, "
          f"{torch.get_num_threads()} threads\n")
    if args.build:
        bench_build(args.build, args.repeat)
    if args.latency:
        bench_latency(args.latency, args.runs, args.compile)


if __name__ == "__main__":
    main()
