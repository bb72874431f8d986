"""Linear layers that run on oneDNN pre-packed weights at CPU inference.

Why: a decoding step with a KV cache multiplies a few dozen rows by every weight matrix, and MKL's
sgemm re-packs the weight on each call; oneDNN's packed (blocked) layout is made once. Measured on this
project's 2-core AMD EPYC, one thread, cold weights (`benchmarks/bench_cache.py`'s model: 8 layers
d 512): 32-row layer matmuls 40.7 -> 16.5 ms per step, a 16-row [32000, 512] head 14.1 -> 5.0 ms,
576 rows 1.5-2.3x faster. Second reason: the packed product of a row does not depend on how many
rows are multiplied with it (MKL's differs for 1-5 rows, by up to ~3e-5; a single row is fed twice), so a cached step that feeds 32 rows
and a full forward of 576 give bit-identical rows, which batched decoding relies on.

The layers stay `nn.Linear` (same parameters and state-dict keys); training (grad enabled), other
devices and other dtypes take the plain `F.linear` path, and a weight changed in place is re-packed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PACK_ROWS = 32  # oneDNN's batch-size hint for the packed layout (with 1, the products depend on the row count)


def packing_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


class PackedLinear(nn.Linear):
    """`nn.Linear` whose no-grad CPU fp32 forward reads a packed copy of its weight (made on first use)."""

    _packed: Tensor | None = None
    _packed_key: tuple[int, int] | None = None

    def __getstate__(self) -> dict:
        """Copies and pickles leave the packed copy behind (an opaque oneDNN tensor); it is rebuilt on use."""
        state = self.__dict__.copy()
        state.pop("_packed", None)
        state.pop("_packed_key", None)
        return state

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight
        if (x.device.type != "cpu" or w.device.type != "cpu" or w.dtype != torch.float32 or x.dtype != torch.float32
                or (torch.is_grad_enabled() and (w.requires_grad or x.requires_grad))):
            return F.linear(x, w, self.bias)
        key = (w.data_ptr(), -1 if w.is_inference() else w._version)  # inference tensors cannot change in place
        if self._packed_key != key:  # first call, or the weight was replaced or edited in place
            self._packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), PACK_ROWS)
            self._packed_key = key
        bias = None if self.bias is None else self.bias.detach()
        if x.numel() == x.shape[-1]:  # one row takes oneDNN's matrix-vector path, whose sums are ordered differently
            pair = torch.ops.mkldnn._linear_pointwise(x.reshape(1, -1).expand(2, -1), self._packed, bias, "none", [], "")
            return pair[:1].reshape(*x.shape[:-1], pair.shape[-1])
        return torch.ops.mkldnn._linear_pointwise(x, self._packed, bias, "none", [], "")


def pack_linears(module: nn.Module) -> int:
    """Turn every plain `nn.Linear` inside `module` into a `PackedLinear` in place; returns how many."""
    if not packing_available():
        return 0
    linears = [m for m in module.modules() if type(m) is nn.Linear]
    for layer in linears:
        layer.__class__ = PackedLinear
    return len(linears)
