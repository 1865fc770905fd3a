"""Shared fixtures: paths to the shipped specs and a cache of loaded networks."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest

import resdsl

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.res"))


@cache
def load_spec(name: str) -> resdsl.Network:
    return resdsl.load(SPECS / f"{name}.res")


@pytest.fixture(params=SPEC_NAMES)
def spec_name(request) -> str:
    return request.param


def pytest_addoption(parser) -> None:
    parser.addoption("--fuzz-long", action="store_true",
                     help="run the long fuzzing campaign (tests marked fuzz_long)")


def pytest_collection_modifyitems(config, items) -> None:
    """The long fuzz campaign runs only when asked for, whatever `-m` says."""
    if config.getoption("--fuzz-long"):
        return
    skip = pytest.mark.skip(reason="the long fuzz campaign: run with --fuzz-long")
    for item in items:
        if "fuzz_long" in item.keywords:
            item.add_marker(skip)
