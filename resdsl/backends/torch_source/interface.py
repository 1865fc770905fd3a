"""timm's model interface on the network's class: how its forward is split
(:class:`TopView`), the names the interface takes, and the values and source fragments of
its methods (class count, feature widths, ``feature_info``, ``pretrained_cfg``)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ...ir import INPUT, Network
from ...primitives import PRIMITIVES
from ...roles import feature_points, head_of, made_by
from ..source_format import Call, layout
from .names import _quoted, is_identifier, path_ref

#: The methods and attributes of timm's model interface on the network's class: no
#: top-level layer of a spec may take one of these names.
INTERFACE_NAMES = ("forward_features", "forward_head", "forward_intermediates", "prune_intermediate_layers",
                   "get_classifier", "reset_classifier", "set_grad_checkpointing", "group_matcher",
                   "no_weight_decay", "num_classes", "num_features", "head_hidden_size", "global_pool",
                   "grad_checkpointing", "feature_info", "pretrained_cfg", "default_cfg", "forward_norm",
                   "stage_paths", "stage_blocks", "norm_pruned")


@dataclass
class TopView:
    """The network's class, split as timm's model interface needs it.

    ``forward_features`` is ``stem``, the ``stages`` and ``post`` (a final norm);
    ``forward_head`` is ``pool`` (global pooling up to the classifier's input, which
    ``pre_logits`` returns) and ``logits``. Without stages (``stages`` empty) the whole
    forward is ``stem``; without a head (``classifier`` empty), ``forward_head`` returns its
    input. ``intermediates`` is the stem again, keeping its feature map in ``stem_feature``.
    """

    name: str
    init: list[str]
    stem: list[str]
    stages: list[list[str]] = field(default_factory=list)  # each stage's lines (`x = self.layer1(x)`)
    #: Each stage's module path; an unnamed stage's modules' paths, joined by `|`
    stage_paths: list[str] = field(default_factory=list)
    stage_inline: list[bool] = field(default_factory=list)  # an unnamed stage: no module of its own
    #: Per stage, its blocks' module paths (:func:`resdsl.roles.stage_blocks`), or None where
    #: they are its children (an ``nn.Sequential`` of blocks)
    stage_blocks: list[list[list[str]] | None] = field(default_factory=list)
    post: list[str] = field(default_factory=list)
    pool: list[str] = field(default_factory=list)
    pre_logits: str = "x"
    logits: list[str] = field(default_factory=list)
    intermediates: list[str] = field(default_factory=list)
    stem_feature: str = "x"
    stem_out: list[str] = field(default_factory=list)
    stem_modules: list[str] = field(default_factory=list)
    stem_level: str = ""  # the instance making the stem's feature map, when a group of its own
    classifier: str = ""  # the classifier's module path
    new_classifier: Call | None = None  # its constructor for `num_classes` classes (timm's reset_classifier)
    post_modules: list[str] = field(default_factory=list)  # what pruning replaces
    post_norm: bool = False  # what follows the stages holds a norm: timm's prune_norm prunes it
    #: the stem's modules after its feature map (:func:`resdsl.roles.stem_tail`), which
    #: pruning to the stem's map replaces; None where they cannot be replaced
    stem_tail: list[str] | None = field(default_factory=list)

    @property
    def forward(self) -> list[str]:
        """Every line of the forward methods."""
        return [*self.stem, *self.post, *self.pool, *self.logits, *self.intermediates, *self.stem_out]


#: timm's defaults for ImageNet models (`timm.data.IMAGENET_DEFAULT_MEAN`, …): the data
#: configuration a model states until pretrained weights bring their own.
DEFAULT_CFG = {"crop_pct": 0.875, "interpolation": "bilinear", "mean": (0.485, 0.456, 0.406),
               "std": (0.229, 0.224, 0.225)}


def _width(shape: tuple[int, ...]) -> int:
    """The leading size of a per-sample shape; 1 for a scalar per sample (a reduction over all axes)."""
    return shape[0] if shape else 1


def _interface(net: Network, top: TopView) -> dict:
    """The values of timm's model interface: class count, feature widths, feature_info and
    pretrained_cfg (as lines of source)."""
    head = head_of(net) if top.classifier else None
    if head is not None:
        features = net.op(head.pool).inputs[0]
        num_classes, pre_logits = net.op(head.classifier).shape[0], head.pre_logits
    else:
        features = pre_logits = net.output
        num_classes = _width(net.output_shape)
    points = feature_points(net) if top.stages else []
    # every conv reading the input, as timm names them (RepVGG's two stem branches: a
    # tuple); a functional one (`conv_with` in a conv written in `.res`) is the instance it
    # ends (`stem.conv`)
    convs = tuple(dict.fromkeys(op.module or made_by(net, op.name) for op in net.ops if op.inputs
                                and op.inputs[0] == INPUT and (op.module and PRIMITIVES[op.kind].traits.conv
                                                               or op.module is None and PRIMITIVES[op.kind].traits.depth)))
    first_conv = convs[0] if len(convs) == 1 else convs
    cfg: dict = {"architecture": net.name, "num_classes": num_classes, "input_size": tuple(net.input_shape)}
    shape = net.shape_of(features)
    if len(shape) == 3:
        cfg["pool_size"] = tuple(shape[1:])
    cfg |= DEFAULT_CFG
    cfg |= {"first_conv": first_conv or "", "classifier": top.classifier}
    # the output's size follows the input's only through global pooling, and modules built
    # from the input's height or width take no other size
    if head is None or net.sized_by_input:
        cfg["fixed_input_size"] = True
    return {
        "num_classes": num_classes, "num_features": _width(shape), "head_hidden_size": _width(net.shape_of(pre_logits)),
        "points": len(points),
        "feature_info": [f'{{"num_chs": {p.channels}, "reduction": {p.reduction}, "module": {_quoted(p.module)}}}'
                         for p in points],
        "cfg": [f"{_quoted(k)}: {_value(v)}" for k, v in cfg.items()],
    }


def _value(value: object) -> str:
    """A configuration value as ruff formats it (strings in double quotes, in tuples too)."""
    if isinstance(value, str):
        return _quoted(value)
    if isinstance(value, tuple) and value and all(isinstance(v, str) for v in value):
        return "(" + ", ".join(map(_quoted, value)) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def _tuple(texts: list[str], indent: str, lead: str) -> str:
    """A tuple of ``texts``, laid out as ruff format does."""
    if len(texts) == 1:
        return f"({texts[0]},)"
    return layout(Call("", tuple(texts)), indent, lead)


def _interface_texts(top: TopView) -> dict:
    """Source fragments of the interface's methods."""
    target = ""
    if top.classifier:  # the statement that puts `classifier` in the classifier's place
        parent, _, leaf = top.classifier.rpartition(".")
        if all(is_identifier(p) for p in top.classifier.split(".")):
            target = f"self.{top.classifier} = classifier"
        else:
            target = f"setattr({path_ref('self', parent) if parent else 'self'}, {_quoted(leaf)}, classifier)"
    stem = "|".join(re.escape(m) for m in top.stem_modules)
    blocks = ""
    if any(groups is not None for groups in top.stage_blocks):  # one stage a line; a block's paths joined by `|`
        lines = [_tuple([_quoted("|".join(g)) for g in groups], " " * 8, "") if groups else "()"
                 for groups in top.stage_blocks]
        blocks = "(\n" + "".join(f"        {line},\n" for line in lines) + "    )"
    inline = any(top.stage_inline)
    get = "stage_of(self, path)" if inline else "self.get_submodule(path)"
    checkpoint = ["x", f"[{get} for path in self.stage_paths]"]
    whole = tuple(n for n, g in enumerate(top.stage_blocks) if g is not None and not top.stage_inline[n])
    if blocks and whole:  # the stages whose children are not their blocks are checkpointed whole
        checkpoint.append(str(whole))
    return {
        "stage_paths": _tuple([_quoted(p) for p in top.stage_paths], "    ", "stage_paths = "),
        "stage_blocks": blocks,
        "inline_stages": inline,
        "get_stage": get,
        # the final norm joins the last stage's coarse group too where that stage is unnamed:
        # timm's DPN matches a stage by its blocks' common name (`features.conv5`), which the
        # norm after them shares (`features.conv5_bn_ac`)
        "post_coarse": bool(top.stage_inline) and top.stage_inline[-1],
        "post_norm": top.post_norm,
        "checkpoint": layout(Call("checkpoint_blocks", tuple(checkpoint)), " " * 12, "x = "),
        "stem_regex": f'r"^(?:{stem})\\."' if stem else "None",
        "level_regex": f'r"^{re.escape(top.stem_level)}\\."' if top.stem_level else "",
        "post_regex": f'r"^(?:{"|".join(re.escape(m) for m in top.post_modules)})\\."',
        "classifier_target": target,
        "new_classifier": layout(top.new_classifier, " " * 12, "classifier = ") if top.new_classifier else "",
        "post_paths": _tuple([_quoted(p) for p in top.post_modules], "            ", "pruned += ")
        if top.post_modules else "()",
        "stem_tail": _tuple([_quoted(p) for p in top.stem_tail], "            ", "pruned += ")
        if top.stem_tail else "",
    }


def _feature_ops(net: Network) -> tuple[str, ...]:
    try:
        return tuple(p.op for p in feature_points(net))
    except ValueError:  # no stem followed by stages
        return ()
