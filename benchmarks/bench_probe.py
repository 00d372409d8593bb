"""Linear probe on cached features: time and test accuracy against scikit-learn's LogisticRegression.

Features are synthesised: ``--classes`` Gaussian class means in ``--dim`` dimensions plus Gaussian noise,
both pushed through one fixed random mixing matrix (a rotation with log-normal scales), so the features are
correlated and unevenly scaled like an encoder's. The noise is large enough that test top-1 is ~70%, not
100%. (With isotropic noise the first L-BFGS step, a class-mean classifier, would already be optimal and
the benchmark would not exercise the optimiser.)

Both methods see the same standardised features (mean/std of the same training rows), the same stratified
validation split (``train_val_split``, 10%, seed 0) and the same grid, λ in {0, 1e-5, 1e-4, 1e-3, 1e-2}:

* ours: ``fit_linear_probe`` with its defaults (L-BFGS, validation picks λ and the iteration), then
  ``evaluate`` on the test rows;
* scikit-learn: ``LogisticRegression`` (lbfgs, multinomial, default ``tol``/``max_iter``) fitted once per
  λ with ``C = 1 / (λ n)`` (``C = inf``, no penalty, for λ = 0), the C with the best validation top-1 kept.

Both timings include standardisation, every fit of the grid and the test evaluation; they run one after
the other in this process on the same arrays, alternately ``--repeats`` times (default 1), and each
method's best time is kept, so that a slow spell of a shared machine does not decide a ratio. The table's
last row is the single scikit-learn fit at the chosen C alone, for scale. Accuracy counts as the same when
the test top-1 of the two differs by at most ``--tolerance`` points (default 0.5, the project's target;
one standard error of a 5,000-row validation accuracy near 68% is 0.66 points, so this is at the noise
floor of selecting on validation).

``--compare-with FILE`` also times another version of ``linear_probe.py`` (for example an earlier commit's,
``git show COMMIT:src/clinfonce/evaluation/linear_probe.py > /tmp/old_probe.py``), loaded from that file,
on the same data.

    python benchmarks/bench_probe.py [--train 50000] [--test 10000] [--dim 512] [--classes 100] [--seed 0]
        [--threads N] [--compare-with FILE] [--repeats N] [--tolerance 0.5]
    python benchmarks/bench_probe.py --fashion-mnist [--threads N] [--compare-with FILE] [--repeats N]

``--fashion-mnist`` uses real features instead: the 784 raw pixels (scaled to [0, 1]) of Fashion-MNIST's
60,000 training and 10,000 test images, 10 classes, read from where Debian's ``dataset-fashion-mnist``
installs them.

``--threads 1`` gives both methods one thread each (torch via ``set_num_threads``, numpy/scipy BLAS via
threadpoolctl): the fairest per-core comparison, since scikit-learn's lbfgs gains little from more threads
while torch's matmuls use all of them, and on a machine shared with other jobs a multi-threaded small
operation can wait a whole scheduler slice for its second thread.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from _measure import machine

WEIGHT_DECAYS = (0.0, 1e-5, 1e-4, 1e-3, 1e-2)


def synthesise(n_train: int, n_test: int, dim: int, classes: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``(train_x [n_train, dim] float32, train_y, test_x [n_test, dim] float32, test_y)``; labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 0.15, (classes, dim)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    mixing = (np.exp(rng.normal(0.0, 0.5, dim))[:, None] * rotation).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        return (means[y] + rng.standard_normal((n, dim), dtype=np.float32)) @ mixing, y

    return (*draw(n_train), *draw(n_test))


def fashion_mnist_pixels() -> tuple[np.ndarray, ...]:
    """``(train_x [60000, 784] float32 in [0, 1], train_y, test_x [10000, 784], test_y)`` of the local copy."""
    from clinfonce.data.sources.fashion_mnist import DEFAULT_DIR, FILES, idx_path, read_idx

    arrays = []
    for image_file, label_file in FILES.values():
        pixels = read_idx(idx_path(DEFAULT_DIR, image_file), ndim=3)
        arrays += [
            pixels.reshape(len(pixels), -1).astype(np.float32) / 255,
            read_idx(idx_path(DEFAULT_DIR, label_file), ndim=1).astype(np.int64),
        ]
    return tuple(arrays)


def load_module(path: str) -> ModuleType:
    """Import a Python file under a name of its own (e.g. an earlier commit's ``linear_probe.py``)."""
    spec = importlib.util.spec_from_file_location("compared_linear_probe", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def ours(
    fit_linear_probe: Callable,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
) -> dict:
    start = time.perf_counter()
    probe = fit_linear_probe(train_x, train_y, weight_decays=WEIGHT_DECAYS)
    top1 = probe.evaluate(test_x, test_y)["top1"]
    seconds = time.perf_counter() - start
    iterations = "+".join(str(len(probe.history[wd])) for wd in WEIGHT_DECAYS)
    chosen = f"λ={probe.weight_decay:g}, iteration {probe.epoch}"
    return {"seconds": seconds, "top1": top1, "chosen": chosen, "iterations": iterations}


def sklearn_grid(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray) -> dict:
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from clinfonce.evaluation import train_val_split

    start = time.perf_counter()
    fit_rows, val_rows = train_val_split(train_y, 0.1, seed=0)
    mean, std = train_x[fit_rows].mean(0), train_x[fit_rows].std(0, ddof=1)
    fit_x, val_x = (train_x[fit_rows] - mean) / std, (train_x[val_rows] - mean) / std
    best, iterations = {"val": -1.0}, []
    for wd in WEIGHT_DECAYS:
        c_value = 1.0 / (wd * len(fit_rows)) if wd else np.inf
        fit_start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = LogisticRegression(solver="lbfgs", C=c_value).fit(fit_x, train_y[fit_rows])
        fit_seconds = time.perf_counter() - fit_start
        iterations.append(str(int(model.n_iter_[0])))
        val = model.score(val_x, train_y[val_rows])
        if val > best["val"]:
            best = {
                "val": val,
                "model": model,
                "wd": wd,
                "fit_seconds": fit_seconds,
                "iters": int(model.n_iter_[0]),
            }
    top1 = 100.0 * best["model"].score((test_x - mean) / std, test_y)
    seconds = time.perf_counter() - start
    shown_c = f"C={1 / (best['wd'] * len(fit_rows)):.3g}" if best["wd"] else "C=inf"
    chosen = f"λ={best['wd']:g} ({shown_c}), {best['iters']} iterations"
    return {
        "seconds": seconds,
        "top1": top1,
        "chosen": chosen,
        "iterations": "+".join(iterations),
        "single_fit_seconds": best["fit_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", type=int, default=50_000)
    parser.add_argument("--test", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic features")
    parser.add_argument(
        "--fashion-mnist", action="store_true", help="real features: Fashion-MNIST pixels (see above)"
    )
    parser.add_argument(
        "--threads", type=int, help="limit torch and the BLAS behind numpy/scikit-learn to this many threads"
    )
    parser.add_argument("--compare-with", metavar="FILE", help="another linear_probe.py to time as well")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every method; the best time is kept")
    parser.add_argument(
        "--tolerance", type=float, default=0.5, help="test top-1 points within which accuracy is the same"
    )
    args = parser.parse_args()
    if args.threads:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(args.threads)
        threadpool_limits(args.threads)

    data = (
        fashion_mnist_pixels()
        if args.fashion_mnist
        else synthesise(args.train, args.test, args.dim, args.classes, seed=args.seed)
    )
    from clinfonce.evaluation import fit_linear_probe

    fits = {"ours": fit_linear_probe}
    if args.compare_with:
        fits["compared"] = load_module(args.compare_with).fit_linear_probe
    load_before = os.getloadavg()[0]
    runs: dict[str, list[dict]] = {name: [] for name in [*fits, "scikit-learn"]}
    for _ in range(args.repeats):  # alternated
        for name, fit in fits.items():
            runs[name].append(ours(fit, *data))
        runs["scikit-learn"].append(sklearn_grid(*data))
    best = {name: min(results, key=lambda r: r["seconds"]) for name, results in runs.items()}
    mine, ref = best["ours"], best["scikit-learn"]
    load_after = os.getloadavg()[0]
    threads = f"{args.threads} thread(s) for torch and BLAS" if args.threads else "default threads"
    print(f"machine: {machine()}; {threads}; load average {load_before:.1f} before, {load_after:.1f} after")
    (n_train, dim), n_test = data[0].shape, len(data[2])
    source = "Fashion-MNIST pixels" if args.fashion_mnist else "synthetic"
    print(
        f"{source} features: {n_train} train ({n_train - round(0.1 * n_train)} fit + ~10% validation) / "
        f"{n_test} test rows x {dim}, {len(np.unique(data[1]))} classes; grid λ in {list(WEIGHT_DECAYS)}\n"
    )
    print(
        "| method | chosen on validation | iterations for λ = 0, 1e-5, …, 1e-2 | fit + eval s | test top-1 % |"
    )
    print("|---|---|---|---:|---:|")
    rows = [("clinfonce `fit_linear_probe` (L-BFGS, float32 torch)", mine)]
    if args.compare_with:
        rows.append((f"`fit_linear_probe` of {args.compare_with}", best["compared"]))
    rows.append(("scikit-learn `LogisticRegression` (lbfgs), 5-value C grid", ref))
    for name, r in rows:
        print(f"| {name} | {r['chosen']} | {r['iterations']} | {r['seconds']:.1f} | {r['top1']:.2f} |")
    print(f"| scikit-learn, the chosen C alone (1 fit, for scale) | | | {ref['single_fit_seconds']:.1f} | |")
    if args.repeats > 1:
        print()
        for name, results in runs.items():
            print(
                f"{name}, all {args.repeats} times (s): " + ", ".join(f"{r['seconds']:.1f}" for r in results)
            )
    difference = mine["top1"] - ref["top1"]
    print(
        f"\nspeed-up over the scikit-learn grid: {ref['seconds'] / mine['seconds']:.1f}x; "
        f"test top-1 difference (ours - scikit-learn): {difference:+.2f} points, "
        f"{'within' if abs(difference) <= args.tolerance else 'NOT within'} ±{args.tolerance:g}"
    )
    if args.compare_with:
        other = best["compared"]
        print(
            f"time of {args.compare_with} / ours: {other['seconds'] / mine['seconds']:.2f}x (above 1: ours is "
            f"faster); test top-1 difference (ours - it): {mine['top1'] - other['top1']:+.2f} points"
        )


if __name__ == "__main__":
    main()
