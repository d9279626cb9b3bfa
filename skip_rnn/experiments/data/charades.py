"""Charades temporal action localization (§4.3): fc7 RGB features at 6 fps, ``[B, T, D]``, and
157 action classes per frame, ``[B, T, 157]``.

Expected layout of ``config.data.dir``, the official files as distributed at
https://prior.allenai.org/projects/charades (``Charades.zip`` for the CSVs,
``Charades_v1_features_rgb.tar.gz`` extracted for the features)::

    Charades_v1_train.csv       # id,subject,scene,...,actions,length (the official header)
    Charades_v1_test.csv        # actions: "c092 11.90 21.20;c147 0.00 12.60" (class start end, s)
    Charades_v1_features_rgb/
        46GP8/46GP8-000001.txt  # 4096 whitespace-separated numbers: fc7 of frame 1 at 24 fps
        46GP8/46GP8-000005.txt  # every 4th frame, 1, 5, 9, ...: 6 fps
    Charades_v1_features_rgb_npy/46GP8.npy  # [frames, D], written on first read

The naming is the dataset's README.txt (section ``Charades_v1_features_{rgb,flow}.tar.gz``):
``id/id-000000.txt``, "the number of the frame at 24fps ... we include every 4th frame ... so the
numbers are 1,5,9,13"; 24-fps frame ``n`` is at ``(n - 1) / 24`` s (as in the official loaders of
github.com/gsig/charades-algorithms), so feature ``k`` (frame ``4k + 1``) is at ``k / 6`` s. Its
label holds class ``c`` iff an annotation ``c start end`` has ``start <= k/6 <= end``, the rule
of the official evaluation (``Charades_v1_localize.m``). The feature size is read from the files.

The parsed features are cached as one ``.npy`` per video (``config.data.cache_dir``, default
``Charades_v1_features_rgb_npy/`` next to the archive); once a video is cached its text files
are not needed. Videos are cropped to ``seq_length`` frames, shorter ones zero-padded and masked
with ``lengths`` (targets are zero there); features are read from disk batch by batch.
Validation holds out a seeded ``validation_fraction`` of the training videos; the test set is
``Charades_v1_test.csv``, which the paper reports on as "the validation set of Charades".
"""

from __future__ import annotations

import csv
import os
import re
import tempfile

import ml_collections
import numpy as np

from skip_rnn.experiments.data import ucf101
from skip_rnn.experiments.data.base import TaskData, epoch_batches, seeded_split
from skip_rnn.experiments.data.sources import DataError, require_dir, require_file

NUM_CLASSES = 157
FPS = 6  # the feature archive keeps every 4th frame of 24
FEATURES = "Charades_v1_features_rgb"
CACHE = "Charades_v1_features_rgb_npy"
HOW_TO = (f"Download Charades.zip (Charades_v1_train.csv, Charades_v1_test.csv) and {FEATURES}"
          ".tar.gz from https://prior.allenai.org/projects/charades, extract both into "
          "config.data.dir; layout in skip_rnn/experiments/data/charades.py (and "
          "docs/experiments.md, Charades).")


def parse_actions(text: str) -> np.ndarray:
    """``"c092 11.90 21.20;c147 0.00 12.60"`` -> ``[[92, 11.9, 21.2], [147, 0.0, 12.6]]``
    (``[A, 3]``: class, start s, end s; ``[0, 3]`` for an empty field)."""
    rows = []
    for action in filter(None, text.split(";")):
        match = re.fullmatch(r"c(\d{3}) (\S+) (\S+)", action.strip())
        if not match or int(match.group(1)) >= NUM_CLASSES:
            raise ValueError(f"bad action {action!r}: expected 'cNNN start end', NNN < 157")
        rows.append([float(g) for g in match.groups()])
    return np.array(rows, np.float64).reshape(-1, 3)


