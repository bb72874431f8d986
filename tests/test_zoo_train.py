"""The zoo trainer: curricula schedules, the loss's masking, bitwise-reproducible and resumable runs."""
from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from dllm_decode.evals.tasks import ALL_TASKS
from dllm_decode.zoo.tokenizer import build_tokenizer
from dllm_decode.zoo.train import GEN_LENGTH, TrainConfig, diffusion_loss, draw_batch, draw_t, mask_floor, train

MICRO = TrainConfig(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, mlp=64, steps=4, batch_size=4, warmup=2,
                    save_every=2, copy_warmup=2, mask_warmup=4)


def test_mask_floor_holds_then_falls_to_zero():
    cfg = TrainConfig(mask_warmup=1000)
    floors = [mask_floor(cfg, s) for s in range(0, 1201, 50)]
    assert floors[:11] == [1.0] * 11 and floors[-5:] == [0.0] * 5
    assert all(a >= b for a, b in zip(floors, floors[1:]))
    assert mask_floor(TrainConfig(mask_warmup=0), 0) == 0.0


class LossSpy(torch.nn.Module):
    """Records the noisy ids and returns uniform logits (cross-entropy log V at every token)."""
    def __init__(self, vocab: int):
        super().__init__()
        self.vocab, self.ids = vocab, None

    def forward(self, ids, positions=None, attention_mask=None):
        self.ids = ids
        return type("Out", (), {"logits": torch.zeros(*ids.shape, self.vocab, requires_grad=True)})()


def test_copy_curriculum_and_full_masking():
    tok = build_tokenizer()
    x, keep, width = draw_batch(random.Random(0), tok, 8, ("copy",))
    assert all(tok.decode(row[keep[i]][:1]) == "copy" for i, row in enumerate(x))
    spy = LossSpy(len(tok))
    diffusion_loss(spy, x, keep, width, tok.mask_token_id, 0, torch.Generator().manual_seed(0), floor=1.0)
    assert torch.equal(spy.ids[:, :width], x[:, :width]), "the prompt is never masked"
    assert (spy.ids[:, width:] == tok.mask_token_id).all(), "floor 1: the whole answer is masked"


def test_blocked_rows_show_clean_prefix_partial_block_masked_rest():
    tok = build_tokenizer()
    x, keep, width = draw_batch(random.Random(1), tok, 64)
    spy = LossSpy(len(tok))
    diffusion_loss(spy, x, keep, width, tok.mask_token_id, 0, torch.Generator().manual_seed(3), 0.0,
                   block_mix=1.0, block_sizes=(4, 8))
    answer = spy.ids[:, width:] == tok.mask_token_id
    assert torch.equal(spy.ids[:, :width], x[:, :width]), "the prompt is never masked"
    def fits_a_block(row: torch.Tensor) -> bool:  # clean before some aligned block, all masked after it
        return any(not row[:s].any() and row[s + b:].all()
                   for b in (4, 8) for s in range(0, GEN_LENGTH, b))
    assert all(fits_a_block(row) for row in answer)
    assert answer.float().mean() > 0.3 and not answer.all(), "the draw covers partial blocks"


def test_blocked_loss_counts_the_current_block_per_token():
    """Uniform logits give ce = log V at every scored token: the loss tells which tokens were scored."""
    tok = build_tokenizer()
    x, keep, width = draw_batch(random.Random(2), tok, 32)
    spy, log_v = LossSpy(len(tok)), torch.log(torch.tensor(float(len(tok))))
    gen = torch.Generator().manual_seed(5)
    whole = diffusion_loss(spy, x, keep, width, tok.mask_token_id, 0, gen, floor=1.0)
    assert torch.isclose(whole, log_v), "floor 1: every canvas token scored, per canvas token, weight 1"
    blocked = diffusion_loss(spy, x, keep, width, tok.mask_token_id, 0, torch.Generator().manual_seed(5), 1.0,
                             block_mix=1.0, block_sizes=(8,))
    assert torch.isclose(blocked, log_v), "t = 1: the whole current block scored, per block token; the masked rest not"


@pytest.mark.parametrize("bad", [dict(block_mix=1.5), dict(block_sizes="5"), dict(block_sizes="a,8"),
                                 dict(block_sizes="")])
def test_block_options_are_checked(bad):
    with pytest.raises(ValueError):
        TrainConfig(**bad)


def test_block_mix_zero_keeps_the_data_stream():
    """Recipes without blocked rows draw exactly the whole-canvas mask's random numbers, so shipped commands
    reproduce; blocked rows draw more."""
    tok = build_tokenizer()
    x, keep, width = draw_batch(random.Random(4), tok, 8)
    B, G = x.shape[0], x.shape[1] - width
    reference = torch.Generator().manual_seed(6)
    t = draw_t(B, reference)
    expected = torch.rand(B, G, generator=reference) < t
    spy = LossSpy(len(tok))
    for mix, extra_draws in ((0.0, False), (1.0, True)):
        gen = torch.Generator().manual_seed(6)
        diffusion_loss(spy, x, keep, width, tok.mask_token_id, 0, gen, 0.0, block_mix=mix)
        assert torch.equal(gen.get_state(), reference.get_state()) != extra_draws
        if not extra_draws:
            assert torch.equal(spy.ids[:, width:] == tok.mask_token_id, expected)


