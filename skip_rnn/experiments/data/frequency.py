"""Frequency discrimination (§4.2): is a sine's period in (5, 6) ms?

Positives have period ~ U(5, 6) ms, negatives ~ U((1, 5) ∪ (6, 100)) ms; phase ~ U(0, period).
``duration_ms`` of signal sampled every ``sampling_period_ms`` gives ``[B, T, 1]`` with
``T = duration / Ts``. Batches are stratified: the first half positive, the second negative.
Solved when held-out accuracy exceeds 99%.
"""

from __future__ import annotations

import ml_collections
import numpy as np

from skip_rnn.experiments.data.base import Batch, TaskData, synthetic

POSITIVE = (5.0, 6.0)
NEGATIVE = ((1.0, 5.0), (6.0, 100.0))


def sample_periods(rng: np.random.Generator, n: int, positive: bool) -> np.ndarray:
    """``n`` periods (ms) of the class: uniform over its range or union of ranges."""
    if positive:
        return rng.uniform(*POSITIVE, n)
    (a, b), (c, d) = NEGATIVE
    u = rng.uniform(0.0, (b - a) + (d - c), n)  # uniform over the union's total length
    return np.where(u < b - a, a + u, c + (u - (b - a)))


def sample(rng: np.random.Generator, batch_size: int, duration_ms: float,
           sampling_period_ms: float) -> Batch:
    """A stratified batch: ``batch_size // 2`` positives (label 1) then negatives (label 0)."""
    num_pos = batch_size // 2
    periods = np.concatenate([sample_periods(rng, num_pos, True),
                              sample_periods(rng, batch_size - num_pos, False)])
    phases = rng.uniform(0.0, periods)
    times = np.arange(int(round(duration_ms / sampling_period_ms))) * sampling_period_ms
    signal = np.sin(2 * np.pi * (times[None, :] + phases[:, None]) / periods[:, None])
    labels = (np.arange(batch_size) < num_pos).astype(np.int32)
    return Batch(signal[..., None].astype(np.float32), labels)


def load(config: ml_collections.ConfigDict) -> TaskData:
    d = config.data
    train_batch, eval_sets = synthetic(
        lambda rng, n: sample(rng, n, d.duration_ms, d.sampling_period_ms), config.batch_size,
        d.num_eval)
    return TaskData(train_batch, eval_sets, input_size=1, num_outputs=2,
                    solved=lambda accuracy: accuracy > 0.99)
