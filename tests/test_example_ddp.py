"""examples/train_ddp.py under torchrun: two CPU processes (gloo), a few synthetic batches."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402

from conftest import ROOT  # noqa: E402


# About 20 s (two processes each importing torch), but the example must run in CI.
@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_train_ddp_runs_under_torchrun():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": ""}  # CPU and gloo, even on a GPU machine
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", "examples/train_ddp.py", "--steps", "2"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines[-3:]] == ["step 1/2", "step 2/2", "ok"]
    assert "2 processes, replicas in sync" in lines[-1]
