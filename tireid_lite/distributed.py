"""Data-parallel training under ``torchrun``: process-group set-up and the few collectives we use.

``torchrun --nproc_per_node=N -m tireid_lite.cli train ...`` starts N processes
and tells each its place through the environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). :func:`init_distributed`
reads those and joins the group (``nccl`` when CUDA is there, ``gloo`` on CPU).
Without them every helper here behaves as a world of one process, so the same
code runs unchanged on a laptop. Taught in notebook ``09`` (full GPU training).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from tireid_lite.errors import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the world size, its local rank and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={raw!r} is not an integer; torchrun sets it, unset it otherwise"
        ) from None


def init_distributed(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes, or describe a single process when it is absent.

    ``device`` overrides the choice of device (``"cpu"`` or ``"cuda"``); by default
    CUDA is used when available, one GPU per local rank.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} was asked for but no CUDA device is visible; use --device cpu")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0 (the process that writes files and logs) and in a single process."""
    return rank() == 0


def barrier() -> None:
    """Wait for every process; a no-op in a single process."""
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous block of ``range(n)`` that ``rank`` handles; blocks differ in size by at most one.

    Concatenating the blocks in rank order gives back ``range(n)``, which is
    what :func:`all_gather_cat` relies on to restore the original order.
    """
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate along dim 0 the tensors of all ranks, in rank order; sizes may differ.

    Each rank's tensor is padded to the largest first dimension before the
    gather and trimmed afterwards. In a single process the tensor is returned as is.
    """
    if not is_distributed():
        return tensor
    tensor = tensor.contiguous()
    size = torch.tensor([tensor.shape[0]], device=tensor.device)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))  # (N_max, ...)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:c] for g, c in zip(gathered, counts)], dim=0)  # (sum N_r, ...)


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    """The mean of ``value`` over all ranks (a copy); the value itself in a single process."""
    if not is_distributed():
        return value
    out = value.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def resolve_amp(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp``: ``auto`` is bf16 on CUDA and off on CPU."""
    if setting == "off" or (setting == "auto" and device.type != "cuda"):
        return None
    if setting not in ("auto", "bf16"):
        raise ConfigError(f"config key 'train.amp' is {setting!r}; use auto, bf16 or off")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("config key 'train.amp' asks for bf16 but this GPU does not support it; set train.amp=off")
    return torch.bfloat16
