"""A trained encoder with its run's own preprocessing: what to hand images to.

:class:`Encoder` is the one reader (:meth:`Encoder.load`) and the one writer (:meth:`Encoder.save`) of
``encoder.pt`` files, and reads the encoder of a run's Lightning checkpoints too. Loading uses
``torch.load(weights_only=True)``: a file cannot run code.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from clinfonce._io import atomic_write_with, load_checkpoint
from clinfonce.errors import InputError
from clinfonce.models import Network
from clinfonce.records import CheckpointMeta, EncoderInfo

if TYPE_CHECKING:
    from PIL import Image

    from clinfonce.data.augment import EvalTransform

#: the format tag of the ``encoder.pt`` files a run writes
ENCODER_FORMAT = "clinfonce-encoder-v2"


class Encoder:
    """A network (backbone + projection head) with how its training images were prepared.

    Attributes:
        network: the :class:`~clinfonce.models.Network`, in eval mode.
        info: the model settings, crop size, normalisation and image decoding of its training data.
        source: the file the weights came from (None for an encoder made in memory, not yet saved).
        class_names: the training data's classes, when known.
    """

    def __init__(
        self,
        network: Network,
        info: EncoderInfo,
        source: Path | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        self.network, self.info, self.source = network.eval(), info, source
        self.class_names = None if class_names is None else list(class_names)
        self.transform = self._eval_transform()

    def _eval_transform(self) -> EvalTransform:
        from clinfonce.data.augment import EvalTransform

        return EvalTransform(self.info.crop_size, self.info.mean, self.info.std)

    @property
    def dim(self) -> int:
        """Size of the backbone features :meth:`embed` returns (without ``projection``)."""
        return self.network.feature_dim

    def to(self, device: str | torch.device) -> Encoder:
        """Move the network (and the transform's statistics) to ``device``; returns self."""
        self.network.to(device)
        self.transform.to(device)
        return self

    # ------------------------------------------------------------------------------------------- files
    @classmethod
    def load(cls, path: str | os.PathLike) -> Encoder:
        """The encoder of a run directory (its ``encoder.pt``, else its last checkpoint), of an
        ``encoder.pt``, or of a Lightning checkpoint of a run.

        Raises:
            InputError: no such file, a file that is not a clinfonce checkpoint, an older format, weights
                that do not fit the recorded model; the message names the file.
        """
        path = Path(path)
        if path.is_dir():
            from clinfonce.run import RunDir  # a run directory names its files

            path = RunDir(path).encoder_file()
        if not path.is_file():
            raise InputError(f"{path}: no such checkpoint file")
        payload = load_checkpoint(path)
        if payload.get("format") == ENCODER_FORMAT:
            info, state = EncoderInfo.from_dict(payload, str(path)), payload["state_dict"]
            class_names = payload.get("class_names")
        elif "state_dict" in payload and CheckpointMeta.read(payload, str(path)).encoder is not None:
            info = CheckpointMeta.read(payload, str(path)).encoder
            state = {
                k[len("encoder.") :]: v for k, v in payload["state_dict"].items() if k.startswith("encoder.")
            }
            class_names = None
        else:
            raise InputError(f"{path}: not a clinfonce checkpoint (no encoder weights or config in it)")
        return cls(network_with_weights(info, state, str(path)), info, path, class_names)

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``encoder.pt`` (plain tensors and data: safe to load) atomically; it becomes the source."""
        payload = {
            "format": ENCODER_FORMAT,
            "state_dict": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "feature_dim": self.network.feature_dim,
            "class_names": list(self.class_names or []),
            **self.info.to_dict(),
        }
        path = Path(path)
        atomic_write_with(path, lambda tmp: torch.save(payload, tmp))
        self.source = path
        return path

    # ------------------------------------------------------------------------------------------ embed
    @torch.no_grad()
    def embed(
        self,
        images: torch.Tensor | np.ndarray | Sequence[Image.Image | str | os.PathLike],
        batch_size: int = 256,
        projection: bool = False,
    ) -> np.ndarray:
        """Embed images, in batches.

        Args:
            images: ``uint8 [N, C, H, W]`` (a tensor or array; any H x W, C = 1 or 3), or a list of PIL
                images or image file paths (decoded, converted and resized as the training data was).
            batch_size: images per forward pass.
            projection: the projection head's output instead of the backbone features (what evaluation
                and retrieval use).

        Returns:
            ``float32 [N, D]``: backbone features (D = :attr:`dim`), or head outputs with ``projection``.
        """
        from clinfonce.features import embed_batches

        batches = (
            self._as_uint8(images[start : start + batch_size]) for start in range(0, len(images), batch_size)
        )
        return embed_batches(self.network, batches, self.transform, projection)

    def _as_uint8(self, images: Any) -> torch.Tensor:
        """A batch as ``uint8 [B, C, H, W]``."""
        if isinstance(images, (torch.Tensor, np.ndarray)):
            batch = torch.as_tensor(images)
            if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] not in (1, 3):
                raise InputError(
                    f"images must be uint8 [N, C, H, W] with C = 1 or 3, got {batch.dtype} {tuple(batch.shape)}"
                )
            return batch
        from PIL import Image

        from clinfonce.data.files import load_array, to_array

        decoded = self.info.input
        arrays = []
        for item in images:
            if isinstance(item, Image.Image):
                arrays.append(to_array(item, decoded.image_size, decoded.channels, decoded.resize))
            else:  # decoded as the training data's files were
                arrays.append(load_array(item, decoded.image_size, decoded.channels, decoded.resize))
        return torch.from_numpy(np.stack(arrays))


def network_with_weights(info: EncoderInfo, state: dict[str, torch.Tensor], source: str) -> Network:
    """The network ``info.model`` describes, with ``state`` loaded in its own floating-point type (a
    ``64-true`` run's weights stay float64); :class:`InputError` naming ``source`` when they do not fit it."""
    network = Network.of(info.model)
    dtype = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    network.to(dtype)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()[1:2] or [str(error)]  # torch lists every mismatch: name the first
        raise InputError(
            f"{source}: the weights do not fit a {info.model.backbone} encoder ({first[0].strip()[:200]})"
        ) from error
    return network.eval()
