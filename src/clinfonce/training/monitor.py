"""Online kNN accuracy while training: every ``eval.knn_every`` epochs, the validation images are classified
by weighted kNN over the training images' backbone features (evaluation transform), and the accuracy is
logged (``val/knn{k}_top1``) to the CSV log and TensorBoard. Monitoring only: the validation split is never
used for training, and the test split is never looked at."""

from __future__ import annotations

import logging

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback

from clinfonce.data.dataset import ImageDataset
from clinfonce.evaluation.knn import knn_accuracy
from clinfonce.features import extract_features

log = logging.getLogger(__name__)


class OnlineKnn(Callback):
    """Log kNN accuracy on the validation split at the end of every ``every``-th epoch.

    Args:
        dataset: the data.
        train_rows, val_rows: its labelled training rows (the neighbours) and validation rows (classified).
        every: epochs between two measurements.
        k: neighbours.
        batch_size: of the feature pass.
    """

    def __init__(
        self,
        dataset: ImageDataset,
        train_rows: np.ndarray,
        val_rows: np.ndarray,
        every: int,
        k: int,
        batch_size: int,
    ) -> None:
        self.labels = dataset.table["label"].to_numpy()
        self.dataset, self.train_rows, self.val_rows = dataset, train_rows, val_rows
        self.every, self.k, self.batch_size = every, k, batch_size

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every or not trainer.is_global_zero:
            return
        transform = module.augment.eval_transform()
        train = extract_features(module.encoder, self.dataset, self.train_rows, transform, self.batch_size)
        val = extract_features(module.encoder, self.dataset, self.val_rows, transform, self.batch_size)
        k = min(self.k, len(self.train_rows))
        scores = knn_accuracy(train, self.labels[self.train_rows], val, self.labels[self.val_rows], ks=(k,))
        value = scores[f"knn{k}_top1"]
        module.log(f"val/knn{k}_top1", value, on_step=False, on_epoch=True, rank_zero_only=True)
        log.info(
            "epoch %d: kNN-%d top-1 on %d validation images %.2f%%",
            trainer.current_epoch + 1,
            k,
            len(self.val_rows),
            value,
        )


def knn_monitor(dataset: ImageDataset, every: int | None, k: int, batch_size: int) -> OnlineKnn | None:
    """The callback, or None when it is off (``every`` unset) or the data has no labelled validation
    images (said once in the log)."""
    if every is None:
        return None
    labels = dataset.table["label"].to_numpy()
    train_rows, val_rows = (rows[labels[rows] >= 0] for rows in (dataset.rows("train"), dataset.rows("val")))
    if not len(val_rows) or not len(train_rows):
        log.warning(
            "eval.knn_every is set but %s has no labelled validation images: no online kNN "
            "(give the dataset a val_fraction option, e.g. data.options.val_fraction=0.1)",
            dataset.name,
        )
        return None
    return OnlineKnn(dataset, train_rows, val_rows, every, k, batch_size)


__all__ = ["OnlineKnn", "knn_monitor"]
