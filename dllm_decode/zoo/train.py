"""Train the embedded tiny diffusion LMs on the task suite, on CPU.

Objective (LLaDA SFT recipe): draw t ~ U(eps, 1) per sample, mask each response token (the answer and
its EOS padding up to the canvas) with probability t, never the prompt, and minimise the cross-entropy
on masked tokens weighted by 1/t, averaged over the response length. Dream-architecture models read the
prediction for position i from hidden state i-1 (shifted logits), exactly as at decoding time.
Prompts are left-padded with an attention mask and per-row positions, the layout the decoder uses.

    python -m dllm_decode.zoo.train --arch llada --out zoo_runs/tiny-llada      # resumes if interrupted
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
from safetensors.torch import save_file
from tqdm import tqdm

from ..evals.tasks import ALL_TASKS, PUZZLE_TASKS, random_sample
from ..evals.tasks.formats import answer_text
from ..models import DreamConfig, DreamModel, LLaDAConfig, LLaDAModelLM
from ..models.layers import shift_logits
from ..models.loading import read_state_dict, resolve_path
from .tokenizer import build_tokenizer

GEN_LENGTH = 32  # canvas of the tiny models: the longest answer (7 names) is 22 tokens
PUZZLE_WEIGHT = 0.5  # puzzles are sampled half as often as each waiting-line task
# Tasks a position-only copy circuit cannot solve: they need content lookup (which last name follows this
# first name), exclusion of names already written, or a learned order of last names.
HARD_TASKS = ("sort", "shuffle", "insert_random", "remove_random", "replace_random")
# How the tasks with several valid answers are supervised: "sampled" trains on the generator's answer (uniform
# over the valid ones); "two-way" on one of two fixed answers, 50/50 (`two_way_reference`).
ANSWER_STYLES = ("sampled", "two-way")


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "llada"
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 6
    n_kv_heads: int = 6
    mlp: int = 512
    steps: int = 3000
    batch_size: int = 64
    lr: float = 2e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 1
    save_every: int = 200
    stop_at: int = 0  # 0: train all `steps`; else stop there (the cosine schedule still spans `steps`)
    anneal: int = 0  # the last `anneal` steps before stopping decay the learning rate linearly to 0
    copy_warmup: int = 0  # the first `copy_warmup` steps train on the copy task only (task curriculum)
    ar_warmup: int = 0  # steps from copy_warmup to here train in left-to-right order (Dream: causal next-token loss)
    hard_first: int = 0  # until this step (after copy_warmup) batches hold only `hard_tasks`
    hard_tasks: str = ",".join(HARD_TASKS)  # comma-separated task names of the hard-first stage
    ar_mix: float = 0.0  # after the left-to-right stage, this share of batches keeps training in that order
    mask_warmup: int = 1000  # masking-rate curriculum: t = 1 for the first half, floor falls to 0 by the end
    hard_weight: float = 1.0  # sampling weight of the tasks with several answers or a learned order (HARD_TASKS)
    init_from: str = ""  # a zoo name or model directory whose weights start the run (a second training stage)
    answers: str = "sampled"  # one of ANSWER_STYLES: the answer distribution of the tasks with several answers
    block_mix: float = 0.0  # once the mask floor is below 1, this share of rows is masked as in blocked decoding
    block_sizes: str = "4,8,16"  # comma-separated block lengths those rows draw from (each divides the canvas)

    def __post_init__(self) -> None:
        stage_tasks(self.hard_tasks)  # a misspelt task fails at construction, not at step `copy_warmup`
        check_answers(self.answers)
        if not 0.0 <= self.block_mix <= 1.0:
            raise ValueError(f"`block_mix` must be in [0, 1], got {self.block_mix}")
        parse_block_sizes(self.block_sizes)


def parse_block_sizes(sizes: str) -> tuple[int, ...]:
    """Block lengths of `block_mix` rows; each must divide the canvas so blocks tile it as at decoding."""
    try:
        values = tuple(int(v) for v in sizes.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(v <= 0 or GEN_LENGTH % v for v in values):
        raise ValueError(f"`block_sizes` must be comma-separated divisors of the canvas ({GEN_LENGTH}), got {sizes!r}")
    return values


def check_answers(answers: str) -> None:
    if answers not in ANSWER_STYLES:
        raise ValueError(f"`answers` must be one of {list(ANSWER_STYLES)}, got {answers!r}")


# Options that only change steps >= stop_at - anneal: a checkpoint from before then resumes under them.
LATE_OPTIONS = ("stop_at", "anneal")


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Warm-up, cosine over `steps` (floor 5%), then an optional linear anneal to 0 ending at `stop_at`."""
    def cosine(s: int) -> float:
        return min(1.0, (s + 1) / cfg.warmup) * max(0.05, 0.5 * (1 + math.cos(math.pi * s / cfg.steps)))
    end = cfg.stop_at or cfg.steps
    start = end - cfg.anneal
    if cfg.anneal and step >= start:
        return cosine(start) * max(0.0, (end - step) / cfg.anneal)
    return cosine(step)


