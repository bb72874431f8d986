"""The exact denoiser (`load_model("oracle")`): answer sets, exact marginals, sampling exactness, every policy."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from dllm_decode import Sampler, available_samplers, load_model
from dllm_decode.cache import CACHES
from dllm_decode.evals.tasks import ALL_TASKS, TaskSample, count_solutions, make_samples, make_suite, score
from dllm_decode.evals.tasks.formats import render_grid, render_list
from dllm_decode.models.oracle import load_oracle

G = 32
DETERMINISTIC = ("copy", "reverse", "sort", "insert_index", "remove_index", "replace_index", "sudoku")
NEEDS_OTHER_MODEL = {"deer": "an AR target model to verify the drafts", "s2d2": "a block-diffusion model"}


@pytest.fixture(scope="module")
def oracle():
    return load_model("oracle")


@pytest.fixture(scope="module")
def suite():
    """One sample per task and list length 3..6, every task of the suite (ragged prompts)."""
    return make_suite("all", seed=7, per_length=1)


def decode(model, ids: list[int]) -> str:
    return model.tokenizer.decode([i for i in ids if i not in model.eos_ids], skip_special_tokens=True)


def answer_texts(model, prompt: str) -> list[str]:
    ids = model.tokenizer(prompt, add_special_tokens=False).input_ids
    return [decode(model, row) for row in model.module.book.answers(tuple(ids), G).tolist()]


def expected_size(sample: TaskSample) -> int:
    n = len(sample.data.get("names", []))
    sizes = {"shuffle": math.factorial(n) - 1, "insert_random": n + 1, "remove_random": n, "replace_random": n}
    if sample.task == "latin":
        return count_solutions(sample.data["givens"], tuple(sample.data["symbols"]), boxes=False, limit=10_000)
    return sizes.get(sample.task, 1)


def test_answer_sets_are_what_the_scorer_accepts(oracle, suite):
    for sample in suite:
        texts = answer_texts(oracle, sample.prompt)
        assert len(set(texts)) == len(texts) == expected_size(sample), sample.prompt
        assert all(score(sample, t) == 1.0 for t in texts), sample.prompt
        assert sample.answer in texts


def test_greedy_stepwise_scores_every_task_perfectly(oracle, suite):
    result = Sampler("confidence", gen_length=G, steps=G).generate(oracle, [s.prompt for s in suite])
    assert [score(s, t) for s, t in zip(suite, result.text)] == [1.0] * len(suite)
    assert result.loop_stats == {"oracle_fallbacks": 0}


def brute_force_marginals(sample: TaskSample, canvas: list[str | None]) -> list[dict[str, float]]:
    """P(word at i) over every candidate the scorer accepts and the canvas allows, counted from scratch."""
    if sample.task == "latin":
        rows = [[list(p) for p in itertools.permutations(sample.data["symbols"])
                 if all(g is None or g == c for g, c in zip(given, p))] for given in sample.data["givens"]]
        texts = [render_grid([list(r) for r in grid], "compact") for grid in itertools.product(*rows)]
    else:  # every ordering of n-1..n+1 distinct people from the line plus the item
        people = sample.data["names"] + ([sample.data["item"]] if "item" in sample.data else [])
        n = len(sample.data["names"])
        texts = [render_list(list(p), "compact") for k in (n - 1, n, n + 1) for p in itertools.permutations(people, k)]
    accepted = [t.split() + ["<eos>"] * (G - len(t.split())) for t in texts if score(sample, t) == 1.0]
    fits = [a for a in accepted if all(c is None or c == w for c, w in zip(canvas, a))]
    return [{w: sum(a[i] == w for a in fits) / len(fits) for w in {a[i] for a in fits}} for i in range(G)]


@pytest.mark.parametrize("task", ["shuffle", "insert_random", "replace_random", "remove_random", "latin"])
def test_marginals_equal_an_independent_count_on_partial_canvases(oracle, task):
    rng = torch.Generator().manual_seed(3)
    vocab = oracle.tokenizer.get_vocab()
    for sample in make_samples(task, seed=5, per_length=1, lengths=(6, 7) if task == "latin" else (4,)):
        answers = answer_texts(oracle, sample.prompt)
        for _ in range(3):
            truth = answers[int(torch.randint(len(answers), (1,), generator=rng))].split()
            truth += ["<eos>"] * (G - len(truth))
            keep = (torch.rand(G, generator=rng) < 0.4).tolist()
            canvas = [w if k else None for w, k in zip(truth, keep)]
            prompt = oracle.tokenizer(sample.prompt, add_special_tokens=False).input_ids
            ids = torch.tensor([prompt + [vocab[w] if w else oracle.mask_id for w in canvas]])
            probs = oracle(ids).softmax(-1)[0, len(prompt):]  # [G, V]
            for i, expected in enumerate(brute_force_marginals(sample, canvas)):
                dense = torch.zeros(probs.shape[-1], dtype=torch.float64)
                for word, p in expected.items():
                    dense[vocab[word]] = p
                torch.testing.assert_close(probs[i].double(), dense, atol=1e-6, rtol=0)


def test_stepwise_sampling_draws_the_answers_uniformly(oracle):
    """Random-order stepwise sampling at T=1 is ancestral sampling of the exact joint: chi-square over the
    5 answers of a 3-name shuffle (4 dof; 18.47 is the 0.1% critical value)."""
    prompt, n, width = "shuffle [ Gemma Murray , Gavin Turner , Eleanor Jenkins ]", 600, 12  # answers: 10 tokens
    result = Sampler("random", gen_length=width, temperature=1.0, seed=11).generate(oracle, [prompt] * n)
    answers = answer_texts(oracle, prompt)
    counts = [result.text.count(a) for a in answers]
    assert sum(counts) == n
    chi2 = sum((c - n / len(answers)) ** 2 / (n / len(answers)) for c in counts)
    assert chi2 < 18.47, counts


def test_one_step_success_rate_matches_the_closed_form(oracle):
    """All positions in one step at T=1 draw each position from its marginal independently, so a sample is an
    answer with probability sum_a prod_i p_i(a_i). Tolerance: 4 binomial standard deviations."""
    prompt, n, width = "replace_random Gemma Murray [ Gavin Turner , Eleanor Jenkins ]", 3000, 8  # answers: 7 tokens
    ids = oracle.tokenizer(prompt, add_special_tokens=False).input_ids
    table = oracle.module.book.answers(tuple(ids), width)  # [A, width]
    x = torch.tensor([ids + [oracle.mask_id] * width])
    p = oracle(x).softmax(-1)[0, len(ids):].double()  # [width, V]
    closed = p.gather(1, table.T).prod(0).sum().item()  # sum over answers of prod over positions
    result = Sampler("random", gen_length=width, steps=1, temperature=1.0, seed=5).generate(oracle, [prompt] * n)
    valid = set(map(tuple, table.tolist()))
    rate = sum(tuple(row) in valid for row in result.canvas.tolist()) / n
    assert result.nfe == 1 and 0.05 < closed < 0.95
    assert abs(rate - closed) < 4 * math.sqrt(closed * (1 - closed) / n), (rate, closed)


@pytest.mark.parametrize("name", ["threshold", "confidence"])
def test_batched_ragged_equals_one_by_one(oracle, suite, name):
    sampler = Sampler(name, gen_length=G, **({"steps": G // 2} if name == "confidence" else {}))
    batched = sampler.generate(oracle, [s.prompt for s in suite])
    for i, sample in enumerate(suite):
        alone = sampler.generate(oracle, sample.prompt)
        assert torch.equal(alone.canvas[0], batched.canvas[i]) and alone.row_nfe[0] == batched.row_nfe[i]


def commit_rule_options(name: str) -> dict:
    return {"delimiter_ids": (",",)} if name == "adablock" else {}  # the zoo vocabulary has no newline


@pytest.mark.parametrize("name", [n for n in available_samplers() if n not in NEEDS_OTHER_MODEL])
def test_every_commit_rule_runs_on_every_task(oracle, suite, name):
    """At T=0 every answer token of a deterministic task has probability 1, so any rule must solve them."""
    result = Sampler(name, gen_length=G, **commit_rule_options(name)).generate(oracle, [s.prompt for s in suite])
    assert not (result.canvas == oracle.mask_id).any()
    scores = {s.task: score(s, t) for s, t in zip(suite, result.text) if s.task in DETERMINISTIC}
    assert set(scores.values()) == {1.0} and len(scores) == len(DETERMINISTIC)


def test_the_loops_that_need_another_model_are_the_ones_skipped():
    assert set(NEEDS_OTHER_MODEL) <= set(available_samplers())


@pytest.mark.parametrize("cache", sorted(CACHES))
def test_every_cache_runs_and_stepwise_stays_exact(oracle, suite, cache):
    prompts = [s.prompt for s in suite]
    result = Sampler("confidence", gen_length=G, block_length=8, cache=cache).generate(oracle, prompts)
    assert [score(s, t) for s, t in zip(suite, result.text)] == [1.0] * len(suite)
    threshold = Sampler("threshold", gen_length=G, cache=cache).generate(oracle, prompts)
    assert all(score(s, t) == 1.0 for s, t in zip(suite, threshold.text) if s.task in DETERMINISTIC)


def test_a_stale_cached_column_reads_as_a_mask(oracle):
    """The store holds ids: a committed column that a cached step does not feed still reads as the mask."""
    from dllm_decode.cache.store import KVBuffer, Writes

    prompt = oracle.tokenizer("shuffle [ Gemma Murray , Gavin Turner , Lily Hall ]", add_special_tokens=False).input_ids
    x = torch.tensor([prompt + [oracle.mask_id] * G])
    buffer = KVBuffer(1, x.shape[1])
    fresh = oracle(x, cache=Writes(buffer, None, None))  # full forward: every column written
    committed = x.clone()
    committed[0, len(prompt) + 1] = oracle.tokenizer.convert_tokens_to_ids("Gavin")  # "[ Gavin ..." was committed
    feed = torch.tensor([[len(prompt) + 2]])  # a cached step feeds the next column only (the last name's slot)
    stale = oracle(committed.gather(1, feed), positions=feed, cache=Writes(buffer, feed, None))
    torch.testing.assert_close(stale[0, 0], fresh[0, len(prompt) + 2])
    full = oracle(committed, cache=Writes(buffer, None, None))  # a refresh writes the commit: now it conditions
    assert full[0, len(prompt) + 2].softmax(-1).max() == 1.0 > fresh[0, len(prompt) + 2].softmax(-1).max()


def test_an_answer_set_is_enumerated_once_per_prompt(oracle, monkeypatch):
    book = oracle.module.book
    calls = []
    monkeypatch.setattr(book, "memo", type(book.memo)())
    original = book.enumerate
    monkeypatch.setattr(book, "enumerate", lambda *a: calls.append(a) or original(*a))
    prompts = [s.prompt for s in make_samples("shuffle", seed=2, per_length=2, lengths=(3, 4))]
    Sampler("threshold", gen_length=G).generate(oracle, prompts)
    assert len(calls) == len(set(prompts))


def test_fallback_rows_are_counted(oracle):
    prompts = [s.prompt for s in make_samples("shuffle", seed=4, per_length=8, lengths=(4,))]
    result = Sampler("confidence", gen_length=G, steps=G // 2).generate(oracle, prompts)  # k=2
    lost = sum(score(s, t) == 0 for s, t in zip(make_samples("shuffle", seed=4, per_length=8, lengths=(4,)),
                                                 result.text))
    assert lost > 0 and result.loop_stats["oracle_fallbacks"] > 0


@pytest.mark.parametrize("prompt, match", [
    ("copy Gemma Murray", "cannot read the prompt 'copy Gemma Murray'"),
    ("Gemma [ Gemma Murray ]", "cannot read the prompt 'Gemma \\[ Gemma Murray \\]'.*task of the suite"),
    ("sort [ Gemma Murray ]", "sort takes one key"),
    ("insert_index 7 Gemma Murray [ Gavin Turner ]", "index 7 is outside the list"),
    ("latin A B C D [ A A _ _ , _ _ _ _ , _ _ _ _ , _ _ _ _ ]", "has no valid answer"),
])
def test_unreadable_prompts_raise_naming_the_prompt(oracle, prompt, match):
    with pytest.raises(ValueError, match=match):
        Sampler("confidence", gen_length=G).generate(oracle, prompt)


def test_option_errors(oracle):
    with pytest.raises(ValueError, match="`gen_length` must be >= 19"):
        Sampler("confidence", gen_length=8).generate(oracle, "copy [ Gemma Murray , Gavin Turner , Eleanor Jenkins , "
                                                             "Lily Smith , Ruth Hall , Owen Price ]")
    with pytest.raises(ValueError, match="no unconditional distribution"):
        Sampler("confidence", gen_length=G, cfg_scale=1.0).generate(oracle, "copy [ Gemma Murray ]")
    with pytest.raises(ValueError, match="`dtype` must be float32"):
        load_model("oracle", dtype="bf16")
    with pytest.raises(ValueError, match="`mask_id` and `eos_ids` are fixed"):
        load_model("oracle", mask_id=5)
    with pytest.raises(ValueError, match="`index_base` must be one of"):
        load_oracle(index_base=2)


def test_malformed_forward_inputs_raise(oracle):
    ids = oracle.tokenizer("copy [ Gemma Murray ]", add_special_tokens=False).input_ids
    x = torch.tensor([ids + [oracle.mask_id] * G])
    with pytest.raises(ValueError, match="`attention_mask` must be a 2-D key mask"):
        oracle(x, attention_mask=torch.ones(1, 1, x.shape[1], x.shape[1], dtype=torch.bool))
    shifted = torch.cat([x, torch.cat([x[:, :1], x[:, :-1]], 1)])  # second row's `]` one column later
    with pytest.raises(ValueError, match="every row's prompt to end at the same column"):
        oracle(shifted)


def test_index_base_one_reads_indices_from_one():
    sample = make_samples("insert_index", seed=1, per_length=1, lengths=(3,), index_base=1)[0]
    result = Sampler("threshold", gen_length=G).generate(load_oracle(index_base=1), sample.prompt)
    assert score(sample, result.text[0]) == 1.0


def test_all_tasks_are_covered(suite):
    assert {s.task for s in suite} == set(ALL_TASKS)


def test_ssd_accepts_the_stepwise_chain_on_the_oracle(oracle, suite):
    """Every answer token of a deterministic task ties at probability 1, and stepwise `confidence` takes ties
    left to right (a stable ranking). ssd's drafts must be ranked the same way, or the verifier rejects them:
    then each verification forward of D = 4 drafts accepts the whole chain: the first forward plus 8 forwards
    for 32 canvas columns."""
    prompts = [s.prompt for s in suite if s.task in DETERMINISTIC]
    reference = Sampler("confidence", gen_length=G, steps=G).generate(oracle, prompts)
    out = Sampler("ssd", gen_length=G, draft_length=4).generate(oracle, prompts)
    assert torch.equal(out.canvas, reference.canvas)
    assert out.loop_stats["mean_accepted"] == 4.0 and out.row_nfe == [1 + G // 4] * len(prompts)
