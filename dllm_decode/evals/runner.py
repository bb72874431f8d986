"""The eval runner: a grid of sampler configurations x a task suite, for one model, resumable.

Prompts of one task and one configuration are decoded together in batches; each finished batch is
appended to `RUN_DIR/records.jsonl` at once (see `records`), and `summary.json` is rewritten at the end.
Rerunning the same call skips every (config id, task, sample id) already on disk. Under `torchrun`
the batches are dealt to ranks (see `distributed`) and rank 0 writes everything.
"""
from __future__ import annotations

import dataclasses
import logging
import platform
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import transformers
from tqdm.auto import tqdm

from .. import __version__
from ..api import Sampler
from ..models.adapter import DiffusionLM
from . import distributed
from .grid import SamplerSpec
from .metrics import summarize
from .parallelbench import data as bench_data, inputs as bench_inputs, reference as bench_reference
from .parallelbench.scoring import grade
from .records import (RECORDS_FILE, SUMMARY_FILE, Key, append_lines, check_identity, config_id, exclusive,
                      prompt_hash, read_run, record_key, repair, weights_fingerprint, write_json)
from .tasks import FORMATS, SUITES, TaskSample, make_suite, score

log = logging.getLogger(__name__)

WALL_TIME_NOTE = "per-sample wall_time = wall time of its batch / batch size (decoding only, warm-up excluded)"


