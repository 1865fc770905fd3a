"""The model API of the ecosystem: timm's ``create_model``, ``list_models``, and a folder of
spec and weights to share a trained variant (``save_pretrained``).

``create_model("resnet50d", pretrained="timm:resnet50d.ra2_in1k", num_classes=10, in_chans=4)``
is timm's one line: the keywords have timm's meanings, the network's own parameters are
overrides (``depths=[3, 4, 23, 3]``) applied as a ``with`` delta through the front end (so
an unknown one is the diagnostic a spec gets, E020 with did-you-mean), and weights go
through :func:`resdsl.weight_transplant.transplant`, whose report the model keeps in
``transplant_report``. Zoo weights (``timm:…``, ``torchvision:…``) come through those
packages' own loaders, download and cache; nothing here touches the network itself.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .diagnostics import SourceCache, UsageError, did_you_mean
from .ir import Network
from .loader import Loader, check_arguments, check_out_indices, check_seed, decode, described
from .output import safe_write
from .resources import data_path, shipped_spec, shipped_specs
from .version import __version__

__all__ = ["ModelError", "ResText", "create_model", "list_models", "save_pretrained", "pretrained_tags", "load_network",
           "res_literal", "find_spec", "build_model", "Recipe", "BUNDLE_CONFIG", "BUNDLE_WEIGHTS"]

#: The files of a bundle folder (the Hugging Face Hub's names for a model folder).
BUNDLE_CONFIG, BUNDLE_WEIGHTS = "config.json", "model.safetensors"
#: The folders ``list_models`` and ``create_model`` search after the shipped specs
#: (``os.pathsep``-separated).
PATH_VARIABLE = "RESDSL_PATH"
#: The attribute a model made by ``create_model`` keeps its recipe under (for ``save_pretrained``).
RECIPE_ATTR = "resdsl_recipe"


class ModelError(ValueError):
    """A request ``create_model`` and friends cannot satisfy (an unknown model, a missing
    package, weights that do not fit); ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.message, self.hint = message, hint


@dataclass
class Recipe:
    """How a model was made: its spec file, network, overrides (``.res`` text by parameter)
    and the classifier change made after building (timm's ``num_classes=0``)."""

    spec: Path
    network: str | None
    overrides: dict[str, str] = field(default_factory=dict)
    head: dict[str, Any] = field(default_factory=dict)
    bundle: Path | None = None


# ---------------------------------------------------------------- finding specs


def _user_folders(path: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    if path is None:
        path = [p for p in os.environ.get(PATH_VARIABLE, "").split(os.pathsep) if p]
    elif isinstance(path, (str, Path)):
        path = [path]
    return [Path(p) for p in path]


def find_spec(name_or_path: str | Path, path: str | Path | Sequence[str | Path] | None = None) -> Recipe:
    """Where ``name_or_path`` lives: a bundle folder, a ``.res`` file (``file.res:network``
    picks a network), a shipped spec's name, or a spec in the user folders (``path``, or
    the ``RESDSL_PATH`` variable)."""
    text = str(name_or_path)
    if not text:
        raise ModelError("an empty name is not a model", hint="name a shipped spec such as `resnet50`")
    candidate = Path(text)
    if candidate.is_dir():
        return _bundle_recipe(candidate)
    network = None
    if not candidate.is_file() and ":" in text:
        left, _, right = text.rpartition(":")
        if left.endswith(".res") and right.isidentifier():
            candidate, network = Path(left), right
    if candidate.is_file():
        return Recipe(candidate, network)
    if candidate.suffix == ".res" or os.sep in text:
        raise ModelError(f"cannot read `{candidate}`: no such file")
    found = shipped_spec(text)
    if found is None:
        for folder in _user_folders(path):
            spec = folder / f"{text.removesuffix('.res')}.res"
            if spec.is_file():
                found = spec
                break
    if found is None:
        hint = did_you_mean(text, list_models(path=path))
        raise ModelError(f"unknown model `{text}`", hint=hint or "`resdsl.list_models()` lists them")
    return Recipe(found, network)


def list_models(pattern: str = "*", pretrained: bool = False,
                path: str | Path | Sequence[str | Path] | None = None) -> list[str]:
    """The names ``create_model`` takes, as timm's ``list_models``: the shipped specs and the
    specs in the user folders (``path``, or the ``RESDSL_PATH`` variable), filtered by the
    shell-style ``pattern``; with ``pretrained``, only the shipped specs with zoo weights,
    as ``name`` entries (their tags: :func:`pretrained_tags`)."""
    if not isinstance(pattern, str):
        raise TypeError(f"list_models: `pattern` is a shell-style pattern (a str), not {described(pattern)}")
    check_arguments("list_models", flags={"pretrained": pretrained})
    names = set(shipped_specs())
    for folder in _user_folders(path):
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.res"))
    if pretrained:
        names &= set(_zoo_table())
    return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))


