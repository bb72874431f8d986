"""Does a model read the answer tokens it has already committed? A probe for the zoo's failure mode.

Shuffle (and every random-edit task) is only solvable one token at a time if the prediction at a
masked last name follows the first name committed just before it: "Diana" in the answer means
"Nichols", the name after "Diana" in the prompt. The probe shows each model a shuffle answer with every
first name visible and every last name masked and counts the last names it gets right (`visible`),
against the same canvas with the first names masked too (`blind`, what prompt-position copying
alone gives). A model that reads its committed tokens scores `visible` near 1; the shipped tiny
models score `visible` ~ `blind` ~ 1/n (measured: tiny-llada 0.23, see its card).

The second probe, `exclusion`, asks what shuffle needs next: with the first j names of an answer
committed and the rest masked, is the prediction at the next first-name slot a prompt first name that
is not yet written (`unused`), or one already written (`reused`, what makes "[ Eva Hamilton , Eva
Hamilton , ...]")? A model choosing uniformly among the prompt's first names reuses about j / n.

    python -m dllm_decode.zoo.probe tiny-llada tiny-dream
    python -m dllm_decode.zoo.probe RUN/train_state.ckpt.pt --causal --decode   # a training stage

`--causal` asks both questions in a model's autoregressive mode (teacher-forced under a causal mask: what
an AR training stage teaches), and `--decode` scores greedy left-to-right decoding on the tasks (causal
for shifted-logit models, next-masked-position for LLaDA), so each stage of a staged recipe can be probed
in the mode it trains.
"""
from __future__ import annotations

import argparse
import random
from dataclasses import dataclass

import torch

from ..evals.tasks import random_sample, score
from ..models.adapter import DiffusionLM, wrap
from ..models.loading import load_model
from .tokenizer import build_tokenizer
from .train import GEN_LENGTH, HARD_TASKS, TrainConfig, build_model


def causal_mask(length: int) -> torch.Tensor:
    """[1, 1, L, L] lower-triangular attention: each position sees itself and what is left of it."""
    return torch.ones(length, length, dtype=torch.bool).tril()[None, None]


def probe_logits(model: DiffusionLM, ids: list[int] | torch.Tensor, causal: bool) -> torch.Tensor:
    """Logits [L, V] of one unpadded row, bidirectional or under the causal mask."""
    x = torch.as_tensor(ids)[None]
    return model(x, attention_mask=causal_mask(x.shape[1]) if causal else None)[0]


@dataclass(frozen=True)
class ProbeResult:
    visible: float  # last-name accuracy with the answer's first names visible
    blind: float  # the same with the first names masked too
    n: int  # last names scored


def last_name_slots(answer_words: list[str]) -> list[int]:
    """Answer positions holding a last name: a name token right after another name token."""
    structural = {"[", "]", ","}
    return [i for i in range(1, len(answer_words))
            if answer_words[i] not in structural and answer_words[i - 1] not in structural]


@torch.no_grad()
def answer_conditioning(model: DiffusionLM, samples: int = 64, seed: int = 99, causal: bool = False) -> ProbeResult:
    tok = model.tokenizer
    rng = random.Random(seed)
    hits = {"visible": 0, "blind": 0}
    total = 0
    for _ in range(samples):
        sample = random_sample(rng, "shuffle", rng.randint(3, 6))
        prompt = tok(sample.prompt).input_ids
        answer = tok(sample.answer).input_ids
        canvas = torch.tensor(answer + [tok.eos_token_id] * (GEN_LENGTH - len(answer)))
        last = torch.tensor(last_name_slots(sample.answer.split()))
        first = last - 1
        for view, hidden in (("visible", last), ("blind", torch.cat([first, last]))):
            x = canvas.clone()
            x[hidden] = model.mask_id
            logits = probe_logits(model, torch.cat([torch.tensor(prompt), x]), causal)[len(prompt):]
            hits[view] += int((logits[last].argmax(-1) == canvas[last]).sum())
        total += len(last)
    return ProbeResult(hits["visible"] / total, hits["blind"] / total, total)


@dataclass(frozen=True)
class ExclusionResult:
    unused: float  # predictions that are a prompt first name not yet in the answer
    reused: float  # predictions that repeat a first name already in the answer
    n: int  # slots scored


