"""Ablation: semi-autoregressive block length under threshold decoding (one curve per block length)."""
from _sweep import run

BLOCKS = (4, 8, 16, 32)
THRESHOLDS = (0.7, 0.8, 0.9)

if __name__ == "__main__":
    grid = [("threshold", {"block_length": b, "threshold": t})
            for b in BLOCKS for t in THRESHOLDS]
    run("block length sweep", grid, __file__)
