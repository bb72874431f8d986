"""Write a zoo model's card (README.md) from its training record and an evaluation run.

    dllm-decode eval --model zoo_runs/tiny-llada --suite waiting-line --samplers confidence:k=1,2,4,8 \
        --out runs/card-tiny-llada
    python -m dllm_decode.zoo.card zoo_runs/tiny-llada runs/card-tiny-llada --name tiny-llada --command "..."
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evals.report import markdown_table, per_task_markdown
from .train import HARD_TASKS, TrainConfig


def ordered_stage_lines(cfg: dict, shifted: bool) -> list[str]:
    """The card's lines for the task curriculum, the left-to-right stage and a warm start."""
    lines = []
    if cfg.get("answers", "sampled") == "two-way":
        lines.append("- answers: each task with several valid answers is trained on one of two fixed ones, 50/50 "
                     "(shuffle rotates the list by one place left or right; insert/remove/replace_random act at "
                     "the first or the last place; `zoo/train.py: two_way_reference`); evaluation still accepts "
                     "every valid answer")
    if cfg.get("init_from"):
        lines.append(f"- warm start: the run begins from the weights of `{cfg['init_from']}`")
    if cfg.get("hard_first"):
        stage = cfg.get("hard_tasks", ",".join(HARD_TASKS))  # runs from before `hard_tasks` used HARD_TASKS
        lines.append(f"- tasks: only {stage.replace(',', ', ')} until step {cfg['hard_first']}, then the whole suite")
    start, end = cfg.get("copy_warmup", 0), cfg.get("ar_warmup", 0)
    if end > start:
        lines.append(f"- autoregressive stage (Dream's recipe starts from an AR model): steps {start}-{end} train "
                     "next-token prediction under a causal mask (`zoo/train.py: autoregressive_loss`)" if shifted else
                     f"- left-to-right stage: steps {start}-{end} predict every answer token at a [MASK] that reads "
                     "only the prompt and the clean answer left of it (`zoo/train.py: left_to_right_loss`)")
    if cfg.get("ar_mix"):  # train.py draws the mixed batches from step `ar_warmup` on, whatever `copy_warmup` is
        lines.append(f"- from step {end}, a share {cfg['ar_mix']} of the batches keeps training in "
                     "left-to-right order, the rest masked diffusion (`--ar-mix`)")
    if cfg.get("block_mix"):
        lines.append(f"- blocked rows: once the masking floor is below 1, a share {cfg['block_mix']} of the rows is "
                     f"masked as in blocked decoding (blocks of {cfg.get('block_sizes', TrainConfig.block_sizes).replace(',', ', ')}: "
                     "the answer before the current block clean, the block masked with probability t, the rest "
                     "masked; loss on the block; `zoo/train.py: blocked_rows`)")
    return lines


def card(model_dir: Path, run_dir: Path, name: str, command: str, status: str = "") -> str:
    training = json.loads((model_dir / "training.json").read_text())
    config = json.loads((model_dir / "config.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())["configs"]
    params = training.get("parameters", "see config.json")
    cfg = training["config"]
    return "\n".join([
        f"# {name}", "",
        f"A tiny `{config['model_type']}`-architecture masked-diffusion LM trained by dllm-decode on CPU on its own",
        "procedural task suite (`dllm_decode.evals.tasks`, compact format): the ten Waiting Line tasks and the",
        "4x4 Latin square / Sudoku puzzles (puzzles sampled at half the rate of each list task), list lengths 3-6,",
        f"fresh random instances every step (seeded stream {cfg['seed']}); canvas {training['gen_length']} tokens.",
        *(["", "## Status", "", status] if status else []),
        "", "## Training", "",
        "- objective: LLaDA SFT masked-diffusion loss, t ~ U(0, 1), 1/t weighting, prompt never masked"
        + ("; shifted logits (Dream)" if config["model_type"] == "Dream" else ""),
        *(["- curricula: " + (f"copy task only for the first {cfg['copy_warmup']} steps; " if cfg.get("copy_warmup")
                                else "") +
           f"whole answer masked (t = 1) for the first {cfg['mask_warmup'] // 2} steps, then the lowest t falls "
           f"linearly to 0 at step {cfg['mask_warmup']} (see `zoo/train.py: mask_floor`)"] if cfg.get("mask_warmup") else []),
        *ordered_stage_lines(cfg, config["model_type"] == "Dream"),
        f"- model: d_model {cfg['d_model']}, {cfg['n_layers']} layers, {cfg['n_heads']} heads "
        f"({cfg['n_kv_heads']} KV), MLP {cfg['mlp']}; {params} parameters; weights stored fp16",
        f"- optimisation: AdamW lr {cfg['lr']}, batch {cfg['batch_size']}, warm-up {cfg['warmup']}, cosine over "
        f"{cfg['steps']} steps, stopped at step {cfg['stop_at'] or cfg['steps']} after a linear anneal of "
        f"{cfg['anneal']} steps; {cfg['threads']} CPU thread",
        f"- time: {training['train_seconds'] / 60:.0f} min of training on a shared 2-core machine "
        f"(final batch loss {training['final_loss']:.3f})",
        f"- reproduce: `{training.get('command', 'see training.json')}`", "",
        "## Scores (held-out seed 1234, 25 instances per task and length, greedy low-confidence top-k)", "",
        "k = tokens per step (steps = 32 / k, one block over the canvas).", "",
        markdown_table(summary), "", per_task_markdown(summary), "",
        f"Made by: `{command}`", ""])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--name", required=True)
    parser.add_argument("--command", required=True, help="the eval command that made the run")
    parser.add_argument("--status", default="", help="what the weights can and cannot do, in a sentence or two")
    parser.add_argument("--out", type=Path, default=None, help="default: MODEL_DIR/README.md")
    args = parser.parse_args(argv)
    text = card(args.model_dir, args.run_dir, args.name, args.command, args.status)
    (args.out or args.model_dir / "README.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
