"""Linear evaluation on cached features: a softmax classifier on frozen features, chosen on validation.

The encoder runs once; :func:`fit_linear_probe` then trains on its ``[N, F]`` features. Protocol (the paper's
"Linear evaluation", made explicit):

* Features are standardised with the training mean and standard deviation (stored in the probe and
  applied again by :meth:`LinearProbe.predict_logits`).
* One linear classifier per weight decay λ of a grid minimises ``mean cross-entropy + λ/2 * ||W||²`` (the
  bias is not penalised). This is scikit-learn's ``LogisticRegression`` objective with ``C = 1 / (λ n)``,
  ``n`` the number of training rows (``λ = 0``: ``C = inf``, no penalty).
* Optimiser: full-batch L-BFGS (history 10, compact inverse-Hessian form, backtracking Armijo line
  search; see :class:`_LBFGS`), one run per weight decay, at most ``epochs`` iterations, stopping once the
  largest gradient entry is below ``tol`` (scikit-learn's ``tol``), so a run converges to the same solution
  as scikit-learn's ``lbfgs`` solver. The loss and its gradient are written out by hand as float32 torch
  matmuls (on ``device``, in blocks of rows so memory stays bounded). The weight decays are visited from
  the largest to the smallest along the regularisation path: the largest starts from zero weights, every
  other one where the previous run ended (a warm start, as in glmnet), keeping L-BFGS's curvature history,
  corrected exactly for the change of λ (:meth:`_LBFGS.retarget`). On the benchmark this halves the
  iterations. ``torch.optim.LBFGS`` cannot carry its history over to a new objective: measured in this
  one's place (``docs/benchmarks.md``, linear probe) it needed 1.4-1.5x the loss evaluations and its
  chosen probes scored 0.6-1.0 test points lower. There is no learning rate or batch size to tune, and
  the fit is deterministic given ``seed`` (which only draws the validation split).
* Selection: an "epoch" is one L-BFGS iteration (at least one full pass over the training rows), counted
  within its weight decay's run. After every iteration the model's top-1 accuracy on a validation split
  is measured; the weight decay *and* the iteration with the best validation top-1 win (ties: the larger
  weight decay, then the earlier iteration), and their weights are checkpointed. The validation split
  comes from the training data (stratified, seeded, see :func:`train_val_split`) unless
  ``val_x``/``val_y`` are given; the test split is never seen. A weight decay's run also stops once its
  validation top-1 has not improved for ``patience`` iterations.
* No refit: the returned probe is the best-on-validation checkpoint itself, trained on the training rows
  minus the validation rows. Refitting on train + validation would use 10% more data but return weights
  whose validation score was never measured.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from clinfonce.errors import InputError

__all__ = ["LinearProbe", "fit_linear_probe", "topk_accuracy", "train_val_split"]

ArrayLike = np.ndarray | torch.Tensor

_STD_EPS = 1e-6  # features whose training std is below this are only centred, not scaled
_ARMIJO = 1e-4  # sufficient-decrease constant of the line search
_MAX_BACKTRACKS = 30  # halvings of the step before L-BFGS gives up (converged to float precision)
_BLOCK_ELEMENTS = 1 << 24  # logits are computed in blocks of at most this many float32 entries (64 MiB)


@dataclass
class LinearProbe:
    """A trained linear classifier on standardised features.

    Attributes:
        weight: ``float32 [F, C]``, acting on standardised features.
        bias: ``float32 [C]``.
        mean: ``float32 [F]``, the training feature mean subtracted before the classifier.
        std: ``float32 [F]``, the training feature standard deviation divided by (1 where it was ~0).
        weight_decay: the chosen λ of ``mean cross-entropy + λ/2 * ||W||²``.
        epoch: the chosen epoch, i.e. L-BFGS iteration within the run of ``weight_decay``, counted from 1
            (0, the run's starting weights, only when their gradient was already below ``tol``).
        val_top1: validation top-1 accuracy of the chosen weights, in percent.
        history: validation top-1 in percent per weight decay (largest first, the order of the runs), one
            entry per completed iteration (a run ends early on convergence or ``patience``).
    """

    weight: torch.Tensor
    bias: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    weight_decay: float
    epoch: int
    val_top1: float
    history: dict[float, list[float]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """C, the number of classes."""
        return self.weight.shape[1]

    def predict_logits(self, x: ArrayLike) -> torch.Tensor:
        """Class scores of raw (unstandardised) features.

        Args:
            x: ``[N, F]`` features, as given to :func:`fit_linear_probe`.

        Returns:
            ``float32 [N, C]`` logits, on the probe's device.
        """
        x = _as_features(x, self.weight.device)
        if x.shape[1] != self.weight.shape[0]:
            raise InputError(
                f"features have {x.shape[1]} columns; the probe was fitted on {self.weight.shape[0]}"
            )
        return torch.addmm(self.bias, (x - self.mean) / self.std, self.weight)

    def evaluate(self, x: ArrayLike, y: ArrayLike) -> dict[str, float]:
        """Top-1 and top-5 accuracy in percent.

        Args:
            x: ``[N, F]`` raw features.
            y: ``[N]`` integer labels in ``0..C-1``.

        Returns:
            ``{"top1": ..., "top5": ...}`` in percent; ``"top5"`` is omitted when C < 5.
        """
        labels = _as_labels(y, self.weight.device, num_classes=self.num_classes)
        return topk_accuracy(self.predict_logits(x), labels)


def topk_accuracy(logits: ArrayLike, y: ArrayLike, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """Share of rows whose label is among the k highest scores, in percent.

    Args:
        logits: ``[N, C]`` scores (any monotone scale: logits, probabilities, kNN votes).
        y: ``[N]`` integer labels in ``0..C-1``.
        ks: the k values; a k larger than C is omitted from the result (it would always be 100%).

    Returns:
        ``{"top{k}": percent}`` for each k <= C.
    """
    scores = _as_tensor(logits)
    labels = _as_tensor(y).to(device=scores.device, dtype=torch.long)
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise InputError(
            f"need logits [N, C] and labels [N]; got {tuple(scores.shape)} and {tuple(labels.shape)}"
        )
    kept = [k for k in ks if k <= scores.shape[1]]
    if not kept or len(labels) == 0:
        return {f"top{k}": float("nan") for k in kept}
    ranked = scores.topk(max(kept), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"top{k}": 100.0 * hits[:, :k].any(dim=1).double().mean().item() for k in kept}


def train_val_split(
    y: ArrayLike, val_fraction: float = 0.1, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified split of row indices into training and validation rows.

    Each class with at least 2 rows sends ``round(val_fraction * n_c)`` of them (at least 1, at most
    ``n_c - 1``) to validation; a class with a single row stays in training.

    Args:
        y: ``[N]`` integer labels.
        val_fraction: the share of each class held out, in (0, 1).
        seed: seeds the shuffle within each class.

    Returns:
        ``(train_idx, val_idx)``, sorted ``np.int64`` row indices that partition ``0..N-1``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InputError(f"val_fraction must be in (0, 1); got {val_fraction}")
    labels = _as_tensor(y).cpu().numpy()
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) >= 2:
            n_val = min(max(round(val_fraction * len(rows)), 1), len(rows) - 1)
            val.append(rng.permutation(rows)[:n_val])
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx)
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


def fit_linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    *,
    val_fraction: float = 0.1,
    val_x: ArrayLike | None = None,
    val_y: ArrayLike | None = None,
    weight_decays: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2),
    epochs: int = 100,
    patience: int | None = 5,
    tol: float = 1e-4,
    num_classes: int | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LinearProbe:
    """Train a linear probe per weight decay; keep the weight decay and epoch best on validation.

    See the module docstring for the protocol (standardisation, objective, L-BFGS, selection, no refit).

    Args:
        train_x: ``[N, F]`` cached features (numpy or torch, any float dtype; computed in float32).
        train_y: ``[N]`` integer labels in ``0..C-1``.
        val_fraction: share of each training class held out for validation when ``val_x`` is not given.
        val_x: ``[V, F]`` validation features; with ``val_y``, used instead of a split of the training rows.
        val_y: ``[V]`` validation labels in ``0..C-1``.
        weight_decays: the grid of λ (L2 strength on the weights, per training row), all >= 0; run from
            the largest to the smallest.
        epochs: maximum number of L-BFGS iterations per weight decay (each one at least one full pass).
        patience: end a weight decay's run after this many epochs without a new best of its validation
            top-1; ``None`` runs until convergence or ``epochs``.
        tol: L-BFGS stops when the largest gradient entry is below this (scikit-learn's ``tol``).
        num_classes: C; by default ``max(train_y) + 1``, and then the smallest label must be 0.
        seed: seeds the validation split (the optimisation itself is deterministic).
        device: where the objective is evaluated; the probe's tensors live there.

    Returns:
        The best-on-validation :class:`LinearProbe`.

    Raises:
        InputError: labels that are not integers in ``0..C-1`` (e.g. 1-based), mismatched shapes, or an
            empty training or validation set.
    """
    grid = sorted({float(wd) for wd in weight_decays}, reverse=True)
    if not grid or min(grid) < 0:
        raise InputError(f"weight_decays must be a non-empty list of values >= 0; got {list(weight_decays)}")
    if epochs < 1:
        raise InputError(f"epochs must be >= 1; got {epochs}")
    x = _as_features(train_x, device)
    y = _as_labels(train_y, device, num_classes=num_classes)
    if len(x) != len(y):
        raise InputError(f"train_x has {len(x)} rows but train_y has {len(y)}")
    n_classes = num_classes or int(y.max()) + 1

    if (val_x is None) != (val_y is None):
        raise InputError("give both val_x and val_y, or neither")
    if val_x is None:
        train_idx, val_idx = (
            torch.from_numpy(i).to(x.device) for i in train_val_split(y, val_fraction, seed=seed)
        )
        x, y, xv, yv = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    else:
        xv = _as_features(val_x, device)
        yv = _as_labels(val_y, device, num_classes=n_classes)
        if len(xv) != len(yv) or xv.shape[1] != x.shape[1]:
            raise InputError(
                f"val_x {tuple(xv.shape)} does not match val_y {tuple(yv.shape)} / {x.shape[1]} features"
            )
    if len(x) == 0 or len(xv) == 0:
        raise InputError(f"need training and validation rows; got {len(x)} and {len(xv)}")

    mean = x.mean(dim=0)
    std = x.std(dim=0) if len(x) > 1 else torch.ones_like(mean)
    std = torch.where(std < _STD_EPS, torch.ones_like(std), std)
    x = (x - mean) / std
    xv = (xv - mean) / std

    history: dict[float, list[float]] = {}
    best: dict[str, Any] = {"correct": -1}
    optimizer = None
    for wd in grid:  # largest first; each run starts where the previous one ended
        objective = _SoftmaxObjective(x, y, n_classes, wd)
        if optimizer is None:
            optimizer = _LBFGS(objective, torch.zeros((x.shape[1] + 1) * n_classes, device=x.device))
        else:
            optimizer.retarget(objective)
        history[wd], candidate = _fit_one(optimizer, xv, yv, epochs=epochs, patience=patience, tol=tol)
        if candidate["correct"] > best["correct"]:  # ties keep the larger weight decay
            best = {**candidate, "weight_decay": wd}
    return LinearProbe(
        weight=best["weight"].clone(),  # the checkpoints are views of a flat parameter vector
        bias=best["bias"].clone(),
        mean=mean,
        std=std,
        weight_decay=best["weight_decay"],
        epoch=best["epoch"],
        val_top1=100.0 * best["correct"] / len(yv),
        history=history,
    )


def _fit_one(
    optimizer: _LBFGS, xv: torch.Tensor, yv: torch.Tensor, *, epochs: int, patience: int | None, tol: float
) -> tuple[list[float], dict[str, Any]]:
    """Run ``optimizer`` for one weight decay, scoring the validation rows after every iteration.

    Returns:
        The validation top-1 curve in percent (one entry per iteration) and the best iterate as
        ``{"correct": count, "epoch": iteration, "weight": [F, C], "bias": [C]}`` (epoch 0, the starting
        weights, when their gradient is already below ``tol``, e.g. for a single class).
    """
    unpack = optimizer.objective.unpack
    weight, bias = unpack(optimizer.params)
    best = {"correct": _correct(xv, yv, weight, bias), "epoch": 0, "weight": weight, "bias": bias}
    curve: list[float] = []
    for epoch in range(1, epochs + 1):
        if optimizer.converged(tol) or not optimizer.step():
            break
        weight, bias = unpack(optimizer.params)
        correct = _correct(xv, yv, weight, bias)
        curve.append(100.0 * correct / len(yv))
        if correct > best["correct"] or best["epoch"] == 0:
            best = {"correct": correct, "epoch": epoch, "weight": weight, "bias": bias}
        if patience is not None and epoch - best["epoch"] >= patience:
            break
    return curve, best


class _SoftmaxObjective:
    """``mean cross-entropy + λ/2 ||W||²`` of a flat parameter vector ``[W.ravel() (F*C), b (C)]``.

    The gradient is written out by hand (no autograd), and logits are computed in blocks of rows, so memory
    stays ``O(block * C)`` however large N is.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, weight_decay: float) -> None:
        self.x, self.y, self.num_classes, self.weight_decay = x, y, num_classes, weight_decay
        self.block_rows = max(1, _BLOCK_ELEMENTS // num_classes)

    def unpack(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``W [F, C]`` and ``b [C]`` of a parameter vector."""
        return params[: -self.num_classes].view(-1, self.num_classes), params[-self.num_classes :]

    @torch.no_grad()
    def __call__(self, params: torch.Tensor) -> tuple[float, torch.Tensor]:
        """The loss (a float) and its gradient (``[P]``, like ``params``)."""
        weight, bias = self.unpack(params)
        grad = torch.empty_like(params)
        grad_w, grad_b = self.unpack(grad)
        torch.mul(weight, self.weight_decay, out=grad_w)
        grad_b.zero_()
        n = len(self.x)
        flat_weight = params[: -self.num_classes]
        loss = 0.5 * self.weight_decay * flat_weight.dot(flat_weight).item()
        for start in range(0, n, self.block_rows):
            xb, yb = self.x[start : start + self.block_rows], self.y[start : start + self.block_rows]
            log_probs = torch.log_softmax(torch.addmm(bias, xb, weight), dim=1)
            rows = torch.arange(len(yb), device=yb.device)
            loss -= log_probs[rows, yb].double().sum().item() / n
            dlogits = log_probs.exp_().index_put_(
                (rows, yb), torch.tensor(-1.0, device=yb.device), accumulate=True
            )
            grad_w.addmm_(xb.T, dlogits, alpha=1.0 / n)  # d CE / d logits = softmax - one-hot
            grad_b.add_(dlogits.sum(dim=0), alpha=1.0 / n)
        return loss, grad


class _LBFGS:
    """Full-batch L-BFGS for a smooth convex objective, written for few, large tensor operations.

    The inverse-Hessian product uses the compact representation of Byrd, Nocedal & Schnabel (1994,
    Theorem 2.2) with ``H0 = γ I``: two matrix-vector products with the stacked history instead of the
    ``4 m`` vector operations of the two-loop recursion (each one a thread synchronisation on a CPU). The
    step length comes from backtracking until the Armijo condition holds, starting from 1; on a convex
    objective ``s·y >= 0`` holds anyway, and pairs with ``s·y ~ 0`` are skipped.
    """

    def __init__(self, objective: _SoftmaxObjective, params: torch.Tensor, history: int = 10) -> None:
        """Start at ``params`` (``[P]``, see :class:`_SoftmaxObjective`) with an empty history."""
        self.objective, self.params, self.history = objective, params, history
        self.loss, self.grad = objective(params)
        self.pairs = params.new_empty(0, len(params))  # [2k, P]: s_0..s_{k-1}, then y_0..y_{k-1}
        self.gram = torch.empty(0, 0, dtype=torch.float64)  # [2k, k]: s_i·y_j, then y_i·y_j

    def retarget(self, objective: _SoftmaxObjective) -> None:
        """Continue on the same loss with another weight decay, keeping the current point and history.

        The penalty is quadratic, so the loss, gradient and curvature pairs change exactly: by
        ``Δλ/2 ||W||²``, ``Δλ W`` and ``y_i += Δλ s_i`` on the weight entries (the bias is not penalised).
        Pairs whose ``s·y`` is no longer positive (possible only when λ reaches 0) are dropped.
        """
        change, self.objective = objective.weight_decay - self.objective.weight_decay, objective
        weights = len(self.params) - objective.num_classes  # W entries come first, then the bias
        self.loss += 0.5 * change * self.params[:weights].dot(self.params[:weights]).item()
        self.grad = self.grad.clone()
        self.grad[:weights].add_(self.params[:weights], alpha=change)
        k = len(self.pairs) // 2
        if k:
            steps, changes = self.pairs[:k], self.pairs[k:].clone()
            changes[:, :weights].add_(steps[:, :weights], alpha=change)
            keep = (steps * changes).sum(dim=1) > 1e-10 * changes.square().sum(dim=1)
            self.pairs = torch.cat([steps[keep], changes[keep]])
            self.gram = (self.pairs @ self.pairs[int(keep.sum()) :].T).double()

    def converged(self, tol: float) -> bool:
        """Whether the largest gradient entry is at most ``tol``."""
        return self.grad.abs().max().item() <= tol

    def step(self) -> bool:
        """One iteration; False when no step decreased the loss (converged to float precision)."""
        direction = self._descent_direction()
        slope = self.grad.dot(direction).item()
        if not slope < 0:  # not a descent direction (rounding): restart from steepest descent
            self.pairs, self.gram = self.pairs[:0], self.gram[:0, :0]
            direction, slope = -self.grad, -self.grad.square().sum().item()
        length = 1.0 if len(self.pairs) else min(1.0, 1.0 / math.sqrt(-slope))
        for _ in range(_MAX_BACKTRACKS):
            params = torch.add(self.params, direction, alpha=length)
            loss, grad = self.objective(params)
            if loss <= self.loss + _ARMIJO * length * slope:
                break
            length /= 2
        else:
            return False
        s, y = params - self.params, grad - self.grad
        if s.dot(y).item() > 1e-10 * y.dot(y).item():
            k = min(len(self.pairs) // 2, self.history - 1)  # pairs kept from before
            old_s, old_y = (
                self.pairs[len(self.pairs) // 2 - k : len(self.pairs) // 2],
                self.pairs[len(self.pairs) - k :],
            )
            self.pairs = torch.cat([old_s, s[None], old_y, y[None]])
            self.gram = (self.pairs @ self.pairs[k + 1 :].T).double()
        self.params, self.loss, self.grad = params, loss, grad
        return True

    def _descent_direction(self) -> torch.Tensor:
        """``-H g``, H the L-BFGS inverse-Hessian approximation (``-g`` without history)."""
        g, k = self.grad, len(self.pairs) // 2
        if k == 0:
            return -g
        proj = (self.pairs @ g).double()
        p, q = proj[:k, None], proj[k:, None]  # S g, Y g
        sy, yy = self.gram[:k], self.gram[k:]
        upper = sy.triu()  # R
        gamma = (sy[-1, -1] / yy[-1, -1]).item()
        a = torch.linalg.solve_triangular(upper, p, upper=True)
        top = torch.linalg.solve_triangular(
            upper.T, (torch.diag(sy.diagonal()) + gamma * yy) @ a - gamma * q, upper=False
        )
        coef = torch.cat([top, -gamma * a]).squeeze(1).to(g.dtype)
        return torch.addmv(g, self.pairs.T, coef, beta=-gamma, alpha=-1.0)  # -(γ g + [S; Y]ᵀ coef)


@torch.no_grad()
def _correct(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> int:
    """Number of rows whose top-1 prediction is right, scored in blocks of rows."""
    rows = max(1, _BLOCK_ELEMENTS // weight.shape[1])
    return sum(
        int((torch.addmm(bias, x[i : i + rows], weight).argmax(dim=1) == y[i : i + rows]).sum())
        for i in range(0, len(x), rows)
    )


def _as_tensor(a: ArrayLike) -> torch.Tensor:
    """A tensor sharing memory with ``a`` where possible (numpy arrays with negative strides are copied)."""
    return torch.as_tensor(np.ascontiguousarray(a) if isinstance(a, np.ndarray) else a)


def _as_features(x: ArrayLike, device: str | torch.device) -> torch.Tensor:
    """``[N, F]`` numpy/torch features as a float32 tensor on ``device``."""
    tensor = _as_tensor(x).to(device=device, dtype=torch.float32)
    if tensor.ndim != 2:
        raise InputError(f"features must be a [N, F] matrix; got shape {tuple(tensor.shape)}")
    return tensor


def _as_labels(y: ArrayLike, device: str | torch.device, *, num_classes: int | None = None) -> torch.Tensor:
    """``[N]`` integer labels as an int64 tensor on ``device``, checked to be ``0..C-1``.

    With ``num_classes`` the labels must lie in ``[0, num_classes)``; without it C is ``max + 1`` and the
    smallest label must be 0 (which catches 1-based labels such as CUB's).
    """
    tensor = _as_tensor(y)
    if tensor.ndim != 1:
        raise InputError(f"labels must be a 1-D array; got shape {tuple(tensor.shape)}")
    if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
        raise InputError(f"labels must be integers 0..C-1; got dtype {tensor.dtype}")
    tensor = tensor.to(device=device, dtype=torch.long)
    if len(tensor) == 0:
        return tensor
    low, high = int(tensor.min()), int(tensor.max())
    if low < 0:
        raise InputError(f"labels must be 0..C-1; got min {low}")
    if num_classes is None and low != 0:
        raise InputError(
            f"labels must be 0..C-1; got min {low} (1-based labels? subtract 1, or remap them with "
            "np.unique(labels, return_inverse=True))"
        )
    if num_classes is not None and high >= num_classes:
        raise InputError(f"labels must be 0..C-1 with C = {num_classes}; got max {high}")
    return tensor
