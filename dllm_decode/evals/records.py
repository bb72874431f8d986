"""The run file: `records.jsonl`, one JSON object per line, appended batch by batch.

Line kinds: `{"type": "header", ...}` once per session (versions, device, the run's identity) and
`{"type": "record", ...}` once per finished sample. A batch's records go out in one `write` followed
by `fsync`, with Ctrl-C deferred around it, so the file only ever ends in a complete line, except after
a hard kill mid-write, whose partial last line is cut off on the next open. Resuming reads the keys
already present and skips them, so a sample is never written twice and never lost.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
SUMMARY_FILE = "summary.json"
# Header fields that define which samples a run holds; a resume must agree on all of them.
IDENTITY = ("model", "weights", "suite", "seed", "per_length", "lengths", "fmt", "gen_length", "infill",
            "slot_tokens")

Key = tuple[str, str, str]  # (config id, task, sample id)


def prompt_hash(prompt: str) -> str:
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def config_id(config: dict[str, Any]) -> str:
    """A stable short id of a sampler config with its defaults (a changed default is a new configuration
    rather than a silent mix). Options fitted to the model read "auto" in it, so the id is known before
    decoding; they follow from the model, which the header's `weights` pins, and records hold their values."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def record_key(record: dict[str, Any]) -> Key:
    return record["config_id"], record["task"], record["id"]


def read_run(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(headers, records) of a run file, first occurrence of each key kept. A torn last line is dropped."""
    headers: list[dict[str, Any]] = []
    records: dict[Key, dict[str, Any]] = {}
    if not path.is_file():
        return headers, []
    lines = path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: a write cut short by a kill
                log.warning("%s: ignoring a torn last line (%d bytes)", path, len(raw))
                continue
            raise ValueError(f"{path} line {number} is not JSON; the run file is corrupt, got {raw[:80]!r}")
        if row.get("type") == "header":
            headers.append(row)
        elif row.get("type") == "record":
            key = record_key(row)
            if key in records:
                log.warning("%s: duplicate record %s ignored", path, key)
            records.setdefault(key, row)
    return headers, list(records.values())


def repair(path: Path) -> None:
    """Cut a torn last line (from a hard kill mid-write) so appends start on a fresh line."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as f:
            f.truncate(keep)
        log.warning("%s: cut %d bytes of a torn last line", path, len(data) - keep)


def weights_fingerprint(module: Any) -> str:
    """Short hash of parameter names, shapes, dtypes and a strided sample of values: retrained weights under
    the same model name must not resume an old run, and hashing every byte of a multi-GB model is too slow."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 256)][:256].float().cpu()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def check_identity(headers: list[dict[str, Any]], header: dict[str, Any], path: Path) -> None:
    """A resumed run must describe the same samples and model as the one that started the file."""
    if not headers:
        return
    first = headers[0]
    for name in IDENTITY:
        if name in first and first.get(name) != header.get(name):  # runs written before a field existed resume
            raise ValueError(f"`{name}` must match the run being resumed in {path.parent} "
                             f"({first.get(name)!r}), got {header.get(name)!r}; use another --out directory")


@contextmanager
def deferred_sigint() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a write is never cut in half by a KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


@contextmanager
def exclusive(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on `run_dir`: two evals appending to one file would both decode the same
    missing samples and write them twice."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no advisory locks; one writer per directory is then up to the user
        yield
        return
    with (run_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"`out` must not be in use, but another eval is writing to {run_dir}; wait for it to "
                             "finish or pick another directory") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def append_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows as JSON lines in one write, flushed to disk."""
    if not rows:
        return
    payload = "".join(json.dumps(row, sort_keys=True, default=str) + "\n" for row in rows).encode("utf-8")
    with deferred_sigint():
        with path.open("ab") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())


def write_json(path: Path, data: Any) -> None:
    """Write via a temporary file and rename, so a reader never sees half a summary."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
