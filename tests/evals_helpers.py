"""Shared helpers for the eval/CLI tests: a tiny random LLaDA with the zoo tokenizer, saved to disk.

The embedded zoo model may not exist yet, and tests must not depend on trained weights anyway: a
random model exercises the same loading, batching, accounting and resume paths.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from dllm_decode.models import LLaDAConfig, LLaDAModelLM
from dllm_decode.zoo.tokenizer import build_tokenizer

REPO = Path(__file__).resolve().parent.parent


def save_tiny_llada(out_dir: Path, *, d_model: int = 32, n_layers: int = 2, seed: int = 0) -> Path:
    """A random ~100k-parameter LLaDA plus the zoo tokenizer in `out_dir`, loadable by `load_model`."""
    tok = build_tokenizer()
    torch.manual_seed(seed)
    config = LLaDAConfig(d_model=d_model, n_heads=4, n_kv_heads=4, n_layers=n_layers, mlp_hidden_size=64,
                         vocab_size=len(tok), embedding_size=len(tok), max_sequence_length=128,
                         rope_theta=10000.0, mask_token_id=tok.mask_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = LLaDAModelLM(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(out_dir))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out_dir / "model.safetensors"))
    tok.save_pretrained(str(out_dir))
    return out_dir


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def records_of(path: Path) -> list[dict]:
    """The sample records of a run file, minus the timing fields that legitimately differ between runs."""
    out = []
    for row in read_jsonl(path):
        if row.get("type") == "record":
            out.append({k: v for k, v in row.items() if k not in ("wall_time",)})
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Checkpoint directory of the tiny random LLaDA, built once per test session."""
    torch.set_num_threads(1)  # tiny matrices: threads only add contention on busy CPUs
    return save_tiny_llada(tmp_path_factory.mktemp("tiny-llada"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    from dllm_decode import load_model

    return load_model(tiny_model_dir)


def subprocess_env() -> dict[str, str]:
    """Environment for child processes: the repo importable, one thread each, no hub access."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(OMP_NUM_THREADS="1", HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return env
