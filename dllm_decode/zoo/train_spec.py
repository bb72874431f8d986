"""Train the zoo's speculative-decoding models on the task suite, on CPU, with zoo/train.py's data and export.

  tiny-sdar          SDAR (Qwen3 layout, block-causal). Block-diffusion loss on [noisy | clean] copies of
                     the sequence (the SDAR recipe): a noisy token attends its own noisy block and the
                     clean earlier blocks, clean tokens attend clean blocks causally; masked answer tokens
                     (prob t ~ U) are scored with weight 1/t. Published SDAR models start from an AR
                     Qwen3, so their block-size-1 (AR) mode is a trained AR model; ours starts from scratch,
                     so a quarter of the batches use block size 1 to train that mode too.
  tiny-ar            a transformers Llama causal LM: next-token loss on the answer and its EOS.
  tiny-deer-drafter  a LLaDA-architecture drafter aligned to tiny-ar (DEER): stage 1, continuation
                     distillation on tiny-ar's greedy answers cut at a random point (only the continuation
                     is noised, 1/t weighted); stage 2 (the last `refine_fraction` of steps), refinement:
                     [prompt | prefix | R masks] exactly as at drafting time, position i of R weighted
                     1.01^(R-i), R ~ U(1, refine_max).

    python -m dllm_decode.zoo.train_spec --kind ar --out zoo_runs/tiny-ar --install tiny-ar   # resumes
"""
from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..models.llada import LLaDAConfig, LLaDAModelLM
from ..models.sdar import SDARConfig, SDARForCausalLM
from .tokenizer import build_tokenizer
from .train import (GEN_LENGTH, HARD_TASKS, curriculum_tasks, draw_batch, draw_t, export, mask_floor, row_positions,
                    stage_tasks)

KINDS = ("sdar", "ar", "drafter")


@dataclass(frozen=True)
class SpecTrainConfig:
    kind: str = "ar"
    d_model: int = 160
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 2
    mlp: int = 448
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 1
    save_every: int = 50
    minutes: float = 0.0  # > 0: a wall-clock budget; the cosine schedule then follows elapsed time, not steps
    block_size: int = 4  # sdar
    ar_fraction: float = 0.25  # sdar: share of batches trained with block size 1 (the AR mode)
    target: str = "zoo_runs/tiny-ar"  # drafter: the AR model to align to
    pool: int = 6144  # drafter: target answers generated once and reused
    refine_fraction: float = 0.3  # drafter: last share of steps spent on stage 2
    refine_max: int = 12  # drafter: R ~ U(1, refine_max)
    copy_warmup: int = 0  # ar/sdar: copy task only for the first steps (zoo/train.py's task curriculum)
    hard_first: int = 0  # ar/sdar: hard tasks only until this step (zoo/train.py's task curriculum)
    hard_tasks: str = ",".join(HARD_TASKS)  # the tasks of that stage
    mask_warmup: int = 0  # sdar/drafter: zoo/train.py's masking-rate curriculum (`mask_floor`)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"`kind` must be one of {list(KINDS)}, got {self.kind!r}")
        stage_tasks(self.hard_tasks)


def build(cfg: SpecTrainConfig, tok) -> torch.nn.Module:
    V, mask, eos, pad = len(tok), tok.mask_token_id, tok.eos_token_id, tok.pad_token_id
    if cfg.kind == "sdar":
        return SDARForCausalLM(SDARConfig(
            vocab_size=V, hidden_size=cfg.d_model, intermediate_size=cfg.mlp, num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, head_dim=cfg.d_model // cfg.n_heads,
            max_position_embeddings=128, rope_theta=10000.0, block_size=cfg.block_size, mask_token_id=mask,
            pad_token_id=pad, bos_token_id=pad, eos_token_id=eos))
    if cfg.kind == "ar":
        from transformers import LlamaConfig, LlamaForCausalLM

        return LlamaForCausalLM(LlamaConfig(
            vocab_size=V, hidden_size=cfg.d_model, intermediate_size=cfg.mlp, num_hidden_layers=cfg.n_layers,
            num_attention_heads=cfg.n_heads, num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=128,
            rope_theta=10000.0, pad_token_id=pad, bos_token_id=pad, eos_token_id=eos, tie_word_embeddings=False))
    return LLaDAModelLM(LLaDAConfig(
        d_model=cfg.d_model, n_heads=cfg.n_heads, n_kv_heads=cfg.n_heads, n_layers=cfg.n_layers,
        mlp_hidden_size=cfg.mlp, vocab_size=V, embedding_size=V, max_sequence_length=128, rope_theta=10000.0,
        mask_token_id=mask, eos_token_id=eos, pad_token_id=pad))


