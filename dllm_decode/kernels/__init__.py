"""Attention backends, selectable as `Sampler(..., attention=NAME)`."""
from .base import AttentionStrategy, DenseAttention

ATTENTION: dict[str, type[AttentionStrategy]] = {"dense": DenseAttention}

__all__ = ["ATTENTION", "AttentionStrategy", "DenseAttention"]