def weights(path) -> dict[str, torch.Tensor]:
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("arch", ["llada", "dream"])
def test_reruns_are_bitwise_identical_and_resume_equals_one_run(tmp_path, arch):
    cfg = replace(MICRO, arch=arch)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    train(replace(cfg, stop_at=2), tmp_path / "c")  # interrupted at step 2 ...
    train(cfg, tmp_path / "c")  # ... and resumed to the end
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert a.keys() == b.keys() == c.keys()
    for name in a:
        assert torch.equal(a[name], b[name]) and torch.equal(a[name], c[name]), name


def test_autoregressive_warmup_is_causal(tmp_path):
    from dllm_decode.zoo.train import autoregressive_loss, build_model

    tok = build_tokenizer()
    model = build_model(replace(MICRO, arch="dream"), len(tok), tok.mask_token_id, tok.eos_token_id, tok.pad_token_id)
    x, keep, width = draw_batch(random.Random(0), tok, 4)
    n = width + 5
    changed = x.clone()
    changed[:, n:] = tok.mask_token_id  # tokens after column n never condition predictions up to n
    seen = {}
    def keep_logits(module, args, out) -> None:
        seen[len(seen)] = out.logits[:, :n].clone()

    hook = model.register_forward_hook(keep_logits)
    autoregressive_loss(model, x, keep, width)
    autoregressive_loss(model, changed, keep, width)
    hook.remove()
    assert torch.equal(seen[0], seen[1])
    loss_full = autoregressive_loss(model, x, keep, width)
    assert torch.isfinite(loss_full), "left pads attend to themselves, so no row sees no key"
    train(replace(MICRO, arch="dream", ar_warmup=2), tmp_path / "ar")


def test_left_to_right_loss_predicts_each_column_from_its_clean_left_context(tmp_path):
    """One two-stream forward gives, at masked row j, exactly the logits of a forward that holds only the
    prompt, the clean answer left of j and one [MASK] at j's position (fp32, 1e-5), for padded rows."""
    from dllm_decode.zoo.train import build_model, left_to_right_loss, left_to_right_mask, row_positions

    tok = build_tokenizer()
    model = build_model(MICRO, len(tok), tok.mask_token_id, tok.eos_token_id, tok.pad_token_id).eval()
    x, keep, width = draw_batch(random.Random(0), tok, 3)
    assert not keep.all(), "the batch must hold left-padded rows"
    L, G = x.shape[1], x.shape[1] - width
    seen = {}
    hook = model.register_forward_hook(lambda module, args, out: seen.update(logits=out.logits))
    loss = left_to_right_loss(model, x, keep, width, tok.mask_token_id)
    hook.remove()
    positions = row_positions(keep)
    for j in (0, 1, 7, G - 1):
        ids = torch.cat([x[:, : width + j], torch.full((3, 1), tok.mask_token_id)], 1)
        pos = torch.cat([positions[:, : width + j], positions[:, width + j: width + j + 1]], 1)
        n = width + j + 1
        attend = left_to_right_mask(keep, width)[:, :, :n, :n].clone()  # prompt + clean rows < j ...
        attend[:, :, -1] = False
        attend[:, :, -1, : width + j] = keep[:, None, : width + j]  # ... and the mask reads all of them
        attend[:, :, -1, -1] = True
        ref = model(ids, positions=pos, attention_mask=attend).logits[:, -1]
        torch.testing.assert_close(seen["logits"][:, L + j], ref, atol=1e-5, rtol=1e-5)
    target = x[:, width:]
    manual = torch.nn.functional.cross_entropy(seen["logits"][:, L:].flatten(0, 1), target.flatten())
    assert torch.isfinite(loss) and torch.allclose(loss, manual)
    train(replace(MICRO, ar_warmup=2), tmp_path / "l2r")


def test_hard_first_draws_only_hard_tasks_then_the_suite():
    from dllm_decode.zoo.train import HARD_TASKS, curriculum_tasks

    cfg = replace(MICRO, copy_warmup=2, hard_first=5)
    assert [curriculum_tasks(cfg, s) for s in (0, 1, 2, 4, 5)] == [("copy",)] * 2 + [HARD_TASKS] * 2 + [ALL_TASKS]
    named = replace(cfg, hard_tasks="shuffle, sort")
    assert curriculum_tasks(named, 3) == ("shuffle", "sort") and curriculum_tasks(named, 5) == ALL_TASKS
    for bad in ("shuffel", ""):
        with pytest.raises(ValueError, match="hard_tasks"):
            TrainConfig(hard_tasks=bad)  # refused at construction, even with no hard-first stage
    from dllm_decode.zoo.card import ordered_stage_lines
    assert "only shuffle, sort until step 5" in ordered_stage_lines({"hard_first": 5, "hard_tasks": "shuffle,sort"}, True)[0]
    mixed = ordered_stage_lines({"ar_warmup": 40, "ar_mix": 0.2}, True)
    assert "from step 40, a share 0.2" in mixed[-1] and len(mixed) == 2
    assert not any("share" in line for line in ordered_stage_lines({"ar_warmup": 40}, True))
    assert "from step 0, a share 0.2" in ordered_stage_lines({"copy_warmup": 30, "ar_mix": 0.2}, True)[-1]
    assert "blocks of 4, 8" in ordered_stage_lines({"block_mix": 0.5, "block_sizes": "4,8"}, False)[0]
    assert not ordered_stage_lines({"block_mix": 0.0}, False)


