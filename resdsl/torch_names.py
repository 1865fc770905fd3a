"""The attribute names every ``torch.nn.Module`` has, which a layer name may not take.

Layer names become the attribute names of child modules (``self.conv1``), so a layer
may not be called ``forward`` or ``training``: ``add_module`` refuses a name the module
already has, and a child set under it anyway would be hidden behind the method. The
front end refuses these names (E054) without importing torch, so they are written out
here. Names with a leading ``_`` are refused by rule (they are torch's and the generated
code's), so only public names are listed.

The list follows ``dir(torch.nn.Module())`` (methods, properties, class attributes and
the instance's own ``training``) and changes with torch releases;
``tests/test_torch_compat.py`` checks that it covers the installed torch, in the
development environment (torch 2.13) and in CI's reference environment (torch 2.14.1).
Only ``nn.Module``'s names matter: the containers the back ends build
(``nn.Sequential``, ``nn.ModuleList``) hold children named 0, 1, …, which no attribute
name can be. A name torch drops stays listed (refusing it is harmless, and a spec keeps
compiling under every supported torch).
"""

from __future__ import annotations

#: Public attribute names of ``torch.nn.Module`` (torch 2.13 and 2.14.1: the same set).
RESERVED_LABELS = frozenset("""
    T_destination add_module apply bfloat16 buffers call_super_init children compile cpu cuda
    double dump_patches eval extra_repr float forward get_buffer get_extra_state get_parameter
    get_submodule half ipu load_state_dict modules mtia named_buffers named_children
    named_modules named_parameters parameters register_backward_hook register_buffer
    register_forward_hook register_forward_pre_hook register_full_backward_hook
    register_full_backward_pre_hook register_load_state_dict_post_hook
    register_load_state_dict_pre_hook register_module register_parameter
    register_state_dict_post_hook register_state_dict_pre_hook requires_grad_ set_extra_state
    set_submodule share_memory state_dict to to_empty train training type xpu zero_grad
""".split()) | {
    # what resdsl's models have beside nn.Module's (resdsl.backends.torch_model): the
    # network a built model carries, and a feature extractor's description
    "resdsl_network", "feature_info",
}

#: What the network's own class has beside those: timm's model interface
#: (templates/torch/model.py.j2) and what resdsl.models keeps on a model. Refused only as a
#: top-level name: a block's class has none of it (timm itself names `head.global_pool`).
MODEL_ATTRIBUTES = frozenset({
    "forward_features", "forward_head", "forward_norm", "forward_intermediates", "prune_intermediate_layers",
    "get_classifier", "reset_classifier", "set_grad_checkpointing", "group_matcher", "no_weight_decay",
    "num_classes", "num_features", "head_hidden_size", "global_pool", "grad_checkpointing", "pretrained_cfg",
    "default_cfg", "stage_paths", "stage_blocks", "transplant_report", "resdsl_recipe", "norm_pruned",
})
