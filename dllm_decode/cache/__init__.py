"""KV caching strategies, selectable as `Sampler(..., cache=NAME)`; options are the strategy's fields."""
from .base import CacheStrategy, NoCache
from .delayed import DelayedCache
from .dual import DualCache
from .prefix import PrefixCache
from .rows import KVCache
from .store import KVBuffer
from .windowed import WindowedCache

CACHES: dict[str, type[CacheStrategy]] = {
    "none": NoCache, "prefix": PrefixCache, "dual": DualCache, "delayed": DelayedCache, "windowed": WindowedCache,
}

__all__ = ["CACHES", "CacheStrategy", "NoCache", "KVCache", "KVBuffer", "PrefixCache", "DualCache", "DelayedCache",
           "WindowedCache"]
