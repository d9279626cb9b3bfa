"""What every task's data looks like to the trainer.

Training batches are a pure function of ``(seed, step)`` (fresh synthetic samples, or the
step's slice of a per-epoch permutation), so a resumed run sees exactly the batches an
uninterrupted one would.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import ml_collections
import numpy as np

from skip_rnn.experiments.data.sources import DataError


class Batch(NamedTuple):
    """A batch of sequences (NumPy arrays).

    Attributes:
      inputs: ``[B, T, F]`` float32, or ``[B, T]`` int32 token ids (IMDB).
      targets: ``[B]``: float32 regression targets, or int32 class labels; or ``[B, T, C]``
        float32 multi-hot labels of every step (tasks with ``TaskData.per_step``).
      lengths: ``[B]`` int32 valid steps, or ``None`` when every sequence is full length.
    """

    inputs: np.ndarray
    targets: np.ndarray
    lengths: np.ndarray | None = None

    @property
    def num_examples(self) -> int:
        return len(self.targets)

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(*(None if a is None else a[start:stop] for a in self))

    def take(self, index: np.ndarray) -> Batch:
        return Batch(*(None if a is None else a[index] for a in self))


class TaskData(NamedTuple):
    """A task's data and how to score it.

    Attributes:
      train_batch: ``train_batch(seed, step, rows=None) -> Batch`` of ``config.batch_size``
        examples; the seed picks the data stream (fresh samples, or the order of the epochs).
        ``rows``: only these rows of that batch (a process's part of it; disk-backed sets then
        read those examples only).
      eval_sets: ``{"validation": Batch, "test": Batch}`` held-out sets.
      input_size: ``F``, or the vocabulary size for token inputs.
      num_outputs: 1 for regression (MSE), else the number of classes (cross-entropy).
      steps_per_epoch: training steps per pass over the data (``None``: endless synthetic).
      solved: ``solved(metric) -> bool``, the paper's rule, or ``None``.
      tokens: whether ``inputs`` are token ids that need an embedding.
      embedding: ``embedding(seed) -> [vocab, D]``, the initial embedding of the member with
        that seed (e.g. word2vec where known), or ``None``.
      per_step: whether ``targets`` are ``[B, T, num_outputs]`` multi-hot labels of every step
        (element-wise binary cross-entropy at each valid step, scored by
        :func:`skip_rnn.experiments.localization.localization_map`) instead of one per sequence.
    """

    train_batch: Callable[..., Batch]
    eval_sets: dict[str, Batch]
    input_size: int
    num_outputs: int
    steps_per_epoch: int | None = None
    solved: Callable[[float], bool] | None = None
    tokens: bool = False
    embedding: Callable[[int], np.ndarray] | None = None
    per_step: bool = False


TASKS = ("adding", "frequency", "mnist", "imdb", "ucf101", "charades")
# Generated in-process, endless: no epochs (``steps_per_epoch`` is None).
SYNTHETIC = ("adding", "frequency")


def load(config: ml_collections.ConfigDict) -> TaskData:
    """The data of ``config.task`` (one of :data:`TASKS`); with ``config.data.mask_padding``
    False, the padding of short sequences is fed to the model (:func:`feed_padding`)."""
    if config.task not in TASKS:
        raise ValueError(f"config.task must be one of {TASKS}, got {config.task!r}.")
    task = importlib.import_module(f"skip_rnn.experiments.data.{config.task}").load(config)
    return task if config.data.get("mask_padding", True) else feed_padding(task)


class _PaddingFed:
    """A held-out set (a :class:`Batch`, or lazy with ``num_examples``, ``slice``, ``take``)
    whose batches carry no ``lengths``."""

    def __init__(self, data):
        self.data = data

    @property
    def num_examples(self) -> int:
        return self.data.num_examples

    def slice(self, start: int, stop: int) -> Batch:
        return self.data.slice(start, stop)._replace(lengths=None)

    def take(self, index: np.ndarray) -> Batch:
        return self.data.take(index)._replace(lengths=None)


def feed_padding(task: TaskData) -> TaskData:
    """The paper's convention for padded datasets (IMDB, UCF-101): every step of ``[B, T, ...]``
    is an input, padding included, and counts as an update where the model updates (its LSTM
    rows: exactly ``T`` updates). Drops ``lengths`` from every batch."""
    return task._replace(
        train_batch=lambda seed, step, rows=None: task.train_batch(seed, step, rows)._replace(
            lengths=None),
        eval_sets={name: _PaddingFed(data) for name, data in task.eval_sets.items()})


def epoch_batches(data: Batch, batch_size: int) -> tuple[Callable[..., Batch], int]:
    """``train_batch(seed, step, rows=None)`` over a fixed training set, reshuffled each epoch.

    Drops the remainder. ``data``: a :class:`Batch`, or any set with ``num_examples`` and
    ``take(index)``.
    """
    steps_per_epoch = data.num_examples // batch_size
    if steps_per_epoch == 0:
        raise DataError(f"config.batch_size={batch_size} exceeds the {data.num_examples} training "
                        "examples: use a smaller batch (or more data).")

    @functools.lru_cache(maxsize=16)  # a population's members, each in its current epoch
    def order(seed: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(data.num_examples)

    def train_batch(seed: int, step: int, rows: np.ndarray | None = None) -> Batch:
        epoch, index = divmod(step, steps_per_epoch)
        examples = order(seed, epoch)[index * batch_size : (index + 1) * batch_size]
        return data.take(examples if rows is None else examples[rows])

    return train_batch, steps_per_epoch


def seeded_split(sizes: Sequence[int], fractions: Sequence[float], seed: int
                 ) -> list[np.ndarray]:
    """Units (examples, or groups of examples that must stay together) cut into consecutive
    parts of a seeded order, part ``i`` holding about ``fractions[i]`` of the examples.

    The held-out splits of every dataset: IMDB's reviews, UCF-101's groups of clips,
    Charades' videos. The units are ordered by ``np.random.default_rng(seed).permutation``;
    part ``i`` ends after the units whose running count of examples stays within
    ``round(fractions[i]·N)`` plus the parts before it, and every part keeps at least one unit
    (no held-out set is empty, none is everything).

    Args:
      sizes: ``[U]`` examples per unit (ones: single examples), ``U >= len(fractions)``.
      fractions: each part's share of the examples; the last part takes the rest.
      seed: the order's seed.

    Returns:
      The units of each part, int arrays in the seeded order.
    """
    sizes = np.asarray(sizes)
    if len(sizes) < len(fractions):
        raise ValueError(f"{len(fractions)} parts need as many units, got {len(sizes)}.")
    order = np.random.default_rng(seed).permutation(len(sizes))
    targets = np.cumsum([int(round(f * int(sizes.sum()))) for f in fractions[:-1]])
    cuts = np.searchsorted(np.cumsum(sizes[order]), targets, side="right")
    index = np.arange(len(cuts))  # cut i: at least i + 1 units before it, P - 1 - i after
    cuts = np.maximum.accumulate(np.maximum(cuts, 1) - index) + index
    return np.split(order, np.minimum(cuts, len(sizes) - len(cuts) + index))


# The synthetic tasks' held-out sets come from streams no seed's training uses, and are the
# same for every seed, so that runs with different seeds are scored on the same examples.
HELD_OUT_STREAM = 2**31 - 1


def synthetic(sample: Callable[[np.random.Generator, int], Batch], batch_size: int,
              num_eval: int) -> tuple[Callable[..., Batch], dict[str, Batch]]:
    """Fresh training batches from stream ``[seed, 0, step]`` (drawn whole, then cut to
    ``rows``: cheap); fixed held-out sets."""
    def train_batch(seed: int, step: int, rows: np.ndarray | None = None) -> Batch:
        batch = sample(np.random.default_rng([seed, 0, step]), batch_size)
        return batch if rows is None else batch.take(rows)

    eval_sets = {name: sample(np.random.default_rng([HELD_OUT_STREAM, i]), num_eval)
                 for i, name in ((1, "validation"), (2, "test"))}
    return train_batch, eval_sets


def check_finite(name: str, values: np.ndarray) -> np.ndarray:
    """Refuse data with NaN or Inf, naming where it came from."""
    if not np.all(np.isfinite(values)):
        bad = np.argwhere(~np.isfinite(values))[0].tolist()
        raise ValueError(f"{name}: non-finite value (NaN or Inf) at index {bad}.")
    return values