def _zoo_table() -> dict[str, list[str]]:
    path = data_path("specs", "pretrained.json")
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def pretrained_tags(name: str) -> list[str]:
    """The zoo weights that fit the shipped spec ``name`` (``timm:resnet50.a1_in1k``,
    ``torchvision:ResNet50_Weights.IMAGENET1K_V2``…), the default first."""
    if not isinstance(name, str):
        raise TypeError(f"pretrained_tags: `name` is a shipped spec's name (a str), not {described(name)}")
    return list(_zoo_table().get(name, []))


# ---------------------------------------------------------------- overrides


class ResText(str):
    """An override given as ``.res`` text (``ResText("[3, 4, 23, 3]")``), passed on as it is
    written: what ``--set KEY=VALUE`` gives on the command line."""


def res_literal(value: object, key: str = "value") -> str:
    """``value`` written as a ``.res`` value: numbers, ``true``/``false``, ``none``, lists,
    and a name (a string that is an identifier: ``"deep_stem"``, ``"basic"``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"`{key}`: {value} is not a number a spec can hold")
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(res_literal(v, key) for v in value) + "]"
    if isinstance(value, ResText) or (isinstance(value, str) and value.isidentifier()):
        return str(value)
    raise TypeError(f"`{key}`: {type(value).__name__} {value!r} cannot be written in a spec "
                    "(numbers, booleans, None, lists, or the name of a definition such as 'deep_stem')")


def load_network(recipe: Recipe, *, sources: SourceCache | None = None, allow_large: bool = False) -> Network:
    """The network of ``recipe``, its overrides applied as ``network … = base with (…)``
    appended to the spec's text, so that they are checked as a spec's own (``E020`` with
    did-you-mean for an unknown one). The network keeps its base's name."""
    loader = Loader(sources, allow_large=allow_large)
    if not recipe.overrides:
        return loader.load(recipe.spec, network=recipe.network)
    base = Loader(allow_large=True).load(recipe.spec, network=recipe.network).name
    text = decode(recipe.spec.read_bytes(), str(recipe.spec))
    derived = f"{base}_overridden"
    while derived in text:
        derived += "_"
    for key, value in recipe.overrides.items():
        if not key.isidentifier():
            raise ModelError(f"`{key}` is not a parameter name")
        if "\n" in value or "\r" in value:
            raise ModelError(f"the value of `{key}` spans several lines")
    delta = ", ".join(f"{k} = {v}" for k, v in recipe.overrides.items())
    text = text + ("" if text.endswith("\n") else "\n") + f"network {derived} = {base} with ({delta})\n"
    net = Loader(sources, allow_large=allow_large).load(recipe.spec, text=text, network=derived)
    return replace(net, name=base)


# ---------------------------------------------------------------- pretrained weights