def answer_span(x: torch.Tensor, width: int, eos: int) -> torch.Tensor:
    """[B, L] bool: answer columns up to and including the first EOS."""
    cols = torch.arange(x.shape[1])
    is_eos = (x == eos) & (cols >= width)
    first = torch.where(is_eos.any(1), is_eos.float().argmax(1), torch.full((x.shape[0],), x.shape[1] - 1))
    return (cols >= width) & (cols <= first[:, None])


def ar_loss(model, x, keep, width, tok, gen) -> torch.Tensor:
    positions = row_positions(keep)
    logits = model(input_ids=x, attention_mask=keep.long(), position_ids=positions).logits[:, :-1]
    scored = answer_span(x, width, tok.eos_token_id)[:, 1:]
    ce = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none").view_as(scored)
    return (ce * scored).sum() / scored.sum()


def sdar_loss(model, x, keep, width, tok, gen, cfg: SpecTrainConfig, floor: float = 0.0) -> torch.Tensor:
    """SDAR's [noisy | clean] block-diffusion objective, one forward of length 2L."""
    B, L = x.shape
    block = 1 if torch.rand(1, generator=gen).item() < cfg.ar_fraction else cfg.block_size
    t = draw_t(B, gen, floor)
    masked = torch.zeros_like(keep)
    masked[:, width:] = torch.rand(B, L - width, generator=gen) < t
    positions = row_positions(keep)
    ids = torch.cat([x.masked_fill(masked, tok.mask_token_id), x], 1)  # [B, 2L]: noisy copy, clean copy
    pos = torch.cat([positions, positions], 1)
    blk = pos // block
    noisy = torch.arange(2 * L) < L
    q_noisy, k_noisy = noisy[None, :, None], noisy[None, None, :]
    bq, bk = blk[:, :, None], blk[:, None, :]
    allowed = (q_noisy & k_noisy & (bq == bk)) | (q_noisy & ~k_noisy & (bk < bq)) | (~q_noisy & ~k_noisy & (bk <= bq))
    allowed = allowed & torch.cat([keep, keep], 1)[:, None, :]
    logits = model(ids, positions=pos, attention_mask=allowed[:, None], logits_for=None).logits[:, :L]
    ce = F.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="none").view(B, L)
    return ((ce * masked / t).sum(1) / GEN_LENGTH).mean()


