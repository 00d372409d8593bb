"""The few torch.distributed helpers the losses need; every helper is a no-op without a process group."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a default process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order, keeping autograd.

    The backward pass sums the incoming gradients across ranks and hands each rank the slice of its own
    input, so a loss on the gathered tensor trains every rank's encoder. Every rank must pass the same
    shape (checked, with an error naming the sizes).

    Args:
        tensor: ``[n, *]`` on this rank.

    Returns:
        ``[world_size * n, *]``.
    """
    if not is_distributed():
        return tensor
    _check_equal_sizes(tensor)
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor), dim=0)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Like :func:`gather_with_grad` for tensors that need no gradient (labels, ids, masks)."""
    if not is_distributed():
        return tensor
    _check_equal_sizes(tensor)
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def _check_equal_sizes(tensor: torch.Tensor) -> None:
    size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    values = [int(s.item()) for s in sizes]
    if len(set(values)) != 1:
        raise ValueError(
            f"gathering needs the same batch size on every rank, got {values}; "
            "use drop_last=True in the data loader"
        )
