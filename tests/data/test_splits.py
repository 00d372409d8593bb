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


def _pick_by_fixed_width_sort(strata: list[str], keys: list[str], fraction: float, seed: int) -> np.ndarray:
    """The module's rule written out directly: order each class by its keys as numpy unicode strings
    (code points), permute with the (seed, crc32(class)) generator, take round(n * fraction)."""
    import zlib

    picked = np.zeros(len(keys), dtype=bool)
    for name in sorted(set(strata)):
        rows = np.array([i for i, s in enumerate(strata) if s == name])
        rows = rows[np.argsort(np.asarray(keys, dtype=str)[rows], kind="stable")]
        take = min(int(np.floor(len(rows) * fraction + 0.5)), len(rows) - 1)
        rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
        picked[rows[rng.permutation(len(rows))[:take]]] = True
    return picked


@pytest.mark.parametrize("form", ["list", "numpy", "object series", "arrow series"])
def test_the_pick_sorts_keys_by_code_point_in_any_container(form: str) -> None:
    """Keys are ranked where they are stored (Arrow sorts Arrow strings); the pick is the one a
    fixed-width numpy sort gives, for non-ASCII keys and repeated keys too."""
    import pandas as pd

    rng = np.random.default_rng(1)
    alphabet = ["a", "B", "z", "é", "ß", "日", "0", "~", "Ω"]
    keys = ["".join(rng.choice(alphabet, size=rng.integers(1, 4))) for _ in range(300)]
    keys[10] = keys[20]  # a repeated key: ties keep row order
    strata = [f"c{i % 4}" for i in range(300)]
    container = {
        "list": lambda: keys,
        "numpy": lambda: np.asarray(keys, dtype=str),
        "object series": lambda: pd.Series(keys, dtype=object),
        "arrow series": lambda: pd.Series(keys, dtype="string[pyarrow]"),
    }[form]()
    got = stratified_pick(strata, container, 0.3, seed=4)
    assert np.array_equal(got, _pick_by_fixed_width_sort(strata, keys, 0.3, seed=4))
