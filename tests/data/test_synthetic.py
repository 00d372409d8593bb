"""The built-in shapes dataset: deterministic, attributes informative at the documented noise level."""

from __future__ import annotations

import numpy as np
import pandas as pd

from clinfonce.data.synthetic import ATTRIBUTE_COLUMNS, ATTRIBUTE_NOISE, CLASS_NAMES, COLORS, make_shapes


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = (make_shapes(40, 10, seed=s) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.images, b.images)
    assert a.table.equals(b.table)
    assert not np.array_equal(a.images, c.images)


def test_table_layout() -> None:
    data = make_shapes(30, 20, image_size=24, seed=0)
    assert data.images.shape == (50, 24, 24, 3) and data.images.dtype == np.uint8
    assert (data.table["split"] == "train").sum() == 30 and (data.table["split"] == "test").sum() == 20
    assert set(ATTRIBUTE_COLUMNS) <= set(data.table.columns)
    names = data.table["label_name"]
    assert (names == [CLASS_NAMES[i] for i in data.table["label"]]).all()
    assert (names == data.table["shape"] + "/" + data.table["texture"]).all()


def test_informative_attributes_are_wrong_at_the_documented_rate() -> None:
    table = make_shapes(6000, 0, image_size=16, seed=0).table
    truth = {
        "round": table["shape"].isin(["circle", "ring"]),
        "hollow": table["shape"] == "ring",
        "three_sided": table["shape"] == "triangle",
        "patterned": table["texture"] != "solid",
        "striped": table["texture"] == "stripes",
    }
    for column, expected in truth.items():
        error_rate = float((table[column] != expected).mean())
        # binomial standard error at n = 6000 is about 0.005
        assert abs(error_rate - ATTRIBUTE_NOISE) < 0.02, (column, error_rate)


def test_nuisance_attributes_are_independent_of_the_label() -> None:
    table = make_shapes(6000, 0, image_size=16, seed=0).table
    for column in ("large", "dark_background"):
        per_class = table.groupby("label")[column].mean()
        assert per_class.max() - per_class.min() < 0.1, column
    colours = pd.crosstab(table["label"], table["color"], normalize="index")
    assert list(colours.columns) == sorted(COLORS) and len(colours) == len(CLASS_NAMES)  # none absent
    assert float(colours.max().max() - colours.min().min()) < 0.15