def target_pool(cfg: SpecTrainConfig, tok, rng: random.Random) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, tiny-ar's greedy answer ids + EOS) pairs: the targets' own outputs, generated once."""
    from ..models.causal import load_causal_lm

    target = load_causal_lm(cfg.target)
    pool: list[tuple[list[int], list[int]]] = []
    eos, pad = tok.eos_token_id, tok.pad_token_id
    for _ in tqdm(range(0, cfg.pool, 256), desc="target answers"):
        x, keep, width = draw_batch(rng, tok, 256)
        prompts, pmask = x[:, :width], keep[:, :width]
        out = target.module.generate(input_ids=prompts, attention_mask=pmask.long(), max_new_tokens=GEN_LENGTH,
                                     do_sample=False, eos_token_id=eos, pad_token_id=pad)[:, width:]
        for p, m, a in zip(prompts.tolist(), pmask.tolist(), out.tolist()):
            answer = a[: a.index(eos) + 1] if eos in a else a
            pool.append(([i for i, k in zip(p, m) if k], answer))
    return pool


def drafter_batch(pool, rng: random.Random, tok, batch: int, refine: bool, cfg: SpecTrainConfig):
    """Rows [prompt | prefix | continuation] (stage 1) or [prompt | prefix | R tokens] (stage 2), right-aligned
    prompts; returns ids, key mask, the scored span and per-column weights (before noising)."""
    rows = []
    for prompt, answer in rng.sample(pool, batch):
        cut = rng.randint(0, len(answer) - 1)
        rest = answer[cut:]
        if refine:
            R = rng.randint(1, cfg.refine_max)
            rest = rest[:R]
            w = [1.01 ** (R - i) for i in range(1, len(rest) + 1)]
        else:
            w = [1.0] * len(rest)
        rows.append((prompt + answer[:cut], rest, w))
    width = max(len(p) for p, _, _ in rows)
    span_len = max(len(r) for _, r, _ in rows)
    L = width + span_len
    ids = torch.full((batch, L), tok.pad_token_id)
    keep = torch.zeros(batch, L, dtype=torch.bool)
    scored = torch.zeros(batch, L, dtype=torch.bool)
    weight = torch.zeros(batch, L)
    for b, (ctx, rest, w) in enumerate(rows):  # once per sample, while building the batch
        start = width - len(ctx)
        ids[b, start:width + len(rest)] = torch.tensor(ctx + rest)
        keep[b, start:width + len(rest)] = True
        scored[b, width:width + len(rest)] = True
        weight[b, width:width + len(rest)] = torch.tensor(w)
    return ids, keep, scored, weight


def drafter_loss(model, batch, tok, gen, refine: bool, floor: float = 0.0) -> torch.Tensor:
    ids, keep, scored, weight = batch
    B, L = ids.shape
    t = torch.ones(B, 1) if refine else draw_t(B, gen, floor)
    masked = scored & (torch.rand(B, L, generator=gen) < t)
    positions = row_positions(keep)
    logits = model(ids.masked_fill(masked, tok.mask_token_id), positions=positions, attention_mask=keep).logits
    ce = F.cross_entropy(logits.flatten(0, 1), ids.flatten(), reduction="none").view(B, L)
    return ((ce * masked * weight / t).sum(1) / scored.sum(1).clamp_min(1)).mean()


def progress_of(cfg: SpecTrainConfig, step: int, elapsed: float) -> float:
    """Training progress in [0, 1]: by steps, or by wall-clock time when a budget in minutes is set."""
    by_steps = step / cfg.steps
    return max(by_steps, elapsed / (60 * cfg.minutes)) if cfg.minutes > 0 else by_steps


def train(cfg: SpecTrainConfig, out_dir: Path, resume: bool = True) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    model = build(cfg, tok)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    rng, gen, step, elapsed = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed), 0, 0.0
    ckpt = out_dir / "train_state.ckpt.pt"
    pool_file = out_dir / "target_pool.json"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)  # our own training state, written below
        budget = ("steps", "minutes")  # may grow on resume: training continues with a longer schedule
        if {k: v for k, v in state["config"].items() if k not in budget} != \
                {k: v for k, v in asdict(cfg).items() if k not in budget}:
            raise ValueError(f"{ckpt} was written with {state['config']}, not {asdict(cfg)}; use a new --out "
                             "(only --steps and --minutes may change on resume)")
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"])
        rng.setstate(state["rng"]); gen.set_state(state["gen"]); step, elapsed = state["step"], state["elapsed"]
    pool = None
    if cfg.kind == "drafter":
        if not pool_file.is_file():
            pool_file.write_text(json.dumps(target_pool(cfg, tok, random.Random(cfg.seed + 1))))
        pool = [tuple(p) for p in json.loads(pool_file.read_text())]
    model.train()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.kind}", unit="step")
    start = time.perf_counter() - elapsed
    progress = progress_of(cfg, step, elapsed)
    while progress < 1.0:
        for group in opt.param_groups:  # warm-up, then cosine to 5% over steps or over the time budget
            group["lr"] = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * progress)))
        if cfg.kind == "drafter":
            refine = progress >= 1 - cfg.refine_fraction
            loss = drafter_loss(model, drafter_batch(pool, rng, tok, cfg.batch_size, refine, cfg), tok, gen, refine,
                                mask_floor(cfg, step))
        else:
            x, keep, width = draw_batch(rng, tok, cfg.batch_size, curriculum_tasks(cfg, step))
            loss = ar_loss(model, x, keep, width, tok, gen) if cfg.kind == "ar" else \
                sdar_loss(model, x, keep, width, tok, gen, cfg, mask_floor(cfg, step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); step += 1
        bar.update(1); bar.set_postfix(loss=f"{loss.item():.3f}")
        progress = progress_of(cfg, step, time.perf_counter() - start)
        if step % cfg.save_every == 0 or progress >= 1.0:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"config": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                        "rng": rng.getstate(), "gen": gen.get_state(), "step": step,
                        "elapsed": time.perf_counter() - start, "loss": loss.item()}, tmp)
            tmp.replace(ckpt)  # atomic: an interrupted save never corrupts the last good state
    bar.close()
    meta = {"config": asdict(cfg), "steps_done": step, "gen_length": GEN_LENGTH, "train_seconds": round(time.perf_counter() - start, 1),
            "final_loss": loss.item() if cfg.steps else None, "torch": torch.__version__,
            "parameters": sum(p.numel() for p in model.parameters())}
    export(model.eval(), tok, out_dir, meta)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(SpecTrainConfig()).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    parser.add_argument("--install", type=str, default=None, help="copy the result into the package zoo as NAME")
    args = vars(parser.parse_args(argv))
    out, resume, install = args.pop("out"), not args.pop("no_resume"), args.pop("install")
    result = train(SpecTrainConfig(**args), out, resume)
    if install:
        dest = Path(__file__).resolve().parent / install
        dest.mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json"):
            shutil.copy2(result / name, dest / name)


if __name__ == "__main__":
    main()
