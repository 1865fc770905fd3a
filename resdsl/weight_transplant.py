"""Weight transplant: a checkpoint into a modified variant of its network.

The common request about pretrained ResNets — "load ImageNet weights into my 4-channel /
1-channel / 10-class / deep-stem variant" — fails with ``size mismatch for conv1.weight``,
and ``strict=False`` silently drops the layer. Here every tensor of the variant is matched
by name and shape, with the network's IR to decide the two cases that need judgement:

* the **input conv** (each conv that reads the network input, found in the IR, whatever its
  name) adapts to another input channel count exactly as timm's ``adapt_input_conv``: for one
  channel the weights are summed over the checkpoint's input channels; for others they are
  repeated cyclically to the new count and scaled by ``old / new``;
* a **batch norm right after a conv that is not from the checkpoint** keeps its fresh
  initialisation even when a tensor of the same name and shape exists: its statistics
  describe the old conv's output, not the new one's (so a new stem is new up to its BN).

Everything else copies when name and shape agree. What is not placed keeps the spec's seeded
initialisation and is listed with the reason, as is every checkpoint tensor left unused;
the result is a complete ``state_dict`` for ``resdsl.build(spec)`` (``strict=True``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoints import CheckpointError, load_checkpoint, unwrap_state_dict
from .ir import INPUT, Network, Op
from .primitives import PRIMITIVES

#: The reason recorded for a BN counter the checkpoint lacks (text reports count these).
COUNTER_REASON = "BN counter not in the checkpoint; starts at 0"


@dataclass(frozen=True)
class Entry:
    """One tensor of the report and what happened to it (or why nothing did)."""

    key: str
    reason: str


@dataclass
class TransplantReport:
    """What a transplant did, tensor by tensor.

    Every tensor of the target network is in exactly one of ``copied`` (by name and
    shape), ``adapted`` (the input conv, with how) or ``initialised`` (kept at the spec's
    seeded initialisation, with why). Every checkpoint tensor is copied, adapted, named in
    ``initialised`` (same name, not used) or listed in ``unused`` (no such tensor here).
    """

    network: str
    checkpoint: str
    copied: list[str] = field(default_factory=list)
    adapted: list[Entry] = field(default_factory=list)
    initialised: list[Entry] = field(default_factory=list)
    unused: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params_total: int = 0
    params_transplanted: int = 0

    @property
    def placed(self) -> int:
        """How many tensors came from the checkpoint (copied or adapted)."""
        return len(self.copied) + len(self.adapted)

    def to_dict(self) -> dict:
        """The report as plain data (for JSON)."""
        return {
            "network": self.network, "checkpoint": self.checkpoint,
            "params": {"total": self.params_total, "transplanted": self.params_transplanted},
            "copied": list(self.copied),
            "adapted": [{"key": e.key, "how": e.reason} for e in self.adapted],
            "initialised": [{"key": e.key, "reason": e.reason} for e in self.initialised],
            "unused": [{"key": e.key, "reason": e.reason} for e in self.unused],
            "notes": list(self.notes),
        }

    def render(self) -> str:
        """A human-readable summary; every tensor not placed is named (BN counters are counted)."""
        share = self.params_transplanted / self.params_total if self.params_total else 0.0
        if self.params_transplanted < self.params_total:  # never round a partial transplant up to 100%
            share = min(share, 0.999)
        lines = [f"transplant {self.checkpoint} → {self.network}: {self.placed} tensors from the checkpoint "
                 f"({len(self.copied)} copied" + (f", {len(self.adapted)} adapted" if self.adapted else "") + "), "
                 f"{self.params_transplanted:,} of {self.params_total:,} parameters ({share:.1%})"]
        lines += [f"  note: {n}" for n in self.notes]
        for e in self.adapted:
            lines.append(f"  adapted {e.key}: {e.reason}")
        counters = [e for e in self.initialised if e.reason == COUNTER_REASON]
        others = [e for e in self.initialised if e.reason != COUNTER_REASON]
        if others or counters:
            lines.append(f"  kept the spec's initialisation ({_tensors(len(self.initialised))}):")
            lines += [f"    {line}" for line in _grouped(others)]
            if counters:
                lines.append(f"    {len(counters)} BN counters (num_batches_tracked): not in the checkpoint; "
                             "they start at 0")
        if self.unused:
            lines.append(f"  unused from the checkpoint ({_tensors(len(self.unused))}):")
            lines += [f"    {line}" for line in _grouped(self.unused)]
        return "\n".join(lines)


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")


def _tensors(n: int) -> str:
    return f"{n} tensor{'s' * (n != 1)}"


def _grouped(entries: list[Entry]) -> list[str]:
    """``conv1.1.{weight, bias}: reason`` for keys of one module that share a reason."""
    groups: dict[tuple[str, str], list[str]] = {}
    for e in entries:
        module, _, leaf = e.key.rpartition(".")
        groups.setdefault((module, e.reason), []).append(leaf)
    out = []
    for (module, reason), leaves in groups.items():
        name = f"{module}.{leaves[0]}" if len(leaves) == 1 else f"{module}.{{{', '.join(leaves)}}}"
        out.append(f"{name.lstrip('.')}: {reason}")
    return out


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An input conv's ``weight`` (out, old, kh, kw) for ``in_channels`` inputs, as timm's
    ``adapt_input_conv(in_channels, weight, base_chans=old)``: one channel sums over the
    old inputs; another count repeats them cyclically to ``in_channels`` and scales by
    ``old / in_channels``, so that the old image repeated across the new channels gives
    the old response. Computed in float32, returned in ``weight``'s dtype."""
    old = weight.shape[1]
    if in_channels == old:
        return weight
    w = weight.float()
    if in_channels == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        repeat = -(-in_channels // old)
        w = w.repeat(1, repeat, 1, 1)[:, :in_channels, :, :]
        w *= old / float(in_channels)
    return w.to(weight.dtype)


def _weighted(op: Op) -> bool:
    """A layer whose weights map features to features (the registry says so, never a name):
    when its weights are new, the norm right after it is new too."""
    prim = PRIMITIVES[op.kind]
    return prim.has_params and not prim.traits.norm


def _norm(op: Op) -> bool:
    """A norm, whose statistics belong to the layer before it."""
    return PRIMITIVES[op.kind].traits.norm


def _fmt(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) if shape else "scalar"


def _mismatch(key: str, here: torch.Tensor, there: torch.Tensor | None, known: bool) -> str:
    """Why the checkpoint's tensor cannot take ``key``'s place, or "" if it could;
    ``known``: the checkpoint has other tensors of the same module."""
    if there is None:  # a BN counter is only worth a line of its own when its BN is there
        return COUNTER_REASON if key.endswith(".num_batches_tracked") and known else "not in the checkpoint"
    if here.shape != there.shape:
        return f"shape {_fmt(tuple(here.shape))} here, {_fmt(tuple(there.shape))} in the checkpoint"
    return ""


def transplant(spec: str | Path | Network, checkpoint: str | Path | Mapping[str, torch.Tensor], *,
               seed: int | None = 0, network: str | None = None,
               allow_nonfinite: bool = False) -> tuple[dict[str, torch.Tensor], TransplantReport]:
    """Load ``checkpoint`` into the network of ``spec`` by name and shape.

    ``spec`` is a ``.res`` path or a checked :class:`~resdsl.Network` (``network`` picks one
    of a file's networks); ``checkpoint`` a file (safetensors or torch, see
    :func:`resdsl.checkpoints.load_checkpoint`) or a state_dict. Returns the complete
    ``state_dict`` for ``resdsl.build(spec)`` — it loads with ``strict=True`` — and a
    :class:`TransplantReport`. Tensors not taken from the checkpoint are those of
    ``resdsl.build(spec, seed=seed)``. Raises :class:`~resdsl.SpecError` for a bad spec and
    :class:`~resdsl.checkpoints.CheckpointError` for a bad checkpoint: among them, as
    ``compile --weights`` does, one whose placed tensors hold NaN or infinite values once in
    the network's dtype (a float64 beyond float32's range included) unless
    ``allow_nonfinite``, and one with complex tensors (their imaginary part would be lost).
    """
    from .backends.torch_model import build

    if not isinstance(spec, Network):
        from .loader import load
        spec = load(spec, network=network)
    net = spec
    notes: list[str] = []
    if isinstance(checkpoint, Mapping):
        source, label = unwrap_state_dict(checkpoint, notes=notes), "state_dict"
        # numpy arrays are accepted as tensors (without copying)
        source = {k: torch.from_numpy(v) if not isinstance(v, torch.Tensor) else v for k, v in source.items()}
    else:
        source, label = load_checkpoint(checkpoint, notes=notes), Path(checkpoint).name
    complex_keys = sorted(k for k, v in source.items() if v.is_complex())
    if complex_keys:
        raise CheckpointError(f"the checkpoint ({label}) holds complex tensors, whose imaginary part would be "
                              f"lost: {_listed(complex_keys)}", hint="transplant real-valued weights")
    model = build(net, seed=seed)
    target = {k: v.detach().clone() for k, v in model.state_dict().items()}
    integral = sorted(k for k, v in source.items() if k in target and target[k].is_floating_point()
                      and not v.is_floating_point())
    if integral:  # compile --weights refuses them too: integers or booleans are no trained weights
        raise CheckpointError(f"the checkpoint ({label}) holds tensors that are not floating-point where the "
                              f"network has weights: {_listed([f'{k} ({source[k].dtype})' for k in integral])}",
                              hint="is this the right file? save the model's state_dict as it was trained")
    params = {k for k, _ in model.named_parameters()}
    report = TransplantReport(network=net.name, checkpoint=label, notes=notes,
                              params_total=sum(target[k].numel() for k in params))
    by_module: dict[str, list[str]] = {}
    for key in target:
        by_module.setdefault(key.rpartition(".")[0], []).append(key)
    # every conv that reads the network input, whatever it is called
    input_convs = {op.module for op in net.ops if PRIMITIVES[op.kind].traits.conv and op.inputs[:1] == (INPUT,)
                   and dict(op.attrs).get("groups", 1) == 1}
    new_modules: set[str] = set()  # weighted modules whose weights are not from the checkpoint
    used: set[str] = set()
    converted: set[str] = set()
    for path, op in net.modules().items():
        # a learned tensor (`param`) is its own key: `norm1.weight`
        keys = by_module.get(path, []) + ([path] if path in target else [])
        known = any(k in source for k in keys)  # the checkpoint has this module
        producer = net.op(op.inputs[0]) if op.inputs and op.inputs[0] != INPUT else None
        if (_norm(op) and producer is not None and _weighted(producer)
                and producer.module in new_modules):
            for key in keys:
                report.initialised.append(Entry(key, _mismatch(key, target[key], source.get(key), known) or
                                                f"follows `{producer.module}`, which is not from the "
                                                "checkpoint: its statistics would not fit"))
                used.add(key)
            continue
        for key in keys:
            value = source.get(key)
            here = tuple(target[key].shape)
            if value is None:
                report.initialised.append(Entry(key, _mismatch(key, target[key], value, known)))
                if key.endswith(".weight") and _weighted(op):
                    new_modules.add(path)
                continue
            used.add(key)
            there = tuple(value.shape)
            if here == there:
                placed, how = value, None
            elif (path in input_convs and key == f"{path}.weight" and len(here) == len(there) == 4
                  and here[0] == there[0] and here[2:] == there[2:]):
                placed = adapt_input_conv(value, here[1])
                how = (f"input conv, {there[1]} → {here[1]} input channels: "
                       + ("summed over the checkpoint's channels" if here[1] == 1 else
                          f"channels {'repeated cyclically' if here[1] > there[1] else 'cut'} to "
                          f"{here[1]}, scaled by {there[1]}/{here[1]}")
                       + " (timm's adapt_input_conv)")
            else:
                report.initialised.append(Entry(key, _mismatch(key, target[key], value, known)))
                if key.endswith(".weight") and _weighted(op):
                    new_modules.add(path)
                continue
            if placed.dtype != target[key].dtype:
                converted.add(f"{placed.dtype} → {target[key].dtype}".replace("torch.", ""))
            target[key] = placed.detach().to(target[key].dtype).clone()
            if how is None:
                report.copied.append(key)
            else:
                report.adapted.append(Entry(key, how))
            if key in params:
                report.params_transplanted += target[key].numel()
    nonfinite = sorted(k for k in report.copied + [e.key for e in report.adapted]
                       if target[k].is_floating_point() and not bool(torch.isfinite(target[k]).all()))
    if nonfinite and not allow_nonfinite:  # the same rule as `compile --weights`
        raise CheckpointError(f"the weights ({label}) hold NaN or infinite values, in {len(nonfinite)} "
                              f"tensor{'s' * (len(nonfinite) != 1)} (as the network's dtype): "
                              f"{_listed(nonfinite)}",
                              hint="the model would output NaN; pass allow_nonfinite=True "
                                   "(--allow-nonfinite) to write them anyway")
    if nonfinite:
        notes.append(f"kept NaN or infinite values in {_tensors(len(nonfinite))}: {_listed(nonfinite)}")
    for key in source:
        if key not in used:
            report.unused.append(Entry(key, f"no such tensor in {net.name}"))
    if converted:
        notes.append(f"converted tensors: {', '.join(sorted(converted))}")
    return target, report
