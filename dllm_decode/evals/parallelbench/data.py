"""Load a ParallelBench test split the user has: `<group>/<task>.jsonl` plus `<group>/task_config.yaml`.

The files carry no licence, so the package ships none; this reads a local copy. Each task's config entry
(key `<group>/<task>`) gives a `prompt` template and a `metric` name. A sample's chat turns follow the
authors' order: per in-context example a user turn (the template over the example's `input`) and an
assistant turn (the example's answer string, or its `example` field), then the sample's own user turn.
The template is `str.format` over the record's `input`, with a literal backslash-n turned into a newline.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks.common import TaskSample
from .scoring import METRICS, check_reference

CONFIG_FILE = "task_config.yaml"
PREFIX = "parallelbench:"


@dataclass(frozen=True)
class BenchSample(TaskSample):
    """One published record. `task` is `<group>/<task>`; `prompt` is the plain join of `messages` (what a
    model without a chat template receives); `answer` is the reference text (`example` for open tasks)."""

    messages: tuple[dict[str, str], ...] = ()
    metric: str = ""
    output_format: str | None = None
    source: str = ""  # "<file>:<line>", for error messages


@dataclass(frozen=True)
class BenchSuite:
    """The samples of every task whose metric the library implements, and the tasks it skipped."""

    root: Path
    samples: list[BenchSample]
    skipped: dict[str, str] = field(default_factory=dict)  # task -> its unknown metric

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(s.task for s in self.samples))


def plain_join(messages: tuple[dict[str, str], ...] | list[dict[str, str]]) -> str:
    """The documented rendering for a model without a chat template: `role: content` turns separated by a
    blank line, ending with an open `assistant:` turn."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"


def render_prompt(template: str, values: dict[str, Any], where: str) -> str:
    """The authors' rule: `str.format` over the record's `input`, then a literal backslash-n -> newline."""
    try:
        return template.format(**values).replace("\\n", "\n")
    except (KeyError, IndexError) as err:
        raise ValueError(f"{where}: `input` must hold every field of the task's prompt template, missing {err}; "
                         f"got fields {sorted(values)}") from None


def build_messages(template: str, record: dict[str, Any], where: str) -> tuple[dict[str, str], ...]:
    """ICL user/assistant pairs, then the sample's user turn."""
    turns: list[dict[str, str]] = []
    for i, example in enumerate(record["input"].get("icl_examples") or []):
        at = f"{where} (icl_examples[{i}])"
        _require(example, ("input", "answer"), at)
        answer = example["answer"]
        reply = answer if isinstance(answer, str) else answer.get("example") if isinstance(answer, dict) else None
        if not isinstance(reply, str):
            raise ValueError(f"{at}: `answer` must be a string or a dict with an `example` string, got {answer!r}")
        turns += [{"role": "user", "content": render_prompt(template, example["input"], at)},
                  {"role": "assistant", "content": reply}]
    turns.append({"role": "user", "content": render_prompt(template, record["input"], where)})
    return tuple(turns)


def _require(record: Any, fields: tuple[str, ...], where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    missing = [f for f in fields if f not in record]
    if missing:
        raise ValueError(f"{where}: a record must have the fields {list(fields)}, missing {missing}; "
                         "the published layout has `input`, `answer`, `output_format`, `metadata`")
    if not isinstance(record["input"], dict):
        raise ValueError(f"{where}: `input` must be a JSON object, got {record['input']!r}")


def read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, record) for each non-blank line, each checked, so errors name the file and line."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: each line must be one JSON record, got invalid JSON ({err.msg})") from None
        _require(record, ("input", "answer"), where)
        rows.append((number, record))
    if not rows:
        raise ValueError(f"`{path}` must hold at least one record, got an empty file")
    return rows


def read_table(path: Path, cache_dir: str | None) -> list[dict[str, Any]]:
    """The rows as the `datasets` library reads them (the authors' reader), in file order."""
    import datasets

    datasets.disable_progress_bars()
    try:
        table = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)
    except Exception as err:  # Arrow cannot unify the rows (e.g. `answer` a string here, a dict there)
        raise ValueError(f"{path}: the records must share one schema to load with `datasets`, got: {err}") from None
    return table.to_list()


def load_configs(group: Path) -> dict[str, dict[str, Any]]:
    import yaml

    path = group / CONFIG_FILE  # groups are found by this file, so it exists
    configs = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(configs, dict):
        raise ValueError(f"{path} must map `<group>/<task>` to a task config, got {type(configs).__name__}")
    return configs


def task_config(configs: dict[str, Any], task: str, source: Path) -> dict[str, Any]:
    config = configs.get(task)
    if not isinstance(config, dict) or not isinstance(config.get("prompt"), str) or "metric" not in config:
        raise ValueError(f"{source.parent / CONFIG_FILE} must give `{task}` a `prompt` template and a `metric`, "
                         f"got {config!r}")
    return config


def load_task(path: Path, task: str, config: dict[str, Any], cache_dir: str | None) -> list[BenchSample]:
    """Every record checked line by line first (errors name the line), then read with `datasets`."""
    checked = []
    for number, record in read_records(path):
        where = f"{path}:{number}"
        checked.append((where, record, build_messages(config["prompt"], record, where),
                        check_reference(config["metric"], record["answer"], where)))
    rows = read_table(path, cache_dir)
    samples = []
    for (where, record, messages, data), row in zip(checked, rows, strict=True):
        answer = record["answer"]  # the raw record: Arrow fills absent keys with None, the files do not
        samples.append(BenchSample(task=task, id=f"{task}:{where.rsplit(':', 1)[1]}", prompt=plain_join(messages),
                                   answer=answer if isinstance(answer, str) else str(answer.get("example", "")),
                                   data={**data, "metadata": row.get("metadata")}, messages=messages,
                                   metric=config["metric"], output_format=record.get("output_format"),
                                   source=where))
    return samples


def load_parallelbench(root: str | Path, *, cache_dir: str | None = None) -> BenchSuite:
    """Every `<group>/<task>.jsonl` under `root` (or `root` itself when it is one group directory).

    A task whose metric the library does not implement is listed in `skipped` with a warning, never scored.
    """
    root = Path(str(root).removeprefix(PREFIX)).expanduser()
    if not root.is_dir():
        raise ValueError(f"`parallelbench` path must be a directory in the published layout "
                         f"(<group>/<task>.jsonl + <group>/task_config.yaml), got {str(root)!r}")
    groups = [root] if (root / CONFIG_FILE).is_file() else sorted(p.parent for p in root.glob(f"*/{CONFIG_FILE}"))
    files = [f for g in groups for f in sorted(g.glob("*.jsonl")) if not f.name.startswith("_")]
    if not files:
        raise ValueError(f"`{root}` must hold <group>/<task>.jsonl files with a {CONFIG_FILE}, got none")
    configs = {group: load_configs(group) for group in groups}
    samples: list[BenchSample] = []
    skipped: dict[str, str] = {}
    for path in files:
        task = f"{path.parent.name}/{path.stem}"
        config = task_config(configs[path.parent], task, path)
        if config["metric"] not in METRICS:
            skipped[task] = str(config["metric"])
            warnings.warn(f"parallelbench: skipping {task}: its metric {config['metric']!r} is not implemented "
                          f"(implemented: {', '.join(sorted(METRICS))})", UserWarning, stacklevel=2)
            continue
        samples += load_task(path, task, config, cache_dir)
    return BenchSuite(root, samples, skipped)
