"""UCF-101 action recognition (§4.5) from pre-extracted frame features, ``[B, 250, D]``.

Expected layout of ``config.data.dir`` (the official split files, plus one ``.npy`` per video
with its frame-level features ``[num_frames, D]``, e.g. ResNet-50 global-average-pool, D=2048)::

    classInd.txt                    # "1 ApplyEyeMakeup" ...
    trainlist01.txt                 # "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1" ...
    testlist01.txt                  # "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi" ...
    features/v_ApplyEyeMakeup_g08_c01.npy

Videos are cropped to ``seq_length`` frames (10 s at 25 fps); shorter ones are zero-padded and
the padding is masked with ``lengths`` (``config.data.mask_padding=False``: fed as inputs, the
paper's count). Features are read from disk batch by batch. Validation holds out whole groups
(``gNN`` in the file name: clips of one group share actors and scene) of the training list,
seeded, about ``validation_fraction`` of its videos; the test list is the test set (the paper
reports on it as "validation").
"""

from __future__ import annotations

import os
import re

import ml_collections
import numpy as np

from skip_rnn.experiments.data.base import (
    Batch,
    TaskData,
    check_finite,
    epoch_batches,
    seeded_split,
)
from skip_rnn.experiments.data.sources import DataError, require_dir, require_file

HOW_TO = ("See the expected layout in skip_rnn/experiments/data/ucf101.py (and "
          "docs/experiments.md, the data table).")


class FrameFeatures:
    """Videos of frame features read lazily from disk, one ``.npy`` ``[frames, D]`` each,
    cropped or zero-padded to ``seq_length``; ``slice(start, stop)`` and ``take(index)`` give a
    Batch whose targets are :meth:`targets`'."""

    def __init__(self, paths: list[str], seq_length: int):
        self.paths, self.seq_length = paths, seq_length

    @property
    def num_examples(self) -> int:
        return len(self.paths)

    def targets(self, index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The targets of the videos ``index`` ``[B]``, of ``lengths`` frames each."""
        raise NotImplementedError

    def take(self, index) -> Batch:
        index = np.asarray(index)
        frames = [self._read(self.paths[i]) for i in index]
        dim = frames[0].shape[1]
        inputs = np.zeros((len(frames), self.seq_length, dim), np.float32)
        for row, f in zip(inputs, frames, strict=True):
            row[: len(f)] = f
        lengths = np.array([len(f) for f in frames], np.int32)
        return Batch(inputs, self.targets(index, lengths), lengths)

    def slice(self, start: int, stop: int) -> Batch:
        return self.take(np.arange(start, min(stop, self.num_examples)))

    def _read(self, path: str) -> np.ndarray:
        try:
            frames = np.load(path)
        except (OSError, ValueError) as e:
            raise DataError(f"{path}: cannot read it as .npy ({e}).") from e
        if frames.ndim != 2 or len(frames) == 0:
            raise DataError(f"{path}: expected features [num_frames > 0, D], got {frames.shape}.")
        return check_finite(path, frames[: self.seq_length].astype(np.float32))


class Videos(FrameFeatures):
    """UCF-101's videos, one class label each."""

    def __init__(self, paths: list[str], labels: np.ndarray, seq_length: int):
        super().__init__(paths, seq_length)
        self.labels = labels

    def targets(self, index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.labels[index]


def _read_list(directory: str, name: str, classes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    path = require_file(directory, name, "config.data.dir", HOW_TO)
    paths, labels = [], []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            video = line.split()[0]
            class_name, file_name = video.split("/")
            if class_name not in classes:
                raise DataError(f"{path}: class {class_name!r} is not in classInd.txt.")
            stem = os.path.splitext(file_name)[0]
            paths.append(os.path.join(directory, "features", stem + ".npy"))
            labels.append(classes[class_name])
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(f"{len(missing)} feature files listed in {name} are missing, e.g. "
                        f"{missing[0]}. {HOW_TO}")
    return paths, np.array(labels, np.int32)


def video_group(path: str) -> str:
    """The group of ``.../v_<Class>_g<NN>_c<MM>.npy``: ``"<NN>"`` (the file name if none)."""
    stem = os.path.splitext(os.path.basename(path))[0]
    match = re.search(r"_g([^_]+)_c[^_]+$", stem)
    return match.group(1) if match else stem


def split_by_group(paths: list[str], fraction: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)``: whole groups, in a seeded order, are held out until
    they hold ``fraction`` of the videos (:func:`seeded_split`: at least one group; never all
    of them)."""
    groups = np.array([video_group(p) for p in paths])
    names, counts = np.unique(groups, return_counts=True)
    if len(names) < 2:
        raise DataError(f"Validation holds out whole groups (gNN), but the training list has "
                        f"only {len(names)}. {HOW_TO}")
    taken, _ = seeded_split(counts, (fraction, 1 - fraction), seed)
    held_out = np.isin(groups, names[taken])
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    directory = require_dir(d.dir, "config.data.dir", HOW_TO)
    with open(require_file(directory, "classInd.txt", "config.data.dir", HOW_TO)) as f:
        classes = {name: int(i) - 1 for i, name in (line.split() for line in f if line.strip())}
    train_paths, train_labels = _read_list(directory, f"trainlist0{d.split}.txt", classes)
    test = Videos(*_read_list(directory, f"testlist0{d.split}.txt", classes), d.seq_length)
    train_idx, val_idx = split_by_group(train_paths, d.validation_fraction, d.split_seed)
    train = Videos([train_paths[i] for i in train_idx], train_labels[train_idx], d.seq_length)
    validation = Videos([train_paths[i] for i in val_idx], train_labels[val_idx], d.seq_length)
    train_batch, steps_per_epoch = epoch_batches(train, config.batch_size)
    return TaskData(
        train_batch=train_batch,
        eval_sets={"validation": validation, "test": test},
        input_size=np.load(train_paths[0], mmap_mode="r").shape[1],
        num_outputs=len(classes),
        steps_per_epoch=steps_per_epoch,
    )