def _zoo_weights(ref: str, overlay: Mapping | None) -> tuple[dict, dict, str]:
    """A zoo reference's state_dict, its data configuration for ``pretrained_cfg``, and a label."""
    package, _, name = ref.partition(":")
    if package not in ("timm", "torchvision"):
        raise ModelError(f"`{ref}`: zoo weights are `timm:NAME.TAG` or `torchvision:ENUM.VALUE`")
    try:
        module = __import__(package)
    except ImportError:
        raise ModelError(f"`{ref}` names {package}'s weights, and {package} is not installed",
                         hint=f"pip install {package}") from None
    except Exception as err:  # e.g. a torchvision built for another torch
        raise ModelError(f"`{ref}` names {package}'s weights, and {package} cannot be imported here: "
                         f"{type(err).__name__}: {err}", hint=f"reinstall {package} for this torch") from None
    fetch_hint = "zoo weights are downloaded on first use: check the network connection"
    if package == "timm":
        kwargs = {"pretrained_cfg_overlay": dict(overlay)} if overlay else {}
        if not module.is_model(name):
            raise ModelError(f"timm has no model `{name}`", hint="timm.list_pretrained() lists its weights")
        try:
            zoo = module.create_model(name, pretrained=True, **kwargs)
        except Exception as err:  # timm's own errors, or the download's
            raise ModelError(f"timm could not load the weights `{name}`: {type(err).__name__}: {err}",
                             hint=fetch_hint if isinstance(err, OSError) else
                             f"timm.list_pretrained('{name.partition('.')[0]}*') lists its weights") from None
        cfg = {k: v for k, v in zoo.pretrained_cfg.items()
               if k in ("crop_pct", "crop_mode", "interpolation", "mean", "std", "hf_hub_id", "tag", "license")}
        return zoo.state_dict(), cfg, ref
    if package == "torchvision":
        import torchvision

        try:
            weights = torchvision.models.get_weight(name)
        except (ValueError, KeyError, AttributeError) as err:
            raise ModelError(f"torchvision has no weights `{name}`: {err}",
                             hint="e.g. torchvision:ResNet50_Weights.IMAGENET1K_V2") from None
        transforms = weights.transforms()
        crop = transforms.crop_size[0]
        resize = transforms.resize_size[0]
        cfg = {"crop_pct": round(crop / resize, 4), "interpolation": transforms.interpolation.value,
               "mean": tuple(transforms.mean), "std": tuple(transforms.std), "url": weights.url}
        try:
            return weights.get_state_dict(progress=False), cfg, ref
        except Exception as err:  # the download's errors
            raise ModelError(f"torchvision could not load the weights `{name}`: {type(err).__name__}: {err}",
                             hint=fetch_hint) from None
    raise AssertionError(package)  # unreachable: checked above


def _load_weights(model, net: Network, pretrained: object, seed: int | None, overlay: Mapping | None,
                  name: str) -> None:
    from .checkpoints import CheckpointError
    from .weight_transplant import transplant

    cfg: dict = {}
    if pretrained is True:
        tags = pretrained_tags(name)
        if not tags:
            raise ModelError(f"no zoo weights are recorded for `{name}`",
                             hint="pass pretrained= a checkpoint file or a `timm:`/`torchvision:` reference")
        pretrained = tags[0]
    if isinstance(pretrained, str) and pretrained.startswith(("timm:", "torchvision:")) and \
            not Path(pretrained).exists():
        source, cfg, label = _zoo_weights(pretrained, overlay)
    elif isinstance(pretrained, (str, Path)):
        if not Path(pretrained).is_file():
            raise ModelError(f"cannot read the checkpoint `{pretrained}`: no such file",
                             hint="pretrained= takes a checkpoint file, `timm:NAME.TAG` or "
                                  "`torchvision:ENUM.VALUE`")
        source, label = Path(pretrained), Path(pretrained).name
    elif isinstance(pretrained, Mapping):
        source, label = pretrained, "state_dict"
    else:
        raise TypeError(f"pretrained: False, True, a checkpoint path, a zoo reference or a state_dict, "
                        f"not {type(pretrained).__name__}")
    try:
        state, report = transplant(net, source, seed=0 if seed is None else seed)
    except CheckpointError as err:
        raise ModelError(str(err), hint=getattr(err, "hint", "") or "") from None
    report.checkpoint = label
    if not report.placed:
        raise ModelError(f"no tensor of `{label}` fits {net.name}",
                         hint="are these the weights of a network of the same family?")
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    model.transplant_report = report
    if hasattr(model, "pretrained_cfg"):
        model.pretrained_cfg.update(cfg)


# ---------------------------------------------------------------- create_model


