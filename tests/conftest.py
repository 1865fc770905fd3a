"""Shared fixtures: paths to the shipped specs and a cache of loaded networks."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pytest

import resdsl

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
SPEC_NAMES = sorted(p.stem for p in SPECS.glob("*.res"))


@lru_cache(maxsize=None)
def load_spec(name: str) -> resdsl.Network:
    return resdsl.load(SPECS / f"{name}.res")


@pytest.fixture(params=SPEC_NAMES)
def spec_name(request) -> str:
    return request.param
