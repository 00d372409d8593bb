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


def gather_with_grad(tensor: torch.Tensor, same_size: bool = False) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order, keeping autograd.

    The backward pass sums the incoming gradients across ranks and hands each rank the slice of its own
    input, so a loss on the gathered tensor trains every rank's encoder. Every rank must pass the same
    shape (checked, with an error naming the sizes, unless ``same_size`` says the caller knows it: the check
    costs a collective and a host sync).

    Args:
        tensor: ``[n, *]`` on this rank.
        same_size: skip the size check.

    Returns:
        ``[world_size * n, *]``.
    """
    if not is_distributed():
        return tensor
    if not same_size:
        _check_equal_sizes(tensor)
    return _GatherWithGrad.apply(tensor)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather ``[n, *]`` into ``[world_size * n, *]`` along dim 0; backward: the incoming gradient
    ``[world_size * n, *]`` summed over ranks, this rank's slice ``[n, *]``."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = tensor.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # autograd may hand it to others too
        dist.all_reduce(grad)  # every rank's loss depends on this rank's rows
        return grad[rank() * ctx.rows : (rank() + 1) * ctx.rows]


def gather_no_grad(tensor: torch.Tensor, same_size: bool = False) -> torch.Tensor:
    """Like :func:`gather_with_grad` for tensors that need no gradient (labels, ids, masks)."""
    if not is_distributed():
        return tensor
    if not same_size:
        _check_equal_sizes(tensor)
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def gather_to_rank_zero(tensor: torch.Tensor, device: torch.device | str) -> list[torch.Tensor] | None:
    """Every rank's ``tensor`` ``[n_r, *]`` (``n_r`` may differ, also 0) on rank 0, in rank order; None on
    the other ranks. Only rank 0 ever holds the others' rows (point-to-point, no padding); its own share is
    not copied. ``device``: where the transfers happen (the backend's: CUDA for NCCL).

    Without a process group: ``[tensor]``.
    """
    if not is_distributed():
        return [tensor]
    size = torch.tensor([tensor.shape[0]], device=device, dtype=torch.long)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    if rank() != 0:
        if tensor.shape[0]:
            dist.send(tensor.to(device).contiguous(), dst=0)
        return None
    parts = [tensor]
    for source in range(1, world_size()):
        part = torch.empty((int(sizes[source]), *tensor.shape[1:]), dtype=tensor.dtype, device=device)
        if part.shape[0]:
            dist.recv(part, src=source)
        parts.append(part.to(tensor.device))
    return parts


def broadcast_from_rank_zero(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``tensor`` copied into ``tensor`` on every rank (the same shape and dtype everywhere, on the
    backend's device); returned. Without a process group: ``tensor``."""
    if is_distributed():
        dist.broadcast(tensor, src=0)
    return tensor


def broadcast_object(value: object) -> object:
    """Rank 0's ``value`` (any picklable object) on every rank; ``value`` without a process group."""
    if not is_distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


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


def gather_sparse_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Stack a sparse COO ``[n, K]`` matrix from every rank into ``[world_size * n, K]``, in rank order (no
    gradient). Every rank must pass the same ``n`` and ``K``; the number of stored values may differ.
    Without a process group: ``matrix``."""
    if not is_distributed():
        return matrix
    matrix = matrix.coalesce()
    rows, columns = matrix.shape
    indices = _gather_variable_rows(matrix.indices().T.contiguous())  # [nnz_r, 2] per rank
    values = _gather_variable_rows(matrix.values())
    for source, part in enumerate(indices):
        part[:, 0] += source * rows
    return torch.sparse_coo_tensor(
        torch.cat(indices).T,
        torch.cat(values),
        (world_size() * rows, columns),
        is_coalesced=True,
        check_invariants=False,
    )


def _gather_variable_rows(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's ``[n_r, *]`` (``n_r`` may differ), in rank order: padded to the largest for the
    all-gather, then cut back."""
    size = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
    sizes = [torch.empty_like(size) for _ in range(world_size())]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    padded = tensor.new_zeros((max(counts), *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return [part[:count] for part, count in zip(parts, counts, strict=True)]
