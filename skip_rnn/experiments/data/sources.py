"""Reading datasets from disk or tensorflow-datasets, failing fast with a how-to when absent.

The standard files of MNIST and IMDB are downloaded by :mod:`skip_rnn.experiments.data.download`;
tensorflow-datasets are read only once prepared (``tfds build``): tfds's own download retries
for minutes offline, so a dataset that is not prepared is refused at once instead.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np


class DataError(ValueError):
    """Missing, incomplete or corrupt data, with a message that says how to fix it."""


def require_dir(path: str | None, field: str, how_to: str) -> str:
    if not path or not os.path.isdir(path):
        raise DataError(f"{field}={path!r} is not a directory. {how_to}")
    return path


def require_file(directory: str, name: str, field: str, how_to: str) -> str:
    path = os.path.join(directory, name)
    if not os.path.isfile(path):
        raise DataError(f"{field}={directory!r} has no file {name!r}. {how_to}")
    return path


def read_idx(path: str) -> np.ndarray:
    """An IDX file (MNIST's format; gzipped if the name ends in ``.gz``) as a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: cannot read it ({e}); the file is truncated or corrupt.") from e
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: bad IDX magic number {data[:4].hex()}; expected an "
                        "unsigned-byte IDX file (00000801 labels, 00000803 images).")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    if len(data) - header != int(np.prod(shape)):
        raise DataError(f"{path}: holds {len(data) - header} bytes of data, its header says "
                        f"{shape} = {int(np.prod(shape))}: the file is truncated or corrupt.")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def tfds_arrays(name: str, split: str, data_dir: str | None) -> dict:
    """A whole tfds split as NumPy arrays; refuses at once when it is not prepared locally."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        raise DataError(
            f"tensorflow-datasets '{name}' is not prepared in {builder.data_dir!r}. Prepare it "
            f"on a machine with internet (pip install tensorflow; tfds build {name} "
            f"--data_dir=DIR) and set --config.data.dir=DIR, or use the default source, which "
            "downloads the standard files itself (docs/experiments.md, the data table)."
        )
    return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
