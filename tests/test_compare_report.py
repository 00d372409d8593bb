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
