"""Shared fixtures: tiny on-disk datasets in the standard formats, and tiny configs."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="session")
def mnist_dir(tmp_path_factory):
    """Standard MNIST IDX files with 40 train and 10 test images."""
    directory = tmp_path_factory.mktemp("mnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 10)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    return str(directory)


@pytest.fixture(scope="session")
def imdb_csv(tmp_path_factory):
    """A ``text,label`` CSV of 60 short reviews."""
    path = tmp_path_factory.mktemp("imdb") / "reviews.csv.gz"
    rng = np.random.default_rng(0)
    words = ["good", "bad", "movie", "plot", "great", "awful", "actor", "the"]
    with gzip.open(path, "wt") as f:
        f.write("text,label\n")
        for i in range(60):
            text = " ".join(rng.choice(words, rng.integers(3, 12)))
            f.write(f"\"{text} <br /><br />It's {i}\",{i % 2}\n")
    return str(path)


@pytest.fixture(scope="session")
def ucf_dir(tmp_path_factory):
    """The UCF-101 layout with 3 classes, 24 train (groups 8-11) and 6 test (group 1) videos of
    8-d features."""
    directory = tmp_path_factory.mktemp("ucf101")
    (directory / "features").mkdir()
    rng = np.random.default_rng(0)
    classes = ["ApplyEyeMakeup", "Basketball", "Drumming"]
    (directory / "classInd.txt").write_text(
        "".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for split, n, first_group in (("trainlist01.txt", 24, 8), ("testlist01.txt", 6, 1)):
        lines = []
        for i in range(n):  # groups of 6 clips: 2 per class
            c = classes[i % 3]
            name = f"v_{c}_g{first_group + i // 6:02d}_c{i // 3 % 2 + 1:02d}"
            np.save(directory / "features" / f"{name}.npy",
                    rng.normal(size=(rng.integers(3, 12), 8)).astype(np.float32))
            lines.append(f"{c}/{name}.avi {i % 3 + 1}\n")
        (directory / split).write_text("".join(lines))
    return str(directory)
