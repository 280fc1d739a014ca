"""Process-group set-up for single-process and ``torchrun`` training.

``torchrun`` exports ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; when they are present
:func:`init_distributed` joins the group (NCCL on CUDA, gloo on CPU), otherwise training
runs as a single process with the same code path.
"""
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size``, and the device it trains on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the ``torchrun`` process group if there is one and pick this process's device.

    ``device``: ``"auto"`` (``cuda:LOCAL_RANK`` when CUDA is available, else CPU), or an
    explicit ``"cpu"`` / ``"cuda"``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, device=target)


def all_reduce_mean(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a copy; the input is left unchanged)."""
    out = tensor.detach().clone()
    if info.enabled:
        dist.all_reduce(out)
        out /= info.world_size
    return out


def all_reduce_sum_(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """In-place sum of ``tensor`` over all processes; returns it."""
    if info.enabled:
        dist.all_reduce(tensor)
    return tensor


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
