"""Runner: one record per sample, resumable after a hard kill or Ctrl-C, identical to an uninterrupted run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dllm_decode.evals import EvalSettings, parse_grid, run_eval
from dllm_decode.evals.records import deferred_sigint, read_run
from dllm_decode.evals.tasks import make_suite, score
from tests.evals_helpers import read_jsonl, records_of, subprocess_env, tiny_model, tiny_model_dir  # noqa: F401

SPECS = ["confidence:k=2", "threshold:threshold=0.9"]
SETTINGS = EvalSettings(per_length=1, lengths=(3, 4), batch_size=1)  # 20 samples, 40 single-prompt batches
N_RECORDS = 2 * 20


def eval_args(model_dir, out, batch_size=1) -> list[str]:
    return ["eval", "--model", str(model_dir), "--samplers", *SPECS, "--per-length", "1", "--lengths", "3", "4",
            "--batch-size", str(batch_size), "--out", str(out), "--no-progress"]


@pytest.fixture(scope="module")
def reference_run(tiny_model_dir, tmp_path_factory):
    from dllm_decode.cli import main

    out = tmp_path_factory.mktemp("reference")
    assert main(eval_args(tiny_model_dir, out)) == 0
    return out


def test_records_cover_every_sample_once_with_accounting(reference_run):
    records = records_of(reference_run / "records.jsonl")
    assert len(records) == N_RECORDS
    assert len({(r["config_id"], r["task"], r["id"]) for r in records}) == N_RECORDS
    samples = {(s.task, s.id): s for s in make_suite("waiting-line", seed=1234, per_length=1, lengths=(3, 4))}
    for r in records:
        assert r["score"] == score(samples[r["task"], r["id"]], r["output"])
        assert 1 <= r["nfe"] <= 32 and 0 <= r["gen_tokens"] <= 32 and r["canvas_length"] == 32
        assert r["config"]["gen_length"] == 32
    steps = {r["config"]["steps"] for r in records if r["sampler"] == "confidence"}
    assert steps == {16}  # k=2 tokens per step on a 32-token canvas
    assert all(r["nfe"] == 16 for r in records if r["sampler"] == "confidence")
    header = read_jsonl(reference_run / "records.jsonl")[0]
    assert header["type"] == "header" and header["seed"] == 1234 and "torch" in header and "device" in header
    summary = json.loads((reference_run / "summary.json").read_text())
    assert [c["label"] for c in summary["configs"]] == ["confidence k=2", "threshold threshold=0.9"]
    assert summary["configs"][0]["tokens_per_step"] == pytest.approx(2.0)
    assert set(summary["configs"][0]["per_task"]) == set(samples_task for samples_task, _ in samples)


def test_kill_midway_then_resume_matches_uninterrupted(reference_run, tiny_model_dir, tmp_path):
    from dllm_decode.cli import main

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "dllm_decode.cli", *eval_args(tiny_model_dir, out)]
    proc = subprocess.Popen(cmd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    path = out / "records.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if path.is_file() and path.read_bytes().count(b'"type": "record"') >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(records_of(path))
    assert 3 <= done < N_RECORDS, f"the kill must land midway, got {done} records"
    with path.open("ab") as f:  # a write torn by the kill: half a line, no newline
        f.write(b'{"type": "record", "config_id": "abc", "ta')
    assert main(eval_args(tiny_model_dir, out)) == 0
    resumed = records_of(path)
    assert len(resumed) == N_RECORDS
    assert resumed == records_of(reference_run / "records.jsonl")
    assert all(line.strip() for line in path.read_text().splitlines())  # every line parses (read_jsonl)
    assert len([h for h in read_jsonl(path) if h["type"] == "header"]) == 2  # one header per session


def test_ctrl_c_leaves_a_valid_file_and_resume_finishes(tiny_model_dir, tmp_path, monkeypatch):
    from dllm_decode import api
    from dllm_decode.cli import main

    calls = {"n": 0}
    original = api.Sampler.generate

    def interrupted(self, model, prompt):
        calls["n"] += 1
        if calls["n"] == 6:  # warm-up + 4 batches, then Ctrl-C inside decoding
            raise KeyboardInterrupt
        return original(self, model, prompt)

    monkeypatch.setattr(api.Sampler, "generate", interrupted)
    out = tmp_path / "ctrl-c"
    assert main(eval_args(tiny_model_dir, out)) == 130
    assert len(records_of(out / "records.jsonl")) == 4
    monkeypatch.setattr(api.Sampler, "generate", original)
    assert main(eval_args(tiny_model_dir, out)) == 0
    assert len(records_of(out / "records.jsonl")) == N_RECORDS


def test_sigint_during_a_write_is_held_until_the_write_ends():
    with pytest.raises(KeyboardInterrupt):
        with deferred_sigint():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            finished = True
    assert finished


def test_resume_with_other_samples_is_rejected(tiny_model, tmp_path):
    specs = parse_grid(["confidence:k=4"])
    run_eval(tiny_model, specs, EvalSettings(per_length=1, lengths=(3,), batch_size=8), tmp_path, progress=False)
    with pytest.raises(ValueError, match="`seed` must match the run being resumed"):
        run_eval(tiny_model, specs, EvalSettings(seed=7, per_length=1, lengths=(3,), batch_size=8), tmp_path,
                 progress=False)


def test_resume_with_other_weights_under_the_same_name_is_rejected(tiny_model, tmp_path):
    import torch

    specs, settings = parse_grid(["confidence:k=4"]), EvalSettings(per_length=1, lengths=(3,), batch_size=8)
    run_eval(tiny_model, specs, settings, tmp_path, model_id="tiny", progress=False)
    weight = next(tiny_model.module.parameters())
    saved = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.add_(0.01)  # "retrained" weights, same model name
        with pytest.raises(ValueError, match="`weights` must match the run being resumed"):
            run_eval(tiny_model, specs, settings, tmp_path, model_id="tiny", progress=False)
    finally:
        with torch.no_grad():
            weight.copy_(saved)


def test_adding_a_configuration_reuses_the_run(tiny_model, tmp_path):
    settings = EvalSettings(suite="index", per_length=1, lengths=(3,), batch_size=8)
    run_eval(tiny_model, parse_grid(["confidence:k=4"]), settings, tmp_path, progress=False)
    configs = run_eval(tiny_model, parse_grid(["confidence:k=4,8"]), settings, tmp_path, progress=False)
    assert [c["label"] for c in configs] == ["confidence k=4", "confidence k=8"]
    assert [c["n"] for c in configs] == [6, 6]


def test_corrupt_line_in_the_middle_is_an_error(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_text('{"type": "header"}\nnot json\n{"type": "header"}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_run(path)


def test_a_second_writer_on_the_same_run_is_refused(tiny_model, tmp_path):
    from dllm_decode.evals.records import exclusive

    with exclusive(tmp_path):
        with pytest.raises(ValueError, match="another eval is writing to"):
            run_eval(tiny_model, parse_grid(["confidence:k=4"]), EvalSettings(per_length=1, lengths=(3,)), tmp_path,
                     progress=False)


def test_records_and_summary_hold_the_resolved_config(tiny_model, tmp_path):
    """Options fitted to the model read "auto" on the Sampler (`block_length` of `threshold` here); the records
    and the summary keep the values the decode used."""
    settings = EvalSettings(suite="index", per_length=1, lengths=(3,), batch_size=8)
    configs = run_eval(tiny_model, parse_grid(["threshold"]), settings, tmp_path, progress=False)
    assert parse_grid(["threshold"])[0].build(32).config["block_length"] == "auto"
    records = records_of(tmp_path / "records.jsonl")
    assert {r["config"]["block_length"] for r in records} == {32} == {configs[0]["config"]["block_length"]}
    assert not [k for r in records for k, v in r["config"].items() if v == "auto"]