def mask_floor(cfg: TrainConfig, step: int) -> float:  # also takes train_spec.SpecTrainConfig
    """Lowest masking rate drawn at `step`: 1 (whole answer masked) for the first half of `mask_warmup`.

    Why: with t ~ U(0, 1) from the start, the tiny models sit on the name-prior plateau (loss ~1.3) for
    thousands of steps: visible answer tokens give a shortcut that never requires reading the prompt.
    Fully masked answers force the copy-from-prompt circuit first (measured: copy task, 2 layers, the
    loss leaves the plateau at ~400 steps with t = 1 and not within 1000 steps with t ~ U(0, 1)).
    """
    if cfg.mask_warmup <= 0:
        return 0.0
    return min(1.0, max(0.0, 2.0 - 2.0 * step / cfg.mask_warmup))


def draw_t(batch: int, gen: torch.Generator, floor: float = 0.0) -> torch.Tensor:
    """Per-row masking rate t ~ U(max(floor, 1e-3), 1), [batch, 1]; the 1e-3 keeps the 1/t weight finite."""
    low = max(floor, 1e-3)
    return low + (1.0 - low) * torch.rand(batch, 1, generator=gen)


def curriculum_tasks(cfg: TrainConfig, step: int) -> tuple[str, ...]:  # also takes train_spec.SpecTrainConfig
    """The tasks a batch is drawn from: copy only during `copy_warmup`, `hard_tasks` only until
    `hard_first`, then the whole suite."""
    if step < cfg.copy_warmup:
        return ("copy",)
    return stage_tasks(cfg.hard_tasks) if step < cfg.hard_first else ALL_TASKS  # checked at construction


def stage_tasks(names: str) -> tuple[str, ...]:
    """Parse a comma-separated task list; unknown names are an error, not an empty stage."""
    tasks = tuple(t.strip() for t in names.split(",") if t.strip())
    unknown = sorted(set(tasks) - set(ALL_TASKS))
    if not tasks or unknown:
        raise ValueError(f"`hard_tasks` must name tasks among {list(ALL_TASKS)}, got {names!r}")
    return tasks


def build_model(cfg: TrainConfig, vocab_size: int, mask_id: int, eos_id: int, pad_id: int):
    if cfg.arch == "llada":
        config = LLaDAConfig(d_model=cfg.d_model, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads, n_layers=cfg.n_layers,
                             mlp_hidden_size=cfg.mlp, vocab_size=vocab_size, embedding_size=vocab_size,
                             max_sequence_length=128, rope_theta=10000.0, mask_token_id=mask_id,
                             eos_token_id=eos_id, pad_token_id=pad_id)
        return LLaDAModelLM(config)
    if cfg.arch == "dream":
        config = DreamConfig(vocab_size=vocab_size, hidden_size=cfg.d_model, intermediate_size=cfg.mlp,
                             num_hidden_layers=cfg.n_layers, num_attention_heads=cfg.n_heads,
                             num_key_value_heads=cfg.n_kv_heads, max_position_embeddings=128, rope_theta=10000.0,
                             mask_token_id=mask_id, pad_token_id=pad_id, bos_token_id=pad_id, eos_token_id=eos_id)
        return DreamModel(config)
    raise ValueError(f"`arch` must be one of ['llada', 'dream'], got {cfg.arch!r}")


def task_weight(task: str, hard_weight: float = 1.0) -> float:
    return PUZZLE_WEIGHT if task in PUZZLE_TASKS else hard_weight if task in HARD_TASKS else 1.0