def test_hard_weight_shifts_the_task_mix():
    from collections import Counter

    from dllm_decode.zoo.train import HARD_TASKS

    tok = build_tokenizer()

    def hard_share(hard_weight: float) -> float:
        x, keep, _ = draw_batch(random.Random(0), tok, 600, hard_weight=hard_weight)
        first = Counter(tok.decode(row[keep[i]][:1]) for i, row in enumerate(x))
        return sum(first[t] for t in HARD_TASKS) / 600

    # 5 hard of 10 list tasks plus 2 puzzles at half weight: 5/11 of rows at weight 1, 15/21 at weight 3
    assert abs(hard_share(1.0) - 5 / 11) < 0.06 and abs(hard_share(3.0) - 15 / 21) < 0.06


def test_init_from_starts_at_the_given_weights_and_rejects_another_shape(tmp_path):
    first = train(MICRO, tmp_path / "first")
    second = train(replace(MICRO, steps=1, init_from=str(first), copy_warmup=0, mask_warmup=0, lr=0.0),
                   tmp_path / "second")  # lr 0: one step leaves the initial weights untouched
    a, b = weights(first), weights(second)
    assert all(torch.equal(a[name], b[name]) for name in a)
    with pytest.raises(ValueError, match="does not match this architecture"):
        train(replace(MICRO, d_model=48, init_from=str(first)), tmp_path / "third")


def test_ar_mix_keeps_training_some_batches_left_to_right(tmp_path, monkeypatch):
    import dllm_decode.zoo.train as train_module

    calls = {"ordered": 0, "diffusion": 0}
    real_ordered, real_diffusion = train_module.left_to_right_loss, train_module.diffusion_loss
    monkeypatch.setattr(train_module, "left_to_right_loss",
                        lambda *a, **k: calls.__setitem__("ordered", calls["ordered"] + 1) or real_ordered(*a, **k))
    monkeypatch.setattr(train_module, "diffusion_loss",
                        lambda *a, **k: calls.__setitem__("diffusion", calls["diffusion"] + 1) or real_diffusion(*a, **k))
    train(replace(MICRO, steps=12, ar_warmup=2, ar_mix=0.5), tmp_path / "mix")
    assert calls["ordered"] > 2 and calls["diffusion"] > 0 and calls["ordered"] + calls["diffusion"] == 12


def test_two_way_answers_are_valid_distinct_and_both_drawn():
    from collections import Counter

    from dllm_decode.evals.tasks import random_sample, score
    from dllm_decode.evals.tasks.formats import answer_text
    from dllm_decode.zoo.card import ordered_stage_lines
    from dllm_decode.zoo.train import two_way_reference

    rng = random.Random(3)
    for task in ("shuffle", "insert_random", "remove_random", "replace_random"):
        for length in (3, 4, 5, 6):
            sample = random_sample(rng, task, length)
            first, last = (two_way_reference(task, sample.data, f) for f in (True, False))
            assert first != last, (task, length)
            for ref in (first, last):
                assert score(sample, answer_text(task, {"reference": ref}, "compact")) == 1.0, (task, ref)
    for task in ("copy", "sort", "insert_index", "latin"):
        assert two_way_reference(task, random_sample(rng, task, 4).data, True) is None

    tok = build_tokenizer()
    x, keep, width = draw_batch(random.Random(0), tok, 400, ("shuffle",), answers="two-way")
    rotations = Counter()
    for row, k in zip(x, keep):
        names, answer = (part.split("]")[0].strip().split(" , ") for part in tok.decode(row[k]).split("[")[1:3])
        rotations["left" if answer == names[1:] + names[:1] else "right" if answer == names[-1:] + names[:-1] else "?"] += 1
    assert rotations["?"] == 0 and abs(rotations["left"] - 200) < 40, rotations
    with pytest.raises(ValueError, match="answers"):
        TrainConfig(answers="one-way")
    with pytest.raises(ValueError, match="answers"):
        draw_batch(random.Random(0), tok, 2, answers="twoway")  # not silently the sampled answers
    assert "two fixed ones" in ordered_stage_lines({"answers": "two-way"}, False)[0]
    assert ordered_stage_lines({"answers": "sampled"}, False) == []
