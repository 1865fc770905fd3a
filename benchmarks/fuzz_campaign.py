"""A recorded fuzz campaign through every stage of resdsl (issue 25).

    python benchmarks/fuzz_campaign.py --count 100000 --seed 1 --state campaign.json

Inputs come from six sources, in turn: specs generated from the language's constructs
(``tests/test_fuzz.py``), token mutations of the shipped specs and the standard library,
random bytes, small networks generated to compile (``tests/test_fuzz_backends.py``), hostile
names in every place a spec names something, the classes of issue 25's defects (built-ins
called with any number of arguments, deep layer paths, long sums and products), calls of the
public Python API with arguments of every wrong type and range (``api``), and seeded builds
and loads racing in threads (``threads``).
Each input is parsed and checked; every spec that checks clean and is small enough goes on
through every back end and is compared across them (``check_everywhere``: the in-process
module, the generated source imported and traced by torch.fx, ONNX in onnxruntime at a random
opset, folded or not, parameter counts against ``stats``, DOT) and the paper table. A
*finding* is any exception other than a diagnostic, a mismatch between back ends, an input
past the time bound (``--bound`` seconds of CPU, or ten times that of wall time for a wait
that burns no CPU), or a process past the memory bound. The bound is CPU time so that a
campaign run at low priority on a busy machine does not report its neighbours as hangs;
after a hang the campaign carries on in a fresh process (``exec``), since an input stopped
midway may leave torch's global state (torch.fx's patched ``Module.__call__``) behind.

Seeded and resumable: input *i* of a source depends only on the seed and *i*, and the state
file records how far each source got, the counts and the findings (saved every few inputs),
so a killed campaign resumes where it stopped. Progress goes to stderr. Each finding's input
is written beside the state file (``finding-N.res``) and the command that reproduces it is
printed: ``--only SOURCE:INDEX``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import signal
import sys
import time
import traceback
import warnings
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SOURCES = ("generated", "mutated", "bytes", "differential", "hostile", "defects", "api", "threads")
#: The largest network sent through every back end (parameters); bigger ones are checked,
#: counted (stats, table, diagram) but not built, to keep the campaign's rate.
MAX_COMPILED_PARAMS = 2_000_000
MAX_COMPILED_MACS = 500_000_000


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


def _bound(seconds: float) -> None:
    """Raise :class:`Hang` after ``seconds`` of this process's CPU time, or ten times that of
    wall time (a read that blocks burns no CPU); 0 clears both."""
    signal.setitimer(signal.ITIMER_PROF, seconds)
    signal.setitimer(signal.ITIMER_REAL, 10 * seconds)


#: Hypothesis draws its simplest examples first: examples are drawn in chunks of this many
#: from one seeded run, so input *i* is the *i mod CHUNK*-th of chunk *i // CHUNK*.
CHUNK = 200
_chunks: dict[tuple, list] = {}


def _draw(strategy, name: str, seed: int, index: int):
    """Example ``index`` of a hypothesis strategy: the same for the same seed and index."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    key = (name, seed, index // CHUNK)
    if key not in _chunks:
        for old in [k for k in _chunks if k[0] == name]:  # one chunk per source at a time
            del _chunks[old]
        out: list = []

        @hseed(zlib.crc32(f"{name}:{seed}:{index // CHUNK}".encode()))
        @settings(max_examples=CHUNK, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def collect(value):
            out.append(value)

        collect()
        _chunks[key] = out
    chunk = _chunks[key]
    return chunk[index % CHUNK % len(chunk)]


def defect_spec(rnd: random.Random) -> str:
    """Issue 25's classes: built-ins with any number of arguments, deep paths, long sums."""
    kind = rnd.randrange(4)
    head = "network n {\n    input [3, 8, 8]\n    a: conv(4, 3, padding = 1)\n"
    if kind == 0:
        fn = rnd.choice(["len", "abs", "round", "floor", "ceil", "int", "float", "sum", "log", "log2", "range",
                         "min", "max"])
        args = ", ".join(rnd.choice(["1", "2.5", "[1, 2]", "-1", "0"]) for _ in range(rnd.randrange(5)))
        return head + f"    b: conv(4, 3, padding = {fn}({args}))\n}}\n"
    if kind == 1:
        depth = rnd.choice([1, 2, 8, 63, 64, 65, 200, 1000])
        name = ".".join(rnd.choice(["a", "b", "0", "x1"]) for _ in range(depth))
        return head + f"    {name}: conv(4, 3, padding = 1)\n}}\n"
    if kind == 2:
        n = rnd.choice([2, 3, 63, 64, 65, 500, 3000])
        return head + f"    r: relu()\n    s: add({', '.join(rnd.choice(['a', 'r']) for _ in range(n))})\n}}\n"
    n = rnd.choice([2, 255, 256, 257, 1000])
    # one `a`, then gates in (0, 1): a long product of conv outputs overflows to inf, which no
    # comparison of back ends can judge
    return head + f"    g: sigmoid()\n    m: multiply(a, {', '.join(['g'] * (n - 1))})\n}}\n"


#: Arguments of every kind for the ``api`` source; ``SPEC``/``NET``/``MODEL``/``FOLDER`` are
#: replaced by a spec path, a checked network, a built model and an empty temporary folder.
API_VALUES = (None, True, 0, 3, -1, 2**64, 1.5, float("nan"), "3", "", "resnet20_cifar", "no_such_spec",
              "n", "SPEC", "NET", "MODEL", "FOLDER", b"network n {}", [], [1, 2], [-9], (0, 1), {}, {"a": 1},
              {"a.weight": "x"}, "spec.res:n", "../..", "/dev/null", "\x00")
#: The public functions, each with the keyword arguments it takes (besides the first).
API_CALLS = {
    "loads": ("path", "network", "allow_large"),
    "load": ("network", "allow_large"),
    "build": ("seed", "out_indices", "inplace", "network"),
    "transplant": ("seed", "network", "allow_nonfinite"),
    "create_model": ("num_classes", "in_chans", "global_pool", "drop_rate", "drop_path_rate", "features_only",
                     "out_indices", "seed", "allow_large", "depths"),
    "list_models": ("pretrained",),
    "pretrained_tags": (),
    "save_pretrained": ("force",),
    "fold_batchnorms": (),
    "values": (),
}
#: A spec small enough to build thousands of times.
TINY = """network n {
    input [3, 16, 16]
    stem: conv(8, 3, stride = 2)
    bn: batchnorm()
    relu: relu()
    body: conv(8, 3)
    add(relu, current)
    pool: global_avgpool()
    flat: flatten()
    fc: linear(10)
}
"""


def api_call(rnd: random.Random) -> tuple[str, list, dict]:
    """One call of the public API: ``(function, positional values, keyword values)``."""
    fn = rnd.choice(sorted(API_CALLS))
    first = [rnd.choice(API_VALUES)]
    if fn == "loads" and rnd.random() < 0.5:
        first = [TINY]
    if fn == "transplant":
        first.append(rnd.choice(API_VALUES))
    if fn == "values":
        first.append(rnd.choice(API_VALUES))
    if fn == "save_pretrained":
        first.append(rnd.choice(["FOLDER", *API_VALUES]))
    keys = API_CALLS[fn]
    kwargs = {k: rnd.choice(API_VALUES) for k in rnd.sample(keys, rnd.randrange(len(keys) + 1))}
    return fn, first, kwargs


def make_input(source: str, index: int, seed: int) -> tuple[str, bytes | str]:
    """``(kind, input)``: text for specs, bytes for the random-bytes source."""
    rnd = random.Random(f"{seed}:{source}:{index}")
    if source == "generated":
        import test_fuzz

        return "text", _draw(test_fuzz.specs(), source, seed, index)
    if source == "mutated":
        import test_fuzz

        texts = sorted(test_fuzz.SOURCES.items())
        std = sorted((ROOT / "specs" / "std").glob("*.res"))
        pool = [t for _, t in texts] + [p.read_text(encoding="utf-8") for p in std]
        return "text", test_fuzz.mutate(rnd.choice(pool), rnd)
    if source == "bytes":
        start = rnd.choice([b"", b"network n {\n input [3, 8, 8]\n", b"\xef\xbb\xbf", b"import std.resnet\n"])
        return "bytes", start + rnd.randbytes(rnd.randrange(400))
    if source == "differential":
        import test_fuzz_backends

        return "text", _draw(test_fuzz_backends.differential_specs(), source, seed, index)
    if source == "hostile":
        import test_fuzz_backends

        return "text", test_fuzz_backends.hostile_text(_draw(test_fuzz_backends.HOSTILE_NAMES, source, seed, index))
    if source == "api":
        return "api", repr(api_call(rnd))
    if source == "threads":
        return "threads", json.dumps([rnd.randrange(2**31) for _ in range(rnd.randrange(2, 5))])
    return "text", defect_spec(rnd)


def run_api(rnd: random.Random, count: dict) -> None:
    """One API call: it returns, or raises the API's own error (a diagnostic, a checkpoint or
    model error, or a TypeError/ValueError that names the function); anything else, or a
    TypeError/ValueError from deep inside, is a finding."""
    import tempfile

    import resdsl
    from resdsl.checkpoints import CheckpointError
    from resdsl.diagnostics import SpecError
    from resdsl.models import ModelError

    fn, args, kwargs = api_call(rnd)
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "spec.res"
        spec.write_text(TINY, encoding="utf-8")

        def real(value):
            if value == "SPEC":
                return spec
            if value == "NET":
                return resdsl.loads(TINY, spec)
            if value == "MODEL":
                return resdsl.build(resdsl.loads(TINY, spec), seed=0)
            if value == "FOLDER":
                return Path(tmp) / "out"
            return value

        call = getattr(resdsl, fn)
        here = os.getcwd()
        os.chdir(tmp)  # a relative folder given to save_pretrained is written here, not in the checkout
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                call(*[real(a) for a in args], **{k: real(v) for k, v in kwargs.items()})
        except (SpecError, CheckpointError, ModelError):
            count["diagnostics"] += 1
        except OSError:  # a checkpoint that is missing or a folder: transplant's documented error
            if fn != "transplant":
                raise
            count["diagnostics"] += 1
        except (TypeError, ValueError) as err:
            if type(err) in (TypeError, ValueError) and fn not in str(err) and "`" not in str(err):
                raise AssertionError(f"{fn}{tuple(args)}, {kwargs}: {type(err).__name__} not in the API's words: "
                                     f"{err}") from err
            count["diagnostics"] += 1
        else:
            count["checked_clean"] += 1
        finally:
            os.chdir(here)


def run_threads(seeds: list[int], count: dict) -> None:
    """Seeded builds and loads racing in threads give what each gives alone."""
    import threading

    import torch

    import resdsl

    net = resdsl.loads(TINY, "tiny.res")
    alone = {s: resdsl.build(net, seed=s).state_dict() for s in seeds}
    got: dict[int, dict] = {}
    errors: list[BaseException] = []

    def work(s: int) -> None:
        try:
            resdsl.loads(TINY.replace("n {", f"n{s} {{"), f"t{s}.res")
            got[s] = resdsl.build(net, seed=s).state_dict()
        except BaseException as err:  # reported below, as the finding
            errors.append(err)

    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    for s in seeds:
        if not all(torch.equal(alone[s][k], got[s][k]) for k in alone[s]):
            raise AssertionError(f"seed {s}: the build in a thread differs from the build alone")
    count["compiled"] += 1


def run_one(source: str, index: int, seed: int, stats: dict) -> None:
    """Parse, check and, for a clean small spec, compile and compare everywhere. Raises on a finding."""
    import test_fuzz
    import test_fuzz_backends

    import resdsl
    from resdsl.diagnostics import SpecError
    from resdsl.tables import render as render_table

    kind, data = make_input(source, index, seed)
    count = stats.setdefault(source, {"inputs": 0, "checked_clean": 0, "compiled": 0, "diagnostics": 0})
    count["inputs"] += 1
    if kind == "api":
        run_api(random.Random(f"{seed}:{source}:{index}"), count)
        return
    if kind == "threads":
        run_threads(json.loads(data), count)
        return
    if kind == "bytes":
        path = Path(os.environ.get("TMPDIR", "/tmp")) / f"resdsl-campaign-{os.getpid()}.res"
        path.write_bytes(data)
        try:
            test_fuzz.check_bytes(data, path.parent)
        finally:
            path.unlink(missing_ok=True)
        return
    text = data
    test_fuzz.check_input(text, test_fuzz_backends.PATH)  # parse + check: a network or diagnostics
    try:
        net = resdsl.loads(text, test_fuzz_backends.PATH)
    except SpecError:
        count["diagnostics"] += 1
        return
    count["checked_clean"] += 1
    render_table([net], "markdown")
    if net.params > MAX_COMPILED_PARAMS or net.macs > MAX_COMPILED_MACS:
        from resdsl.backends import dot
        from resdsl.stats import render as render_stats

        render_stats([net], "json")
        dot.emit(net)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if test_fuzz_backends.check_everywhere(text, index % 2**20, onnx_runs=1, kind=source):
            count["compiled"] += 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=1000, help="inputs in all (split evenly over the sources)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--state", type=Path, default=Path("fuzz-campaign.json"), help="progress; resumed if present")
    p.add_argument("--sources", default=",".join(SOURCES), help=f"a comma-separated subset of {', '.join(SOURCES)}")
    p.add_argument("--bound", type=float, default=60.0, help="seconds one input may take")
    p.add_argument("--max-rss-mb", type=int, default=4000, help="the process's peak memory bound")
    p.add_argument("--only", metavar="SOURCE:INDEX", help="run one input (to reproduce a finding) and stop")
    p.add_argument("--stop-at", type=float, default=None, help="stop (resumably) after this many seconds")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    signal.signal(signal.SIGALRM, _alarm)
    signal.signal(signal.SIGPROF, _alarm)
    if args.only:
        source, index = args.only.split(":")
        run_one(source, int(index), args.seed, {})
        print("no finding")
        return 0
    sources = args.sources.split(",")
    state = {"seed": args.seed, "next": {s: 0 for s in sources}, "stats": {}, "findings": [], "seconds": 0.0}
    if args.state.exists():
        state = json.loads(args.state.read_text())
        if state["seed"] != args.seed:
            p.error(f"{args.state} is a campaign with seed {state['seed']}; give that seed or another --state")
        for s in sources:
            state["next"].setdefault(s, 0)
    per_source = -(-args.count // len(sources))
    started = time.monotonic()
    base = state["seconds"]
    last_save = 0.0

    def save() -> None:
        state["seconds"] = base + time.monotonic() - started
        state["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
        tmp = args.state.with_name(args.state.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, args.state)

    done_before = sum(state["next"].values())
    try:
        while True:
            pending = [s for s in sources if state["next"][s] < per_source]
            if not pending:
                break
            if args.stop_at is not None and time.monotonic() - started > args.stop_at:
                print("\nstopped at the time limit; run again to resume", file=sys.stderr)
                break
            for source in pending:
                index = state["next"][source]
                make_input(source, index, args.seed)  # drawing a chunk of examples is the harness's time
                _bound(args.bound)
                try:
                    run_one(source, index, args.seed, state["stats"])
                except KeyboardInterrupt:
                    raise
                except BaseException as err:  # Hang, AssertionError (a mismatch), any traceback
                    _bound(0)
                    what = "hang" if isinstance(err, Hang) else f"{type(err).__name__}: {str(err)[:300]}"
                    n = len(state["findings"])
                    kind, data = make_input(source, index, args.seed)
                    where = args.state.with_name(f"finding-{n}.res")
                    where.write_bytes(data if isinstance(data, bytes) else data.encode())
                    state["findings"].append({"source": source, "index": index, "what": what, "file": where.name,
                                              "trace": traceback.format_exc()[-2000:],
                                              "reproduce": f"python benchmarks/fuzz_campaign.py --seed {args.seed} "
                                                           f"--only {source}:{index}"})
                    print(f"\nfinding {n}: {source}:{index}: {what}", file=sys.stderr)
                    if isinstance(err, Hang):
                        state["next"][source] = index + 1
                        save()
                        print("carrying on in a fresh process", file=sys.stderr, flush=True)
                        os.execv(sys.executable, [sys.executable, *sys.argv])
                finally:
                    _bound(0)
                state["next"][source] = index + 1
                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
                if rss > args.max_rss_mb:
                    state["findings"].append({"source": source, "index": index, "what": f"peak RSS {rss} MB"})
                    save()
                    print(f"\nmemory past the bound ({rss} MB)", file=sys.stderr)
                    return 1
            done = sum(state["next"].values())
            now = time.monotonic()
            if now - last_save > 10:
                save()
                last_save = now
                rate = (done - done_before) / max(now - started, 1e-9)
                print(f"\r{done:,}/{per_source * len(sources):,} inputs, {len(state['findings'])} findings, "
                      f"{rate:.1f}/s", end="", file=sys.stderr, flush=True)
    finally:
        save()
    total = sum(state["next"].values())
    print(f"\n{total:,} inputs in {state['seconds']:.0f} s, {len(state['findings'])} findings; "
          f"peak RSS {state['peak_rss_mb']} MB", file=sys.stderr)
    for source, c in sorted(state["stats"].items()):
        print(f"  {source}: {c}", file=sys.stderr)
    return 1 if state["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
