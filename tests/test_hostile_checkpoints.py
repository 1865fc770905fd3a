"""Hostile checkpoints (issue 25): mutated safetensors and torch files through every reader —
``load_checkpoint`` (transplant's), ``load_arrays`` (``compile --weights``'), ``transplant`` and
the ONNX back end's ``weights=`` — and, for a share of them, the CLI.

Each file either loads as a state_dict or is refused with :class:`CheckpointError` (the ONNX
path: :class:`OptionError`, which the CLI prints as a usage error); never another exception,
never a pickle that runs code (the payloads would create a marker file), never an output
left behind by a refused run, each within a time bound, with the process's peak memory
bounded. Seeded: ``RESDSL_HOSTILE_CHECKPOINTS=N`` (default 300) files,
``RESDSL_HOSTILE_SEED`` picks the sequence."""

from __future__ import annotations

import io
import json
import os
import pickle
import random
import resource
import struct
import time
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
pytest.importorskip("onnx")

import resdsl  # noqa: E402
from resdsl.backends import OptionError, onnx_graph  # noqa: E402
from resdsl.checkpoints import CheckpointError, load_arrays, load_checkpoint  # noqa: E402
from resdsl.cli import main  # noqa: E402

COUNT = int(os.environ.get("RESDSL_HOSTILE_CHECKPOINTS", "300"))
SEED = int(os.environ.get("RESDSL_HOSTILE_SEED", "0"))
#: Seconds one file may take through all four readers.
BOUND_S = 10.0
#: Peak resident memory of the whole run (torch alone takes ~400 MB).
BOUND_RSS_MB = 3000

SPEC = "network tiny {\n    input [3, 8, 8]\n    conv1: conv(4, 3)\n    bn1: batchnorm()\n    relu()\n" \
       "    global_avgpool()\n    flatten()\n    fc: linear(5)\n}\n"


