"""The comparison's report opens with each method against the best baseline without auxiliary
information, paired by seed (the numbers below are worked out by hand)."""

from __future__ import annotations

import pandas as pd

from clinfonce.compare.report import against_baseline


def _table(rows):
    return pd.DataFrame(rows, columns=["method", "setting", "seed", "status", "top1"])


def test_each_method_against_the_best_no_auxiliary_baseline_by_seed() -> None:
    table = _table(
        [
            ("pretrained", "", 0, "ok", 60.0), ("pretrained", "", 1, "ok", 61.0), ("pretrained", "", 2, "ok", 62.0),
            ("simclr", "", 0, "ok", 50.0), ("simclr", "", 1, "ok", 52.0), ("simclr", "", 2, "ok", 51.0),
            ("clinfonce", "top_k=3", 0, "ok", 63.0), ("clinfonce", "top_k=3", 1, "ok", 60.5),
            ("clinfonce", "top_k=3", 2, "ok", 64.0),
            ("supcon", "", 0, "ok", 70.0), ("supcon", "", 1, "failed", None), ("supcon", "", 2, "ok", 71.0),
        ]
    )  # fmt: skip
    lines = against_baseline(table)
    # pretrained (mean 61.0) beats simclr (51.0): it is the baseline
    assert lines[0].startswith("Against the best baseline without auxiliary information, `pretrained` (61.0%")
    assert lines[2:] == [
        # 63-60, 60.5-61, 64-62: +3.0, -0.5, +2.0 -> mean +1.5, 2 of 3
        "- `simclr`: -10.0 points over `pretrained` (seeds 0/1/2: -10.0/-9.0/-11.0), holds on 0 of 3 seed(s).",
        "- `clinfonce` (top_k=3): +1.5 points over `pretrained` (seeds 0/1/2: +3.0/-0.5/+2.0), holds on 2 of 3 "
        "seed(s).",
        "- `supcon`: +9.5 points over `pretrained` (seeds 0/2: +10.0/+9.0), holds on 2 of 2 seed(s).",
    ]


def test_no_sentence_without_a_no_auxiliary_baseline() -> None:
    assert (
        against_baseline(_table([("clinfonce", "top_k=3", 0, "ok", 63.0), ("supcon", "", 0, "ok", 70.0)]))
        == []
    )


def test_the_curves_plot_leaves_out_runs_that_did_not_train(tmp_path, monkeypatch) -> None:
    """``pretrained`` has no training curve: it gets no legend entry, and a comparison of it alone no plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from clinfonce.compare import report
    from clinfonce.run import RunDir

    curves = {
        "simclr-seed0": pd.DataFrame({"epoch": [0, 1], "train_loss": [2.0, 1.0]}),
        "pretrained-seed0": pd.DataFrame(columns=["epoch", "train_loss"]),
    }
    monkeypatch.setattr(RunDir, "training_curve", lambda self: curves[self.path.name])
    closed = []
    monkeypatch.setattr(plt, "close", closed.append)
    table = pd.DataFrame(
        {
            "method": ["simclr", "pretrained"],
            "seed": [0, 0],
            "status": ["ok", "ok"],
            "run": [f"runs/{n}" for n in curves],
        }
    )
    assert report._plot_curves(tmp_path, table, plt)
    legend = closed[0].axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == ["simclr-seed0"]
    assert not report._plot_curves(tmp_path, table.iloc[1:], plt)
