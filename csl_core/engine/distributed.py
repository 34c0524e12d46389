"""Training on several GPUs or nodes with ``torch.distributed`` (DDP), launched by ``torchrun``.

::

    python -m torch.distributed.run --nproc_per_node 2 -m csl_core train --data cifar10 --out runs/c10

``torchrun`` starts one process per GPU and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the trainer
sees them, joins the process group (NCCL on CUDA, gloo on CPU) and wraps the model in
``DistributedDataParallel``. Each rank trains on its share of the samples (``DistributedSampler``)
and records only the samples it saw; once per epoch :meth:`CSLTracker.all_reduce_epoch` combines the
ranks so that every sample's loss is recorded exactly once. Rank 0 alone writes the run folder,
which must be on a filesystem every rank can read (the other ranks reopen it to resume).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import InputError


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the process group and the device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool  # this module started the process group, so it also ends it

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])
        else:
            dist.barrier()

    def close(self) -> None:
        """End the process group if this module started it."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def launched_distributed() -> bool:
    """Whether this process was started by ``torchrun`` (or another launcher) with more than one rank."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def setup_distributed(device_name: str = "auto") -> DistributedContext | None:
    """Join the process group when there is one to join; ``None`` for an ordinary single process.

    A process group the caller already started is used as it is; otherwise one is started from the
    ``torchrun`` environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``).
    """
    if not dist.is_available():
        if launched_distributed():
            raise RuntimeError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed support")
        return None
    owns_group = False
    if not dist.is_initialized():
        if not launched_distributed():
            return None
        device = _rank_device(device_name, int(os.environ.get("LOCAL_RANK", "0")))
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns_group = True
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _rank_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                              device=device, owns_group=owns_group)


def _rank_device(device_name: str, local_rank: int) -> torch.device:
    """One GPU per process: ``auto`` and ``cuda`` mean ``cuda:LOCAL_RANK``; without CUDA, the CPU."""
    if device_name in ("auto", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if device_name == "cuda":
            raise RuntimeError("--device cuda was asked for, but CUDA is not available on this node")
        return torch.device("cpu")
    device = torch.device(device_name)
    if device.type not in ("cuda", "cpu"):
        raise InputError(f"distributed training runs on CUDA (NCCL) or the CPU (gloo), not {device_name!r}; "
                         "pass --device cuda or --device cpu")
    return device
