"""Ablation: KV-cache strategy under threshold decoding. Strategies this build's `Sampler` does not
accept are skipped with the library's own message."""
from _sweep import run

CACHES = ("none", "prefix", "dual", "delayed", "windowed")
THRESHOLDS = (0.7, 0.9)

if __name__ == "__main__":
    grid = [("threshold", {"cache": c, "threshold": t}) for c in CACHES for t in THRESHOLDS]
    run("cache strategy sweep", grid, __file__)
