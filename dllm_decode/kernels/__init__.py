"""Attention backends, selectable as `Sampler(..., attention=NAME)`."""
from .base import AttentionStrategy, DenseAttention
from .sparse import SparseAttention

ATTENTION: dict[str, type[AttentionStrategy]] = {"dense": DenseAttention, "sparse": SparseAttention}

__all__ = ["ATTENTION", "AttentionStrategy", "DenseAttention", "SparseAttention"]
