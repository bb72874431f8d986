"""Attention backends, selectable as `Sampler(..., attention=NAME)`.

Each strategy registers in `ATTENTION` (kernels/base.py) where it is defined; importing it here fills the table.
"""
from .base import ATTENTION, AttentionStrategy, DenseAttention
from .sparse import SparseAttention

__all__ = ["ATTENTION", "AttentionStrategy", "DenseAttention", "SparseAttention"]
