"""The paper's classifiers and regressors: (embedding) -> RNN -> last state -> linear readout.

``params = {"embedding": [V, E] (token tasks), "rnn": <cell params>, "readout": {"w", "b"}}``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from skip_rnn.base import Array, Cell, Output, Params, PRNGKey
from skip_rnn.cells import gru, lstm, stack
from skip_rnn.skip import skip
from skip_rnn.unroll import unroll

CELLS = ("lstm", "gru", "skip_lstm", "skip_gru")


def make_cell(model: ml_collections.ConfigDict) -> Cell:
    """The cell named by ``model.cell``: ``num_layers`` stacked, skip-wrapped if ``skip_*``."""
    if model.cell not in CELLS:
        raise ValueError(f"config.model.cell must be one of {CELLS}, got {model.cell!r}.")
    kind = model.cell.removeprefix("skip_")
    layers = [{"lstm": lstm, "gru": gru}[kind](model.hidden_size) for _ in range(model.num_layers)]
    cell = layers[0] if len(layers) == 1 else stack(layers, model.gate_layers)
    if model.cell.startswith("skip_"):
        cell = skip(cell, model.binarize, model.update_bias, model.max_updates or None,
                    model.gradient)
    return cell


def init_params(key: PRNGKey, cell: Cell, input_size: int, num_outputs: int,
                embedding: np.ndarray | None = None) -> Params:
    """Parameters for inputs of ``input_size`` features, or token ids when ``embedding``."""
    k_rnn, k_out = jax.random.split(key)
    params = {}
    if embedding is not None:
        params["embedding"] = jnp.asarray(embedding)
        input_size = embedding.shape[1]
    params["rnn"] = cell.init(k_rnn, input_size)
    hidden = cell.output(cell.initial_state(params["rnn"], 1)).shape[-1]
    w = jax.nn.initializers.lecun_normal()(k_out, (hidden, num_outputs))
    params["readout"] = {"w": w, "b": jnp.zeros((num_outputs,))}
    return params


def apply(cell: Cell, params: Params, inputs: Array, lengths: Array | None = None, *,
          dropout: float = 0.0, key: PRNGKey | None = None) -> tuple[Array, Output]:
    """Predictions ``[B, num_outputs]`` from the last state, and the RNN's per-step outputs.

    Args:
      inputs: ``[B, T, F]`` features or ``[B, T]`` token ids.
      lengths: optional ``[B]`` valid steps.
      dropout: rate on the last state (training only; needs ``key``).
      key: randomness for dropout and Bernoulli update gates.
    """
    xs = params["embedding"][inputs] if "embedding" in params else inputs
    k_rnn, k_drop = (None, None) if key is None else jax.random.split(key)
    final_state, out = unroll(cell, params["rnn"], xs, lengths, key=k_rnn)
    h = cell.output(final_state)
    if dropout > 0.0 and k_drop is not None:
        keep = jax.random.bernoulli(k_drop, 1.0 - dropout, h.shape)
        h = jnp.where(keep, h / (1.0 - dropout), 0.0)
    return h @ params["readout"]["w"] + params["readout"]["b"], out
