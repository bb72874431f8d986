"""Scale-out for the runner: `torchrun` processes share a run through `torch.distributed`.

Batches are dealt round-robin to ranks; after each round every rank's records are gathered to rank 0,
the only process that touches the run file. Batches keep the composition a single process would use,
so records do not depend on the number of processes. NCCL on GPUs, gloo on CPU.
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def init_from_env() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by `torchrun` with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def rank_device() -> torch.device:
    """This process's device: its own GPU under torchrun, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def world() -> tuple[int, int]:
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (just `[obj]` in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
