"""First contact: every registered sampler, by its name alone, on every shipped zoo model; defaults fitted
to the model (`gen_length`, `block_length`, AdaBlock's delimiters); clear refusals for what a model cannot do."""
from __future__ import annotations

import functools
import re

import pytest
import torch

from dllm_decode import Sampler, available_samplers, load_model
from dllm_decode.cli import main
from dllm_decode.evals.grid import parse_value
from dllm_decode.evals.tasks import make_samples, score
from dllm_decode.models.causal import CausalLM

DIFFUSION = ("tiny-llada", "tiny-dream", "tiny-sdar")
DEER_OPTIONS = {"drafter": "tiny-deer-drafter"}  # DEER has no default drafter: the one option it needs
# (sampler, model) pairs the library refuses, and the words its message must contain
REFUSED = {
    **{("s2d2", m): "needs a block-diffusion model" for m in ("tiny-llada", "tiny-dream", "tiny-ar")},
    **{(n, "tiny-sdar"): "block-diffusion model (block size 4)" for n in ("adablock", "prophet", "sched")},
    **{("deer", m): "needs an autoregressive target" for m in DIFFUSION},
    **{("wino", m): "needs a model with unshifted logits" for m in ("tiny-dream", "tiny-ar")},
    ("wino", "tiny-sdar"): "cannot decode a block-diffusion model",
}
# (sampler, model) pairs that run but whose answers are not held to the task: LLaDA2.1's token editing trusts
# the model's prediction at visible positions, which the zoo models were never trained on (masked positions only)
UNTRAINED = {(name, m) for name in ("llada21", "joint_threshold") for m in DIFFUSION}


@pytest.fixture(scope="module")
def zoo():
    return {name: load_model(name) for name in (*DIFFUSION, "tiny-ar")}


@pytest.fixture(scope="module")
def copy_sample():
    return make_samples("copy", per_length=1, lengths=(3,))[0]


def expected_refusal(sampler: str, model: str) -> str | None:
    if model == "tiny-ar" and (sampler, model) not in REFUSED and sampler != "deer":
        return "cannot denoise a canvas"
    return REFUSED.get((sampler, model))


@pytest.mark.parametrize("model_name", [*DIFFUSION, "tiny-ar"])
@pytest.mark.parametrize("sampler", available_samplers())
def test_every_sampler_by_name_on_every_zoo_model(zoo, copy_sample, sampler, model_name):
    build = Sampler(sampler, **(DEER_OPTIONS if sampler == "deer" else {}))
    refusal = expected_refusal(sampler, model_name)
    if refusal is not None:
        with pytest.raises(ValueError, match=re.escape(refusal)):
            build.generate(zoo[model_name], copy_sample.prompt)
        return
    result = build.generate(zoo[model_name], copy_sample.prompt)
    if (sampler, model_name) in UNTRAINED:
        assert not (result.canvas == zoo[model_name].mask_id).any()
        return
    assert score(copy_sample, result.text[0]) == 1.0, result.text[0]
    assert result.config["gen_length"] == 32  # the zoo checkpoints' generation length (generation_config.json)


@pytest.mark.parametrize("model_name", ["tiny-llada", "tiny-dream"])
@pytest.mark.parametrize("task", ["copy", "reverse"])
def test_the_mission_call_answers_correctly_on_its_defaults(zoo, model_name, task):
    sample = make_samples(task, per_length=1, lengths=(4,), seed=3)[0]
    sampler = Sampler("creditdecoding")
    result = sampler.generate(zoo[model_name], sample.prompt)
    assert score(sample, result.text[0]) == 1.0, result.text[0]
    assert sampler.config["gen_length"] == "auto" and sampler.config["block_length"] == "auto"
    assert result.config["gen_length"] == 32 and result.config["block_length"] == 32


