"""The built-in dataset: procedurally generated shapes (:mod:`clinfonce.data.synthetic`), made from a seed
in seconds; nothing is read or downloaded."""

from __future__ import annotations

from dataclasses import dataclass, field

from clinfonce.data.dataset import ImageDataset
from clinfonce.data.options import OptionError
from clinfonce.data.synthetic import shapes_dataset


@dataclass(kw_only=True)
class ShapesOptions:
    """Options of the generated shapes."""

    n_train: int = field(default=4000, metadata={"help": "training images (the first rows)"})
    n_test: int = field(default=2000, metadata={"help": "test images (the rows after)"})
    image_size: int = field(default=32, metadata={"help": "side of the square images, in pixels (>= 16)"})
    seed: int = field(
        default=0,
        metadata={"help": "the generator's seed: the same seed always gives the same images and table"},
    )

    def __post_init__(self) -> None:
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionError(key, f"must be a non-negative integer, got {value!r}")
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or self.image_size < 16:
            raise OptionError("image_size", f"must be an integer >= 16, got {self.image_size!r}")


def load(options: ShapesOptions) -> ImageDataset:
    """The generated shapes (see :func:`~clinfonce.data.synthetic.shapes_dataset`)."""
    return shapes_dataset(
        n_train=options.n_train, n_test=options.n_test, image_size=options.image_size, seed=options.seed
    )
