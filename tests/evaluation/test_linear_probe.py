"""Linear probe: accuracy against scikit-learn, validation-only selection, determinism, label checks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from clinfonce.evaluation import fit_linear_probe, topk_accuracy, train_val_split

WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: with several threads every small operation pays a thread synchronisation,
    which on a machine shared with other jobs can cost a whole scheduler slice. Results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def _gaussians(n: int, classes: int, dim: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(123).normal(0, sep, (classes, dim))
    y = rng.integers(0, classes, n)
    return (means[y] + rng.normal(0, 1, (n, dim)) * 3 + 5).astype(np.float32), y


@pytest.fixture(scope="module")
def hard_data() -> tuple[np.ndarray, ...]:
    """20 overlapping classes: neither trivially separable nor hopeless (test accuracy ~75%)."""
    x, y = make_classification(
        n_samples=12_000,
        n_features=40,
        n_informative=25,
        n_redundant=5,
        n_classes=20,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    x = (x * np.linspace(0.1, 10, x.shape[1]) + 3).astype(np.float32)  # unequal scales: standardising matters
    return tuple(train_test_split(x, y, test_size=3600, stratify=y, random_state=0))


def test_separable_gaussians_are_classified_perfectly():
    x, y = _gaussians(600, classes=5, dim=32, sep=4.0, seed=0)
    x_test, y_test = _gaussians(600, classes=5, dim=32, sep=4.0, seed=1)
    probe = fit_linear_probe(x, y, epochs=30)
    assert probe.evaluate(x_test, y_test)["top1"] >= 99.5
    assert probe.evaluate(x_test, y_test)["top5"] == 100.0


def test_test_accuracy_matches_sklearn_logistic_regression_tuned_on_the_same_split(hard_data):
    x_train, x_test, y_train, y_test = hard_data
    ours = fit_linear_probe(x_train, y_train, weight_decays=WEIGHT_DECAYS).evaluate(x_test, y_test)["top1"]

    # Reference: same validation split, same standardisation, C = 1 / (λ n) over the same grid.
    fit_rows, val_rows = train_val_split(y_train, 0.1, seed=0)
    mean, std = x_train[fit_rows].mean(0), x_train[fit_rows].std(0, ddof=1)
    z_fit, z_val, z_test = ((x - mean) / std for x in (x_train[fit_rows], x_train[val_rows], x_test))
    best_val, reference = -1.0, None
    for wd in WEIGHT_DECAYS:
        c_value = 1.0 / (wd * len(fit_rows)) if wd else np.inf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning for the weakly regularised fits
            model = LogisticRegression(C=c_value, max_iter=500).fit(z_fit, y_train[fit_rows])
        val = model.score(z_val, y_train[val_rows])
        if val > best_val:
            best_val, reference = val, 100.0 * model.score(z_test, y_test)
    assert 50.0 < reference < 90.0  # the comparison is not between two saturated classifiers
    assert abs(ours - reference) <= 1.5, (ours, reference)


def test_lbfgs_reaches_the_sklearn_optimum_of_the_same_objective(hard_data):
    """The optimiser alone, warm-started from another weight decay as in the fit: converge at λ = 1e-3 and
    compare with scikit-learn's solution of the same objective."""
    from clinfonce.evaluation.linear_probe import _LBFGS, _SoftmaxObjective

    x_train, _, y_train, _ = hard_data
    z = (x_train - x_train.mean(0)) / x_train.std(0, ddof=1)
    wd, classes = 1e-3, 20
    reference = LogisticRegression(C=1.0 / (wd * len(z)), tol=1e-8, max_iter=2000).fit(z, y_train)

    features, labels = torch.from_numpy(z), torch.from_numpy(y_train)
    optimizer = _LBFGS(
        _SoftmaxObjective(features, labels, classes, 1e-2), torch.zeros((z.shape[1] + 1) * classes)
    )
    for _ in range(5):
        optimizer.step()
    objective = _SoftmaxObjective(features, labels, classes, wd)
    optimizer.retarget(objective)  # exact update of loss, gradient and curvature pairs for the new λ
    loss, grad = objective(optimizer.params)
    assert optimizer.loss == pytest.approx(loss, rel=1e-6)
    torch.testing.assert_close(optimizer.grad, grad, rtol=1e-5, atol=1e-7)
    for _ in range(300):
        if optimizer.converged(1e-5) or not optimizer.step():
            break

    sklearn_params = torch.cat(
        [torch.from_numpy(reference.coef_.T).float().ravel(), torch.from_numpy(reference.intercept_).float()]
    )
    assert optimizer.loss == pytest.approx(objective(sklearn_params)[0], abs=1e-6)
    weight, bias = objective.unpack(optimizer.params)
    np.testing.assert_allclose(weight.numpy(), reference.coef_.T, atol=1e-2)
    np.testing.assert_allclose(
        (bias - bias.mean()).numpy(), reference.intercept_ - reference.intercept_.mean(), atol=1e-2
    )


