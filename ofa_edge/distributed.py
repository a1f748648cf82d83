"""The process group a command runs in when started by ``torchrun``: which rank this process is,
on which device it computes, and the few collectives training and accuracy tables need.

Started without ``torchrun`` a command is a group of one and every collective is a no-op, so the
single-process path runs the same code. Backend: NCCL when CUDA is present, else gloo (CPU).
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ofa_edge.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    """This process's place in the run: ``rank`` of ``world_size``, computing on ``device``."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, tables and logs; the others only compute."""
        return self.rank == 0

    def all_reduce_sum(self, tensors: list[torch.Tensor]) -> None:
        """Sum ``tensors`` over the ranks in place, as one flat all-reduce."""
        if self.world_size == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def barrier(self) -> None:
        """Wait until every rank got here."""
        if self.world_size > 1:
            dist.barrier()

    def main_first(self, work: Callable[[], T]) -> T:
        """``work()`` on rank 0, then on the other ranks: rank 0 fills a cache (decoded images,
        say) that the others then read instead of repeating the work."""
        result = work() if self.is_main else None
        self.barrier()
        if not self.is_main:
            result = work()
        return result  # type: ignore[return-value]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` is true on any rank: so that all ranks stop at the same step."""
        if self.world_size == 1:
            return flag
        t = torch.tensor([float(flag)], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a checkpoint only rank 0 can read, say)."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out


def join() -> Group:
    """The group ``torchrun`` started this process in (its ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``
    variables), joined on first call; a group of one without them."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Group()
    try:
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError):
        raise ConfigError(
            f"WORLD_SIZE is {world_size} but RANK is not set", hint="start distributed runs with torchrun"
        ) from None
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(_leave)
    return Group(rank, world_size, device)


def _leave() -> None:
    """Close the group before the interpreter exits: a group left open has gloo threads still
    running at exit, and the process aborts ("terminate called without an active exception")
    after its work is done."""
    if dist.is_initialized():
        dist.destroy_process_group()
