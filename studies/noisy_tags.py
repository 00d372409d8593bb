"""Noisy hashtags for real images: the tag tables of the tag studies (studies/*_tags.yaml), made from the real
labels and taxonomy by a documented, seeded rule, so the web-tag setting of the paper can be studied on data
whose truth is known.

    python studies/noisy_tags.py fashion_mnist study_out/tags/fashion_mnist_tags.parquet
    python studies/noisy_tags.py omniglot study_out/tags/omniglot_tags.parquet [--root ../shared/datasets/omniglot]

The rule, per image (seed 0; every draw independent):

1. Informative tags: the image's class has a set of true tags (below: a hand-made product vocabulary for
   Fashion-MNIST; for Omniglot the alphabet, its script type and region from the alphabets' published
   descriptions, and the character itself). Each is kept with probability KEEP (missing tags); Omniglot's
   character tag only with CHARACTER_KEEP (the label itself, rarely written).
2. Wrong tags: with probability WRONG one true tag of another, uniformly drawn class is added.
3. A long tail of uninformative tags: Poisson(NOISE_MEAN) tags drawn from NOISE_VOCABULARY generic tags
   (#ootd, #tag0042, ...) by a Zipf law (rank r with probability ~ 1 / r^1.1), independent of the image.
4. No tags at all: with probability EMPTY the image's tag list is empty (an image nobody tagged).

The table (Parquet: an empty list stays "no tags", where a CSV's empty cell would read as missing) has the
dataset's ``path`` and ``tags`` (a space-separated string), for ``data.options.metadata``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

KEEP = 0.6
CHARACTER_KEEP = 0.3
WRONG = 0.15
NOISE_MEAN = 1.5
NOISE_VOCABULARY = 3000
EMPTY = 0.1

#: Fashion-MNIST: hand-made, shared tags make the classes overlap (tops, long sleeves, warm, footwear).
FASHION_TAGS = {
    "T-shirt/top": ["#top", "#tshirt", "#shortsleeve", "#casual"],
    "Trouser": ["#bottoms", "#trousers", "#pants", "#longlegs"],
    "Pullover": ["#top", "#pullover", "#longsleeve", "#knit", "#warm"],
    "Dress": ["#onepiece", "#dress", "#elegant"],
    "Coat": ["#top", "#coat", "#longsleeve", "#outerwear", "#warm"],
    "Sandal": ["#footwear", "#sandal", "#summer", "#opentoe"],
    "Shirt": ["#top", "#shirt", "#longsleeve", "#buttons"],
    "Sneaker": ["#footwear", "#sneaker", "#sport", "#casual"],
    "Bag": ["#bag", "#accessory"],
    "Ankle boot": ["#footwear", "#boot", "#warm", "#leather"],
}

#: Omniglot's alphabets: script type and region (from the alphabets' standard descriptions).
OMNIGLOT_ALPHABETS = {
    "Balinese": ["#abugida", "#southeastasia"],
    "Early_Aramaic": ["#abjad", "#middleeast"],
    "Greek": ["#alphabet", "#europe"],
    "Japanese_(katakana)": ["#syllabary", "#eastasia"],
    "Korean": ["#featural", "#eastasia"],
    "Latin": ["#alphabet", "#europe"],
    "Sanskrit": ["#abugida", "#southasia"],
    "Tagalog": ["#abugida", "#southeastasia"],
}


def fashion_true_tags(dataset) -> list[list[str]]:
    names = np.array(dataset.class_names, dtype=object)[dataset.table["label"].to_numpy()]
    return [FASHION_TAGS[name] for name in names]


def omniglot_true_tags(dataset) -> list[list[str]]:
    tags = []
    characters = np.array(dataset.class_names, dtype=object)[dataset.table["label"].to_numpy()]
    for character, alphabet in zip(characters, dataset.table["alphabet"], strict=True):
        script, region = OMNIGLOT_ALPHABETS[alphabet]
        name = character.lower().replace("/", "_")  # "greek/character07" -> "#greek_character07"
        tags.append([f"#{alphabet.lower()}", script, region, f"#{name}"])
    return tags


def noisy_tags(true_tags: list[list[str]], character_last: bool, seed: int = 0) -> list[str]:
    """The rule of the module docstring over each image's true tags (``character_last``: the last true tag
    is the character, kept with CHARACTER_KEEP)."""
    rng = np.random.default_rng(seed)
    distinct = sorted({tuple(tags) for tags in true_tags})
    zipf = 1.0 / np.arange(1, NOISE_VOCABULARY + 1) ** 1.1
    zipf /= zipf.sum()
    generic = ["#ootd", "#style", "#photo", "#instagood", "#new"] + [
        f"#tag{i:04d}" for i in range(NOISE_VOCABULARY - 5)
    ]
    cells = []
    for tags in true_tags:
        keep = np.full(len(tags), KEEP)
        if character_last:
            keep[-1] = CHARACTER_KEEP
        chosen = [tag for tag, p in zip(tags, keep, strict=True) if rng.random() < p]
        if rng.random() < WRONG:
            other = distinct[rng.integers(len(distinct))]
            chosen.append(other[rng.integers(len(other))])
        chosen += [generic[i] for i in rng.choice(NOISE_VOCABULARY, size=rng.poisson(NOISE_MEAN), p=zipf)]
        if rng.random() < EMPTY:
            chosen = []
        cells.append(" ".join(dict.fromkeys(chosen)))
    return cells


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", choices=["fashion_mnist", "omniglot"])
    parser.add_argument("out", help="the Parquet table to write (path, tags)")
    parser.add_argument("--root", help="the dataset's folder (Omniglot: ../shared/datasets/omniglot)")
    args = parser.parse_args()
    from clinfonce.data.registry import load_dataset

    options = {"root": args.root} if args.root else {}
    dataset = load_dataset(args.dataset, {**options, "image_size": 28})
    if args.dataset == "fashion_mnist":
        cells = noisy_tags(fashion_true_tags(dataset), character_last=False)
    else:
        cells = noisy_tags(omniglot_true_tags(dataset), character_last=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"path": dataset.table["path"], "tags": cells}).to_parquet(out, index=False)
    counts = pd.Series(" ".join(cells).split()).value_counts()
    print(
        f"wrote {out}: {len(cells)} images, {len(counts)} distinct tags, {sum(not c for c in cells)} untagged"
    )
    print("most frequent:", ", ".join(f"{tag} {n}" for tag, n in counts.head(12).items()))


if __name__ == "__main__":
    main()
