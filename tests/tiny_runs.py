"""Settings of a training run small enough for the tests: the shapes data (256 training images), a narrow
network, batches of 32, no progress bar."""

TINY_SHAPES = [
    "data.options.n_train=256",
    "data.options.n_test=64",
    "data.options.seed=4",
    "model.width=8",
    "model.head_dim=16",
    "optim.batch_size=32",
    "train.progress_bar=false",
]
