"""Cost of one oracle forward: 32 prompts of one task, logits for all 32 canvas columns of an empty canvas.

    python benchmarks/oracle_step.py            # prints answers in the batch and ms per forward per task
"""
from __future__ import annotations

import time

import torch

from dllm_decode import load_model
from dllm_decode.evals.tasks import make_samples
from dllm_decode.state import left_pad

G, BATCH, REPEATS = 32, 32, 10


def main() -> int:
    torch.set_num_threads(1)
    model = load_model("oracle")
    for task, length in (("shuffle", 6), ("latin", 6), ("copy", 6)):
        prompts = [s.prompt for s in make_samples(task, seed=1, per_length=BATCH, lengths=(length,))]
        ids = [torch.tensor(model.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        x, mask, positions = left_pad(ids, G, model.pad_id, model.mask_id)
        cols = (torch.arange(G) + x.shape[1] - G).expand(BATCH, G)
        model(x, positions=positions, attention_mask=mask, logits_for=cols)  # enumerates the answers once
        answers = model.module.packed[2].shape[0]
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(REPEATS):
                model(x, positions=positions, attention_mask=mask, logits_for=cols)
            runs.append((time.perf_counter() - start) / REPEATS * 1000)
        print(f"{task} (length {length}): {answers} answers in the batch, {min(runs):.1f} ms per forward "
              f"(min of 5 x {REPEATS}; median {sorted(runs)[2]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
