"""The Encoder of the Python API on inputs the docs do not show: an empty list, a wrong array."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clinfonce.config import ModelConfig
from clinfonce.data.dataset import ImageInput
from clinfonce.encoder import Encoder
from clinfonce.errors import InputError
from clinfonce.models import Network
from clinfonce.records import EncoderInfo


@pytest.fixture
def encoder() -> Encoder:
    model = ModelConfig(backbone="small", small_images=True, head_dim=16, width=4)
    info = EncoderInfo(model, 24, (0.5,) * 3, (0.25,) * 3, ImageInput((24, 24), 3, "stretch"))
    return Encoder(Network.of(model), info)


def test_nothing_to_embed_gives_an_empty_matrix_of_the_right_width(encoder) -> None:
    assert encoder.embed([]).shape == (0, 32)  # small CNN of width 4: 8 x 4 features
    assert encoder.embed([], projection=True).shape == (0, 16)


def test_features_of_no_rows_have_the_width_of_what_was_asked(encoder) -> None:
    """`clinfonce embed --projection` of an empty split: the head's width, not the backbone's."""
    from clinfonce.data.synthetic import shapes_dataset
    from clinfonce.features import extract_features

    data = shapes_dataset(n_train=8, n_test=4, seed=0)
    none = np.zeros(0, dtype=np.int64)
    assert extract_features(encoder.network, data, none, encoder.transform).shape == (0, 32)
    assert extract_features(encoder.network, data, none, encoder.transform, projection=True).shape == (0, 16)


def test_a_batch_equals_the_network_on_the_transformed_images(encoder) -> None:
    images = torch.randint(0, 256, (3, 3, 30, 30), dtype=torch.uint8)
    with torch.no_grad():
        expected = encoder.network.features(encoder.transform(images)).numpy()
    np.testing.assert_allclose(encoder.embed(images, batch_size=2), expected, rtol=1e-5, atol=1e-6)


def test_a_wrong_array_is_one_clear_error(encoder) -> None:
    with pytest.raises(InputError, match="uint8"):
        encoder.embed(np.zeros((2, 3, 8, 8), dtype=np.float32))
