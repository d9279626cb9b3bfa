"""Sequential MNIST (§4.3): the 784 pixels of a digit, one per step, ``[B, 784, 1]`` in [0, 1].

Split as the paper: 55,000 train / 5,000 validation (the last 5,000 training images) / 10,000
test. Sources: ``"idx"``, the four standard files (``train-images-idx3-ubyte.gz`` ...; gzipped
or not) in ``config.data.dir``, those missing downloaded from ``config.data.url`` and checked
against their published SHA-256 when ``config.data.download``; or ``"tfds"`` (``mnist``).

Files already in the folder are read as they are (the IDX reader checks their header and size):
a download gets its final name only once verified, and copies put there by hand may be
recompressed or unzipped, so they need not match the mirror's checksums byte for byte.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from skip_rnn.experiments.data.base import Batch, TaskData, epoch_batches
from skip_rnn.experiments.data.download import fetch
from skip_rnn.experiments.data.sources import DataError, read_idx, tfds_arrays

NUM_VALIDATION = 5000
URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the standard mirror
# SHA-256 of the four files on the standard mirror (9,912,422, 28,881, 1,648,877 and 4,542
# bytes), as published in tensorflow-datasets' url_checksums/mnist.txt.
CHECKSUMS = {
    "train-images-idx3-ubyte.gz":
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz":
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz":
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz":
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def how_to(d: ml_collections.ConfigDict) -> str:
    return (f"Put the four MNIST IDX files ({', '.join(CHECKSUMS)}; from {d.url}) in "
            f"{d.dir!r}, or set --config.data.dir to a folder holding them (copies from any "
            "mirror, recompressed or unzipped: files there are read as they are, without the "
            "SHA-256 check), or use --config.data.source=tfds.")


def _present(directory: str, name: str) -> str | None:
    """The path of ``name`` in ``directory``, gzipped or not; None when it is absent."""
    paths = [os.path.join(directory, n) for n in (name, name.removesuffix(".gz"))]
    return next((p for p in paths if os.path.isfile(p)), None)


def idx_files(d: ml_collections.ConfigDict) -> dict[str, str]:
    """File name -> path of the four IDX files in ``d.dir``; the missing ones downloaded (when
    ``d.download``) from ``d.url``, verified."""
    paths = {name: _present(d.dir, name) for name in CHECKSUMS}
    missing = [name for name, path in paths.items() if path is None]
    if missing and not d.download:
        raise DataError(f"config.data.dir={d.dir!r} has no {', '.join(missing)} and "
                        f"config.data.download is False. {how_to(d)}")
    for name in missing:
        url = f"{d.url.rstrip('/')}/{name}"
        paths[name] = fetch(url, CHECKSUMS[name], os.path.join(d.dir, name), how_to(d))
    return paths


def read_idx_split(paths: dict[str, str], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` and labels ``[N]`` of ``prefix`` ("train" or "t10k")."""
    arrays = []
    for kind, dims in (("images-idx3", 3), ("labels-idx1", 1)):
        array = read_idx(paths[f"{prefix}-{kind}-ubyte.gz"])
        if array.ndim != dims:
            raise DataError(f"{prefix}-{kind}: expected a {dims}-d IDX array, got shape "
                            f"{array.shape}.")
        arrays.append(array)
    images, labels = arrays
    if len(images) != len(labels):
        raise DataError(f"{prefix}: {len(images)} images but {len(labels)} labels.")
    return images, labels


def as_sequences(images: np.ndarray, labels: np.ndarray) -> Batch:
    pixels = images.reshape(len(images), -1, 1).astype(np.float32) / 255.0
    return Batch(pixels, labels.astype(np.int32))


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    if d.source == "idx":
        paths = idx_files(d)
        train, test = (as_sequences(*read_idx_split(paths, p)) for p in ("train", "t10k"))
    elif d.source == "tfds":
        train, test = (as_sequences(a["image"][..., 0], a["label"]) for a in (
            tfds_arrays("mnist", split, d.dir) for split in ("train", "test")))
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
