"""Ablation: the confidence threshold of Fast-dLLM's parallel decoding (lower = more tokens per step)."""
from _sweep import run

THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

if __name__ == "__main__":
    run("threshold sweep", [("threshold", {"threshold": t}) for t in THRESHOLDS], __file__)
