"""Resource fuzzing: specs built to exhaust time, memory or Python's stack must end with a
network or a diagnostic within 10 s each, in a process limited to 2 GiB of address space.

Each family below makes a spec from a size (deep operator chains, long strings, nested
loops, nested stages of empty blocks, list doubling, fan-out imports through symbolic
links, huge files, recursion…); a seeded generator draws family and size. All cases of a
run go to one child process under ``resource.setrlimit`` (address space and CPU time),
which reports each case's outcome and time as JSON. ``--fuzz-long`` runs ten times more.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT

MEMORY_LIMIT = 2 * 2**30  # bytes of address space for the child
TIME_LIMIT = 10.0  # seconds per case

NET = "network n {\n    input [3, 8, 8]\n%s\n}\n"


def _chain(op: str, n: int) -> str:
    return f"network n(x = {op.join(['1'] * n)}) {{\n    input [3, 8, 8]\n}}\n"


FAMILIES = {
    "pow": lambda n: _chain(" ** ", n),
    "plus": lambda n: _chain(" + ", n),
    "compare": lambda n: _chain(" < ", n),
    "cond": lambda n: "network n(x = " + "1 if true else " * n + "1) {\n    input [3, 8, 8]\n}\n",
    "not": lambda n: "network n(x = " + "not " * n + "true) {\n    input [3, 8, 8]\n}\n",
    "neg": lambda n: "network n(x = " + "-" * n + "1) {\n    input [3, 8, 8]\n}\n",
    "parens": lambda n: "network n(x = " + "(" * n + "1" + ")" * n + ") {\n    input [3, 8, 8]\n}\n",
    "lists": lambda n: "network n(x = " + "[" * n + "1" + "]" * n + ") {\n    input [3, 8, 8]\n}\n",
    "strings": lambda n: NET % f'    s = "ab"\n    for i in range({n}) {{\n        s = s + s\n    }}',
    "list_doubling": lambda n: NET % f"    l = [1]\n    for i in range({n}) {{\n        l = l + l\n    }}",
    "loops2": lambda n: NET % f"    for i in range({n}) {{\n        for j in range({n}) {{\n            x = i * j\n        }}\n    }}",
    "loops3": lambda n: NET % (f"    for i in range({n}) {{\n        for j in range({n}) {{\n"
                               f"            for k in range({n}) {{\n            }}\n        }}\n    }}"),
    "range_lists": lambda n: NET % f"    for i in range({n}) {{\n        l = range({n})\n        t = len(l) + sum(l)\n    }}",
    "empty_stages": lambda n: ("block e(stride = 1) {\n}\nblock outer(stride = 1) {\n"
                               f"    inner: stage(e, {n})\n}}\n" + NET % f"    c: conv(4, 3)\n    l: stage(outer, {n})"),
    "relu_lines": lambda n: NET % ("    relu()\n" * n),
    "relu_loops": lambda n: NET % f"    for i in range({n}) {{\n        for j in range({n}) {{\n            relu()\n        }}\n    }}",
    "recursion": lambda n: f"block r(d = {n}) {{\n    x: r(d - 1)\n}}\n" + NET % "    a: r()",
    "huge_number": lambda n: NET % f"    x = {'9' * n}",
    "range_huge": lambda n: NET % f"    for i in range(10 ** {n}) {{\n    }}",
    "wide": lambda n: NET % f"    c: conv({n}, 63)\n    d: conv({n}, 63)",
    "deep_stage": lambda n: "import std.resnet\nnetwork n = resnet(block = basic, "
                            f"depths = [{n}, {n}, {n}], widths = [16, 32, 64], image_size = 32)\n",
}

#: Families that need files beside the spec: (spec text, {name: content or a special}).
FILE_FAMILIES = {
    # each level imports the next through every symbolic link to "."
    "fanout": lambda n: (
        'import "l0.res"\n' + NET % "",
        {**{f"d{i}": "@link:." for i in range(3)},
         **{f"l{k}.res": "".join(f'import "d{i}/l{k + 1}.res"\n' for i in range(3)) + f"module m{k}(w) {{\n}}\n"
            for k in range(n)},
         f"l{n}.res": "module last(w) {\n}\n"}),
    "self_import": lambda n: ('import "d0/s.res"\n' + NET % "",
                              {**{f"d{i}": "@link:." for i in range(n)},
                               "s.res": "".join(f'import "d{i}/s.res"\n' for i in range(n)) + "module s(w) {\n}\n"}),
    "import_chain": lambda n: ('import "c0.res"\n' + NET % "",
                               {f"c{k}.res": f'import "c{k + 1}.res"\n' for k in range(n)} | {f"c{n}.res": ""}),
    "sparse_import": lambda n: ('import "big.res"\n' + NET % "", {"big.res": f"@sparse:{n}"}),
    "link_loop": lambda n: ('import "a.res"\n' + NET % "", {"a.res": "@link:b.res", "b.res": "@link:a.res"}),
    "fifo_import": lambda n: ('import "f.res"\n' + NET % "", {"f.res": "@fifo"}),
}

SIZES = [1, 2, 3, 10, 40, 64, 100, 200, 300, 600, 1000, 5000, 10000, 30000, 100000]


def draw_cases(rnd: random.Random, n: int) -> list[dict]:
    cases = []
    names = sorted(FAMILIES) + sorted(FILE_FAMILIES)
    for i in range(n):
        family = names[i % len(names)] if i < len(names) else rnd.choice(names)
        size = rnd.choice(SIZES)
        if family in FILE_FAMILIES:
            size = {"sparse_import": rnd.choice([10**6 + 1, 2**30, 2**33]),
                    "fanout": rnd.randint(1, 12), "self_import": rnd.randint(2, 6),
                    "import_chain": rnd.randint(1, 60)}.get(family, 1)
            text, files = FILE_FAMILIES[family](size)
        else:
            if family in ("strings", "list_doubling"):
                size = rnd.randint(1, 60)
            elif family in ("relu_lines", "huge_number"):
                size = min(size, 30000)
            text, files = FAMILIES[family](size), {}
        cases.append({"family": family, "size": size, "text": text, "files": files})
    return cases


CHILD = textwrap.dedent("""
    import json, os, sys, tempfile, time, traceback
    from resdsl.diagnostics import SpecError
    from resdsl.loader import Loader

    results = []
    for case in json.load(sys.stdin):
        folder = tempfile.mkdtemp(prefix="resdsl-fuzz-")
        for name, content in case["files"].items():
            path = os.path.join(folder, name)
            if content.startswith("@link:"):
                os.symlink(content[6:], path)
            elif content.startswith("@sparse:"):
                with open(path, "wb") as f:
                    f.truncate(int(content[8:]))
            elif content == "@fifo":
                os.mkfifo(path)
            else:
                with open(path, "w") as f:
                    f.write(content)
        start = time.perf_counter()
        try:
            net = Loader().load(os.path.join(folder, "spec.res"), text=case["text"])
            outcome = f"ok {len(net.ops)} ops"
        except SpecError as err:
            render = err.render()
            outcome = "diagnostics " + ",".join(sorted({d.code for d in err.diagnostics}))
            if "Traceback" in render:
                outcome = "traceback in a diagnostic"
        except BaseException as err:
            outcome = "EXCEPTION " + "".join(traceback.format_exception_only(type(err), err)).strip()[:300]
        results.append({"family": case["family"], "size": case["size"], "outcome": outcome,
                        "seconds": time.perf_counter() - start})
        print(json.dumps(results[-1]), flush=True)
