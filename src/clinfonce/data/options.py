"""Options of the dataset sources: typed dataclasses, validated before any file is opened.

Every source (a module of :mod:`clinfonce.data.sources`) has one options class that adds only its own
fields to a shared base:

- :class:`FileOptions`: what every file-backed source shares (the folder, the image size and conversion,
  the up-front file check, the validation split);
- :class:`InMemoryOptions`: what the sources decoded into memory share (the folder, the image size, the
  validation split).

The field types are those :func:`clinfonce.typed.from_mapping` checks (``int``, ``float``, ``str``, ``bool``,
``X | None``, ``list[X]``, ``dict[str, X]``); a field without a default is required; ``metadata["help"]`` is
the field's one-line description (``clinfonce data options NAME`` lists them). ``__post_init__`` checks
what a value alone can tell (a fraction in [0, 1), channels 1 or 3, a known rule): a bad value is an
:class:`OptionError` naming the option, whether the options come from a config or from code.

``skip_bad`` is not an option: it is how one run treats bad files, given to a source's ``load``.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from clinfonce.data.files import DEFAULT_MAX_PIXELS, RESIZE_RULES
from clinfonce.errors import InputError

#: The help of every source's ``image_size`` option (each source gives its own default).
IMAGE_SIZE_HELP = "side of the square images returned, in pixels"


class OptionError(InputError):
    """A bad option value, found without opening a file; ``str()`` is ``"<key> <problem>"``."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem


def check_fraction(key: str, value: object) -> None:
    """:class:`OptionError` unless ``value`` is a number in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise OptionError(key, f"must be in [0, 1), got {value!r}")


def check_positive(key: str, value: object) -> None:
    """:class:`OptionError` unless ``value`` is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(key, f"must be a positive integer, got {value!r}")


def check_choice(key: str, value: object, choices: Collection[object]) -> None:
    """:class:`OptionError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise OptionError(key, f"must be one of {list(choices)}, got {value!r}")


def check_stats(mean: list[float], std: list[float]) -> None:
    """:class:`OptionError` unless ``mean`` and ``std`` have 1 or 3 values each."""
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, 3):
            raise OptionError(key, f"must have 1 or 3 values, got {list(values)}")


@dataclass(kw_only=True)
class TrainingSample:
    """The options every source read from disk shares: train on a seeded, class-balanced part of its
    training split (quick studies on a CPU; the rule: :func:`~clinfonce.data.splits.training_sample`), and
    more auxiliary columns from a table joined on ``path`` (:mod:`clinfonce.data.metadata`)."""

    train_per_class: int | None = field(
        default=None,
        metadata={"help": "keep this many training images of each class (a seeded sample); null: all"},
    )
    metadata: str | None = field(
        default=None,
        metadata={
            "help": "a table (CSV, TSV, Parquet) with a path column: its other columns are joined to the "
            "images as auxiliary columns (tags, attributes)"
        },
    )

    def __post_init__(self) -> None:
        if self.train_per_class is not None:
            check_positive("train_per_class", self.train_per_class)


@dataclass(kw_only=True)
class FileOptions(TrainingSample):
    """Options every file-backed source shares (a source redeclares ``root`` and ``image_size`` to say
    what its folder is and to give its own default size)."""

    root: str = field(metadata={"help": "the dataset's local folder (nothing is downloaded)"})
    image_size: int = field(default=224, metadata={"help": IMAGE_SIZE_HELP})
    channels: int = field(default=3, metadata={"help": "3 (RGB) or 1 (grayscale)"})
    resize: str = field(
        default="center_crop",
        metadata={
            "help": "center_crop (shorter side to the size, then the centre) or stretch (plain resize)"
        },
    )
    check_files: bool = field(
        default=True, metadata={"help": "open every image up front (needed by skip_bad)"}
    )
    workers: int | None = field(
        default=None, metadata={"help": "threads of the up-front check (null: the CPU count, at most 8)"}
    )
    max_pixels: int | None = field(
        default=DEFAULT_MAX_PIXELS,
        metadata={"help": "decompression-bomb limit of one image, in pixels (null: only PIL's own)"},
    )
    val_fraction: float = field(
        default=0.0, metadata={"help": "fraction of each class's training images moved to a validation split"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the splits"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("image_size", self.image_size)
        check_choice("channels", self.channels, (1, 3))
        check_choice("resize", self.resize, RESIZE_RULES)
        check_fraction("val_fraction", self.val_fraction)


@dataclass(kw_only=True)
class InMemoryOptions(TrainingSample):
    """Options the in-memory sources share (each gives ``root`` its meaning and ``image_size`` the size
    its images are stored at)."""

    root: str | None = field(
        default=None, metadata={"help": "the dataset's local folder (nothing is downloaded)"}
    )
    image_size: int = field(metadata={"help": IMAGE_SIZE_HELP})
    val_fraction: float = field(
        default=0.0, metadata={"help": "fraction of each class's training images moved to a validation split"}
    )
    seed: int = field(default=0, metadata={"help": "seed of the validation split"})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("image_size", self.image_size)
        check_fraction("val_fraction", self.val_fraction)
