"""fit under torchrun: two CPU processes (gloo) train in lockstep and end with identical weights."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from torchslim.core.tensors import read_tensors

SCRIPT = Path(__file__).parent / "scripts" / "train_synthetic.py"


@pytest.mark.slow
def test_two_process_ddp_ranks_agree(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(SCRIPT), str(tmp_path), "4"]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    r0, r1 = (read_tensors(tmp_path / f"final-rank{r}.safetensors") for r in (0, 1))
    for key in r0:
        assert torch.equal(r0[key], r1[key]), f"ranks disagree on {key}"
    h0, h1 = (json.loads((tmp_path / f"history-rank{r}.json").read_text()) for r in (0, 1))
    assert [e["train_loss"] for e in h0["epochs"]] == [e["train_loss"] for e in h1["epochs"]]
    assert h0["test"]["accuracy"] == h1["test"]["accuracy"] > 40.0
    assert (tmp_path / "ckpt" / "last").is_dir()
