"""KV caches: refresh-every-step is the no-cache forward; a partial forward over a current cache is exact;
prefix and dual are exact for block-causal attention; batches of ragged prompts equal one-by-one runs."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import Tensor, nn

from dllm_decode import Sampler, wrap
from dllm_decode.cache import CACHES
from dllm_decode.cache.base import NoCache
from dllm_decode.loop import apply, decide, finish_step, prepare, step_logits, window
from dllm_decode.models.adapter import DiffusionLM
from dllm_decode.samplers.blocks import BLOCKS, BlockSchedule
from dllm_decode.state import DecodeState, new_state

from .conftest import EOS, MASK, tiny_llada_module

G, BLOCK = 16, 8
STRATEGIES = [("prefix", {}), ("dual", {}), ("delayed", {}), ("delayed", {"delay_mode": "greedy", "greedy_window": 1}),
              ("windowed", {"active_masks": 4, "attended_masks": 8, "refresh": 8})]
IDS = ["prefix", "dual", "delayed-decode", "delayed-greedy", "windowed"]


def start(model: DiffusionLM, sampler: Sampler, prompts: list[Tensor]) -> DecodeState:
    cfg = sampler.decode
    state = new_state(prompts, cfg.gen_length, sampler.plan.blocks.first_end(cfg.gen_length), model.pad_id,
                      model.mask_id, False)
    state.rule_state = sampler.rule.init_state(len(prompts), cfg.gen_length, state.x.device)
    prepare(model, state, sampler.plan)
    return state


def lockstep(model: DiffusionLM, reference: Sampler, cached: Sampler, prompts: list[Tensor]) -> int:
    """Decode with the reference's decisions in both states; assert every step's logits agree. Returns steps."""
    eos = torch.tensor(model.eos_ids)
    ref, other = start(model, reference, prompts), start(model, cached, prompts)
    while not bool(ref.done.all()):
        active = ~ref.done
        rows = None if bool(active.all()) else active.nonzero().squeeze(1)
        cols, real = window(ref, reference.plan)
        expected = step_logits(model, ref, reference.plan, rows, cols)
        got = step_logits(model, other, cached.plan, rows, cols)
        torch.testing.assert_close(got[active], expected[active], atol=1e-5, rtol=1e-5)
        for state, sampler in ((ref, reference), (other, cached)):
            _, decision = decide(state, sampler.plan, expected, cols, real, active, eos, None)
            apply(state, decision.commit & real & state.is_mask.gather(1, cols), decision.tokens, cols)
            finish_step(state, sampler.plan, active, eos)
        assert torch.equal(ref.x, other.x)
    return ref.step


@dataclass(frozen=True)
class UnevenBlocks(BlockSchedule):
    """Test schedule with per-row block lengths and a window wider than some blocks, like AdaBlock.

    Rows with an even prompt length: blocks [0, 4), [4, 8), [8, 16); odd: [0, 8), [8, 16). Windows never reach past the
    canvas (the loop's `apply` scatters clamped duplicate columns, so a clamped window would be unsafe).
    """

    name = "uneven"
    variable = True

    def window(self, gen_length: int) -> int:
        return 8

    def first_end(self, gen_length: int) -> int:
        return 4

    def start(self, state, starting, logits, x0, cols) -> None:
        even = state.positions[:, state.prompt_width - 1] % 2 == 1  # last prompt position = length - 1
        length = torch.where(even & (state.block_start < 8), 4, 8)
        state.block_end = (state.block_start + length).where(starting, state.block_end)

    def next_start(self, first_mask: Tensor) -> Tensor:
        return first_mask


@pytest.fixture
def uneven(monkeypatch):
    monkeypatch.setitem(BLOCKS, "uneven", UnevenBlocks)


def test_registered():
    assert set(CACHES) == {"none", "prefix", "dual", "delayed", "windowed"}


@pytest.mark.parametrize("name,opts", STRATEGIES, ids=IDS)
@pytest.mark.parametrize("rule", ["confidence", "threshold"])
def test_refresh_every_step_equals_no_cache(any_model, ragged_prompts, name, opts, rule):
    options = dict(gen_length=G, block_length=BLOCK, **({"threshold": 0.3} if rule == "threshold" else {}))
    reference = Sampler(rule, **options)
    cached = Sampler(rule, cache=name, **{**opts, "refresh": 1}, **options)
    lockstep(any_model, reference, cached, ragged_prompts)
    assert torch.equal(cached.generate(any_model, ragged_prompts).canvas,
                       reference.generate(any_model, ragged_prompts).canvas)


@pytest.mark.parametrize("name,opts", STRATEGIES, ids=IDS)
def test_refresh_every_step_exact_with_variable_blocks(llada, ragged_prompts, uneven, name, opts):
    reference = Sampler("threshold", gen_length=G, blocks="uneven", threshold=0.3)
    cached = Sampler("threshold", gen_length=G, blocks="uneven", threshold=0.3, cache=name, **{**opts, "refresh": 1})
    lockstep(llada, reference, cached, ragged_prompts)


@pytest.mark.parametrize("name,opts", STRATEGIES, ids=IDS)
def test_partial_forward_over_current_cache_is_exact(any_model, ragged_prompts, name, opts):
    """Once the cache holds the K/V of the current canvas, recomputing a subset of rows changes nothing."""
    opts = {**opts, "attended_masks": 64} if name == "windowed" else opts  # no pruning: only reuse is tested
    sampler = Sampler("confidence", gen_length=G, block_length=BLOCK, cache=name, **opts)
    state = start(any_model, sampler, ragged_prompts)
    decided = torch.tensor([[3, 4, 7, 9], [0, 1, 2, 3], [5, 6, 8, 12]])  # some committed tokens, some masks
    state.canvas.scatter_(1, decided, 7)
    state.commit_step.scatter_(1, decided, 0)
    state.block_start = torch.tensor([0, 4, 8])  # rows in different blocks
    state.block_end = state.block_start + BLOCK
    cols, _ = window(state, sampler.plan)
    step_logits(any_model, state, sampler.plan, None, cols)  # step 0: full refresh writes every K/V
    state.step, state.block_step = 3, torch.full_like(state.block_step, 2)
    got = step_logits(any_model, state, sampler.plan, None, cols)  # a partial step over the same canvas
    expected = NoCache().logits(any_model, state, sampler.plan, None, cols)
    fresh = got.abs().sum(-1) > 0
    candidates = state.is_mask.gather(1, cols)
    if name in ("prefix", "dual"):
        assert fresh.all(), "the block window is always recomputed"
    elif name == "windowed":
        active = state.is_mask & (state.is_mask.long().cumsum(1) <= opts["active_masks"])  # first masks of the canvas
        first = active.gather(1, cols)
        assert first.any()
        assert fresh[first].all(), "the active masks are recomputed"
    else:
        assert fresh[candidates].all(), "every mask the step may decode is recomputed"
    torch.testing.assert_close(got[fresh], expected[fresh], atol=1e-5, rtol=1e-5)


class BlockCausal(nn.Module):
    """A LLaDA whose attention is block-causal over the canvas (prompt = block -1), as in SDAR-style models.

    Query columns are read from the position ids, so it serves unpadded batches only.
    """

    def __init__(self, inner: nn.Module, prompt_width: int, block: int) -> None:
        super().__init__()
        self.inner, self.prompt_width, self.block = inner, prompt_width, block

    def block_of(self, cols: Tensor) -> Tensor:
        return torch.where(cols < self.prompt_width, -1, (cols - self.prompt_width) // self.block)

    def forward(self, input_ids, positions=None, attention_mask=None, cache=None, logits_for=None, attention=None):
        S = cache.buffer.length if cache is not None else input_ids.shape[1]  # keys: the whole buffer
        mask = self.block_of(torch.arange(S))[None, None, None, :] <= self.block_of(positions)[:, None, :, None]
        if attention_mask is not None:
            mask = mask & attention_mask[:, None, None, :]
        return self.inner(input_ids, positions=positions, attention_mask=mask, cache=cache, logits_for=logits_for,
                          attention=attention)


@pytest.mark.parametrize("name", ["prefix", "dual"])
def test_prefix_and_dual_exact_for_block_causal_attention(name):
    prompts = list(torch.randint(0, 90, (2, 6), generator=torch.Generator().manual_seed(3)))
    model = DiffusionLM(BlockCausal(tiny_llada_module(), 6, BLOCK), MASK, (EOS,), native=True)
    reference = Sampler("confidence", gen_length=G, block_length=BLOCK)
    cached = Sampler("confidence", gen_length=G, block_length=BLOCK, cache=name)
    assert lockstep(model, reference, cached, prompts) == G


@pytest.mark.parametrize("name,opts", [("none", {})] + STRATEGIES, ids=["none"] + IDS)
@pytest.mark.parametrize("rule", ["confidence", "threshold"])
def test_batched_ragged_prompts_equal_one_by_one(llada64, dream64, ragged_prompts, name, opts, rule):
    extra = {"threshold": 0.2} if rule == "threshold" else {}
    sampler = Sampler(rule, gen_length=G, block_length=BLOCK, cache=name, **opts, **extra)
    for model in (llada64, dream64):
        batched = sampler.generate(model, ragged_prompts)
        for row, prompt in enumerate(ragged_prompts):
            alone = sampler.generate(model, prompt)
            assert torch.equal(batched.canvas[row], alone.canvas[0]), f"{model.name}: row {row} depends on others"
            assert batched.row_nfe[row] == alone.nfe


def test_batched_equals_one_by_one_with_variable_blocks(llada64, ragged_prompts, uneven):
    for name, opts in STRATEGIES:
        sampler = Sampler("threshold", gen_length=G, blocks="uneven", threshold=0.2, cache=name, **opts)
        batched = sampler.generate(llada64, ragged_prompts)
        for row, prompt in enumerate(ragged_prompts):
            alone = sampler.generate(llada64, prompt)
            assert torch.equal(batched.canvas[row], alone.canvas[0]), f"{name}: row {row} depends on others"


@pytest.fixture(scope="module")
def llada64():
    """fp64 copies: batched and single forwards differ by BLAS rounding, which fp64 keeps far from any tie."""
    return wrap(tiny_llada_module().double(), mask_id=MASK, eos_ids=(EOS,))


@pytest.fixture(scope="module")
def dream64():
    from .conftest import tiny_dream_module
    return wrap(tiny_dream_module().double(), mask_id=MASK, eos_ids=(EOS,))


@pytest.mark.parametrize("name", ["prefix", "dual", "delayed", "windowed"])
def test_cache_bytes_fixed_by_canvas(llada, ragged_prompts, name):
    result = Sampler("confidence", gen_length=G, block_length=BLOCK, cache=name).generate(llada, ragged_prompts)
    width = max(p.numel() for p in ragged_prompts) + G
    cfg = llada.module.config
    per_layer = len(ragged_prompts) * cfg.n_kv_heads * width * (cfg.d_model // cfg.n_heads)
    assert result.cache_bytes == 2 * cfg.n_layers * per_layer * 4  # K and V, fp32


def test_finished_rows_feed_nothing(llada):
    """A row done early costs no recomputed rows: its logits are zeros, like NoCache's for dropped rows."""
    prompts = [torch.randint(0, 90, (5,)), torch.randint(0, 90, (7,))]
    sampler = Sampler("confidence", gen_length=G, block_length=BLOCK, cache="dual")
    state = start(llada, sampler, prompts)
    cols, _ = window(state, sampler.plan)
    state.done = torch.tensor([True, False])
    logits = step_logits(llada, state, sampler.plan, torch.tensor([1]), cols)
    assert (logits[0] == 0).all() and (logits[1] != 0).any()


@pytest.mark.parametrize("options,message", [
    ({"cache": "dual", "refresh": 0}, "`refresh` must be None or an int >= 1"),
    ({"cache": "prefix", "refresh": 2.5}, "`refresh` must be None or an int >= 1"),
    ({"cache": "delayed", "delay_mode": "lazy"}, "`delay_mode` must be one of"),
    ({"cache": "delayed", "greedy_window": -1}, "`greedy_window` must be an int >= 0"),
    ({"cache": "windowed", "active_masks": 0}, "`active_masks` must be an int >= 1"),
    ({"cache": "windowed", "active_masks": 8, "attended_masks": 4}, "`attended_masks` must be >= `active_masks`"),
    ({"cache": "windowed", "refresh": None}, "`refresh` must be an int >= 1 for the windowed cache"),
    ({"cache": "dual", "cfg_scale": 1.0}, "`cfg_scale` must be 0 with `cache='dual'`"),
])
def test_bad_options_rejected(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Sampler("confidence", gen_length=G, block_length=BLOCK, **options)


def test_windowed_rejects_random_order_rules():
    with pytest.raises(ValueError, match="picks positions at random"):
        Sampler("random", gen_length=G, block_length=BLOCK, cache="windowed")


def test_wrapped_model_rejected_at_generate():
    class Plain(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = tiny_llada_module()

        def forward(self, input_ids):
            return self.inner(input_ids)

    model = wrap(Plain(), mask_id=MASK, eos_ids=(EOS,))
    with pytest.raises(ValueError, match="needs a model whose layers read a KV cache"):
        Sampler("confidence", gen_length=G, block_length=BLOCK, cache="dual").generate(model, torch.arange(5)[None])
