"""lm-eval adapter: batched generate_until with stops, the MC log-likelihood, and an offline CLI run."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

pytest.importorskip("lm_eval")

from dllm_decode.evals.lm_eval_adapter import DiffusionHarnessLM, cut_at_stops  # noqa: E402
from tests.evals_helpers import subprocess_env, tiny_model_dir  # noqa: E402,F401


def request(*args):
    return SimpleNamespace(args=args)


@pytest.fixture(scope="module")
def harness(tiny_model_dir):
    return DiffusionHarnessLM(pretrained=str(tiny_model_dir), sampler="confidence", steps=8, batch_size=2,
                              mc_samples=8)


def test_stop_strings_cut_at_the_earliest():
    assert cut_at_stops("a ] b , c", [",", "]"]) == "a "
    assert cut_at_stops("abc", ["x", ""]) == "abc"


def test_generate_until_batches_requests_and_honours_stops(harness, tiny_model_dir):
    from dllm_decode import Sampler, load_model

    prompts = ["copy [ Ann Lee ]", "reverse [ Ann Lee , Bob Ray ]", "sort [ Bob Ray ]"]
    reqs = [request(p, {"until": [], "max_gen_toks": 16}) for p in prompts]
    plain = harness.generate_until(reqs)
    reference = Sampler("confidence", steps=8, gen_length=16, chat_template=False).generate(
        load_model(tiny_model_dir), prompts)
    assert plain == reference.text  # batching and reordering do not change outputs
    stop = plain[0].split()[1]
    cut = harness.generate_until([request(prompts[0], {"until": [stop], "max_gen_toks": 16})])
    assert cut == [plain[0][:plain[0].find(stop)]]
    logged = [e for e in harness.request_log if e["kind"] == "generate_until"]
    assert all(e["nfe"] == 8 and e["tokens_per_forward"] == e["gen_tokens"] / 8 for e in logged)


def test_single_token_loglikelihood_is_exact_and_seeded(harness):
    ctx, cont = "copy [ Ann Lee ] [", " Ann"
    (ll, greedy), = harness.loglikelihood([request(ctx, cont)])
    model, tok = harness.model, harness.model.tokenizer
    ids = tok(ctx + cont, add_special_tokens=False).input_ids
    masked = torch.tensor([ids[:-1] + [model.mask_id]])
    logp = model.forward(masked).float().log_softmax(-1)[0, -1]
    assert ll == pytest.approx(logp[ids[-1]].item(), rel=1e-5)  # one token: l = L = 1, the estimate is exact
    assert greedy == (logp.argmax().item() == ids[-1])
    again = harness.loglikelihood([request("sort [ Bob Ray ] [", " Bob Ray ]"), request(ctx, cont)])
    assert again[1][0] == pytest.approx(ll)
    assert again[0] == harness.loglikelihood([request("sort [ Bob Ray ] [", " Bob Ray ]")])[0]
    assert again[0][0] < 0


def test_unknown_sampler_options_fail_at_construction(tiny_model_dir):
    with pytest.raises(ValueError, match="unknown option"):
        DiffusionHarnessLM(pretrained=str(tiny_model_dir), sampler="threshold", thresh=0.9)


TASKS = """
task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
doc_to_text: "{{{{prompt}}}}"
"""


def test_lm_eval_cli_runs_offline_on_local_tasks(tiny_model_dir, tmp_path):
    docs = [{"prompt": "copy [ Ann Lee ]", "answer": "[ Ann Lee ]", "label": 0},
            {"prompt": "reverse [ Ann Lee , Bob Ray ]", "answer": "[ Bob Ray , Ann Lee ]", "label": 1}]
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "gen.yaml").write_text(TASKS.format(name="dllm_gen", data=data) + """output_type: generate_until
doc_to_target: "{{answer}}"
generation_kwargs:
  until: ["<eos>"]
  max_gen_toks: 16
metric_list:
  - metric: exact_match
""")
    (tasks / "choice.yaml").write_text(TASKS.format(name="dllm_choice", data=data) + """output_type: multiple_choice
doc_to_choice: ["[ Ann Lee ]", "[ Bob Ray , Ann Lee ]"]
doc_to_target: label
metric_list:
  - metric: acc
""")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dllm_decode.evals.lm_eval_cli", "--model", "dllm_decode", "--model_args",
           f"pretrained={tiny_model_dir},sampler=threshold,threshold=0.9,mc_samples=4", "--tasks",
           "dllm_gen,dllm_choice", "--include_path", str(tasks), "--batch_size", "2", "--output_path", str(out)]
    proc = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(next(out.rglob("results_*.json")).read_text())["results"]
    assert 0.0 <= results["dllm_gen"]["exact_match,none"] <= 1.0
    assert 0.0 <= results["dllm_choice"]["acc,none"] <= 1.0