def test_gen_length_fits_the_context_left_by_the_longest_prompt(zoo):
    llada, sdar = zoo["tiny-llada"], zoo["tiny-sdar"]
    long_prompt = torch.full((110,), 5)  # 128-token context: 18 positions left, less than the rule's block (32)
    result = Sampler("threshold").generate(llada, long_prompt)
    assert (result.config["gen_length"], result.config["block_length"]) == (18, 18)
    result = Sampler("threshold").generate(sdar, long_prompt)
    assert (result.config["gen_length"], result.config["block_length"]) == (16, 4)  # whole blocks of 4
    batch = Sampler("confidence").generate(llada, [torch.full((100,), 5), torch.full((20,), 5)])
    assert batch.config["gen_length"] == 28 and batch.config["steps"] == 28  # fitted to the longest row
    with pytest.raises(ValueError, match="must leave room in tiny-llada's context"):
        Sampler("threshold").generate(llada, torch.full((128,), 5))
    with pytest.raises(ValueError, match=r"leaves 3 positions in tiny-sdar's context \(128\), less than one block"):
        Sampler("threshold").generate(sdar, torch.full((125,), 5))


def test_explicit_values_the_model_cannot_serve_name_both(zoo, copy_sample):
    with pytest.raises(ValueError, match=r"`gen_length` 128 must be <= tiny-llada's context 128"):
        Sampler("threshold", gen_length=128).generate(zoo["tiny-llada"], copy_sample.prompt)
    with pytest.raises(ValueError, match=r"`block_length` must equal tiny-sdar's block size \(4\).*got 32"):
        Sampler("threshold", gen_length=32, block_length=32).generate(zoo["tiny-sdar"], copy_sample.prompt)
    with pytest.raises(ValueError, match=r"`gen_length` must be a multiple of tiny-sdar's block size \(4\), got 30"):
        Sampler("threshold", gen_length=30).generate(zoo["tiny-sdar"], copy_sample.prompt)
    with pytest.raises(ValueError, match="fixed block size, but tiny-sdar"):
        Sampler("threshold", blocks="adaptive").generate(zoo["tiny-sdar"], copy_sample.prompt)
    block = Sampler("threshold", gen_length=32, block_length=4).generate(zoo["tiny-sdar"], copy_sample.prompt)
    assert score(copy_sample, block.text[0]) == 1.0


def test_adablock_delimiters_come_from_the_tokenizer(zoo, copy_sample):
    sampler = Sampler("adablock")
    assert sampler.config["delimiter_ids"] == "auto"
    result = sampler.generate(zoo["tiny-llada"], copy_sample.prompt)
    assert result.config["delimiter_ids"] == (",",)  # the word tokenizer has no newline: its list separator
    with pytest.raises(ValueError, match="got 'zzz' \\(not in its vocabulary\\)"):
        Sampler("adablock", delimiter_ids=("zzz",)).generate(zoo["tiny-llada"], copy_sample.prompt)


def test_default_delimiter_is_the_newline_when_the_tokenizer_has_one():
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    from dllm_decode.samplers.adablock import default_delimiters

    core = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "\n": 1, ",": 2}, unk_token="<unk>"))
    with_newline = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    model = type("M", (), {"tokenizer": with_newline, "name": "m"})()
    assert default_delimiters(model) == ("\n",)
    core = Tokenizer(models.WordLevel(vocab={"<unk>": 0, "a": 1}, unk_token="<unk>"))
    model.tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>")
    with pytest.raises(ValueError, match="its tokenizer has neither a newline nor a \",\" token"):
        default_delimiters(model)
    model.tokenizer = None
    with pytest.raises(ValueError, match="`delimiter_ids` must be given as token ids for m, which has no tokenizer"):
        default_delimiters(model)


def test_option_values_in_brackets_parse_as_tuples():
    assert parse_value("(',',)") == (",",) and parse_value("[',', 13]") == (",", 13) and parse_value("(3)") == 3
    with pytest.raises(ValueError, match="must be a Python tuple or list literal"):
        parse_value("(a, b)")


def test_cli_delimiters_are_tokens_not_unk(zoo, copy_sample, capsys):
    args = ["generate", "--model", "tiny-llada", "--sampler", "adablock", "--threads", "1", "--json",
            "-o", "delimiter_ids=(',',)", "-o", "delimiter_threshold=0.05", copy_sample.prompt]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"delimiter_ids": [","]' in out
    reference = Sampler("adablock", delimiter_ids=(",",), delimiter_threshold=0.05).generate(
        zoo["tiny-llada"], copy_sample.prompt)
    assert reference.text[0] in out


