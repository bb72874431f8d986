"""The exact denoiser: `load_model("oracle")`, the true posterior of the task suite's answer distribution.

For each row the prompt (its tokens up to its own closing `]`) names a task instance; its answers are the
ones the scorer accepts (`answers.AnswerBook`), uniformly likely. Logits at canvas position i are
log P(x_i = v | every committed canvas token), counted exactly over the consistent answers, so any
quality a decoding policy loses on this model is lost by the policy. LLaDA-style (unshifted) over the
zoo's word-level tokenizer; impossible tokens get the most negative finite float (exp underflows to
exactly 0, and an entropy's p log p stays 0 instead of NaN). Prompt positions predict their own token.

What the oracle sees is what a network would see. Its "K/V" are the token ids and positions themselves:
under a KV cache it writes the fed rows through the store and reads the full column buffer, so a column
whose cached entry predates its commit still reads as a mask, exactly as stale K/V would for a real
model; keys the attention mask hides (left padding, a windowed cache's far field) read as masks too.
The attention backend (dense / sparse) changes nothing: there are no attention scores to sparsify.

No consistent answer (an earlier parallel step committed an impossible combination; the sample is
lost): the row falls back to the answers with the fewest conflicts with its committed tokens, and the
fallback is counted in `GenerationResult.loop_stats["oracle_fallbacks"]` (row-forwards: a row counts
once per forward in that state).

Cost per forward (measured: 1 thread, 2 cores shared with other jobs at load average ~8, min of 5 x 10;
`python benchmarks/oracle_step.py`): 32 six-name shuffles (N = 23,008 answers), logits for
all 32 canvas columns: 94-100 ms; 32 latin grids, 3 givens (N = 440): 20 ms; 32 copies (N = 32): 15-21 ms.
The work is O(N x G) for the consistency test, O(N x n) for the scatter-add of the counts and
O(B x n x V) for the log-probabilities; no Python loop over answers or positions.
Shapes: B batch, S columns (prompt + canvas), G canvas, N answers of the batch, V vocabulary.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .adapter import DiffusionLM
from .answer_sets import AnswerSets, read_answer_file
from .answers import AnswerBook
from .layers import LogitsOutput

NAME = "oracle"
MAX_LENGTH = 256
FLOOR = torch.finfo(torch.float32).min  # log 0: finite, see the module docstring


class TaskOracle(nn.Module):
    """The exact conditional of the answer distribution; the native forward of `DiffusionLM`."""

    exact_posterior = True  # extra mask columns carry no information: WINO's shadow rows = masked copies (revocable.py)

    def __init__(self, tokenizer: Any, index_base: int = 0, answers: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        vocab = tokenizer.get_vocab()
        self.mask_id, self.eos_id = vocab["<mask>"], vocab["<eos>"]
        self.vocab_size = len(vocab)
        # the task suite's answer sets, or a user's (`answer_sets.py`); either knows where its prompts end
        self.book = AnswerBook(tokenizer, self.eos_id, index_base) if answers is None else \
            AnswerSets(tokenizer, self.eos_id, answers)
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)  # carries device / dtype for the adapter
        self.packed: tuple[Tensor, int, Tensor, Tensor] | None = None  # (prompts, G, answers, owner) of the last batch
        self.fallbacks = torch.zeros((), dtype=torch.long)

    def begin_request(self) -> None:
        self.fallbacks = torch.zeros((), dtype=torch.long, device=self.anchor.device)

    def request_stats(self) -> dict[str, int]:
        return {"oracle_fallbacks": int(self.fallbacks)}

    def forward(self, input_ids: Tensor, positions: Tensor | None = None, attention_mask: Tensor | None = None,
                cache: Any = None, logits_for: Tensor | None = None, attention: Any = None) -> LogitsOutput:
        """input_ids [B, Lq] (the fed rows) -> logits [B, n, V] for fed rows `logits_for` [B, n] (all if None)."""
        B, Lq = input_ids.shape
        if positions is None:
            positions = torch.arange(Lq, device=input_ids.device).expand(B, Lq)
        ids, pos, seen = self.columns(input_ids, positions, attention_mask, cache)  # [B, S] each
        close = self.canvas_start(ids, seen) - 1
        G = ids.shape[1] - close - 1
        answers, owner = self.answer_pack(ids[:, :close + 1].masked_fill(~seen[:, :close + 1], -1), G)
        rows = torch.arange(Lq, device=input_ids.device).expand(B, Lq) if logits_for is None else logits_for
        index = positions.gather(1, rows) - pos[:, close, None] - 1  # [B, n] canvas index of each query
        canvas = ids[:, close + 1:].masked_fill(~seen[:, close + 1:], self.mask_id)
        read = self.counts(canvas, answers, owner, index.clamp(0, G - 1))  # [B, n, V]
        logp = torch.where(read > 0, (read.clamp_min(1) / read.sum(-1, keepdim=True)).log(), FLOOR)
        own = torch.full_like(logp, FLOOR).scatter_(-1, input_ids.gather(1, rows)[..., None], 0.0)
        return LogitsOutput(torch.where((index >= 0)[..., None], logp, own))

    def columns(self, input_ids: Tensor, positions: Tensor, attention_mask: Tensor | None,
                cache: Any) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids, positions and which columns this forward can see, [B, S] each."""
        if attention_mask is not None and attention_mask.dim() != 2:
            raise ValueError(f"`attention_mask` must be a 2-D key mask [B, S] for the oracle (one canvas per row), "
                             f"got shape {tuple(attention_mask.shape)}; block-causal loops need a block-diffusion "
                             "model")
        if cache is None:
            ids, pos, seen = input_ids, positions, torch.ones_like(input_ids, dtype=torch.bool)
        else:  # ids + 1 and positions + 1, so a never-written buffer column (0) reads as unseen
            k, v = cache.update(0, (input_ids + 1)[:, None, :, None], (positions + 1)[:, None, :, None])
            ids, pos = k[:, 0, :, 0] - 1, v[:, 0, :, 0] - 1
            seen = ids >= 0
        if attention_mask is not None:
            seen = seen & attention_mask.bool()
        return ids, pos, seen

    def canvas_start(self, ids: Tensor, seen: Tensor) -> int:
        """The column after each row's prompt (the book says where a prompt ends); left padding aligns it."""
        ends = self.book.prompt_ends(ids, seen)  # [B], -1 where the book reads no prompt
        lo, hi = torch.stack([ends.min(), ends.max()]).tolist()  # host read: the canvas start is a slice bound
        opening = ids.gather(1, seen.float().argmax(1, keepdim=True))  # each row's first real token
        if (lo < 0 or lo != hi) and bool((opening == self.mask_id).any()):
            raise ValueError("the oracle has no unconditional distribution: a prompt holds mask tokens (e.g. "
                             "`cfg_scale` > 0 masks the prompt); use cfg_scale=0")
        if lo < 0:
            row = int((ends < 0).nonzero()[0])
            raise ValueError(self.book.unreadable(self.words(ids[row], seen[row])))
        if lo != hi:
            raise ValueError(f"the oracle expects every row's prompt to end at the same column (left padding), got "
                             f"columns {lo - 1}..{hi - 1}; pass prompts through `Sampler.generate`")
        return lo

    def answer_pack(self, prompts: Tensor, G: int) -> tuple[Tensor, Tensor]:
        """(answers [N, G], owner row [N]) of the batch; rebuilt only when the batch's prompts change."""
        last = self.packed
        if last is not None and last[1] == G and last[0].shape == prompts.shape and torch.equal(last[0], prompts):
            return last[2], last[3]
        if bool((prompts == self.mask_id).any()):
            raise ValueError("the oracle has no unconditional distribution: a prompt holds mask tokens (e.g. "
                             "`cfg_scale` > 0 masks the prompt); use cfg_scale=0")
        tables = [self.book.answers(tuple(t for t in row if t >= 0), G) for row in prompts.tolist()]  # -1: unseen
        answers = torch.cat(tables).to(prompts.device)
        owner = torch.repeat_interleave(torch.tensor([len(t) for t in tables], device=prompts.device))
        self.packed = (prompts.clone(), G, answers, owner)
        return answers, owner

    def counts(self, canvas: Tensor, answers: Tensor, owner: Tensor, index: Tensor) -> Tensor:
        """Consistent answers with x_i = v [B, n, V] at canvas columns `index` [B, n] (the fewest-conflict
        answers if none is consistent). Counts are integers < 2^24, exact in float32."""
        B, G = canvas.shape
        n = index.shape[1]
        seen = canvas[owner]  # [N, G]
        conflicts = ((seen != self.mask_id) & (seen != answers)).sum(1)  # [N]
        best = torch.full((B,), G + 1, dtype=conflicts.dtype, device=canvas.device)
        best = best.scatter_reduce(0, owner, conflicts, "amin")
        chosen = (conflicts == best[owner]).float()  # the consistent answers, or the fallback set
        self.fallbacks = self.fallbacks + (best > 0).sum()
        tokens = answers.gather(1, index[owner])  # [N, n]: each answer's token at its row's query columns
        flat = ((owner * n)[:, None] + torch.arange(n, device=canvas.device)) * self.vocab_size + tokens
        counts = torch.zeros(B * n * self.vocab_size, device=canvas.device)
        counts.index_add_(0, flat.reshape(-1), chosen[:, None].expand(-1, n).reshape(-1))
        return counts.view(B, n, self.vocab_size)

    def words(self, row: Tensor, seen: Tensor) -> str:
        return " ".join(self.book.tokenizer.convert_ids_to_tokens(row[seen & (row != self.mask_id)].tolist()))


