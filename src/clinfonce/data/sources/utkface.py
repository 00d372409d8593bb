"""UTKFace (Zhang, Song, Qi, CVPR 2017): aligned and cropped face photos with per-image age, gender and race.

Files (nothing is downloaded)::

    ROOT/meta.csv                                   path, age, gender, race (one row per image)
    ROOT/images/<age>_<gender>_<race>_<datetime>.jpg

``meta.csv`` is the record: its ``path`` is relative to ``ROOT/images``, ``age`` in years, ``gender``
0 male / 1 female, ``race`` 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others (a few are missing: those images
have no race). The fields are partly estimated by their authors. The dataset's terms: non-commercial
research use only.

- Label (``label``): ``age_group`` (default; 9 groups named 00-02, 03-09, 10-19, ..., 60-69, 70+, so they sort by age), ``gender`` or
  ``race``, by name.
- Auxiliary information: the other two of ``age_group``, ``gender`` and ``race`` (never the label) are the
  dataset's own attributes. The table also has ``age`` (years), and from the file name the capture time
  (``captured`` as ``YYYY-MM-DD HH``, ``capture_day``, ``capture_hour``): real but semantically useless
  attributes, the natural negative control for stage 1 (name them: ``clusters.attributes=[capture_day]``).
  A file name without a capture time leaves those cells missing (counted in ``aux.notes``).
- Split: none is published; a seeded ``test_fraction`` (0.2) stratified by the label, the rest train
  (rule: :func:`~clinfonce.data.splits.stratified_pick`), then ``val_fraction`` of it for validation.
- Normalisation: the statistics of the images (mean 0.5964, 0.4567, 0.3910; std 0.2587, 0.2310, 0.2266,
  measured over all 23,317 images of the research copy at 128 px).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from clinfonce.data.dataset import AuxInfo, ImageDataset
from clinfonce.data.file_backed import file_dataset
from clinfonce.data.options import IMAGE_SIZE_HELP, FileOptions, check_choice, check_fraction
from clinfonce.data.paths import existing_dir, safe_path
from clinfonce.data.splits import stratified_pick
from clinfonce.data.tables import read_table, require_columns
from clinfonce.errors import InputError

GENDERS = ("male", "female")
RACES = ("White", "Black", "Asian", "Indian", "Others")
#: The age groups (upper bounds in years, inclusive) and their names.
AGE_BOUNDS = (2, 9, 19, 29, 39, 49, 59, 69)
AGE_GROUPS = ("00-02", "03-09", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70+")
LABELS = ("age_group", "gender", "race")
MEAN = (0.5964, 0.4567, 0.3910)
STD = (0.2587, 0.2310, 0.2266)


@dataclass(kw_only=True)
class UtkfaceOptions(FileOptions):
    """Options of UTKFace."""

    root: str = field(metadata={"help": "the folder of meta.csv and images/"})
    image_size: int = field(default=64, metadata={"help": IMAGE_SIZE_HELP})
    label: str = field(
        default="age_group", metadata={"help": "the downstream label: age_group, gender or race"}
    )
    test_fraction: float = field(default=0.2, metadata={"help": "test fraction of each class (seeded)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("label", self.label, LABELS)
        check_fraction("test_fraction", self.test_fraction)


def load(options: UtkfaceOptions, skip_bad: bool = False) -> ImageDataset:
    """UTKFace with the label ``options.label`` and the other fields as attributes (module docstring).

    Raises:
        InputError: no ``meta.csv`` or ``images/``, a missing column, an age that is not a number, a gender
            or race code out of range (naming the row), an image path leaving ``images/``, bad images.
    """
    root = existing_dir(options.root, "UTKFace folder")
    images = existing_dir(root / "images", "UTKFace image folder")
    meta_path = root / "meta.csv"
    if not meta_path.is_file():
        raise InputError(f"{meta_path}: no such file (UTKFace's meta.csv: path, age, gender, race)")
    meta = read_table(meta_path)
    require_columns(meta, ["path", "age", "gender", "race"], meta_path)
    real = str(images.resolve())
    table = pd.DataFrame(
        {"path": [safe_path(images, real, p, f"{meta_path}: row {i}") for i, p in enumerate(meta["path"])]}
    )
    age = pd.to_numeric(meta["age"], errors="coerce")
    _check_codes(meta_path, meta["age"], bad=~(age >= 0), expected="a number >= 0")
    table["age"] = age.astype(int)
    table["age_group"] = np.array(AGE_GROUPS)[np.searchsorted(AGE_BOUNDS, table["age"].to_numpy())]
    table["gender"] = _named(meta_path, meta["gender"], GENDERS)
    table["race"] = _named(meta_path, meta["race"], RACES)
    captured = pd.to_datetime(
        table["path"].str.rsplit("_", n=1).str[-1].str.slice(0, 14), format="%Y%m%d%H%M%S", errors="coerce"
    )
    table["captured"] = captured.dt.strftime("%Y-%m-%d %H")
    table["capture_day"] = captured.dt.strftime("%Y-%m-%d")
    table["capture_hour"] = captured.dt.hour.astype("Int64")
    table["class"] = table[options.label]
    test = stratified_pick(table["class"], table["path"], options.test_fraction, options.seed)
    table["split"] = np.where(test, "test", "train")
    notes = (
        f"age, gender and race partly estimated by the dataset's authors; {int(table['race'].isna().sum())} "
        f"image(s) without a race, {int(captured.isna().sum())} without a capture time in the file name; "
        "the capture time is a semantically useless attribute (a negative control)"
    )
    aux = AuxInfo(attributes=tuple(name for name in LABELS if name != options.label), notes=notes)
    rows = list(range(len(table)))
    return file_dataset(
        "utkface", table, images, options, mean=MEAN, std=STD, aux=aux, skip_bad=skip_bad,
        source=str(meta_path), rows=rows, all_classes=_classes(options.label),
    )  # fmt: skip


def _classes(label: str) -> tuple[str, ...]:
    return {"age_group": AGE_GROUPS, "gender": GENDERS, "race": RACES}[label]


def _named(source, codes: pd.Series, names: tuple[str, ...]) -> pd.Series:
    """Integer codes as names (a missing cell stays missing); :class:`InputError` naming the first bad row."""
    values = pd.to_numeric(codes, errors="coerce")
    bad = ~(values.isin(range(len(names))) | codes.isna())
    _check_codes(source, codes, bad=bad, expected=f"0..{len(names) - 1} or empty")
    return pd.Series([None if pd.isna(v) else names[int(v)] for v in values], dtype=object)


def _check_codes(source, raw: pd.Series, *, bad: pd.Series, expected: str) -> None:
    """:class:`InputError` naming the first row of ``raw`` where ``bad`` (``bool [N]``) is set."""
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"{source}: row {row}: column {raw.name!r} has {str(raw.iloc[row])!r}, expected {expected}"
        )
