"""ONNX back end: emission time and onnxruntime latency against `torch.onnx.export`.

For each spec, in one run and with the same weights (the torch back end's module, seed 0):

- emission: `resdsl.backends.onnx_graph.emit(net, weights=state_dict)` (a serialised
  model, weights included) against `torch.onnx.export` of the module, with a dynamic batch
  axis, by the TorchScript exporter (`dynamo=False`) and, when onnxscript is installed,
  by the torch.export-based one (`dynamo=True`, torch's default). Median of `--repeat`
  runs for resdsl, of `--export-repeat` for torch.
- latency: onnxruntime (CPUExecutionProvider, all graph optimisations, `--threads` intra-op
  threads) on a batch of 8 at 224×224; sessions are run in turn, round-robin, so
  that load from other processes falls on all of them alike. Median and minimum of
  `--runs`, and the number of nodes onnxruntime runs once it has optimised each graph.

Run: PYTHONPATH=. python benchmarks/bench_onnx.py [--specs resnet50 resnet152] [--repeat 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402

import resdsl  # noqa: E402
from resdsl.backends import onnx_graph  # noqa: E402


def timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def export(model: torch.nn.Module, shape: tuple[int, ...], dynamo: bool) -> bytes:
    buf = io.BytesIO()
    x = torch.randn(1, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(model, (x,), dynamo=True, opset_version=18, input_names=["input"],
                                        output_names=["output"], dynamic_shapes=({0: batch},), verbose=False)
            program.save(buf)
        else:
            torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=17, input_names=["input"],
                              output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return buf.getvalue()


def session(data: bytes, threads: int, optimized: Path) -> tuple[ort.InferenceSession, int]:
    """A session, and the number of nodes onnxruntime runs after its graph optimisations."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(optimized)
    result = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return result, len(onnx.load(optimized).graph.node)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--specs", nargs="+", default=["resnet50", "resnet152"])
    ap.add_argument("--repeat", type=int, default=5, help="resdsl emissions per spec")
    ap.add_argument("--export-repeat", type=int, default=1, help="torch.onnx.export runs per exporter")
    ap.add_argument("--runs", type=int, default=20, help="onnxruntime runs per session")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-dynamo", action="store_true", help="skip the torch.export-based exporter")
    args = ap.parse_args()
    dynamo = not args.no_dynamo and importlib.util.find_spec("onnxscript") is not None

    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
          f"resdsl {resdsl.__version__}; {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"{args.threads} onnxruntime threads\n")
    emission, latency = [], []
    for name in args.specs:
        net = resdsl.load(ROOT / "specs" / f"{name}.res")
        model = resdsl.build(net).eval()
        state = model.state_dict()
        ours_t, ours = timed(lambda n=net, s=state: onnx_graph.emit(n, weights=s), args.repeat)
        fold_t, folded = timed(lambda n=net, s=state: onnx_graph.emit(n, weights=s, fold_bn=True), args.repeat)
        seeded_t, _ = timed(lambda n=net: onnx_graph.emit(n), max(1, args.repeat // 2))
        graphs = {"resdsl": ours, "resdsl --fold-bn": folded}
        row = [name, f"{ours_t:.2f}", f"{fold_t:.2f}", f"{seeded_t:.2f}"]
        for label, use_dynamo in (("torch.onnx.export (TorchScript)", False), ("torch.onnx.export (dynamo)", True)):
            if use_dynamo and not dynamo:
                row += ["", ""]
                continue
            t, data = timed(lambda m=model, s=net.input_shape, d=use_dynamo: export(m, s, d), args.export_repeat)
            graphs[label] = data
            row += [f"{t:.2f}", f"{t / ours_t:.0f}×"]
        emission.append(row)

        x = np.random.default_rng(0).standard_normal((args.batch, *net.input_shape), dtype=np.float32)
        with tempfile.TemporaryDirectory() as tmp:
            built = {label: session(data, args.threads, Path(tmp) / f"{i}.onnx")
                     for i, (label, data) in enumerate(graphs.items())}
        sessions = {label: s for label, (s, _) in built.items()}
        outputs = {label: s.run(None, {"input": x})[0] for label, s in sessions.items()}  # warm-up
        ref = outputs["resdsl"]
        times: dict[str, list[float]] = {label: [] for label in sessions}
        for _ in range(args.runs):
            for label, s in sessions.items():
                t = time.perf_counter()
                s.run(None, {"input": x})
                times[label].append(time.perf_counter() - t)
        base, base_min = statistics.median(times["resdsl"]), min(times["resdsl"])
        scale = float(np.abs(ref).max())
        for label in sessions:
            med, fastest = statistics.median(times[label]), min(times[label])
            err = float(np.abs(outputs[label] - ref).max()) / scale
            nodes = len(onnx.load_from_string(graphs[label]).graph.node)
            latency.append([name, label, str(nodes), str(built[label][1]), f"{med * 1e3:.0f}", f"{fastest * 1e3:.0f}",
                            f"{base / med:.2f}", f"{base_min / fastest:.2f}", f"{err:.0e}"])
        print(f"{name}: done", file=sys.stderr, flush=True)

    print("Emission, seconds (weights given; 'seeded' includes the torch initialisation):\n")
    print("| spec | resdsl | resdsl --fold-bn | resdsl seeded | TorchScript export | speed-up | "
          "dynamo export | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in emission:
        print("| " + " | ".join(row) + " |")
    print(f"\nonnxruntime latency, batch {args.batch} at 224×224, {args.runs} runs each (ratio: "
          "resdsl's latency / this graph's; Δ: largest output difference from resdsl's graph, "
          "relative to the largest output):\n")
    print("| spec | graph | nodes | nodes run | median ms | min ms | ratio (median) | ratio (min) | Δ |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in latency:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