class Payload:
    """A pickle that, if anything unpickled it without refusing, would create ``path``."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _safetensors_bytes(header: object, body: bytes) -> bytes:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + body


def _valid_state(net) -> dict:
    return {k: v.detach().clone() for k, v in resdsl.build(net, seed=0).state_dict().items()}


def _mutants(rng: random.Random, state: dict, marker: str):
    """(name, bytes) of one mutated checkpoint per call, from a family chosen at random."""
    from safetensors.torch import save

    good_st = save({k: v.contiguous() for k, v in state.items()})
    size = int.from_bytes(good_st[:8], "little")
    header = json.loads(good_st[8:8 + size])
    body = good_st[8 + size:]
    buf = io.BytesIO()
    torch.save(state, buf)
    good_pt = buf.getvalue()
    family = rng.randrange(14)
    if family == 0:  # truncated anywhere
        data = rng.choice([good_st, good_pt])
        return "truncated", data[:rng.randrange(len(data))]
    if family == 1:  # the header length field
        n = rng.choice([0, 1, size - 1, size + 1, len(good_st), 2**63, 2**64 - 1, rng.randrange(2**64)])
        return "header_length", struct.pack("<Q", n) + good_st[8:]
    if family == 2:  # byte flips in the header or anywhere
        data = bytearray(rng.choice([good_st, good_pt]))
        end = 8 + size if rng.random() < 0.7 and data[:8] == good_st[:8] else len(data)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(min(end, len(data)))] = rng.randrange(256)
        return "byte_flips", bytes(data)
    if family == 3:  # offsets that overlap, run past the end, go backwards
        h = json.loads(json.dumps(header))
        key = rng.choice([k for k in h if k != "__metadata__"])
        a, b = h[key]["data_offsets"]
        h[key]["data_offsets"] = rng.choice([[a, b + 4], [max(a - 4, 0), b], [b, a], [0, len(body) + 8],
                                             [a, 2**70], [-4, b]])
        return "offsets", _safetensors_bytes(h, body)
    if family == 4:  # shapes: huge, negative, non-integer, infinite, nested, empty, wrong product
        h = json.loads(json.dumps(header))
        key = rng.choice([k for k in h if k != "__metadata__"])
        shape = rng.choice([[2**62, 2**62], [-1], [1.5], "Infinity", [[1]], [], [3, 3], [10**30], None])
        text = json.dumps({**h, key: {**h[key], "shape": "SHAPE"}}).replace('"SHAPE"', json.dumps(shape)
                                                                            if shape != "Infinity" else "[Infinity]")
        return "shapes", _safetensors_bytes(text.encode(), body)
    if family == 5:  # dtypes
        h = json.loads(json.dumps(header))
        key = rng.choice([k for k in h if k != "__metadata__"])
        h[key]["dtype"] = rng.choice(["F99", "", "C64", "I64", "BF16", "F8_E4M3", "BOOL", "U8", 3, None])
        return "dtypes", _safetensors_bytes(h, body)
    if family == 6:  # deep or odd JSON
        depth = rng.choice([100, 3000, 100_000])
        h = rng.choice(['{"a":' + "[" * depth + "]" * depth + "}", "[]", "null", '{"a": 1}', '{"a": {"dtype": "F32"}}',
                        '{"__metadata__": {"x": 1}}', "{" + '"a":{},' * 1000 + '"b":{}}', '{"a":"\\ud800"}'])
        return "json", _safetensors_bytes(h.encode(), body)
    if family == 7:  # non-finite values in a valid file
        bad = {k: v.clone() for k, v in state.items()}
        key = rng.choice([k for k, v in bad.items() if v.is_floating_point()])
        bad[key].view(-1)[rng.randrange(bad[key].numel())] = rng.choice([float("nan"), float("inf"), -float("inf")])
        return "nonfinite", save({k: v.contiguous() for k, v in bad.items()})
    if family == 8:  # wrong dtypes in a valid file
        bad = dict(state)
        key = rng.choice(list(bad))
        bad[key] = bad[key].to(rng.choice([torch.int64, torch.uint8, torch.complex64, torch.float64, torch.bool]))
        try:
            return "wrong_dtype", save({k: v.contiguous() for k, v in bad.items()})
        except (KeyError, ValueError):  # safetensors before 0.5 cannot save complex tensors
            buf = io.BytesIO()
            torch.save(bad, buf)
            return "wrong_dtype", buf.getvalue()
    if family == 9:  # a pickle that would run code, as a plain torch.save / legacy pickle
        obj = rng.choice([{"conv1.weight": Payload(marker)}, Payload(marker), {"state_dict": Payload(marker)}])
        return "pickle_code", pickle.dumps(obj, protocol=rng.choice([2, 4]))
    if family == 10:  # the payload inside a torch zip archive, in place of data.pkl
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(good_pt)) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename.endswith("data.pkl"):
                    data = pickle.dumps({"conv1.weight": Payload(marker)}, protocol=2)
                dst.writestr(item, data)
        return "zip_pickle", out.getvalue()
    if family == 11:  # nested pickles: a pickle's bytes inside a state_dict
        inner = pickle.dumps(Payload(marker))
        buf = io.BytesIO()
        torch.save({"conv1.weight": torch.frombuffer(bytearray(inner), dtype=torch.uint8), "blob": inner}, buf)
        return "nested_pickle", buf.getvalue()
    if family == 12:  # torch files of the wrong shape of data
        buf = io.BytesIO()
        torch.save(rng.choice([[1, 2], "x", {"a": {"b": {}}}, {"model": {"module.conv1.weight": 1}}, {}, 3.5,
                               {"conv1.weight": torch.zeros(2).to_sparse()}, {1: torch.zeros(1)}]), buf)
        return "odd_torch", buf.getvalue()
    # family 13: random bytes with a plausible start
    start = rng.choice([b"PK\x03\x04", b"\x80\x02", struct.pack("<Q", 20) + b"{", b""])
    return "random", start + rng.randbytes(rng.randrange(2000))


def test_hostile_checkpoints(tmp_path):
    net = resdsl.loads(SPEC, "tiny.res")
    state = _valid_state(net)
    marker = tmp_path / "pwned"
    rng = random.Random(SEED)
    outcomes: dict[str, dict[str, int]] = {}
    slowest = 0.0
    for i in range(COUNT):
        family, data = _mutants(rng, state, str(marker))
        path = tmp_path / ("w.safetensors" if i % 2 else "w.pt")
        path.write_bytes(data)
        start = time.monotonic()
        results = []
        for name, read in (("load_checkpoint", load_checkpoint),
                           ("load_arrays", load_arrays),
                           ("transplant", lambda p: resdsl.transplant(net, p)),
                           ("onnx", lambda p: onnx_graph.emit(net, weights=p))):
            try:
                read(path)
                results.append("ok")
            except (CheckpointError, OptionError) as err:
                assert str(err) and "Traceback" not in str(err), (family, name, err)
                results.append("refused")
            except Exception as err:  # anything else is a finding
                path.rename(tmp_path / f"finding-{i}-{family}{path.suffix}")
                raise AssertionError(f"#{i} ({family}): {name} raised {type(err).__name__}: {err}") from err
        took = time.monotonic() - start
        slowest = max(slowest, took)
        assert took < BOUND_S, (i, family, took)
        assert not marker.exists(), f"#{i} ({family}): a pickle ran code"
        counts = outcomes.setdefault(family, {})
        counts[" ".join(results)] = counts.get(" ".join(results), 0) + 1
        if i % 25 == 0:  # the CLI too: a refused file writes nothing
            out = tmp_path / "out.onnx"
            code = main(["compile", str(_spec_file(tmp_path)), "--target", "onnx", "--weights", str(path),
                         "-o", str(out)])
            assert code in (0, 2)
            assert out.exists() == (code == 0)
            out.unlink(missing_ok=True)
            graft = tmp_path / "t.safetensors"
            code = main(["transplant", str(_spec_file(tmp_path)), "--from", str(path), "-o", str(graft)])
            assert code in (0, 2) and graft.exists() == (code == 0)
            graft.unlink(missing_ok=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nhostile checkpoints: {COUNT} files (seed {SEED}), slowest {slowest:.2f} s, peak RSS {peak_mb:.0f} MB")
    for family, counts in sorted(outcomes.items()):
        print(f"  {family}: {counts}")
    assert peak_mb < BOUND_RSS_MB
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", "t.", "pwned"))) == []


def _spec_file(tmp_path: Path) -> Path:
    spec = tmp_path / "tiny.res"
    if not spec.exists():
        spec.write_text(SPEC)
    return spec
