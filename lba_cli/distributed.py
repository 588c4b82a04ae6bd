"""Several processes (torchrun) with torch.distributed: setup and the few collectives lba needs.

Under ``torchrun --nproc-per-node N -m lba_cli pretrain|finetune ...`` every process trains a
DistributedDataParallel replica on its share of each epoch; rank 0 alone validates, writes
the run directory and the index, and broadcasts what every rank must agree on (metrics,
whether to stop). A process torchrun started joins the group even when it is alone
(``--nproc-per-node 1``), so that one GPU runs the same code (DDP, NCCL collectives) as
many. Without torchrun everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from lba_cli.devices import resolve_device

__all__ = ["DistContext", "init_distributed", "broadcast_object", "all_reduce_sums", "shutdown_distributed", "unwrap"]


@dataclass(frozen=True)
class DistContext:
    """This process's place among the training processes.

    Attributes:
        rank: 0..world_size-1; rank 0 writes the run.
        world_size: number of processes (1 without torchrun).
        local_rank: index of this process on its machine (its GPU).
        launched: started by torchrun and joined its process group (even as the only process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launched: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether the process group is in use (DDP wrapping, collectives)."""
        return self.launched or self.world_size > 1


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes (RANK and WORLD_SIZE set), or stay single.

    Uses NCCL on CUDA (one GPU per process, ``cuda:LOCAL_RANK``) and gloo on the CPU.

    Returns:
        The context and this process's training device.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistContext(), resolve_device(device_name)
    world_size = int(os.environ["WORLD_SIZE"])
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    return DistContext(rank, world_size, local_rank, launched=True), device


def broadcast_object(value: Any, ctx: DistContext) -> Any:
    """Rank 0's ``value`` on every rank (pickled)."""
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sums(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sums over all ranks."""
    if not ctx.enabled:
        return values
    # NCCL reduces only CUDA tensors (a CPU tensor fails there); gloo takes CPU tensors.
    on_gpu = dist.get_backend() == dist.Backend.NCCL
    device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def shutdown_distributed(ctx: DistContext) -> None:
    """Leave the process group (after a barrier, so that rank 0 finishes writing first)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
