"""The dataset contract: the table's split column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from clinfonce.data.dataset import SPLITS, ImageDataset
from clinfonce.errors import InputError


def dataset_of(splits: list[object]) -> ImageDataset:
    table = pd.DataFrame({"path": [f"{i}.png" for i in range(len(splits))], "label": 0, "split": splits})
    return ImageDataset(
        "made", table, ["only"], lambda row: torch.zeros(1, 2, 2, dtype=torch.uint8), (2, 2), 1
    )


@pytest.mark.parametrize("dtype", [object, "str"])
def test_the_split_column_keeps_every_value_in_one_byte_a_row(dtype) -> None:
    splits = list(np.random.default_rng(0).choice(SPLITS, 50))
    dataset = dataset_of(pd.Series(splits, dtype=dtype))
    column = dataset.table["split"]
    assert column.dtype == pd.CategoricalDtype(SPLITS) and column.array.codes.itemsize == 1
    assert column.astype(str).tolist() == splits
    for split in SPLITS:
        assert dataset.rows(split).tolist() == [i for i, value in enumerate(splits) if value == split]


@pytest.mark.parametrize(
    ("bad", "said"),
    [("dev", "split 'dev', not one of train, val, test"), (None, "no split"), (np.nan, "no split")],
)
def test_a_split_outside_train_val_test_names_its_row(bad, said) -> None:
    with pytest.raises(InputError, match=rf"'made': row 2 has {said}$"):
        dataset_of(["train", "test", bad, "val"])
