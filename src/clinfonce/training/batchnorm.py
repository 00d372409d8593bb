"""Batch normalisation over the global batch of every process (``train.sync_batchnorm``).

:class:`torch.nn.SyncBatchNorm` does this on GPUs only (its forward refuses CPU tensors, and DDP refuses it in
CPU modules), so multi-process runs on CPUs (gloo) could not have it. :class:`GlobalBatchNorm` is the same
computation on any device and backend: each process's per-channel count, mean and variance are all-gathered
(differentiably), merged exactly (the parallel-variance formula), and used to normalise, so every process
normalises with the statistics one process would compute on the whole global batch, and the gradients
flow back through the merge to every process's inputs. Running statistics are updated as
:class:`torch.nn.BatchNorm2d` updates them (unbiased variance, ``momentum``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from clinfonce.dist import gather_with_grad, is_distributed, world_size

#: activations whose statistics are computed in float32 (under mixed precision)
_LOW_PRECISION = (torch.float16, torch.bfloat16)


class GlobalBatchNorm(_BatchNorm):
    """Batch norm of ``[B, C, *]`` inputs over the batch of every process; outside training, or with a single
    process, exactly :class:`torch.nn.BatchNorm2d` (and 1d/3d). Convert a model with :func:`globalise`."""

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions [B, C, *], got {input.dim()}")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and is_distributed() and world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        with torch.autocast(input.device.type, enabled=False):  # statistics in float32 at least, as torch's
            return self._normalise(input.float() if input.dtype in _LOW_PRECISION else input).to(input.dtype)

    def _normalise(self, input: Tensor) -> Tensor:
        """``input`` ``[B, C, *]`` (float32 or float64) normalised with the global batch's statistics."""
        dims = [0, *range(2, input.dim())]
        count = input.numel() // input.shape[1]
        var, mean = torch.var_mean(input, dims, correction=0)
        # [world, 3, C]: every process's count, mean and (biased) variance per channel
        stats = gather_with_grad(torch.stack([torch.full_like(mean, count), mean, var])[None], same_size=True)
        counts, means, variances = stats.unbind(1)
        total = counts.sum(0)
        global_mean = (counts * means).sum(0) / total
        global_var = (counts * (variances + (means - global_mean) ** 2)).sum(0) / total
        if self.track_running_stats and self.running_mean is not None and self.running_var is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                unbiased = global_var * (total / (total - 1).clamp_min(1))
                self.running_mean.lerp_(global_mean.to(self.running_mean.dtype), factor)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)
        shape = (1, -1, *([1] * (input.dim() - 2)))
        out = (input - global_mean.view(shape)) * torch.rsqrt(global_var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape).to(out.dtype) + self.bias.view(shape).to(out.dtype)
        return out


def globalise(module: nn.Module) -> nn.Module:
    """``module`` with every batch norm layer (1d, 2d, 3d, also SyncBatchNorm) replaced, in place, by a
    :class:`GlobalBatchNorm` with its parameters and running statistics; returns ``module`` (or the new
    layer when ``module`` itself is one)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, GlobalBatchNorm):
        like = next((t for t in (module.weight, module.running_mean) if t is not None), torch.empty(0))
        layer = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
            device=like.device,
            dtype=like.dtype,
        )
        layer.load_state_dict(module.state_dict())
        return layer.train(module.training)
    for name, child in module.named_children():
        setattr(module, name, globalise(child))
    return module