def two_way_reference(task: str, data: dict, first: bool) -> list[str] | None:
    """For a task with several valid answers, one of two fixed ones (None for the other tasks).

    Why: with answers drawn uniformly (n! shuffles, n + 1 insert places) the valid outputs share no
    position-wise pattern, and the 1-2 M-parameter models never learnt them (52-57% in every recipe up to
    2026-12-03). Two answers keep what ParallelBench measures, several valid outputs whose per-position
    marginals mix when decoded in parallel, while making each one a positional copy: shuffle rotates
    the list by one (left or right), the random edits act at its first or last place. Measured: it does
    not help (50.5% / 51.0% for LLaDA / Dream, docs/results/zoo.md); kept so that run can be repeated."""
    if task not in ("shuffle", "insert_random", "remove_random", "replace_random"):
        return None
    names = data["names"]
    if task == "shuffle":
        return names[1:] + names[:1] if first else names[-1:] + names[:-1]
    if task == "insert_random":
        return [data["item"], *names] if first else [*names, data["item"]]
    if task == "remove_random":
        return names[1:] if first else names[:-1]
    return [data["item"], *names[1:]] if first else [*names[:-1], data["item"]]  # replace_random


def draw_batch(rng: random.Random, tokenizer, batch_size: int, tasks: tuple[str, ...] = ALL_TASKS,
               hard_weight: float = 1.0, answers: str = "sampled") -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded [prompt | answer + EOS fill] rows, the attention mask, and the padded prompt width."""
    check_answers(answers)
    weights = [task_weight(t, hard_weight) for t in tasks]
    prompts, answer_rows = [], []
    for _ in range(batch_size):
        sample = random_sample(rng, rng.choices(tasks, weights)[0], rng.randint(3, 6))
        prompts.append(tokenizer(sample.prompt).input_ids)
        text = sample.answer
        if answers == "two-way" and (ref := two_way_reference(sample.task, sample.data, rng.random() < 0.5)):
            text = answer_text(sample.task, {"reference": ref}, "compact")
        answer = tokenizer(text).input_ids
        answer_rows.append(answer + [tokenizer.eos_token_id] * (GEN_LENGTH - len(answer)))
    width = max(map(len, prompts))
    rows = [[tokenizer.pad_token_id] * (width - len(p)) + p + a for p, a in zip(prompts, answer_rows)]
    keep = [[False] * (width - len(p)) + [True] * (len(p) + GEN_LENGTH) for p in prompts]
    return torch.tensor(rows), torch.tensor(keep), width


def row_positions(keep: torch.Tensor) -> torch.Tensor:
    """RoPE positions of left-padded rows: 0 at each row's first real token (pads clamp to 0)."""
    return (keep.long().cumsum(1) - 1).clamp_min(0)


