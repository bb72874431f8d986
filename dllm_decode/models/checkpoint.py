"""Reading a checkpoint directory's files, with one-line errors that name the file and what is wrong.

The tensor names and shapes are read from the safetensors headers and compared with the module before
any tensor data is read, so a config paired with another model's weights fails in a second, not after
reading gigabytes, and the message lists a few names instead of the full key dump of `load_state_dict`.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

log = logging.getLogger(__name__)

INDEX_FILE = "model.safetensors.index.json"
SHOWN = 3  # names listed per group in a key-mismatch message
Shapes = dict[str, tuple[tuple[int, ...], Path]]  # tensor name -> (shape, file holding it)


class CheckpointError(ValueError):
    """A checkpoint directory whose files cannot be loaded; the message names the file and the problem."""


def read_config(path: Path) -> dict[str, Any]:
    """The parsed config.json of checkpoint directory `path`."""
    file = path / "config.json"
    if not file.is_file():
        raise CheckpointError(f"{path} has no config.json; a checkpoint directory needs the model's config.json "
                              "beside its *.safetensors files")
    try:
        config = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{file} is not valid JSON ({err}); restore the checkpoint's config.json") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{file} must hold a JSON object, got {type(config).__name__}")
    return config


def weight_files(path: Path) -> list[Path]:
    """The safetensors files of a single-file or sharded (`model.safetensors.index.json`) checkpoint."""
    index = path / INDEX_FILE
    if not index.is_file():
        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{path} has no *.safetensors file; only safetensors checkpoints are loaded "
                                  "(no pickle)")
        return files
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{index} must be JSON with a `weight_map` of tensor name -> shard file, could not "
                              f"read it ({type(err).__name__}: {err})") from None
    missing = [s for s in shards if not (path / s).is_file()]
    if missing:
        count = sum(v == missing[0] for v in weight_map.values())
        raise CheckpointError(f"{index} maps {count} tensors to {missing[0]}, which is missing from {path} "
                              f"({len(missing)} of {len(shards)} shards missing); download the missing shards")
    return [path / s for s in shards]


def corrupt_file(file: Path, err: Exception) -> CheckpointError:
    """The error for a safetensors file that cannot be parsed (truncated, or a Git LFS pointer)."""
    with open(file, "rb") as handle:
        lfs = handle.read(40).startswith(b"version https://git-lfs")
    fix = "it is a Git LFS pointer, not the weights: run `git lfs pull`" if lfs else \
        "the file is truncated or corrupt: download it again"
    return CheckpointError(f"{file} is not a readable safetensors file ({err}); {fix}")


def tensor_shapes(files: list[Path]) -> Shapes:
    """Name -> (shape, file) for every tensor, from the headers only (no tensor data is read)."""
    shapes: Shapes = {}
    for file in files:  # once per shard
        try:
            with safe_open(str(file), framework="pt") as handle:
                for name in handle.keys():
                    shapes[name] = (tuple(handle.get_slice(name).get_shape()), file)
        except (SafetensorError, OSError) as err:
            raise corrupt_file(file, err) from None
    return shapes


def read_tensors(files: list[Path], skip: frozenset[str] = frozenset()) -> dict[str, torch.Tensor]:
    """The tensors of `files`, one dict; names in `skip` are never read from disk."""
    state: dict[str, torch.Tensor] = {}
    for file in files:
        try:
            if not skip:
                state.update(load_file(str(file)))
                continue
            with safe_open(str(file), framework="pt") as handle:
                state.update({name: handle.get_tensor(name) for name in handle.keys() if name not in skip})
        except (SafetensorError, OSError) as err:
            raise corrupt_file(file, err) from None
    return state


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a single-file or sharded safetensors checkpoint directory."""
    return read_tensors(weight_files(path))


def _names(keys: list[str], noun: str = "") -> str:
    """'N noun (a, b, c, ...)': the count and the first few names."""
    more = ", ..." if len(keys) > SHOWN else ""
    return f"{len(keys)}{noun} ({', '.join(keys[:SHOWN])}{more})"


def check_weights(expected: dict[str, tuple[int, ...]], found: Shapes, source: Path, model_type: str) -> None:
    """Raise a one-line `CheckpointError` unless `found` has exactly the `expected` names and shapes.

    `source` names the checkpoint in the message (its only file, or its index); shape mismatches name
    the shard that holds the tensor."""
    missing = [k for k in expected if k not in found]  # module order: embeddings first
    unexpected = [k for k in found if k not in expected]
    if missing and len(missing) == len(expected):
        raise CheckpointError(
            f"{source} holds the weights of another architecture than `model_type` {model_type!r} of its "
            f"config.json: expected {_names(missing, ' tensors')}, found {_names(unexpected)}; "
            "pair the config.json with the weights of the same model")
    if missing or unexpected:
        parts = [f"{_names(missing)} missing"] if missing else []
        parts += [f"{_names(unexpected)} unexpected"] if unexpected else []
        raise CheckpointError(f"{source} does not match the `{model_type}` module its config.json describes: "
                              f"tensors {', '.join(parts)}; the weights are incomplete or from a different "
                              "version of the model")
    wrong = [k for k in expected if found[k][0] != expected[k]]
    if wrong:
        key = wrong[0]
        shape, file = found[key]
        more = f" (and {len(wrong) - 1} more tensors of the wrong shape)" if len(wrong) > 1 else ""
        raise CheckpointError(f"`{key}` in {file} has shape {list(shape)}, but config.json describes "
                              f"{list(expected[key])}{more}; the config.json and the weights come from different "
                              "models")


def checked_state_dict(module: torch.nn.Module, path: Path, model_type: str) -> dict[str, torch.Tensor]:
    """The tensors of checkpoint directory `path`, once their names and shapes match `module` (on meta)."""
    files = weight_files(path)
    index = path / INDEX_FILE
    source = index if index.is_file() else files[0] if len(files) == 1 else path
    expected = {name: tuple(t.shape) for name, t in module.state_dict().items()}
    found = tensor_shapes(files)
    unused = frozenset(getattr(module, "unused_tensors", lambda names: [])(list(found)))
    if unused:
        log.warning("%s: dropping %d tensors the forward never reads, e.g. %s", source, len(unused), min(unused))
        found = {k: v for k, v in found.items() if k not in unused}
    check_weights(expected, found, source, model_type)
    return read_tensors(files, skip=unused)  # unused tensors (e.g. LLaDA2's MTP layers) are never read
