"""Ablation: which positions a top-k step commits (LLaDA low-confidence vs random; Dream's margin and
entropy rules), each at k = 1, 2, 4, 8 tokens per step on a 32-token canvas."""
from _sweep import run

RULES = ("confidence", "random", "topk_margin", "entropy")
K = (1, 2, 4, 8)

if __name__ == "__main__":
    grid = [(rule, {"steps": 32 // k}) for rule in RULES for k in K]
    run("remasking rule sweep (steps = 32 / k)", grid, __file__)
