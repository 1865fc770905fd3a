"""Front-end speed: parse + elaborate + validate each shipped spec.

For each spec: the median time of `resdsl.load` (warm: the standard library is already
parsed, as in any process that loads more than one spec), and as a reference measured
in the same run, the time torch takes to construct the same network's modules
(`resdsl.build` with its weight initialisation). The ratio says what checking a spec
costs next to building the model a user would build anyway.

Run: PYTHONPATH=. python benchmarks/bench_frontend.py [--repeat N] [--no-torch]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import resdsl  # noqa: E402
from resdsl.loader import _PARSED  # noqa: E402


def median_time(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-torch", action="store_true", help="skip the torch reference")
    args = ap.parse_args()
    specs = sorted((ROOT / "specs").glob("*.res"))

    _PARSED.clear()
    t = time.perf_counter()
    resdsl.load(specs[0])
    cold = time.perf_counter() - t

    print(f"cold start (first load, parses the standard library): {cold * 1e3:.1f} ms\n")
    print("| spec | ops | load (ms) | torch build (ms) | load / build |")
    print("|---|---:|---:|---:|---:|")
    for path in specs:
        net = resdsl.load(path)
        load = median_time(lambda p=path: resdsl.load(p), args.repeat)
        if args.no_torch:
            print(f"| {path.stem} | {len(net.ops)} | {load * 1e3:.1f} | | |")
            continue
        build = median_time(lambda n=net: resdsl.build(n), max(1, args.repeat // 2))
        print(f"| {path.stem} | {len(net.ops)} | {load * 1e3:.1f} | {build * 1e3:.0f} | "
              f"{load / build:.3f} |")


if __name__ == "__main__":
    main()
