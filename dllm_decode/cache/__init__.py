"""KV caching strategies, selectable as `Sampler(..., cache=NAME)`."""
from .base import CacheStrategy, NoCache

CACHES: dict[str, type[CacheStrategy]] = {"none": NoCache}

__all__ = ["CACHES", "CacheStrategy", "NoCache"]
