"""`attention="sparse"`: SparseD's reused block-sparse attention pattern.

Rule (SparseD, Wang et al. 2025): attend fully for the first `int(skip * steps) + 1` steps; on the
last of them, per layer and head, score (query block, key block) pairs by block-mean attention
probability and keep each query block's top `int(n * select) + 1` key blocks, prompt and canvas keys
chosen separately (see `pattern.py`); every later step attends only to those blocks. Typical values:
select 0.3 with 128-token blocks at long context, 0.5 with 32-token (or smaller) blocks at short
context; skip 0.2. The paper reports no quality loss and up to 1.5x over FlashAttention at 64k.
`select` >= 1 keeps every block, which equals dense attention up to float rounding.

`steps` is the plan's total step budget, `steps_per_block * n_blocks`, for step-budget rules; rules
that decode until a block is empty (threshold-style) have no budget, so the canvas length G, their
upper bound on steps, stands in for it.

Caches: only `cache="none"`. The pattern is chosen for square attention over the whole sequence
(L = S); cached strategies feed a subset of query rows against a partly stale key buffer, which
would need the pattern re-indexed per step. They are rejected in `check`.

Backends: `sparse_backend="triton"` (the block-sparse flash kernel, `sparse_triton.py`; GPU, or CPU
under TRITON_INTERPRET=1), `"torch"` (gathered key blocks + SDPA, `sparse_torch.py`; any device), or
`"auto"`: Triton for CUDA tensors when triton imports and `sparse_block` is a power of two >= 16,
torch otherwise.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

import torch
from torch import Tensor

from .. import validation
from ..components import Need
from ..state import DecodeState, scatter_rows
from .base import ATTENTION, AttentionStrategy
from .dense import dense_attention
from .pattern import block_importance, top_blocks
from .sparse_torch import Workspace, gathered_attention

if TYPE_CHECKING:
    from ..components import PlanView

BACKENDS = ("auto", "torch", "triton")


def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def pattern_steps(plan: "PlanView", gen_length: int, skip: float) -> int:
    """Number of full-attention steps, `int(skip * steps) + 1` (see the module docstring for `steps`)."""
    return int(skip * plan.total_steps(gen_length)) + 1


@ATTENTION.register
@dataclass(frozen=True)
class SparseAttention(AttentionStrategy):
    """SparseD block-sparse attention with a pattern chosen once per request and reused."""

    select: float = 0.3
    sparse_block: int = 128
    skip: float = 0.2
    sparse_backend: str = "auto"
    name: ClassVar[str] = "sparse"
    needs: ClassVar[tuple[Need, ...]] = (
        Need("cache", "full_sequence", "its pattern is chosen for every query row against every key",
             "drop the cache or use `attention=\"dense\"`"),
        Need("loop", "own_forwards", "it maps its pattern to batch rows by step",
             "use loop='denoise' or `attention=\"dense\"`", present=False),
    )

    def __post_init__(self) -> None:
        validation.number("select", self.select, low=0, low_open=True,
                          fix="the fraction of key blocks kept: 0.3 at long context, >= 1 keeps all")
        validation.integer("sparse_block", self.sparse_block, low=1, fix="tokens per block, 128 at long context")
        validation.number("skip", self.skip, low=0, high=1, high_open=True,
                          fix="the share of steps with full attention, 0.2 in SparseD")
        validation.choice("sparse_backend", self.sparse_backend, BACKENDS)
        if self.sparse_backend == "triton" and not triton_available():
            raise ValueError("`sparse_backend=\"triton\"` needs triton (`pip install triton`); "
                             "use `sparse_backend=\"torch\"` or \"auto\"")

    def new_request(self, state: DecodeState, plan: "PlanView") -> "SparseBackend":
        return SparseBackend(self, pattern_steps(plan, state.gen_length, self.skip), state.prompt_width,
                             state.x.shape[0])

    def begin_step(self, backend: "SparseBackend", state: DecodeState) -> None:
        backend.begin(state.step, state.done)


def _kernel(options: SparseAttention, q: Tensor) -> str:
    if options.sparse_backend != "auto":
        return options.sparse_backend
    block = options.sparse_block
    fits = block >= 16 and not block & (block - 1)
    return "triton" if q.is_cuda and fits and triton_available() else "torch"


class SparseBackend:
    """Per-request attention callable: dense until the pattern step, block-sparse after it.

    Tables are stored per layer as [copies, B, H, nq, K] for the request's full batch (copies = 2
    under classifier-free guidance, which stacks an unconditional batch); when finished rows are
    dropped from the forward, the active rows' tables are picked out.
    """

    def __init__(self, options: SparseAttention, full_steps: int, prompt_width: int, batch: int) -> None:
        self.options, self.full_steps, self.prompt_width, self.batch = options, full_steps, prompt_width, batch
        self.tables: dict[int, Tensor] = {}
        self.workspace = Workspace()
        self.step = 0
        self.done: Tensor | None = None
        self._rows: Tensor | None = None  # active row ids this step, found once when needed
        self.pattern_calls = 0  # layers whose pattern was computed (for tests and reports)

    def begin(self, step: int, done: Tensor) -> None:
        self.step, self.done, self._rows = step, done, None

    def active_rows(self) -> Tensor:
        if self._rows is None:
            done = self.done if self.done is not None else torch.zeros(self.batch, dtype=torch.bool)
            self._rows = (~done).nonzero().squeeze(1)  # host sync, only on steps where rows were dropped
        return self._rows

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, layer: int) -> Tensor:
        """q [B, H, L, D], k/v [B, G, S, D], mask [B, 1|H, 1|L, S] -> [B, H, L, D]."""
        if q.shape[2] != k.shape[2]:
            raise ValueError(f"sparse attention needs a query for every key row (cache=\"none\"), got "
                             f"{q.shape[2]} queries for {k.shape[2]} keys")
        if self.step < self.full_steps - 1:
            return dense_attention(q, k, v, mask)
        if layer not in self.tables:  # the pattern step (the last full one): choose once, reuse after
            self.tables[layer] = self._store(q, top_blocks(block_importance(q, k, mask, self.options.sparse_block),
                                                           self.prompt_width, self.options.sparse_block,
                                                           self.options.select))
            self.pattern_calls += 1
            return dense_attention(q, k, v, mask)
        table = self._pick(self.tables[layer], q.shape[0])
        return self._sparse(q)(q, k, v, mask, table, self.options.sparse_block)

    def _store(self, q: Tensor, table: Tensor) -> Tensor:
        """Scatter a table for this forward's rows into [copies, full batch, ...]."""
        rows = self.active_rows().to(q.device)
        copies = q.shape[0] // rows.numel()
        if q.shape[0] != copies * rows.numel():
            raise RuntimeError(f"sparse attention got a forward of {q.shape[0]} rows for {rows.numel()} active "
                               "rows; this loop is not supported by the sparse backend")
        return scatter_rows(table.view((copies, rows.numel()) + table.shape[1:]), rows, self.batch, dim=1)

    def _pick(self, table: Tensor, n_rows: int) -> Tensor:
        copies = table.shape[0]
        if n_rows == copies * self.batch:
            return table.flatten(0, 1)
        rows = self.active_rows().to(table.device)
        if n_rows != copies * rows.numel():
            raise RuntimeError(f"sparse attention got a forward of {n_rows} rows, expected {copies} x "
                               f"{rows.numel()} active rows; this loop is not supported by the sparse backend")
        return table.index_select(1, rows).flatten(0, 1)

    def _sparse(self, q: Tensor) -> Callable[..., Tensor]:
        if _kernel(self.options, q) == "triton":
            from .sparse_triton import triton_block_sparse_attention

            return triton_block_sparse_attention
        workspace = self.workspace
        return lambda q, k, v, mask, table, block: gathered_attention(q, k, v, mask, table, block, workspace)
