"""The Jinja2 environment of ``templates/torch/``: created on first use, once per process."""

from __future__ import annotations

import functools

import jinja2

from ...resources import data_path
from .names import path_ref


@functools.cache
def _environment() -> jinja2.Environment:
    # one environment per process: it keeps the compiled templates (compiling model.py.j2
    # cost as much as the rest of a render, on every `resdsl.build`)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(data_path("templates", "torch"))),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["path_ref"] = path_ref
    return env
