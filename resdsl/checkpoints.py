"""Reading and writing checkpoints: safetensors files and torch pickles.

:func:`load_checkpoint` tells the format from the file's first bytes, not its name. A
safetensors file is read with the ``safetensors`` package and nothing else: no pickle
is involved on that path; :func:`load_arrays` reads it as numpy arrays without importing
torch at all (the ONNX back end's path), and torch is imported only for torch files. A
torch file (``torch.save``: a zip archive, or the legacy pickle) is read with ``torch.load(..., weights_only=True)``, which refuses Python objects
other than tensors and plain containers. Either way the result is a flat ``state_dict``:
the wrappers training scripts save (``{"state_dict": …, "epoch": …}``, ``{"model": …}``)
and DataParallel's ``module.`` prefix are taken off, each with a note.

:func:`dump_checkpoint` is the other direction, to bytes (so that callers can write them
atomically).
"""

from __future__ import annotations

import io
import json
import pickle
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

#: Keys under which training scripts nest the model's state_dict (timm, torchvision's
#: reference scripts, Lightning), tried in this order.
WRAPPER_KEYS = ("state_dict", "model")

#: The formats :func:`dump_checkpoint` writes, by file extension.
FORMATS = {".safetensors": "safetensors", ".pt": "torch", ".pth": "torch"}

_SAVE_HINT = ("save only the weights: safetensors.torch.save_file(model.state_dict(), path), "
              "or torch.save(model.state_dict(), path)")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or that holds something other than a
    state_dict. The message names the file; ``hint`` says what would work."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def checkpoint_format(path: str | Path) -> str:
    """``"safetensors"`` or ``"torch"``, from the file's first bytes.

    A safetensors file starts with the length of its JSON header (8 bytes, little-endian)
    and then the header, ``{…``; a ``torch.save`` file is a zip archive (``PK``) or, from
    torch before 1.6, a pickle (protocol 2 or later: byte 0x80). Raises
    :class:`CheckpointError` for anything else, and ``OSError`` if the file cannot be read.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(9)
        size = path.stat().st_size
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return "torch"
    raise CheckpointError(f"cannot read weights `{path.name}`: it is neither a safetensors file nor a "
                          "torch checkpoint" + (" (the file is empty)" if not head else ""),
                          hint=_SAVE_HINT)


def _is_tensor(value: object) -> bool:
    """A torch tensor or a numpy array; never imports torch (a torch tensor means it is loaded)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return True
    np = sys.modules.get("numpy")
    return np is not None and isinstance(value, np.ndarray)


def load_arrays(path: str | Path, *, notes: list[str] | None = None,
                dtypes: dict[str, str] | None = None) -> dict[str, Any]:
    """The state_dict at ``path``, as :func:`load_checkpoint` reads it, except that a
    safetensors file becomes numpy arrays and torch is not imported for it (a torch file
    still gives torch tensors). numpy has no bfloat16: such tensors come as float32, and
    ``dtypes`` (when given) receives their names, so a caller can say what was converted.
    """
    path = Path(path)
    if checkpoint_format(path) != "safetensors":
        return load_checkpoint(path, notes=notes)
    raw, widened = read_safetensors_numpy(path)
    if dtypes is not None:
        dtypes.update({k: "bfloat16" for k in widened})
    return unwrap_state_dict(raw, source=f"`{path.name}`", notes=notes)