@dataclass(frozen=True)
class EvalSettings:
    """Which samples to draw and how to batch them. The seed is a held-out eval seed (training draws
    from other streams), so scores measure generalisation, not memorisation."""

    suite: str = "waiting-line"
    seed: int = 1234
    per_length: int = 25
    lengths: tuple[int, ...] = (3, 4, 5, 6)
    fmt: str = "compact"
    gen_length: int = 32
    batch_size: int = 32
    infill: bool = False  # ParallelBench only: the canvas starts from each record's `output_format`
    slot_tokens: int = 1  # infill: mask tokens per `[MASK]` slot (1 in the authors' code)

    def __post_init__(self) -> None:
        bench = self.suite.startswith(bench_data.PREFIX) if isinstance(self.suite, str) else False
        if not bench and self.suite not in SUITES:
            raise ValueError(f"`suite` must be one of {sorted(SUITES)} or parallelbench:PATH (a directory of the "
                             f"published test files), got {self.suite!r}")
        if self.infill and not bench:
            raise ValueError(f"`infill` needs a ParallelBench suite (parallelbench:PATH), got suite {self.suite!r}")
        if self.slot_tokens != 1 and not self.infill:
            raise ValueError(f"`slot_tokens` only applies with `infill=True`, got {self.slot_tokens!r} without it")
        if self.fmt not in FORMATS:
            raise ValueError(f"`fmt` must be one of {list(FORMATS)}, got {self.fmt!r}")
        for name in ("per_length", "gen_length", "batch_size", "slot_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        object.__setattr__(self, "lengths", tuple(self.lengths))  # lists from JSON/CLI compare equal to tuples

    def samples(self) -> list[TaskSample]:
        return self.load()[0]

    def load(self) -> tuple[list[TaskSample], dict[str, Any]]:
        """(samples, header fields of the suite): a ParallelBench directory lists the tasks it skipped."""
        if self.suite.startswith(bench_data.PREFIX):
            bench = bench_data.load_parallelbench(self.suite)
            return list(bench.samples), {"parallelbench_skipped": bench.skipped}
        return make_suite(self.suite, seed=self.seed, per_length=self.per_length, lengths=self.lengths,
                          fmt=self.fmt), {}


@dataclass
class Batch:
    spec: SamplerSpec
    sampler: Sampler
    config_id: str
    samples: list[TaskSample]
    infill: bool = False
    slot_tokens: int = 1


def run_header(model: DiffusionLM, model_id: str, settings: EvalSettings, world_size: int) -> dict[str, Any]:
    return {"type": "header", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "model": model_id,
            "weights": weights_fingerprint(model.module),
            "model_class": type(model.module).__name__, "dllm_decode": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "python": platform.python_version(),
            "device": str(model.device), "dtype": str(model.dtype).replace("torch.", ""),
            "threads": torch.get_num_threads(), "world_size": world_size, "argv": sys.argv,
            "wall_time_note": WALL_TIME_NOTE, **asdict(settings), "lengths": list(settings.lengths)}


def plan_batches(samplers: list[tuple[SamplerSpec, Sampler]], samples: list[TaskSample], batch_size: int,
                 done: set[Key]) -> list[Batch]:
    """Batches of not-yet-recorded samples. Batches are cut from the full task list, so a resumed run
    decodes the same groups of prompts as an uninterrupted one."""
    by_task: dict[str, list[TaskSample]] = {}
    for sample in samples:
        by_task.setdefault(sample.task, []).append(sample)
    batches = []
    for spec, sampler in samplers:
        cid = config_id(sampler.config)
        for task, group in by_task.items():
            for start in range(0, len(group), batch_size):
                todo = [s for s in group[start:start + batch_size] if (cid, task, s.id) not in done]
                if todo:
                    batches.append(Batch(spec, sampler, cid, todo))
    return batches


def generate_batch(model: DiffusionLM, batch: Batch, samples: list[TaskSample]) -> tuple[Any, list[str], list[int]]:
    """(GenerationResult, output texts, generated tokens per row). ParallelBench samples send their rendered
    chat turns (and the infill canvas) as token ids and are read back from the whole canvas, as the authors
    decode; in infill mode only the decoded mask slots count as generated tokens."""
    if not isinstance(samples[0], bench_data.BenchSample):
        result = batch.sampler.generate(model, [s.prompt for s in samples])
        texts = result.text if result.text is not None else [" ".join(map(str, ids)) for ids in result.ids]
        return result, texts, result.gen_tokens
    cfg = batch.sampler.decode
    prompts, canvas = bench_inputs.batch_inputs(model, samples, cfg.gen_length, batch.infill, cfg.chat_template,
                                                batch.slot_tokens)
    result = batch.sampler.generate(model, prompts, canvas=canvas)
    tokens = result.gen_tokens if canvas is None else bench_inputs.decoded_tokens(canvas, result.gen_tokens,
                                                                                  model.mask_id)
    return result, bench_inputs.decode_canvas(model, result.canvas), tokens


def grade_sample(model: DiffusionLM, batch: Batch, sample: TaskSample, text: str) -> dict[str, Any]:
    if not isinstance(sample, bench_data.BenchSample):
        return {"score": score(sample, text)}
    return {**grade(sample.metric, sample.data, text),
            "prompt_text": bench_inputs.render(model, sample, batch.sampler.decode.chat_template)}


def decode_batch(model: DiffusionLM, batch: Batch) -> tuple[list[dict[str, Any]], int]:
    """One generate call -> (one record per sample with per-row accounting, the batch's forwards). A record's
    `config` is the one the decode used (`result.config`: options fitted to the model have their values)."""
    result, texts, gen_tokens = generate_batch(model, batch, batch.samples)
    share = result.wall_time / len(batch.samples)
    rows = [{"type": "record", "config_id": batch.config_id, "sampler": batch.spec.sampler,
             "options": batch.spec.options, "label": batch.spec.label, "config": result.config,
             "task": s.task, "id": s.id, "prompt_sha": prompt_hash(s.prompt), "output": text,
             **grade_sample(model, batch, s, text), "nfe": nfe, "gen_tokens": tokens,
             "canvas_length": result.canvas.shape[1], "wall_time": share,
             **({"batch_loop_stats": result.loop_stats} if result.loop_stats else {})}
            for s, text, nfe, tokens in zip(batch.samples, texts, result.row_nfe, gen_tokens)]
    return rows, result.nfe


def _resume_state(path: Path, header: dict[str, Any]) -> set[Key]:
    """On rank 0: validate the existing file and return its keys."""
    repair(path)
    headers, records = read_run(path)
    check_identity(headers, header, path)
    return {record_key(r) for r in records}


def run_eval(model: DiffusionLM, specs: Sequence[SamplerSpec], settings: EvalSettings, out_dir: str | Path, *,
             model_id: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Decode every (configuration, sample) not yet in `out_dir/records.jsonl`; return the summary entries.

    Every configuration is built (and so validated) before anything runs.
    """
    rank, world_size = distributed.world()
    out = Path(out_dir)
    samplers = [(spec, spec.build(settings.gen_length)) for spec in specs]
    header = run_header(model, model_id or model.name, settings, world_size)
    samples, suite_fields = settings.load()
    header.update(suite_fields)
    with ExitStack() as stack:
        error = None
        done: set[Key] = set()
        if rank == 0:
            try:
                out.mkdir(parents=True, exist_ok=True)
                stack.enter_context(exclusive(out))
                done = _resume_state(out / RECORDS_FILE, header)
            except ValueError as err:
                error = str(err)
        done, error = distributed.broadcast((done, error))
        if error is not None:
            raise ValueError(error)
        return _run_locked(model, samplers, settings, samples, out, header, done, rank, world_size, progress)


def _run_locked(model: DiffusionLM, samplers: list[tuple[SamplerSpec, Sampler]], settings: EvalSettings,
                samples: list[TaskSample], out: Path, header: dict[str, Any], done: set[Key], rank: int,
                world_size: int, progress: bool) -> list[dict[str, Any]]:
    path = out / RECORDS_FILE
    batches = [dataclasses.replace(b, infill=settings.infill, slot_tokens=settings.slot_tokens)
               for b in plan_batches(samplers, samples, settings.batch_size, done)]
    if rank == 0:
        append_lines(path, [header])
        if done:
            log.info("resuming %s: %d records on disk, %d batches to go", path, len(done), len(batches))
    if batches:
        _decode_all(model, batches, rank, world_size, path, progress)
    distributed.barrier()
    if rank != 0:
        return []
    _, records = read_run(path)
    summary = summarize(records)
    bench = bench_reference.report_block(summary["configs"], header)
    write_json(out / SUMMARY_FILE, {"header": header, "configs": summary["configs"], "pbx": summary["pbx"],
                                    **({"parallelbench": bench} if bench else {})})
    return summary["configs"]

def _decode_all(model: DiffusionLM, batches: list[Batch], rank: int, world_size: int, path: Path,
                progress: bool) -> None:
    """Rounds of `world_size` batches: each rank decodes one, rank 0 appends them in batch order."""
    first = batches[0]
    generate_batch(model, first, first.samples[:1])  # warm-up, excluded from wall time
    total = sum(len(b.samples) for b in batches)
    bar = tqdm(total=total, unit="sample", desc="eval", disable=not progress or rank != 0, dynamic_ncols=True)
    forwards = tokens = row_forwards = 0
    try:
        for start in range(0, len(batches), world_size):
            mine = start + rank
            rows, nfe = decode_batch(model, batches[mine]) if mine < len(batches) else ([], 0)
            parts = distributed.gather((rows, nfe))
            if rank != 0:
                continue
            gathered = [r for part, _ in parts for r in part]
            append_lines(path, gathered)
            forwards += sum(n for _, n in parts)
            tokens += sum(r["gen_tokens"] for r in gathered)
            row_forwards += sum(r["nfe"] for r in gathered)
            bar.set_postfix(nfe=forwards, tpf=f"{tokens / max(row_forwards, 1):.2f}", refresh=False)
            bar.update(len(gathered))
    finally:
        bar.close()