def read_annotations(path: str) -> tuple[list[str], list[np.ndarray]]:
    """The ``id`` and parsed ``actions`` (:func:`parse_actions`) of each row of an official CSV."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not {"id", "actions"} <= set(reader.fieldnames or ()):
            raise DataError(f"{path}: needs the official columns 'id' and 'actions', has "
                            f"{reader.fieldnames}. {HOW_TO}")
        ids, actions = [], []
        for row in reader:
            try:
                actions.append(parse_actions(row["actions"]))
            except ValueError as e:
                raise DataError(f"{path}, video {row['id']}: {e}.") from e
            ids.append(row["id"])
    return ids, actions


def frame_labels(actions: np.ndarray, num_frames: int) -> np.ndarray:
    """Multi-hot ``[num_frames, 157]`` of frames ``k`` at ``k / FPS`` s: class ``c`` iff an
    action ``[c, start, end]`` of ``actions`` ``[A, 3]`` has ``start <= k / FPS <= end``."""
    time = np.arange(num_frames) / FPS
    action, frame = np.nonzero((actions[:, 1:2] <= time) & (time <= actions[:, 2:3]))
    labels = np.zeros((num_frames, NUM_CLASSES), np.float32)
    labels[frame, actions[action, 0].astype(int)] = 1.0
    return labels


def read_features(video_dir: str) -> np.ndarray:
    """The features ``[frames, D]`` float32 of the official text files ``<id>-<NNNNNN>.txt`` in
    ``video_dir``, refusing a gap in the frame numbers ``1, 5, 9, ...``."""
    video = os.path.basename(video_dir)
    found = (re.fullmatch(re.escape(video) + r"-(\d{6})\.txt", n) for n in os.listdir(video_dir))
    numbered = sorted((int(m.group(1)), m.group(0)) for m in found if m)
    numbers = [n for n, _ in numbered]
    if not numbers or numbers != list(range(1, 4 * len(numbers), 4)):
        raise DataError(f"{video_dir}: expected feature files {video}-000001.txt, "
                        f"{video}-000005.txt, ... (every 4th frame, no gaps), found frames "
                        f"{numbers[:8]}{'...' if len(numbers) > 8 else ''}. {HOW_TO}")
    try:
        return np.stack([np.loadtxt(os.path.join(video_dir, name), np.float32).reshape(-1)
                         for _, name in numbered])
    except ValueError as e:
        raise DataError(f"{video_dir}: cannot read its feature files as numbers of one size "
                        f"({e}).") from e


def cached(video_dir: str, cache_dir: str) -> str:
    """The path of ``video_dir``'s features as ``<cache_dir>/<id>.npy``, written on first use
    (atomically: readers never see a partial file)."""
    path = os.path.join(cache_dir, os.path.basename(video_dir) + ".npy")
    if not os.path.isfile(path):
        features = read_features(video_dir)
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache_dir, suffix=".npy", delete=False) as f:
            np.save(f, features)
        os.replace(f.name, path)
    return path


class Videos(ucf101.FrameFeatures):
    """Charades videos read lazily through the cache; ``take`` and ``slice`` give a Batch with
    ``targets`` ``[B, seq_length, 157]``, each video's per-frame labels from its ``actions``
    (zero past its length)."""

    def __init__(self, video_dirs: list[str], actions: list[np.ndarray], seq_length: int,
                 cache_dir: str):
        super().__init__(video_dirs, seq_length)
        self.actions, self.cache_dir = actions, cache_dir

    def targets(self, index: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        targets = np.zeros((len(index), self.seq_length, NUM_CLASSES), np.float32)
        for row, video, length in zip(targets, index, lengths, strict=True):
            row[:length] = frame_labels(self.actions[video], length)
        return targets

    def _read(self, path: str) -> np.ndarray:
        return super()._read(cached(path, self.cache_dir))


def split_videos(num_videos: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, validation)``: a seeded ``fraction`` of the videos held out
    (:func:`seeded_split`: at least one; never all)."""
    if num_videos < 2:
        raise DataError(f"Validation holds out training videos, but there are {num_videos}.")
    held_out, train = seeded_split(np.ones(num_videos, int), (fraction, 1 - fraction), seed)
    return np.sort(train), np.sort(held_out)


def _videos(directory: str, csv_name: str, cache_dir: str
            ) -> tuple[list[str], list[np.ndarray]]:
    """The feature directories and actions of one official CSV's videos, each present as a
    cached ``.npy`` or a feature directory."""
    ids, actions = read_annotations(require_file(directory, csv_name, "config.data.dir", HOW_TO))
    video_dirs = [os.path.join(directory, FEATURES, i) for i in ids]
    missing = [d for d in video_dirs if not os.path.isdir(d)
               and not os.path.isfile(os.path.join(cache_dir, os.path.basename(d) + ".npy"))]
    if missing:
        raise DataError(f"{len(missing)} videos listed in {csv_name} have no features, e.g. "
                        f"{missing[0]}. {HOW_TO}")
    return video_dirs, actions


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    directory = require_dir(d.dir, "config.data.dir", HOW_TO)
    cache_dir = d.cache_dir or os.path.join(directory, CACHE)
    train_dirs, train_actions = _videos(directory, "Charades_v1_train.csv", cache_dir)
    test = Videos(*_videos(directory, "Charades_v1_test.csv", cache_dir), d.seq_length, cache_dir)
    train_idx, val_idx = split_videos(len(train_dirs), d.validation_fraction, d.split_seed)

    def subset(index: np.ndarray) -> Videos:
        return Videos([train_dirs[i] for i in index], [train_actions[i] for i in index],
                      d.seq_length, cache_dir)

    train = subset(train_idx)
    train_batch, steps_per_epoch = epoch_batches(train, config.batch_size)
    return TaskData(
        train_batch=train_batch,
        eval_sets={"validation": subset(val_idx), "test": test},
        input_size=np.load(cached(train.paths[0], cache_dir), mmap_mode="r").shape[1],
        num_outputs=NUM_CLASSES,
        steps_per_epoch=steps_per_epoch,
        per_step=True,
    )