def create_model(name_or_path: str | Path, *, pretrained: object = False, num_classes: int | None = None,
                 in_chans: int | None = None, global_pool: str | None = None, drop_rate: float | None = None,
                 drop_path_rate: float | None = None, features_only: bool = False,
                 out_indices: Sequence[int] | None = None, seed: int | None = None,
                 pretrained_cfg_overlay: Mapping | None = None, path: str | Path | Sequence[str | Path] | None = None,
                 allow_large: bool = False, **overrides: object):
    """A model, as ``timm.create_model``: the module ``resdsl.build`` returns, with timm's
    interface (``forward_features``, ``reset_classifier``, ``pretrained_cfg``…).

    ``name_or_path``: a shipped spec's name, a ``.res`` path (``file.res:network``), a spec
    in the user folders (``path`` or ``RESDSL_PATH``), or a folder ``save_pretrained`` wrote
    (which brings its weights). ``num_classes`` (0: the pooled features come out),
    ``in_chans``, ``drop_rate`` and ``drop_path_rate`` set the network's ``num_classes``,
    ``in_channels``, ``drop_rate`` and ``drop_path_rate``; ``global_pool=""`` (with
    ``num_classes=0``) leaves the features unpooled. ``**overrides`` are the network's own
    parameters (``depths=[3, 4, 23, 3]``, ``stem="deep_stem"``). ``features_only`` /
    ``out_indices`` give timm's feature extractor. ``pretrained``: ``True`` (the spec's first
    zoo tag), a checkpoint file, a state_dict, or ``"timm:resnet50d.ra2_in1k"`` /
    ``"torchvision:ResNet50_Weights.IMAGENET1K_V2"`` (fetched by that package, which must be
    installed; ``pretrained_cfg_overlay`` goes to timm's loader); weights go through
    ``transplant`` (an adapted input conv, a new head) and its report is kept as
    ``model.transplant_report``. Raises :class:`~resdsl.SpecError` for a bad override and
    :class:`ModelError` for a request that cannot be met.
    """
    check_seed(seed, "create_model")
    check_out_indices(out_indices, "create_model")
    if not isinstance(name_or_path, str | os.PathLike) or "\x00" in os.fspath(name_or_path):
        raise TypeError("create_model: `name_or_path` is a model's name or a path (str or pathlib.Path), "
                        f"not {described(name_or_path)}")
    check_arguments("create_model", flags={"features_only": features_only, "allow_large": allow_large})
    recipe = find_spec(name_or_path, path)
    values = dict(recipe.overrides)
    timm_keywords = {"in_channels": in_chans, "drop_rate": drop_rate, "drop_path_rate": drop_path_rate}
    head = dict(recipe.head)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise TypeError(f"create_model: `num_classes` is a count of classes (0: none), not {described(num_classes)}")
        if num_classes == 0:
            head["num_classes"] = 0
        else:
            timm_keywords["num_classes"] = num_classes
            head.pop("num_classes", None)
    if global_pool is not None:
        if global_pool not in ("avg", ""):
            raise ModelError(f"global_pool: 'avg' (the spec's pooling) or '' (none), not {global_pool!r}")
        if global_pool == "" and head.get("num_classes") != 0:
            raise ModelError("global_pool='' leaves the features unpooled: it goes with num_classes=0")
        head["global_pool"] = global_pool
    values |= {k: res_literal(v, k) for k, v in timm_keywords.items() if v is not None}
    values |= {k: res_literal(v, k) for k, v in overrides.items()}
    return build_model(replace(recipe, overrides=values, head=head), pretrained=pretrained, seed=seed,
                       features_only=features_only, out_indices=out_indices,
                       pretrained_cfg_overlay=pretrained_cfg_overlay, allow_large=allow_large)


def build_model(recipe: Recipe, *, pretrained: object = False, seed: int | None = None, features_only: bool = False,
                out_indices: Sequence[int] | None = None, pretrained_cfg_overlay: Mapping | None = None,
                allow_large: bool = False, sources: SourceCache | None = None):
    """The model of ``recipe`` (what :func:`create_model` makes of its arguments)."""
    from .backends.torch_model import build

    head = recipe.head
    net = load_network(recipe, sources=sources, allow_large=allow_large)
    if features_only and out_indices is None:
        from .roles import feature_points

        try:
            out_indices = tuple(range(len(feature_points(net))))
        except ValueError as err:
            raise ModelError(f"features_only: {err}, so it has no feature maps to take") from None
    model = build(net, seed=seed, out_indices=tuple(out_indices) if out_indices is not None else None)
    weights = pretrained
    if recipe.bundle is not None and pretrained in (False, None, True):  # a folder brings its weights
        weights = recipe.bundle / BUNDLE_WEIGHTS
    if head and out_indices is None:  # the classifier changes before the bundle's weights load
        model.reset_classifier(head.get("num_classes", model.num_classes), head.get("global_pool"))
    if weights not in (False, None):
        _load_weights(model, net, weights, seed, pretrained_cfg_overlay, recipe.spec.stem)
    model.__dict__[RECIPE_ATTR] = recipe
    return model


# ---------------------------------------------------------------- bundles


def _bundle_recipe(folder: Path) -> Recipe:
    config_path = folder / BUNDLE_CONFIG
    if not config_path.is_file():
        raise ModelError(f"`{folder}` is a folder without a {BUNDLE_CONFIG}: not a model folder",
                         hint="save_pretrained(model, folder) writes one")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        own = config["resdsl"]
        return Recipe(folder / own["spec"], own.get("network"), dict(own.get("overrides", {})),
                      dict(own.get("head", {})), bundle=folder)
    except (ValueError, KeyError, TypeError) as err:
        raise ModelError(f"`{config_path}` is not a resdsl model configuration: {err}") from None