def read_safetensors_numpy(path: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """A safetensors file's tensors as numpy arrays, without torch, and the keys of those
    that were bfloat16 (widened to float32: numpy has no bfloat16).

    The ``safetensors`` package reads the file: its parser checks the header (JSON depth,
    sizes that overflow, offsets that overlap or run past the end) before any tensor is
    made. Only bfloat16 is read here by hand, because the package's numpy reader refuses
    it (``data type 'bfloat16' not understood``); its offsets come from a header the
    package has already accepted."""
    import numpy as np

    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise CheckpointError(f"cannot read weights `{path.name}`: it is a safetensors file, and the "
                              "`safetensors` package is not installed",
                              hint="pip install safetensors (it comes with resdsl[torch])") from None
    out: dict[str, np.ndarray] = {}
    bf16: list[str] = []
    try:
        with safe_open(str(path), framework="numpy") as f:
            for key in f.keys():
                if f.get_slice(key).get_dtype() == "BF16":
                    bf16.append(key)
                else:
                    out[key] = f.get_tensor(key)
    except (SafetensorError, ValueError, TypeError, OverflowError, MemoryError) as err:
        raise CheckpointError(f"cannot read weights `{path.name}`: not a valid safetensors file "
                              f"({str(err).strip()[:300]})",
                              hint="the file may be truncated; download or save it again") from None
    if bf16:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
            for key in bf16:  # a bfloat16 is the top half of a float32
                start, end = header[key]["data_offsets"]
                f.seek(8 + size + start)
                bits = np.frombuffer(f.read(end - start), "<u2").astype(np.uint32) << 16
                out[key] = bits.view(np.float32).reshape(header[key]["shape"])
    return out, set(bf16)


def load_checkpoint(path: str | Path, *, notes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The state_dict in the checkpoint at ``path`` (safetensors or torch), on the CPU.

    The format is detected from the content. Wrappers (``{"state_dict": …}``,
    ``{"model": …}``) and a ``module.`` prefix on every key are removed; a line saying so
    is appended to ``notes`` when given. Raises :class:`CheckpointError` when the file is
    not a checkpoint, is corrupt, holds Python objects other than tensors (a pickle that
    could run code), or holds something other than a mapping of names to dense tensors;
    ``OSError`` when it cannot be read at all.
    """
    path = Path(path)
    fmt = checkpoint_format(path)
    if fmt == "safetensors":
        raw = _read_safetensors(path)
    elif path.suffix.lower() == ".safetensors":
        # Whoever named it .safetensors expects no pickle to be loaded from it.
        raise CheckpointError(f"refusing to load `{path.name}`: it is named like a safetensors file but "
                              "holds a torch pickle",
                              hint="if you trust the file, rename it to .pt; better, convert it with "
                                   "safetensors.torch.save_file where it was made")
    else:
        raw = _read_torch(path)
    return unwrap_state_dict(raw, source=f"`{path.name}`", notes=notes)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        from safetensors import SafetensorError
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(f"cannot read weights `{path.name}`: it is a safetensors file, and the "
                              "`safetensors` package is not installed",
                              hint="pip install safetensors (it comes with resdsl[torch])") from None

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, ValueError, RuntimeError, TypeError) as err:  # corrupt or truncated
        raise CheckpointError(f"cannot read weights `{path.name}`: not a valid safetensors file ({err})",
                              hint="the file may be truncated; download or save it again") from None


def _read_torch(path: Path) -> object:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # weights_only refused the pickle
        detail = _unpickling_detail(str(err))
        # a class or function to import and call: code could run (torch ≥ 2.4 says "global",
        # torch 2.1 "Unsupported class")
        if "global" in detail.lower() or "unsupported class" in detail.lower():
            raise CheckpointError(f"refusing to load `{path.name}`: it holds Python objects other than "
                                  f"tensors, and loading them could run code ({detail})",
                                  hint=_SAVE_HINT) from None
        raise CheckpointError(f"refusing to load `{path.name}`: torch's safe loader (weights_only=True) "
                              f"cannot read it; it may be corrupt ({detail})", hint=_SAVE_HINT) from None
    except Exception as err:  # truncated or corrupt archives break in many ways (struct.error, EINVAL…)
        detail = str(err).strip().splitlines()[0] if str(err).strip() else "corrupt"
        raise CheckpointError(f"cannot read weights `{path.name}`: {type(err).__name__}: {detail}",
                              hint="the file may be truncated; " + _SAVE_HINT) from None


def _unpickling_detail(message: str) -> str:
    """The line of torch's weights_only message that says what was refused, without its
    boilerplate about torch 2.6 and filing issues."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation",
                   "(1) In PyTorch 2.6", "(2) Alternatively", "In PyTorch 2.6")
    if "WeightsUnpickler error:" in message:  # torch 2.1 writes it all on one line
        message = message[message.index("WeightsUnpickler error:"):]
    for line in message.splitlines():
        line = line.replace("WeightsUnpickler error:", "").strip()
        if line and not line.startswith(boilerplate):
            return line
    return message.strip().splitlines()[0] if message.strip() else "refused"


def unwrap_state_dict(raw: object, *, source: str = "the checkpoint",
                      notes: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The flat state_dict in ``raw``: the mapping itself, or the one nested under a
    wrapper key (:data:`WRAPPER_KEYS`) when the top level holds no tensors; a ``module.``
    prefix on every key is dropped. Every value must be a dense tensor.
    """
    notes = notes if notes is not None else []
    while isinstance(raw, Mapping) and not any(_is_tensor(v) for v in raw.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(raw.get(k), Mapping)), None)
        if key is None:
            break
        others = sorted(str(k) for k in raw if k != key)
        notes.append(f"took the state_dict from the `{key}` entry of {source}"
                     + (f" (it also holds: {', '.join(others)})" if others else ""))
        raw = raw[key]
    if not isinstance(raw, Mapping) or not raw:
        what = "an empty mapping" if isinstance(raw, Mapping) else f"a {type(raw).__name__}"
        raise CheckpointError(f"{source} holds {what}, not a state_dict (a mapping of names to tensors)",
                              hint=_SAVE_HINT)
    bad = [f"`{k}` ({type(v).__name__})" for k, v in raw.items()
           if not isinstance(k, str) or not _is_tensor(v)]
    if bad:
        raise CheckpointError(f"{source} is not a state_dict: not a tensor: {', '.join(bad[:5])}"
                              + (f" and {len(bad) - 5} more" if len(bad) > 5 else ""), hint=_SAVE_HINT)
    torch = sys.modules.get("torch")  # numpy arrays are always dense
    odd = [f"{k} ({'meta' if v.device.type == 'meta' else str(v.layout).removeprefix('torch.')})"
           for k, v in raw.items() if torch is not None and isinstance(v, torch.Tensor)
           and (v.layout != torch.strided or v.device.type == "meta")]
    if odd:  # sparse tensors, or meta tensors that carry a shape but no data
        raise CheckpointError(f"{source} holds tensors without dense data: {', '.join(odd[:5])}"
                              + (f" and {len(odd) - 5} more" if len(odd) > 5 else ""), hint=_SAVE_HINT)
    state = dict(raw)
    if all(k.startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {k[len("module."):]: v for k, v in state.items()}
        notes.append(f"dropped the `module.` prefix (DataParallel) from every key of {source}")
    return state


def dump_checkpoint(state: Mapping[str, torch.Tensor], fmt: str,
                    metadata: Mapping[str, str] | None = None) -> bytes:
    """``state`` serialised as ``fmt`` (``"safetensors"`` or ``"torch"``, see :data:`FORMATS`).

    safetensors gets ``metadata`` (string to string) and ``format: pt`` in its header, as
    timm writes; the torch file is ``torch.save`` of a plain dict of tensors.
    """
    import torch

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    if fmt == "safetensors":
        from safetensors.torch import save

        return save(tensors, metadata={"format": "pt", **dict(metadata or {})})
    if fmt == "torch":
        buffer = io.BytesIO()
        torch.save(tensors, buffer)
        return buffer.getvalue()
    raise ValueError(f"unknown checkpoint format {fmt!r}; known: {', '.join(sorted(set(FORMATS.values())))}")

