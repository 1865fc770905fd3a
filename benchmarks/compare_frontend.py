"""Front-end load time of two checkouts, side by side: did a change slow `resdsl.load` down?

    python benchmarks/compare_frontend.py BEFORE_TREE AFTER_TREE [--rounds 16] [--specs resnet152 …]

Each sample is a fresh process that imports resdsl from one tree, loads the spec once (so
the standard library is parsed, as in any process that loads several specs) and then takes
the minimum CPU time of five more loads. The two trees alternate, and their order flips
every round; the ratio after/before is taken per round. CPU time, not wall time, because the
machine is usually shared.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

SAMPLE = """
import sys, time, resdsl
spec = sys.argv[1]
resdsl.load(spec)
times = []
for _ in range(5):
    t = time.process_time(); resdsl.load(spec); times.append(time.process_time() - t)
print(min(times))
"""
SPECS = ("resnet50", "preact_resnet1001_cifar")


def sample(tree: str, spec: str) -> float:
    out = subprocess.run([sys.executable, "-c", SAMPLE, f"{tree}/specs/{spec}.res"], env={"PYTHONPATH": tree},
                         capture_output=True, text=True, check=True, cwd="/")
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--specs", nargs="+", default=list(SPECS), metavar="SPEC",
                        help=f"shipped specs to load (default: {' '.join(SPECS)})")
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    print("| spec | before, ms | after, ms | after / before | rounds |\n|---|---|---|---|---|")
    for spec in args.specs:
        times: dict[str, list[float]] = {k: [] for k in trees}
        ratios = []
        for r in range(args.rounds):
            got = {}
            for k in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
                got[k] = sample(trees[k], spec)
                times[k].append(got[k])
            ratios.append(got["after"] / got["before"])

        def fmt(xs: list[float], scale: float = 1e3) -> str:
            return f"{statistics.median(xs) * scale:.2f} ({min(xs) * scale:.2f}–{max(xs) * scale:.2f})"

        print(f"| {spec} | {fmt(times['before'])} | {fmt(times['after'])} | {fmt(ratios, 1)} | {args.rounds} |")


if __name__ == "__main__":
    main()