# --- DEER everywhere ------------------------------------------------------------------------------------------

def greedy(target: CausalLM, ids: torch.Tensor, n: int) -> torch.Tensor:
    """transformers' own greedy decoding of the AR target: the reference DEER must reproduce."""
    out = target.module.generate(ids[None], attention_mask=torch.ones_like(ids[None]), max_new_tokens=n,
                                 do_sample=False, eos_token_id=list(target.eos_ids), pad_token_id=target.pad_id)
    return out[0, ids.numel():]


def test_load_model_returns_a_causal_target_for_an_ar_checkpoint(zoo):
    target = zoo["tiny-ar"]
    assert isinstance(target, CausalLM) and target.gen_length == 32 and target.block_size is None
    assert "cache" in target.accepts  # transformers >= 5.25 takes `cache`; `past_key_values` warns


def test_deer_from_the_cli_equals_the_targets_greedy_output(zoo, copy_sample, capsys):
    target = zoo["tiny-ar"]
    args = ["generate", "--model", "tiny-ar", "--sampler", "deer", "-o", "drafter=tiny-deer-drafter",
            "--threads", "1", copy_sample.prompt]
    assert main(args) == 0
    printed = capsys.readouterr().out.splitlines()[0]
    ids = target.tokenizer(copy_sample.prompt, return_tensors="pt").input_ids[0]
    expected = target.tokenizer.decode(greedy(target, ids, 32), skip_special_tokens=True)
    assert printed == f"[0] {expected}" and score(copy_sample, expected) == 1.0


def test_deer_wraps_a_plain_transformers_causal_lm_with_the_current_cache_api(zoo, copy_sample, monkeypatch):
    target = zoo["tiny-ar"]
    module = target.module  # a LlamaForCausalLM, passed bare
    seen: list[set[str]] = []
    forward = module.forward
    monkeypatch.setattr(module, "forward", functools.wraps(forward)(lambda *a, **kw: seen.append(set(kw)) or forward(*a, **kw)))
    ids = target.tokenizer(copy_sample.prompt, return_tensors="pt").input_ids[0]
    result = Sampler("deer", drafter="tiny-deer-drafter").generate(module, ids)
    assert seen and all("cache" in kw and "past_key_values" not in kw for kw in seen)
    reference = greedy(target, ids, 32).tolist()
    assert result.ids[0] == reference[:reference.index(target.eos_ids[0])]  # `ids` stop before the EOS


def test_deer_in_eval_runs_from_a_zoo_drafter_name(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["eval", "--model", "tiny-ar", "--samplers", "deer:drafter=tiny-deer-drafter", "--suite", "index",
            "--per-length", "1", "--lengths", "3", "--threads", "1", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| deer drafter=tiny-deer-drafter |" in table and (out / "records.jsonl").is_file()


def test_lm_eval_canvas_fits_the_zoo_context_unless_given(copy_sample):
    pytest.importorskip("lm_eval")
    from types import SimpleNamespace

    from dllm_decode.evals.lm_eval_adapter import DiffusionHarnessLM

    harness = DiffusionHarnessLM(pretrained="tiny-llada", sampler="creditdecoding", batch_size=2)
    out = harness.generate_until([SimpleNamespace(args=(copy_sample.prompt, {"until": []}))])
    assert score(copy_sample, out[0]) == 1.0 and harness.request_log[-1]["canvas"] == 32
    with pytest.raises(ValueError, match=r"`max_gen_toks` must leave room for the prompt in tiny-llada's context "
                                         r"\(128 tokens\), got 256"):
        DiffusionHarnessLM(pretrained="tiny-llada", max_gen_toks=256)
    with pytest.raises(ValueError, match="got 256"):  # a task's own max_gen_toks is checked the same way
        harness.generate_until([SimpleNamespace(args=(copy_sample.prompt, {"until": [], "max_gen_toks": 256}))])
