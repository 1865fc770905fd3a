"""Importing a torch model of the ResNet family as an editable `.res` spec.

:func:`from_torch` traces the model (:mod:`.trace`: torch.fx, the registry's recognisers),
looks for the standard library's call that builds it (:mod:`.library`), or else writes one
definition per distinct block structure (:mod:`.structure`), and checks the result
(:mod:`.verify`: strict weight loading, equal outputs) before returning it. Needs torch.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import E
from .trace import ImportFailure

__all__ = ["ImportFailure", "from_torch", "load_factory"]


def _network_name(name: str | None, source: str | None, model: Any) -> str:
    raw = name or (re.split(r"[:.]", source)[-1] if source else type(model).__name__)
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw).lower() if not name else raw
    snake = re.sub(r"\W", "_", snake).strip("_") or "imported"
    return snake if not snake[0].isdigit() else "net_" + snake


def _header(source: str | None, model: Any, params: int) -> str:
    import torch

    from ..version import __version__

    versions = [f"torch {torch.__version__.split('+')[0]}"]
    if source and source.startswith("timm:"):
        try:
            import timm

            versions.append(f"timm {timm.__version__}")
        except ImportError:
            pass
    elif source and source.startswith("torchvision"):
        try:
            import torchvision

            versions.append(f"torchvision {torchvision.__version__.split('+')[0]}")
        except ImportError:
            pass
    cls = type(model)
    origin = source or f"{cls.__module__}.{cls.__qualname__}"
    return (
        f"# Imported from {origin} ({', '.join(versions)}) by resdsl {__version__}: {params:,} parameters.\n"
        f"# Checked on the way out: the original state_dict loads with strict=True and gives the same outputs.\n"
    )


def from_torch(
    model: Any,
    input_size: tuple[int, ...] = (3, 224, 224),
    *,
    name: str | None = None,
    source: str | None = None,
) -> str:
    """The `.res` spec of ``model``, a torch module of the ResNet family, checked.

    The model is traced with ``torch.fx`` on a ``input_size`` (C, H, W) input; each leaf
    module and function becomes the registry primitive whose ``recognise`` accepts it. The
    spec is the standard library's call where one builds the same network (torchvision's
    resnet50 gives ``resnet(block = bottleneck, depths = [3, 4, 6, 3])``), else one
    definition per distinct block structure, layers named as the model's modules. Before it
    is returned, the spec is built, the model's ``state_dict`` loaded into it with
    ``strict=True`` and both compared on a random input in eval mode. ``name`` names the
    network (default: from ``source`` or the model's class); ``source`` (``timm:resnet50d``)
    is written in the header. Raises :class:`ImportFailure` (a code, a message naming the
    module path and class, a hint) for what cannot be imported.
    """
    import torch

    from ..loader import loads
    from . import canon, library, structure, verify
    from .trace import trace

    input_size = tuple(int(v) for v in input_size)
    if len(input_size) != 3:
        raise ImportFailure(E.TORCH_UNSUPPORTED, f"the input size is C, H, W (three numbers), not {input_size}")
    if any(
        t.device.type != "cpu" or t.dtype != torch.float32
        for t in model.state_dict().values()
        if torch.is_floating_point(t)
    ):
        raise ImportFailure(
            E.TORCH_UNTRACEABLE,
            "the model's weights are not all float32 on the CPU",
            hint="import a CPU float32 copy: copy.deepcopy(model).float().cpu()",
        )
    was_training = model.training
    model.eval()
    try:
        traced = trace(model, input_size)
        net_name = _network_name(name, source, model)
        params = sum(t.numel() for t in model.parameters())
        header = _header(source, model, params)
        text, net = None, None
        for imports, call in library.candidates(traced, net_name):
            candidate = f"{header}{imports}\n\n{call}\n"
            try:
                net = loads(candidate)
            except Exception:  # a library call the model only resembles
                continue
            if canon.same(traced, net):
                text = candidate
                break
            net = None
        if text is None:
            text = header + "\n" + structure.write(traced, net_name)
        verify.verify(text, model, input_size, net=net)
        return text
    finally:
        model.train(was_training)


def load_factory(spec: str, kwargs: dict | None = None) -> Any:
    """The model ``spec`` names: ``package.module:factory`` called with ``kwargs``, or
    ``timm:NAME`` (``timm.create_model(NAME, **kwargs)``)."""
    import importlib

    kwargs = dict(kwargs or {})
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ImportFailure(
            E.TORCH_NO_MODEL,
            f"`{spec}` does not name a model",
            hint="write `package.module:factory` (torchvision.models:resnet50) or `timm:NAME`",
        )
    if module_name == "timm":
        try:
            import timm
        except ImportError:
            raise ImportFailure(
                E.TORCH_NO_MODEL, "`timm:` models need timm, which is not installed", hint="pip install timm"
            ) from None
        try:
            return timm.create_model(attr, **kwargs)
        except Exception as err:
            raise ImportFailure(E.TORCH_NO_MODEL, f"timm cannot create `{attr}`: {err}") from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportFailure(E.TORCH_NO_MODEL, f"cannot import `{module_name}`: {err}") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ImportFailure(E.TORCH_NO_MODEL, f"`{module_name}` has no `{attr}`")
    try:
        return factory(**kwargs)
    except Exception as err:
        raise ImportFailure(E.TORCH_NO_MODEL, f"`{spec}` failed: {type(err).__name__}: {err}") from None
