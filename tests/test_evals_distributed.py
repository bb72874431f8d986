"""Scale-out: `torchrun` with 2 CPU (gloo) processes writes the same records as one process."""
from __future__ import annotations

import subprocess
import sys

from dllm_decode.cli import main
from tests.evals_helpers import records_of, subprocess_env, tiny_model_dir  # noqa: F401

ARGS = ["--samplers", "confidence:k=4", "threshold:threshold=0.9", "--suite", "index", "--per-length", "1",
        "--lengths", "3", "4", "--batch-size", "2", "--no-progress", "--threads", "1"]


def test_two_processes_match_one(tiny_model_dir, tmp_path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert main(["eval", "--model", str(tiny_model_dir), "--out", str(single), *ARGS]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "dllm_decode.cli", "eval", "--model", str(tiny_model_dir), "--out", str(sharded), *ARGS]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    assert proc.stdout.count("| configuration | score |") == 1  # only rank 0 prints (the table, then per task)
    expected = records_of(single / "records.jsonl")
    assert len(expected) == 2 * 12
    assert records_of(sharded / "records.jsonl") == expected
    header = [line for line in (sharded / "records.jsonl").read_text().splitlines() if '"header"' in line]
    assert len(header) == 1 and '"world_size": 2' in header[0]
