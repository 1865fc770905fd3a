"""Two profiles behind the eager figures of results-eager.md (benchmarks/README.md).

1. The in-process module's own Python cost per forward: resnet50 and resnet152 at
   1×3×32×32, where the kernels are cheap, against torchvision (interleaved, alternating).
2. Where the time of a BN-folded channels_last resdsl model goes, against torchvision in
   the default format (torch.profiler, batch 8 at 224).

Run in the reference environment (it has torchvision):

    PYTHONPATH=. ~/.cache/resdsl/ref-venv/bin/python benchmarks/profile_eager.py
"""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
import torchvision
from bench_frontend import median_time  # this script's folder is on sys.path
from torch.profiler import ProfilerActivity, profile

import resdsl
from resdsl.backends.torch_model import fold_batchnorms

SPECS = Path(__file__).resolve().parent.parent / "specs"


def pair(name: str):
    net = resdsl.load(SPECS / f"{name}.res")
    ref = getattr(torchvision.models, name)().eval()
    ours = resdsl.build(net).eval()
    ours.load_state_dict(ref.state_dict())
    return net, ours, ref


def python_cost(name: str, rounds: int = 30) -> None:
    _, ours, ref = pair(name)
    x = torch.randn(1, 3, 32, 32)
    times: dict[str, list[float]] = {"ours": [], "ref": []}
    models = {"ours": ours, "ref": ref}
    with torch.inference_mode():
        for m in models.values():
            m(x)
        for r in range(rounds):
            for key in ("ours", "ref") if r % 2 else ("ref", "ours"):
                times[key].append(median_time(lambda m=models[key]: m(x), 5))
    a, b = statistics.median(times["ours"]), statistics.median(times["ref"])
    print(f"{name} 1x3x32x32: resdsl {a * 1e3:.2f} ms, torchvision {b * 1e3:.2f} ms, "
          f"difference {(a - b) * 1e3:.2f} ms per forward")


def folded_profile(name: str) -> None:
    net, ours, ref = pair(name)
    folded = fold_batchnorms(ours).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 224, 224)
    for label, model, inp in (("torchvision default", ref, x),
                              ("resdsl BN-folded channels_last", folded, x.contiguous(memory_format=torch.channels_last))):
        with torch.inference_mode():
            model(inp)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(3):
                    model(inp)
        rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
        total = sum(e.self_cpu_time_total for e in rows)
        top = ", ".join(f"{e.key} {100 * e.self_cpu_time_total / total:.0f}%" for e in rows[:5])
        print(f"{name} {label}: {total / 3 / 1e3:.0f} ms per forward; {top}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    for name in ("resnet50", "resnet152"):
        python_cost(name)
    for name in ("resnet50", "resnext50_32x4d"):
        folded_profile(name)