def save_pretrained(model, folder: str | Path, *, force: bool = False) -> Path:
    """Write ``model`` as a folder that ``create_model(folder)`` (and ``resdsl compile folder``)
    rebuild exactly: its spec file, byte for byte, with the files it imports beside it
    (the standard library comes with resdsl), the weights as ``model.safetensors`` and a
    ``config.json`` (network, overrides, resdsl version, input size, timm's
    ``pretrained_cfg``), laid out as a Hugging Face Hub model folder.

    The folder is written in a temporary folder beside it and renamed into place, so it is
    never half-written; an existing folder that is not empty is refused unless ``force``.
    """
    from .backends.torch_model import network_of
    from .checkpoints import dump_checkpoint

    net = network_of(model, "save_pretrained")
    if not isinstance(folder, str | os.PathLike) or "\x00" in os.fspath(folder):
        raise TypeError(f"save_pretrained: `folder` is a folder name (str or pathlib.Path), not {described(folder)}")
    check_arguments("save_pretrained", flags={"force": force})
    recipe: Recipe = model.__dict__.get(RECIPE_ATTR) or Recipe(Path(net.source), net.name)
    if not recipe.spec.is_file():
        raise ModelError(f"the spec of `{net.name}` ({recipe.spec}) is not a file: only a model built "
                         "from a spec file can be saved")
    if hasattr(model, "feature_info") and not hasattr(model, "forward_head"):
        raise ModelError("a features_only model cannot be saved: save the full model")
    head = dict(recipe.head)
    if hasattr(model, "num_classes") and model.num_classes != _classes(net):  # reset_classifier after building
        head["num_classes"] = model.num_classes
    if getattr(model, "global_pool", "avg") == "":
        head["global_pool"] = ""
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise ModelError(f"`{target}` exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise ModelError(f"`{target}` is not empty", hint="choose a new folder, or pass force=True (--force)")
    # the spec and every file it imports outside the standard library, at the same relative paths
    loader = Loader(allow_large=True)
    loader.load(recipe.spec, network=recipe.network)
    root = recipe.spec.resolve().parent
    sources = [Path(p) for p in loader.envs if not Path(p).is_relative_to(data_path("specs", "std"))]
    config = {
        "architecture": net.name,
        "num_classes": getattr(model, "num_classes", net.output_shape[0]),
        "input_size": list(net.input_shape),
        "pretrained_cfg": _jsonable(getattr(model, "pretrained_cfg", {})),
        "resdsl": {"version": __version__, "spec": recipe.spec.name, "network": recipe.network,
                   "overrides": recipe.overrides, "head": head},
    }
    files: dict[str, bytes | str] = {f.resolve().relative_to(root).as_posix(): f.read_bytes() for f in sources}
    files[BUNDLE_WEIGHTS] = dump_checkpoint(model.state_dict(), "safetensors", {"resdsl.network": net.name})
    files[BUNDLE_CONFIG] = json.dumps(config, indent=2) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    # staged beside the target and renamed into place whole (resdsl.output, the one writer)
    try:
        safe_write(target, files, reads=sources, force=force)
    except UsageError as err:  # the folder is a link, a system path, holds the spec itself…
        raise ModelError(str(err), hint=err.hint) from None
    return target


def _classes(net: Network) -> int:
    from .roles import head_of

    head = head_of(net)
    return net.op(head.classifier).shape[0] if head is not None else net.output_shape[0]


def _jsonable(value: object) -> object:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def bundle_network(folder: Path, sources: SourceCache | None = None, allow_large: bool = False) -> tuple[Network, Path]:
    """A bundle's network as ``resdsl compile`` lowers it, and its weights file: the classifier
    change of ``num_classes=0`` (and ``global_pool=""``) cuts the network at the pooled
    (unpooled) features."""
    from .passes import features_only
    from .roles import head_of

    recipe = _bundle_recipe(folder)
    net = load_network(recipe, sources=sources, allow_large=allow_large)
    if recipe.head:
        head = head_of(net)
        if head is None or recipe.head.get("num_classes", 0) != 0:
            raise ModelError(f"`{folder}` holds a classifier changed after building (reset_classifier), "
                             "which a spec cannot state", hint="give num_classes as an override instead")
        cut = net.op(head.pool).inputs[0] if recipe.head.get("global_pool") == "" else head.pre_logits
        net = features_only(net, (cut,))
    return net, folder / BUNDLE_WEIGHTS