@torch.no_grad()
def next_name_exclusion(model: DiffusionLM, samples: int = 100, seed: int = 7,
                        causal: bool = False) -> ExclusionResult:
    tok = model.tokenizer
    rng = random.Random(seed)
    unused = reused = 0
    for _ in range(samples):
        sample = random_sample(rng, "shuffle", rng.randint(3, 6))
        words = sample.answer.split()  # "[ F L , F L , ... ]"
        n = (len(words) - 1) // 3
        j = rng.randint(1, n - 1)
        firsts = [words[1 + 3 * i] for i in range(n)]
        prompt, answer = tok(sample.prompt).input_ids, tok(sample.answer).input_ids
        canvas = torch.tensor(answer + [tok.eos_token_id] * (GEN_LENGTH - len(answer)))
        slot = 1 + 3 * j
        canvas[slot:len(answer) - 1] = model.mask_id  # "]" and the EOS fill stay visible
        logits = probe_logits(model, torch.cat([torch.tensor(prompt), canvas]), causal)[len(prompt) + slot]
        word = tok.decode([int(logits.argmax())]).strip()
        unused += word in firsts[j:] and word not in firsts[:j]
        reused += word in firsts[:j]
    return ExclusionResult(unused / samples, reused / samples, samples)


@torch.no_grad()
def left_to_right_scores(model: DiffusionLM, tasks: tuple[str, ...] = HARD_TASKS, per_task: int = 40,
                         seed: int = 1234) -> dict[str, float]:
    """Task scores of greedy left-to-right decoding, one token per forward: under the causal mask for
    shifted-logit (Dream-style) models, else the first masked position of a fully masked canvas."""
    tok, rng = model.tokenizer, random.Random(seed)
    scores = {}
    for task in tasks:
        total = 0.0
        for _ in range(per_task):
            sample = random_sample(rng, task, rng.randint(3, 6))
            prompt = tok(sample.prompt).input_ids
            x = torch.tensor(prompt + [model.mask_id] * GEN_LENGTH)
            for col in range(len(prompt), len(x)):
                x[col] = probe_logits(model, x[: col + 1] if model.shift else x, bool(model.shift))[col].argmax()
                if int(x[col]) in model.eos_ids:
                    break
            total += score(sample, tok.decode(x[len(prompt): col + 1].tolist(), skip_special_tokens=True))
        scores[task] = total / per_task
    return scores


def load_any(name: str) -> DiffusionLM:
    """A zoo name or model directory, or a trainer's `train_state.ckpt.pt` (an unfinished stage)."""
    if not name.endswith(".pt"):
        return load_model(name)
    state = torch.load(name, weights_only=False)  # our own training state (zoo/train.py)
    cfg, tok = TrainConfig(**state["config"]), build_tokenizer()
    module = build_model(cfg, len(tok), tok.mask_token_id, tok.eos_token_id, tok.pad_token_id)
    module.load_state_dict(state["model"])
    print(f"{name}: step {state['step']}, loss {state['loss']:.3f}")
    return wrap(module.eval(), mask_id=tok.mask_token_id, eos_ids=(tok.eos_token_id,),
                shift=int(cfg.arch == "dream"), tokenizer=tok)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="zoo names, model directories or training checkpoints (*.pt)")
    parser.add_argument("--samples", type=int, default=64, help="shuffle answers for the lookup probe")
    parser.add_argument("--exclusion-samples", type=int, default=100, help="slots for the exclusion probe")
    parser.add_argument("--causal", action="store_true", help="ask both probes under a causal mask (AR mode)")
    parser.add_argument("--decode", type=int, default=0, metavar="N",
                        help="also score greedy left-to-right decoding on N samples of each hard task")
    args = parser.parse_args(argv)
    for name in args.models:
        model = load_any(name)
        if args.causal and not model.shift:
            raise SystemExit(f"--causal needs a shifted-logit (Dream-style) model; {name} predicts each position "
                             "in place, and its left-to-right mode is the probes' masked future already")
        result = answer_conditioning(model, args.samples, causal=args.causal)
        print(f"{name}: last names right with first names visible {result.visible:.3f}, "
              f"with them masked {result.blind:.3f} ({result.n} last names)")
        excl = next_name_exclusion(model, args.exclusion_samples, causal=args.causal)
        print(f"{name}: next first name unused {excl.unused:.3f}, already written {excl.reused:.3f} "
              f"({excl.n} slots)")
        if args.decode:
            ltr = left_to_right_scores(model, per_task=args.decode)
            print(f"{name}: left-to-right greedy " + ", ".join(f"{t} {v:.2f}" for t, v in ltr.items()))


if __name__ == "__main__":
    main()
