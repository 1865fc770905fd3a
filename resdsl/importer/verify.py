"""Checking an imported spec against the model it came from, before anything is written.

The spec is loaded and built; the original's ``state_dict`` must load into it with
``strict=True``; then both run in eval mode on one random input, with the same random
weights (every norm's statistics and scales too, so that a residual branch that starts at
zero cannot hide a difference), and their outputs must agree within a tolerance scaled to
the output. Where they do not, forward hooks find the first module whose output differs.
"""

from __future__ import annotations

import copy
from typing import Any

from ..diagnostics import SpecError
from ..errors import E
from .trace import ImportFailure


def _randomised(state: dict, generator) -> dict:
    import torch

    out = {}
    for key, t in state.items():
        if not torch.is_floating_point(t) or t.numel() == 0:
            out[key] = t
            continue
        if key.endswith("running_var"):
            out[key] = torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5
        elif key.endswith(("running_mean", "bias")):
            out[key] = torch.randn(t.shape, generator=generator, dtype=t.dtype) * 0.1
        elif t.dim() <= 1:  # norm scales
            out[key] = torch.rand(t.shape, generator=generator, dtype=t.dtype) + 0.5
        else:  # weights: a fan-in scale, so that deep networks neither vanish nor explode
            out[key] = torch.randn(t.shape, generator=generator, dtype=t.dtype) * (t[0].numel() ** -0.5)
    return out


def verify(text: str, model: Any, input_size: tuple[int, ...], *, net: Any = None) -> Any:
    """Build ``text`` (``net``: its checked network, when loaded already), strict-load
    ``model``'s weights, compare outputs; the built model, or an :class:`ImportFailure`."""
    import torch

    from ..backends.torch_model import build
    from ..loader import loads

    try:
        net = net if net is not None else loads(text)
    except SpecError as err:
        raise ImportFailure(
            E.TORCH_NOT_FAITHFUL,
            "the imported spec does not check (a bug in the importer)",
            notes=tuple(f"{d.code}: {d.message}" for d in err.diagnostics[:5]),
        ) from None
    built = build(net, seed=0)
    state = model.state_dict()
    try:
        built.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ImportFailure(
            E.TORCH_NOT_FAITHFUL,
            "the original weights do not load into the imported spec with strict=True",
            notes=(str(err).splitlines()[0][:300],),
        ) from None
    gen = torch.Generator().manual_seed(0)
    random_state = _randomised(state, gen)
    original = copy.deepcopy(model).eval()
    original.load_state_dict(random_state, strict=True)
    built.load_state_dict(random_state, strict=True)
    built.eval()
    x = torch.randn(1, *input_size, generator=gen)
    with torch.no_grad():
        want, got = original(x), built(x)
    compared = built
    if not _close(want, got):
        # a deep network with random weights can outgrow float32 (resnet1202's blocks reach
        # 1e38): compared again in float64, a rounding agrees and a difference stays one
        wide = copy.deepcopy(original).double(), copy.deepcopy(built).double(), x.double()
        try:
            with torch.no_grad():
                want, got = wide[0](wide[2]), wide[1](wide[2])
            original, compared, x = wide
        except (RuntimeError, TypeError):  # a module that runs in float32 only: keep the verdict
            pass
    if not _close(want, got):
        where = _first_difference(original, compared, x)
        raise ImportFailure(
            E.TORCH_NOT_FAITHFUL,
            "the imported spec computes something else than the model"
            + (f": the first difference is at `{where}`" if where else ""),
            notes=(_difference(want, got),),
            hint="a recogniser accepted a module that computes something else; tighten it, or "
            "register a primitive for that module",
        )
    built.load_state_dict(state, strict=True)
    return built


def _difference(want, got) -> str:
    import torch

    if not isinstance(want, torch.Tensor):
        return f"the model returns {type(want).__name__}, not one tensor"
    if want.shape != got.shape:
        return f"the spec's output is {tuple(got.shape)}, the model's {tuple(want.shape)}"
    return f"largest difference {float((want - got).abs().max()):.3g} for outputs up to {float(want.abs().max()):.3g}"


def _close(want, got) -> bool:
    import torch

    if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor) or want.shape != got.shape:
        return False
    scale = max(float(want.abs().max()), 1e-6)
    return bool((want - got).abs().max() <= 1e-4 * scale)


def _first_difference(original, built, x) -> str | None:
    import torch

    outs: dict[str, dict[str, Any]] = {"a": {}, "b": {}}
    handles = []
    names = [n for n, _ in built.named_modules() if n]
    mine = dict(original.named_modules())
    for side, root in (("a", original), ("b", built)):
        for n in names:
            m = dict(root.named_modules()).get(n) if side == "b" else mine.get(n)
            if m is None:
                continue

            def hook(module, args, output, n=n, side=side):
                if isinstance(output, torch.Tensor) and n not in outs[side]:
                    outs[side][n] = output.detach().clone()

            handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            original(x)
            built(x)
    finally:
        for h in handles:
            h.remove()
    for n in names:  # module order: parents before children; report the deepest that differs first
        a, b = outs["a"].get(n), outs["b"].get(n)
        if a is None or b is None or a.numel() != b.numel():
            continue
        if not _close(a, b.reshape(a.shape)) and not any(
            c.startswith(n + ".")
            and c in outs["a"]
            and c in outs["b"]
            and outs["a"][c].numel() == outs["b"][c].numel()
            and not _close(outs["a"][c], outs["b"][c].reshape(outs["a"][c].shape))
            for c in names
        ):
            return n
    return None
