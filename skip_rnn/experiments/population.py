"""A population: ``num_seeds`` seeds x the budgets λ of one run, trained as one model.

Every member has its own seed (initialisation, data order, dropout) and λ; parameters and
optimizer state carry a leading member axis ``[M, ...]``, over which the train step is
``jax.vmap``-ed (:mod:`skip_rnn.experiments.steps`). A single model is a population of one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from skip_rnn._src.base import Array, Cell, Params
from skip_rnn.experiments import models
from skip_rnn.experiments.data import TaskData


class Member(NamedTuple):
    """One model of a population: its seed (initialisation, data order, dropout) and λ."""

    seed: int
    cost_per_sample: float


class TrainState(NamedTuple):
    """``step`` (shared); ``params`` and ``opt_state`` with a leading member axis ``[M, ...]``."""

    step: Array
    params: Params
    opt_state: optax.OptState


def population(config: ml_collections.ConfigDict) -> list[Member]:
    """Members: every λ of ``costs_per_sample`` (default ``(cost_per_sample,)``) x seeds."""
    costs = tuple(config.costs_per_sample) or (config.cost_per_sample,)
    return [Member(config.seed + i, float(c)) for c in costs for i in range(config.num_seeds)]


def init_population(cell: Cell, task: TaskData, members: list[Member], init: str = "default",
                    param_dtype: str = "float32") -> Params:
    """Every member's initial parameters (from its seed, embedding included), stacked: leaves
    ``[M, ...]``. ``init``, ``param_dtype``: ``config.model.init``, ``.param_dtype``."""
    keys = jnp.stack([jax.random.key(m.seed) for m in members])
    embeddings = (None if task.embedding is None
                  else np.stack([task.embedding(m.seed) for m in members]))
    return jax.vmap(lambda key, embedding: models.init_params(
        key, cell, task.input_size, task.num_outputs, embedding, init, param_dtype)
    )(keys, embeddings)


def initial_train_state(tx: optax.GradientTransformation, params: Params) -> TrainState:
    """Step 0 of a population: ``params`` leaves ``[M, ...]``, one optimizer state each."""
    return TrainState(jnp.zeros((), jnp.int32), params, jax.vmap(tx.init)(params))
