"""The exact denoiser for answer sets a user supplies: `load_oracle(answers=...)`.

`answers` maps each prompt to its valid answers (strings over the zoo's word-level vocabulary, words split
on spaces), or names a JSONL file of `{"prompt": "...", "answers": ["...", ...]}` lines. The answer
distribution of a prompt is uniform over its distinct answers, each followed by EOS to the canvas end, and
the logits are exact log-counts as for the task suite (`oracle.py`), so a user can measure what a decoding
policy loses on their own structured task. A row's prompt is recognised as the known prompt its real tokens
start with (one batched comparison against every known prompt); no prompt may be a prefix of another, or a
committed canvas could make a row read as the longer prompt.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


class AnswerSets:
    """Prompt token ids -> the answer table [A, G] (words, then EOS), and where each row's prompt ends: the
    interface of `answers.AnswerBook`."""

    def __init__(self, tokenizer: Any, eos_id: int, answers: Mapping[str, Any]) -> None:
        self.tokenizer, self.eos_id = tokenizer, eos_id
        self.vocab: dict[str, int] = tokenizer.get_vocab()
        self.sets: dict[tuple[int, ...], list[list[int]]] = {}
        if not isinstance(answers, Mapping) or not answers:
            raise ValueError(f"`answers` must be a non-empty mapping {{prompt: [valid answer, ...]}} or a JSONL path, "
                             f"got {type(answers).__name__} {answers!r:.80}")
        for prompt, valid in answers.items():
            if not isinstance(prompt, str) or isinstance(valid, str) or not isinstance(valid, (list, tuple)) \
                    or not valid or not all(isinstance(a, str) for a in valid):
                raise ValueError(f"`answers` must map each prompt string to a non-empty list of answer strings, got "
                                 f"{prompt!r}: {valid!r:.80}")
            key = tuple(self.ids(prompt, prompt))
            self.sets[key] = [list(a) for a in dict.fromkeys(tuple(self.ids(a, prompt)) for a in valid)]
        keys = sorted(self.sets, key=len)
        for i, short in enumerate(keys):
            longer = next((k for k in keys[i + 1:] if k[:len(short)] == short), None)
            if longer is not None:
                raise ValueError(f"`answers` prompts must not be prefixes of one another (a committed canvas "
                                 f"would read as the longer prompt), got {self.words(short)!r} and "
                                 f"{self.words(longer)!r}; end each prompt with a distinct word")
        width = max(len(k) for k in keys)
        self.known = torch.full((len(keys), width), -1, dtype=torch.long)  # [P, W], -1 past each prompt's end
        for p, key in enumerate(keys):
            self.known[p, :len(key)] = torch.tensor(key)
        self.lengths = torch.tensor([len(k) for k in keys])  # [P]

    def ids(self, text: str, prompt: str) -> list[int]:
        words = text.split()
        unknown = sorted({w for w in words if w not in self.vocab})
        if not words or unknown:
            raise ValueError(f"`answers` must use words of the zoo's word-level vocabulary "
                             f"(`dllm_decode.evals.tasks.compact_vocabulary()`), got {unknown or 'an empty string'} in "
                             f"{text!r} (prompt {prompt!r}); write them with the suite's names, digits and symbols")
        return [self.vocab[w] for w in words]

    def words(self, ids: tuple[int, ...]) -> str:
        return " ".join(self.tokenizer.convert_ids_to_tokens(list(ids)))

    def unreadable(self, words: str) -> str:
        return (f"the oracle has no answer set for the prompt {words!r}; `answers` must list every prompt that is "
                "decoded")

    def prompt_ends(self, ids: Tensor, seen: Tensor) -> Tensor:
        """The column [B] after the known prompt each row's real tokens start with; -1 where none does."""
        known, lengths = self.known.to(ids.device), self.lengths.to(ids.device)
        S = ids.shape[1]
        first = seen.float().argmax(1)  # [B]: each row's first real column (left padding before it)
        cols = first[:, None] + torch.arange(known.shape[1], device=ids.device)  # [B, W]
        readable = (cols < S) & seen.gather(1, cols.clamp(max=S - 1))  # a real column of this row
        window = ids.gather(1, cols.clamp(max=S - 1)).masked_fill(~readable, -2)  # -2 matches no token
        match = ((window[:, None, :] == known[None]) | (known[None] < 0)).all(-1)  # [B, P]
        length = torch.where(match, lengths[None], -1).max(1).values  # prompts are no prefixes: one match at most
        return torch.where(length >= 0, first.long() + length, -1)

    def answers(self, prompt: tuple[int, ...], gen_length: int) -> Tensor:
        found = self.sets[prompt]
        longest = max(len(a) for a in found)
        if longest > gen_length:
            raise ValueError(f"`gen_length` must be >= {longest} for the oracle to write the answers of "
                             f"{self.words(prompt)!r}, got {gen_length}")
        table = torch.full((len(found), gen_length), self.eos_id, dtype=torch.long)
        for a, answer in enumerate(found):  # once per prompt and batch, never in a decoding step
            table[a, :len(answer)] = torch.tensor(answer)
        return table


def read_answer_file(path: str | Path) -> dict[str, list[str]]:
    """A JSONL file of {"prompt": str, "answers": [str, ...]} lines -> the `answers` mapping."""
    answers: dict[str, list[str]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or set(row) != {"prompt", "answers"} or row["prompt"] in answers:
            raise ValueError(f"{path}:{number}: each line must be a JSON object "
                             f"{{\"prompt\": ..., \"answers\": [...]}} with a prompt not seen before, got "
                             f"{line[:80]!r}")
        answers[row["prompt"]] = row["answers"]
    return answers
