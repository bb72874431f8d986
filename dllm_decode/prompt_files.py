"""Prompts for `dllm-decode generate` from arguments, stdin (`-`) or a file: plain lines or JSONL.

A file whose first non-blank line starts with `{` is JSONL: each line an object with `"prompt"` (text)
or `"input_ids"` (a list of token ids, so checkpoints without a tokenizer work from the command line).
Otherwise every non-blank line is one text prompt. No torch here: the CLI parses before loading.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, TextIO

Prompt = str | list[int]


def parse_lines(lines: Iterable[str], source: str) -> list[Prompt]:
    """Text lines or JSONL records -> prompts; `source` names the input in error messages."""
    rows = [(n, line.rstrip("\n")) for n, line in enumerate(lines, 1) if line.strip()]
    if not rows or not rows[0][1].lstrip().startswith("{"):
        return [line for _, line in rows]
    return [_record(line, f"{source} line {n}") for n, line in rows]


def _record(line: str, where: str) -> Prompt:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: a JSONL prompt must be one JSON object per line, got {line[:60]!r} ({err.msg}); "
                         'write {"prompt": "..."} or {"input_ids": [1, 2, 3]}') from None
    keys = set(obj) & {"prompt", "input_ids"} if isinstance(obj, dict) else set()
    if len(keys) != 1:
        raise ValueError(f"{where}: a JSONL prompt must have exactly one of `prompt` or `input_ids`, got "
                         f"{line[:60]!r}; e.g. {{\"input_ids\": [5, 17, 9]}}")
    value = obj[keys.pop()]
    if "prompt" in obj:
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{where}: `prompt` must be a non-empty string, got {value!r}")
        return value
    if not isinstance(value, list) or not value or not all(isinstance(i, int) and not isinstance(i, bool)
                                                           and i >= 0 for i in value):
        raise ValueError(f"{where}: `input_ids` must be a non-empty list of token ids (ints >= 0), got "
                         f"{str(value)[:60]}")
    return value


def gather_prompts(arguments: list[str], prompts_file: str | None, stdin: TextIO) -> list[Prompt]:
    """Positional prompts in order, `-` replaced by stdin's lines, then the `--prompts` file's."""
    out: list[Prompt] = []
    for arg in arguments:
        out += parse_lines(stdin, "stdin") if arg == "-" else [arg]
    if prompts_file is not None:
        path = Path(prompts_file)
        if not path.is_file():
            raise ValueError(f"`--prompts` must name a file of prompts, got {prompts_file!r}, which does not exist")
        out += parse_lines(path.read_text().splitlines(), str(path))
    if not out:
        raise ValueError("`generate` needs at least one prompt, got none; pass text, `-` for stdin (one per line), "
                         "or --prompts FILE")
    return out
