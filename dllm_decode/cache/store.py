"""The KV buffer every cached strategy reads and writes: preallocated, natural column order, after RoPE.

One `KVBuffer` per request holds, per layer, K and V as [B, G, S, D] (S = P + G canvas columns), so
its size is fixed by the canvas and never grows across blocks (gpt-fast's `KVCache`). Three verbs:
`allocate` (on a layer's first write, shaped like its K), `write` (scatter this forward's fresh rows
at their columns, optionally only some of them) and `read` (the full buffers, which attention attends,
with a key mask saying which columns count). `Writes` adapts one forward to the models' `KVStore`
protocol (`update(layer, k, v) -> (k, v)`). Shapes: B batch, G key/value heads, S columns, Lq fed rows.
"""
from __future__ import annotations

import torch
from torch import Tensor


class KVBuffer:
    """K/V of one request for every layer, [B, G, S, D] each; columns are canvas columns incl. the prompt."""

    def __init__(self, batch: int, length: int) -> None:
        self.batch, self.length = batch, length
        self.keys: dict[int, Tensor] = {}
        self.values: dict[int, Tensor] = {}

    def allocate(self, layer: int, like: Tensor) -> None:
        """Set up `layer`'s buffers shaped like `like` [B, G, *, D] over the S columns (once per request)."""
        if layer in self.keys:
            return
        B, G, _, D = like.shape
        assert B == self.batch, f"cache holds {self.batch} rows, forward has {B}"  # internal invariant
        self.keys[layer] = like.new_zeros((B, G, self.length, D))
        self.values[layer] = like.new_zeros((B, G, self.length, D))

    def write(self, layer: int, k: Tensor, v: Tensor, cols: Tensor | None, keep: Tensor | None) -> None:
        """Store fresh rows k/v [B, G, Lq, D] at columns `cols` [B, Lq] (None: all S columns in order).

        `keep` [B, 1, Lq, 1] bool marks rows to write; the others keep their cached K/V (padding rows of
        a ragged forward, rows another row's refresh forced into the batch).
        """
        self.allocate(layer, k)
        for buf, fresh in ((self.keys[layer], k), (self.values[layer], v)):
            if cols is None:
                buf.copy_(fresh if keep is None else torch.where(keep, fresh, buf))  # in place: fixed-size buffer
                continue
            index = cols[:, None, :, None].expand(-1, buf.shape[1], -1, buf.shape[3])
            if keep is not None:
                fresh = torch.where(keep, fresh, buf.gather(2, index))
            buf.scatter_(2, index, fresh)  # in place: fixed-size buffer

    def read(self, layer: int) -> tuple[Tensor, Tensor]:
        """Full K and V [B, G, S, D] of `layer`."""
        return self.keys[layer], self.values[layer]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys.values(), *self.values.values()))


class Writes:
    """A `KVStore` for one forward: write the fed rows at `cols`, attend the whole buffer."""

    def __init__(self, buffer: KVBuffer, cols: Tensor | None, write: Tensor | None) -> None:
        self.buffer, self.cols = buffer, cols
        self.keep = None if write is None else write[:, None, :, None]  # [B, 1, Lq, 1]

    def update(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        self.buffer.write(layer, k, v, self.cols, self.keep)
        return self.buffer.read(layer)
