"""Evaluation of frozen features: a linear probe chosen on validation, and a weighted kNN classifier."""

from clinfonce.evaluation.knn import knn_accuracy, knn_classify
from clinfonce.evaluation.linear_probe import LinearProbe, fit_linear_probe, topk_accuracy, train_val_split

__all__ = [
    "LinearProbe",
    "fit_linear_probe",
    "knn_accuracy",
    "knn_classify",
    "topk_accuracy",
    "train_val_split",
]