def test_hyper_parameters_come_from_validation_only(hard_data):
    x_train, x_test, y_train, y_test = hard_data
    probe = fit_linear_probe(x_train, y_train, epochs=15, patience=None)

    # The chosen (weight decay, epoch) is the best entry of the recorded validation curves; ties go to the
    # larger weight decay, then to the earlier epoch.
    top1, wd, minus_epoch = max(
        (top1, wd, -epoch) for wd, curve in probe.history.items() for epoch, top1 in enumerate(curve, 1)
    )
    assert (probe.weight_decay, probe.epoch) == (wd, -minus_epoch)
    assert probe.val_top1 == pytest.approx(top1)
    assert all(len(curve) <= 15 for curve in probe.history.values())

    # Its validation split is carved from the training rows (the chosen weights score val_top1 there),
    # passing that split explicitly gives the same probe, and scoring different test sets changes nothing.
    fit_rows, val_rows = train_val_split(y_train, 0.1, seed=0)
    assert probe.evaluate(x_train[val_rows], y_train[val_rows])["top1"] == pytest.approx(probe.val_top1)
    explicit = fit_linear_probe(
        x_train[fit_rows],
        y_train[fit_rows],
        val_x=x_train[val_rows],
        val_y=y_train[val_rows],
        epochs=15,
        patience=None,
    )
    assert (explicit.weight_decay, explicit.epoch, explicit.history) == (
        probe.weight_decay,
        probe.epoch,
        probe.history,
    )
    weight = probe.weight.clone()
    first = probe.evaluate(x_test, y_test)
    probe.evaluate(x_test[::-1] * 2.0, y_test[::-1])
    probe.evaluate(x_train, y_train)
    assert torch.equal(probe.weight, weight) and probe.evaluate(x_test, y_test) == first
    assert (probe.weight_decay, probe.epoch) == (explicit.weight_decay, explicit.epoch)


def test_fit_is_deterministic_given_seed(hard_data):
    x_train, _, y_train, _ = hard_data
    a, b = (fit_linear_probe(x_train, y_train, epochs=5, seed=3) for _ in range(2))
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias) and a.history == b.history
    c = fit_linear_probe(x_train, y_train, epochs=5, seed=4)
    assert not torch.equal(a.weight, c.weight)


def test_one_based_labels_are_rejected():
    x, y = _gaussians(100, classes=3, dim=4, sep=2.0, seed=0)
    with pytest.raises(ValueError, match=r"labels must be 0\.\.C-1; got min 1"):
        fit_linear_probe(x, y + 1)
    with pytest.raises(ValueError, match="integers"):
        fit_linear_probe(x, y.astype(np.float32))
    probe = fit_linear_probe(x, y, epochs=2)
    with pytest.raises(ValueError, match="C = 3"):
        probe.evaluate(x, y + 1)


def test_topk_accuracy_on_a_hand_computed_example():
    logits = torch.tensor(
        [
            [0.9, 0.1, 0.0, 0.0, 0.0, 0.0],  # label 0: rank 1
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # label 1: rank 5
            [0.6, 0.5, 0.4, 0.3, 0.2, 0.1],  # label 5: rank 6
            [0.0, 0.0, 0.0, 1.0, 0.5, 0.0],  # label 4: rank 2
        ]
    )
    labels = np.array([0, 1, 5, 4])
    assert topk_accuracy(logits, labels, ks=(1, 2, 5, 6)) == {
        "top1": 25.0,
        "top2": 50.0,
        "top5": 75.0,
        "top6": 100.0,
    }
    three_classes = topk_accuracy(logits[:3, :3], np.array([0, 2, 1]), ks=(1, 5))  # k > C is omitted
    assert three_classes == {"top1": pytest.approx(200 / 3)}


def test_train_val_split_is_stratified_seeded_and_a_partition():
    y = np.repeat(np.arange(4), [50, 10, 2, 1])
    train, val = train_val_split(y, 0.2, seed=0)
    assert np.array_equal(np.sort(np.concatenate([train, val])), np.arange(len(y)))
    assert np.bincount(y[val], minlength=4).tolist() == [10, 2, 1, 0]  # singleton class stays in training
    assert np.array_equal(val, train_val_split(y, 0.2, seed=0)[1])
    assert not np.array_equal(val, train_val_split(y, 0.2, seed=1)[1])


def test_evaluate_omits_top5_with_fewer_than_five_classes():
    x, y = _gaussians(200, classes=3, dim=8, sep=4.0, seed=0)
    probe = fit_linear_probe(x, y, epochs=5)
    assert set(probe.evaluate(x, y)) == {"top1"}
    assert probe.predict_logits(x).shape == (200, 3)


def test_a_single_class_keeps_the_starting_weights():
    """The gradient is zero from the start: no iteration runs, and the probe is the zero classifier of
    epoch 0."""
    x, _ = _gaussians(50, classes=3, dim=4, sep=2.0, seed=0)
    probe = fit_linear_probe(x, np.zeros(50, dtype=np.int64), weight_decays=(0.0, 1e-3))
    assert (probe.epoch, probe.weight_decay, probe.val_top1) == (0, 1e-3, 100.0)
    assert probe.history == {1e-3: [], 0.0: []}
    assert not probe.weight.any() and not probe.bias.any()
