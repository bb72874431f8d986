"""KV caching strategies, selectable as `Sampler(..., cache=NAME)`; options are the strategy's fields.

Each strategy registers in `CACHES` (cache/base.py) where it is defined; importing it here fills the table.
"""
from .base import CACHES, CacheStrategy, NoCache
from .delayed import DelayedCache
from .dual import DualCache
from .prefix import PrefixCache
from .rows import KVCache
from .store import KVBuffer
from .windowed import WindowedCache

__all__ = ["CACHES", "CacheStrategy", "NoCache", "KVCache", "KVBuffer", "PrefixCache", "DualCache", "DelayedCache",
           "WindowedCache"]