def blocked_rows(batch: int, gen: torch.Generator, share: float, sizes: tuple[int, ...]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Which rows are masked as in blocked decoding, and each row's current block as [start, end) columns.

    Why: semi-autoregressive decoding shows the model a clean answer prefix, a partly masked block and a
    fully masked rest; whole-canvas masks (t ~ U(0, 1) per token) almost never draw that view, and the
    2026-12-02 tiny-llada, trained on them only, scores 36% in blocks of 8 against 53% in one block.
    This is block diffusion's training view (BD3-LM) kept bidirectional: the later blocks stay visible
    as [MASK]s, as they are at decoding time."""
    chosen = torch.rand(batch, generator=gen) < share
    size = torch.tensor(sizes)[torch.randint(len(sizes), (batch,), generator=gen)]
    start = (torch.rand(batch, generator=gen) * (GEN_LENGTH // size)).long() * size
    return chosen, start, start + size


def diffusion_loss(model, x: torch.Tensor, keep: torch.Tensor, width: int, mask_id: int, shift: int,
                   gen: torch.Generator, floor: float = 0.0, block_mix: float = 0.0,
                   block_sizes: tuple[int, ...] = (8,)) -> torch.Tensor:
    """1/t-weighted masked cross-entropy with t ~ U(max(floor, 1e-3), 1) per row.

    With `block_mix`, that share of rows keeps the answer before its current block clean, masks the
    block's tokens with probability t and every later token; their loss is the block's (the tokens the
    decoder would commit there), per block token, as the other rows' is per canvas token."""
    B, L = x.shape
    t = draw_t(B, gen, floor)
    masked = torch.zeros_like(keep)
    masked[:, width:] = torch.rand(B, L - width, generator=gen) < t
    scored, per_token = masked, torch.full((B, 1), float(GEN_LENGTH))
    if block_mix > 0:
        chosen, start, end = blocked_rows(B, gen, block_mix, block_sizes)
        column = torch.arange(L - width)
        current = (column >= start[:, None]) & (column < end[:, None])
        answer = masked[:, width:]
        blocked = (answer & current) | (column >= end[:, None])
        masked[:, width:] = torch.where(chosen[:, None], blocked, answer)  # `where` reads `answer` first
        scored = masked.clone()
        scored[:, width:] &= ~chosen[:, None] | current
        per_token = torch.where(chosen, (end - start).float(), float(GEN_LENGTH))[:, None]
    noisy = x.masked_fill(masked, mask_id)
    logits = model(noisy, positions=row_positions(keep), attention_mask=keep).logits
    if shift:
        logits = shift_logits(logits)
    ce = F.cross_entropy(logits.flatten(0, 1), x.flatten(), reduction="none").view(B, L)
    return ((ce * scored / t).sum(1, keepdim=True) / per_token).mean()


def autoregressive_loss(model, x: torch.Tensor, keep: torch.Tensor, width: int) -> torch.Tensor:
    """Next-token loss on the answer under a causal mask: with shifted logits this is plain AR training,
    the starting point of Dream's recipe. Each row also attends to itself so left pads never see no key."""
    L = x.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = (keep[:, None, None, :] & causal) | torch.eye(L, dtype=torch.bool)
    logits = model(x, positions=row_positions(keep), attention_mask=mask).logits
    logits = shift_logits(logits)
    return F.cross_entropy(logits[:, width:].flatten(0, 1), x[:, width:].flatten())


def left_to_right_mask(keep: torch.Tensor, width: int) -> torch.Tensor:
    """[B, 1, L+G, L+G] attention of the two-stream layout [prompt | clean answer | masked answer].

    Prompt rows see the prompt; clean answer row i sees the prompt and clean rows <= i; masked row j sees
    the prompt, clean rows < j and itself, so nothing it reads depends on answer tokens >= j."""
    B, L = keep.shape
    idx = torch.arange(L + L - width)
    prompt, clean, noisy = idx < width, (idx >= width) & (idx < L), idx >= L
    col = torch.where(noisy, idx - L, idx - width)  # the answer column a clean or masked row stands for
    earlier = col[None, :] < col[:, None]  # [query, key]
    mask = prompt[None, :].expand(len(idx), -1)  # every row reads the prompt
    mask = mask | clean[:, None] & clean[None, :] & (col[None, :] <= col[:, None])
    mask = mask | noisy[:, None] & clean[None, :] & earlier
    diagonal = torch.eye(len(idx), dtype=torch.bool)
    real = torch.cat([keep, keep[:, width:]], 1)  # left pads of the prompt are never keys
    return ((mask | diagonal)[None] & real[:, None, :] | diagonal[None])[:, None]


def left_to_right_loss(model, x: torch.Tensor, keep: torch.Tensor, width: int, mask_id: int) -> torch.Tensor:
    """The unshifted (LLaDA) analogue of AR training, teacher-forced in one forward: every answer column j
    is predicted at a [MASK] that reads the prompt and the clean answer left of j (`left_to_right_mask`),
    i.e. the view of left-to-right decoding at step j, with its own RoPE position. Why not a random cut:
    a cut supervises one next-token prediction per row, this supervises all G (BD3-LM's two-stream
    training with blocks of one token)."""
    L = x.shape[1]
    G = L - width
    noisy = torch.full((x.shape[0], G), mask_id, dtype=x.dtype)
    positions = row_positions(keep)
    logits = model(torch.cat([x, noisy], 1), positions=torch.cat([positions, positions[:, width:]], 1),
                   attention_mask=left_to_right_mask(keep, width)).logits[:, L:]
    return F.cross_entropy(logits.flatten(0, 1), x[:, width:].flatten())


def load_initial_weights(model, source: str) -> None:
    """Start from another run's exported weights; the architecture must match exactly (strict load)."""
    state = {k: v.float() for k, v in read_state_dict(resolve_path(source)).items()}
    own = model.state_dict()
    wrong = sorted(k for k in state.keys() & own.keys() if state[k].shape != own[k].shape)
    missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
    if wrong or missing or unexpected:
        raise ValueError(f"--init-from {source!r} does not match this architecture: other shapes {wrong[:3]}, "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    model.load_state_dict(state)


def export(model, tokenizer, out_dir: Path, meta: dict) -> None:
    """Write the shippable checkpoint: fp16 safetensors (a few MB), config.json, tokenizer files."""
    model.config.save_pretrained(str(out_dir))
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(out_dir))
    (out_dir / "training.json").write_text(json.dumps(meta, indent=2))


def command_line(cfg: TrainConfig) -> str:
    """The documented command that retrains this configuration from scratch."""
    changed = [f"--{k.replace('_', '-')} {v}" for k, v in asdict(cfg).items() if v != getattr(TrainConfig(), k)]
    return " ".join(["python -m dllm_decode.zoo.train", *changed, "--out DIR"])


def train(cfg: TrainConfig, out_dir: Path, resume: bool = True) -> Path:
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(cfg, len(tokenizer), tokenizer.mask_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    rng, gen, step, elapsed = random.Random(cfg.seed), torch.Generator().manual_seed(cfg.seed), 0, 0.0
    ckpt = out_dir / "train_state.ckpt.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)  # our own training state, written below
        early = {k: v for k, v in asdict(cfg).items() if k not in LATE_OPTIONS}
        saved = {k: v for k, v in state["config"].items() if k not in LATE_OPTIONS}
        if saved != early or state["step"] > (cfg.stop_at or cfg.steps) - cfg.anneal:
            raise ValueError(f"{ckpt} was written with {state['config']}, not {asdict(cfg)}; use a new --out")
        model.load_state_dict(state["model"]); opt.load_state_dict(state["opt"]); sched.load_state_dict(state["sched"])
        rng.setstate(state["rng"]); gen.set_state(state["gen"]); step, elapsed = state["step"], state["elapsed"]
    elif cfg.init_from:  # a resumed run already holds its own weights: the source is read only at the start
        load_initial_weights(model, cfg.init_from)
    shift = 1 if cfg.arch == "dream" else 0
    model.train()
    end = cfg.stop_at or cfg.steps
    block_sizes = parse_block_sizes(cfg.block_sizes)
    bar = tqdm(total=end, initial=step, desc=f"train {cfg.arch}", unit="step")
    start = time.perf_counter() - elapsed
    while step < end:
        x, keep, width = draw_batch(rng, tokenizer, cfg.batch_size, curriculum_tasks(cfg, step), cfg.hard_weight,
                                    cfg.answers)
        ordered = cfg.copy_warmup <= step < cfg.ar_warmup  # the copy warm-up stays masked diffusion
        if cfg.ar_mix and step >= cfg.ar_warmup:  # rng drawn only then, so other recipes keep their data stream
            ordered = rng.random() < cfg.ar_mix
        if ordered and shift:
            loss = autoregressive_loss(model, x, keep, width)
        elif ordered:
            loss = left_to_right_loss(model, x, keep, width, tokenizer.mask_token_id)
        else:
            floor = mask_floor(cfg, step)  # blocked rows start once answers may be partly visible
            loss = diffusion_loss(model, x, keep, width, tokenizer.mask_token_id, shift, gen, floor,
                                  cfg.block_mix if floor < 1 else 0.0, block_sizes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); sched.step(); step += 1
        bar.update(1); bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % cfg.save_every == 0 or step == end:
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"config": asdict(cfg), "model": model.state_dict(), "opt": opt.state_dict(),
                        "sched": sched.state_dict(), "rng": rng.getstate(), "gen": gen.get_state(), "step": step,
                        "elapsed": time.perf_counter() - start, "loss": loss.item()}, tmp)
            tmp.replace(ckpt)  # atomic: an interrupted save never corrupts the last good state
    bar.close()
    meta = {"config": asdict(cfg), "gen_length": GEN_LENGTH, "train_seconds": round(time.perf_counter() - start, 1),
            "parameters": sum(p.numel() for p in model.parameters()), "command": command_line(cfg),
            "final_loss": loss.item() if step else None, "torch": torch.__version__}
    export(model.eval(), tokenizer, out_dir, meta)
    return out_dir


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = TrainConfig()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    parser.add_argument("--install", type=str, default=None, help="copy the result into the package zoo as NAME")
    args = vars(parser.parse_args(argv))
    out, resume, install = args.pop("out"), not args.pop("no_resume"), args.pop("install")
    result = train(TrainConfig(**args), out, resume)
    if install:
        dest = Path(__file__).resolve().parent / install
        dest.mkdir(exist_ok=True)
        for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training.json"):
            shutil.copy2(result / name, dest / name)


if __name__ == "__main__":
    main()