def load_oracle(*, device: str | torch.device | None = None, dtype: Any = None, mask_id: int | None = None,
                eos_ids: Any = None, index_base: int = 0, answers: Any = None) -> DiffusionLM:
    """The oracle as a `DiffusionLM` over the zoo's tokenizer (ids shared with every zoo model). `answers`
    (a mapping {prompt: [valid answers]} or a JSONL path, see `answer_sets.py`) replaces the task suite's
    answer sets with the user's own."""
    from ..zoo.tokenizer import build_tokenizer

    if dtype not in (None, torch.float32, "float32", "fp32"):
        raise ValueError(f"`dtype` must be float32 (or None) for the oracle, whose logits are exact log-counts, got "
                         f"{dtype!r}")
    if mask_id is not None or eos_ids is not None:
        raise ValueError(f"`mask_id` and `eos_ids` are fixed by the oracle's tokenizer, got {mask_id!r} and "
                         f"{eos_ids!r}; leave them None")
    if answers is not None and index_base != 0:
        raise ValueError(f"`index_base` reads the task suite's index prompts; with `answers` the answer sets are "
                         f"given, got index_base={index_base!r}; remove it")
    tokenizer = build_tokenizer()
    if isinstance(answers, (str, Path)):
        answers = read_answer_file(answers)
    module = TaskOracle(tokenizer, index_base, answers).to(torch.device(device) if device is not None else "cpu")
    return DiffusionLM(module, module.mask_id, (module.eos_id,), 0, tokenizer, MAX_LENGTH,
                       tokenizer.pad_token_id, native=True, name=NAME)
