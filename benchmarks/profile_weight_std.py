"""What a weight-standardised conv costs before it convolves: the per-forward standardisation
of nf_resnet50's 53 conv weights (23.5 M values) in the forms a generated file could write,
against timm's ScaledStdConv2d's own (one ``F.batch_norm`` over the weight as 1×out×n, its
gain × gamma / √fan_in as the norm's weight). Why ``standardize`` lowers to one
``F.group_norm`` of one group (benchmarks/results-families.md: nf_resnet50's forward went
from 1.34–1.40× timm's to the figures there).

Run in the reference environment (it has timm):

    PYTHONPATH=. ~/.cache/resdsl/ref-venv/bin/python benchmarks/profile_weight_std.py
"""

from __future__ import annotations

import statistics
import time

import timm
import torch
import torch.nn.functional as F


def forms(weights: list[tuple[torch.Tensor, torch.Tensor, float, float]]) -> dict:
    """Each form standardises every weight (each output channel's row) and scales it."""

    def timm_batch_norm():
        return [F.batch_norm(w.reshape(1, w.shape[0], -1), None, None, weight=(g * s).reshape(-1), training=True,
                             momentum=0.0, eps=eps).reshape_as(w) for w, g, s, eps in weights]

    def group_norm():  # the generated source's: `standardize([1, 2, 3])`, then the gain
        return [F.group_norm(w, 1, eps=eps) * (g * s) for w, g, s, eps in weights]

    def layer_norm():
        return [F.layer_norm(w, w.shape[1:], eps=eps) * (g * s) for w, g, s, eps in weights]

    def written_out():  # the spec before `standardize`: mean, var, add, rsqrt, subtract, multiply
        out = []
        for w, g, s, eps in weights:
            mu, v = w.mean((1, 2, 3), keepdim=True), w.var((1, 2, 3), correction=0, keepdim=True)
            out.append((w - mu) * torch.rsqrt(v + eps) * (g * s))
        return out

    return {f.__name__: f for f in (timm_batch_norm, group_norm, layer_norm, written_out)}


def main(rounds: int = 21) -> None:
    torch.set_num_threads(2)
    model = timm.create_model("nf_resnet50")
    convs = [m for m in model.modules() if isinstance(m, timm.layers.ScaledStdConv2d)]
    for fmt in (torch.contiguous_format, torch.channels_last):
        weights = [(c.weight.detach().contiguous(memory_format=fmt), c.gain.detach(), c.scale, c.eps)
                   for c in convs]
        calls = forms(weights)
        with torch.inference_mode():
            want = calls["timm_batch_norm"]()
            for name, call in calls.items():  # the same weights, to float rounding
                err = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(call(), want))
                assert err < 1e-5, (name, err)
            times: dict[str, list[float]] = {n: [] for n in calls}
            for r in range(rounds):  # interleaved, the order reversed every other round
                for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
                    t = time.perf_counter()
                    calls[name]()
                    times[name].append(time.perf_counter() - t)
        print(f"{len(convs)} weights, {sum(w.numel() for w, *_ in weights) / 1e6:.1f} M values, "
              f"{'channels_last' if fmt is torch.channels_last else 'default'} format, median of {rounds}:")
        ref = times["timm_batch_norm"]
        for name, t in times.items():
            ratio = statistics.median(a / b for a, b in zip(t, ref))
            print(f"  {name:16} {statistics.median(t) * 1e3:7.1f} ms  {ratio:.2f}× timm's")


if __name__ == "__main__":
    main()
