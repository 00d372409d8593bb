"""Numbers never go silently wrong: optimizer steps with a non-finite loss or gradient are stopped or, within
a budget, skipped."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

from clinfonce.errors import RunStopped
from clinfonce.run import RunDir


class NonFiniteGuard(Callback):
    """Check every optimizer step's loss and gradients before the step is taken.

    A non-finite value skips the step (every gradient is dropped, so SGD and AdamW leave the weights, their
    momentum and their step counts untouched, and the buffers the forward pass changed, such as batch-norm
    statistics, are put back) while fewer than ``max_bad_steps`` steps were skipped;
    otherwise a debug checkpoint is written and :class:`~clinfonce.errors.RunStopped` ends the run with a
    message naming the step and the likely cause. The skipped steps survive a resume (callback state).

    Args:
        run: the run directory (where the debug checkpoint goes).
        max_bad_steps: how many bad steps may be skipped in the whole run.
        check_gradients: also check the gradients (one device sync per step). Off under ``16-mixed``, whose
            gradient scaler skips overflowing steps by design.
    """

    def __init__(self, run: RunDir, max_bad_steps: int, check_gradients: bool = True) -> None:
        self.run, self.max_bad_steps, self.check_gradients = run, max_bad_steps, check_gradients
        self.bad_steps: list[int] = []
        self._loss: Tensor | None = None
        self._buffers: list[tuple[Tensor, Tensor]] = []  # (buffer, its value before the step)

    def on_train_batch_start(
        self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.max_bad_steps > len(self.bad_steps):  # a skip stays possible: keep what a skip restores
            self._buffers = [
                (buffer, buffer.detach().clone())
                for name, buffer in module.named_buffers()
                if name != "cluster_ids"  # large, and never changed by a step
            ]

    def on_before_backward(self, trainer: L.Trainer, module: L.LightningModule, loss: Tensor) -> None:
        self._loss = loss.detach()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        loss = self._loss if self._loss is not None else torch.zeros(())
        finite_loss = torch.isfinite(loss).all()
        finite = finite_loss
        if self.check_gradients and params:
            finite = finite & torch.isfinite(torch.nn.utils.get_total_norm([p.grad for p in params]))
        ok = bool(finite)  # the one device sync of the check
        if trainer.world_size > 1:  # every process decides alike: all skip, or all stop (and checkpoint)
            ok = trainer.strategy.reduce_boolean_decision(ok, all=True)
        if ok:
            return
        step = trainer.global_step
        if len(self.bad_steps) < self.max_bad_steps:
            self.bad_steps.append(step)
            for p in params:
                p.grad = None
            for buffer, before in self._buffers:
                buffer.copy_(before)
            return
        what = f"loss is {loss.item()}" if not bool(finite_loss) else "gradient is not finite"
        path = self.run.debug_checkpoint(step)
        trainer.save_checkpoint(path)
        lr = optimizer.param_groups[0]["lr"]
        raise RunStopped(
            f"training stopped at step {step} (epoch {trainer.current_epoch}): the {what}; likely a learning "
            f"rate too high for this setup (current {lr:.3g}; optim.lr), or a temperature too low; "
            f"debug checkpoint: {path}; train.max_bad_steps=N skips up to N such steps"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"bad_steps": list(self.bad_steps)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.bad_steps = list(state_dict.get("bad_steps", []))
