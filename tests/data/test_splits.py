"""The seeded stratified split."""

from __future__ import annotations

import numpy as np
import pytest

from clinfonce.data.splits import stratified_pick
from clinfonce.errors import InputError


def test_stratified_pick_rules() -> None:
    strata = ["a"] * 10 + ["b"] * 2 + ["c"]
    keys = [f"{i:02d}" for i in range(13)]
    picked = stratified_pick(strata, keys, 0.3, seed=0)
    assert picked[:10].sum() == 3 and picked[10:12].sum() == 1 and not picked[12]
    # the pick of a class does not depend on the order of the rows nor on the other classes
    order = np.random.default_rng(0).permutation(13)
    shuffled = stratified_pick(np.array(strata)[order], np.array(keys)[order], 0.3, seed=0)
    assert np.array_equal(shuffled, picked[order])
    alone = stratified_pick(strata[:10], keys[:10], 0.3, seed=0)
    assert np.array_equal(alone, picked[:10])
    with pytest.raises(InputError):
        stratified_pick(strata, keys, 1.0, seed=0)