""")


def _limits() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cases(cases: list[dict]) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(cases), capture_output=True,
                          text=True, env=env, preexec_fn=_limits, timeout=60 + 15 * len(cases))
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and len(results) == len(cases), (
        f"the child died after {len(results)} of {len(cases)} cases "
        f"(next: {cases[len(results)]['family']} {cases[len(results)]['size']}): {proc.stderr[-2000:]}")
    return results


def check(cases: list[dict]) -> None:
    failures = [r for r in run_cases(cases)
                if r["outcome"].startswith(("EXCEPTION", "traceback")) or r["seconds"] > TIME_LIMIT]
    assert not failures, json.dumps(failures, indent=1)


def test_resource_cases():
    check(draw_cases(random.Random(13), 3 * (len(FAMILIES) + len(FILE_FAMILIES))))


def test_each_family_ends_in_a_diagnostic_at_its_largest():
    """The largest size of each unbounded family is refused with a diagnostic."""
    big = [{"family": f, "size": n, "text": FAMILIES[f](n), "files": {}} for f, n in [
        ("pow", 600), ("cond", 600), ("strings", 40), ("list_doubling", 40), ("loops2", 10000),
        ("loops3", 10000), ("empty_stages", 10000), ("relu_lines", 30000), ("recursion", 100)]]
    big += [{"family": f, "size": n, "text": FILE_FAMILIES[f](n)[0], "files": FILE_FAMILIES[f](n)[1]}
            for f, n in [("sparse_import", 2**33), ("link_loop", 1), ("fifo_import", 1), ("self_import", 6)]]
    results = run_cases(big)
    assert all(r["outcome"].startswith("diagnostics") for r in results), json.dumps(results, indent=1)
    assert all(r["seconds"] < TIME_LIMIT for r in results), json.dumps(results, indent=1)


@pytest.mark.fuzz_long
def test_resource_cases_long():
    n = int(os.environ.get("RESDSL_FUZZ_RESOURCE_CASES", "400"))
    for start in range(0, n, 100):  # a fresh child every hundred cases
        check(draw_cases(random.Random(1000 + start), min(100, n - start)))
