"""Adding task (§4.1): sum the two marked values of a sequence of (value, marker) pairs.

Values ~ U(-0.5, 0.5); the first marker is uniform over the first 10% of steps, the second
uniform over the last half. Inputs ``[B, T, 2]``, targets ``[B]``. Solved when the held-out
MSE is two orders of magnitude below the target's variance (``Var = 2/12``).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from skip_rnn.experiments.data.base import Batch, TaskData, synthetic

TARGET_VARIANCE = 2.0 / 12.0  # the sum of two independent U(-0.5, 0.5)


def sample(rng: np.random.Generator, batch_size: int, seq_length: int) -> Batch:
    """``batch_size`` fresh sequences of ``seq_length`` (value, marker) pairs."""
    values = rng.uniform(-0.5, 0.5, (batch_size, seq_length)).astype(np.float32)
    first = rng.integers(0, max(1, seq_length // 10), batch_size)
    second = rng.integers(seq_length - seq_length // 2, seq_length, batch_size)
    markers = np.zeros_like(values)
    rows = np.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    return Batch(np.stack([values, markers], axis=-1), targets.astype(np.float32))


def load(config: ml_collections.ConfigDict) -> TaskData:
    train_batch, eval_sets = synthetic(
        lambda rng, n: sample(rng, n, config.data.seq_length), config.batch_size,
        config.data.num_eval)
    return TaskData(train_batch, eval_sets, input_size=2, num_outputs=1,
                    solved=lambda mse: mse < 0.01 * TARGET_VARIANCE)
