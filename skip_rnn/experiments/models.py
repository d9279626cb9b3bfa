"""The paper's classifiers and regressors: (embedding) -> RNN -> last state -> linear readout.

``params = {"embedding": [V, E] (token tasks), "rnn": <cell params>, "readout": {"w", "b"}}``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.typing import DTypeLike

from skip_rnn._src.base import Array, Cell, Output, Params, PRNGKey
from skip_rnn._src.cells import gru, lstm, stack
from skip_rnn._src.random_skip import random_skip
from skip_rnn._src.skip import skip
from skip_rnn._src.unroll import unroll

CELLS = ("lstm", "gru", "skip_lstm", "skip_gru")
INITS = ("default", "reference_code")
DTYPES = ("float32", "bfloat16")  # config.model.dtype, config.model.param_dtype


def make_cell(model: ml_collections.ConfigDict) -> Cell:
    """The cell named by ``model.cell``: ``num_layers`` stacked, skip-wrapped if ``skip_*``,
    randomly skipping (:func:`skip_rnn.random_skip`) if ``model.p_skip > 0``; every layer in
    ``model.dtype`` and ``model.param_dtype``."""
    if model.cell not in CELLS:
        raise ValueError(f"config.model.cell must be one of {CELLS}, got {model.cell!r}.")
    kind = model.cell.removeprefix("skip_")
    make_layer = {"lstm": lstm, "gru": functools.partial(
        gru, reset_after=model.gru_reset_after, gate_bias=model.gru_gate_bias)}[kind]
    layers = [make_layer(model.hidden_size, dtype=model.dtype, param_dtype=model.param_dtype)
              for _ in range(model.num_layers)]
    cell = layers[0] if len(layers) == 1 else stack(layers, model.gate_layers)
    if model.cell.startswith("skip_"):
        cell = skip(cell, model.binarize, model.update_bias, model.max_updates or None,
                    model.gradient)
    elif model.p_skip > 0:
        cell = random_skip(cell, model.p_skip)
    return cell


def stochastic(model: ml_collections.ConfigDict) -> bool:
    """Whether the model's update gates are random (they then need a key, also to evaluate)."""
    return (model.binarize == "bernoulli" and model.cell.startswith("skip_")) or model.p_skip > 0


def init_params(key: PRNGKey, cell: Cell, input_size: int, num_outputs: int,
                embedding: np.ndarray | None = None, init: str = "default",
                param_dtype: DTypeLike = jnp.float32) -> Params:
    """Parameters for inputs of ``input_size`` features, or token ids when ``embedding``;
    ``init="reference_code"`` redraws the RNN's as :func:`reference_code_init` does and draws
    the readout Glorot-uniform (the default of the authors' ``fully_connected``; ours:
    LeCun-normal). Every leaf is stored in ``param_dtype`` (the skip gate's ``w_p``, ``b_p``
    and the readout included)."""
    k_rnn, k_out = jax.random.split(key)
    params = {}
    if embedding is not None:
        params["embedding"] = jnp.asarray(embedding)
        input_size = embedding.shape[1]
    params["rnn"] = cell.init(k_rnn, input_size)
    if init == "reference_code":
        params["rnn"] = reference_code_init(jax.random.fold_in(k_rnn, 1), params["rnn"])
    hidden = cell.output(cell.initial_state(params["rnn"], 1)).shape[-1]
    readout_init = (jax.nn.initializers.glorot_uniform() if init == "reference_code"
                    else jax.nn.initializers.lecun_normal())
    w = readout_init(k_out, (hidden, num_outputs))
    params["readout"] = {"w": w, "b": jnp.zeros((num_outputs,))}
    return jax.tree.map(lambda leaf: leaf.astype(param_dtype), params)


def reference_code_init(key: PRNGKey, params: Params) -> Params:
    """The authors' initialisation (``src/rnn_cells/rnn_ops.py`` of their code): every layer's
    kernels Glorot-uniform over the concatenation ``[x; h]`` (``w_x`` and ``w_h`` are its row
    blocks): the LSTM's one ``[F + H, 4H]`` kernel, the GRU's two, its gates' ``[F + H, 2H]``
    and its candidate's ``[F + H, H]``, each with its own bound; the learned ``s0`` ~ N(0, 1),
    ``w_p`` Glorot-uniform. Biases are kept.

    Walks a cell's parameters: a layer (``w_x``, ``w_h``, ``s0``), a stack (``{"layers_0",
    ...}``) or a skip cell (``{"cell", "w_p", "b_p"}``).
    """
    glorot = jax.nn.initializers.glorot_uniform()
    if "layers_0" in params:
        return {name: reference_code_init(k, params[name]) for name, k in
                zip(sorted(params, key=lambda n: int(n.split("_")[1])),
                    jax.random.split(key, len(params)), strict=True)}
    k_cell, k_gate, k_s0 = jax.random.split(key, 3)
    if "w_p" in params:
        w_p = glorot(k_gate, (params["w_p"].shape[0], 1))[:, 0]
        return {**params, "cell": reference_code_init(k_cell, params["cell"]), "w_p": w_p}
    num_inputs, hidden = params["w_x"].shape[0], params["w_h"].shape[0]
    gru_layer = params["w_x"].shape[1] == 3 * hidden  # gates (r, z), then the candidate
    widths = (2 * hidden, hidden) if gru_layer else (4 * hidden,)
    kernel = jnp.concatenate([glorot(k, (num_inputs + hidden, width)) for k, width in
                              zip(jax.random.split(k_cell, len(widths)), widths, strict=True)],
                             axis=1)
    s0_leaves, treedef = jax.tree.flatten(params["s0"])
    s0 = [jax.random.normal(k, s.shape) for k, s in
          zip(jax.random.split(k_s0, len(s0_leaves)), s0_leaves, strict=True)]
    return {**params, "w_x": kernel[:num_inputs], "w_h": kernel[num_inputs:],
            "s0": jax.tree.unflatten(treedef, s0)}


def scan_unroll(model: ml_collections.ConfigDict) -> int:
    """``model.scan_unroll``, its 0 resolved per backend: 2 on the CPU (the trainer's step
    measured 0.92x at the adding shape, 0.97x at sMNIST's: BENCHMARKS.md), 1 elsewhere."""
    return model.scan_unroll or (2 if jax.default_backend() == "cpu" else 1)


def apply(cell: Cell, params: Params, inputs: Array, lengths: Array | None = None, *,
          dropout: float = 0.0, key: PRNGKey | None = None, per_step: bool = False,
          scan_unroll: int = 1) -> tuple[Array, Output]:
    """Predictions ``[B, num_outputs]`` from the last state (``per_step``: ``[B, T,
    num_outputs]`` from every step's output, the copied state's on skipped steps), and the
    RNN's per-step outputs.

    Args:
      inputs: ``[B, T, F]`` features or ``[B, T]`` token ids.
      lengths: optional ``[B]`` valid steps.
      dropout: rate on the state the readout reads (training only; needs ``key``).
      key: randomness for dropout and random update gates.
      per_step: one prediction per step (tagging, e.g. Charades) instead of per sequence.
      scan_unroll: time steps per iteration of the scan (:func:`skip_rnn.unroll`'s
        ``unroll``): speed only, the same numbers up to float rounding.
    """
    xs = params["embedding"][inputs] if "embedding" in params else inputs
    k_rnn, k_drop = (None, None) if key is None else jax.random.split(key)
    final_state, out = unroll(cell, params["rnn"], xs, lengths, key=k_rnn,
                               unroll=scan_unroll)
    h = out.h if per_step else cell.output(final_state)
    if dropout > 0.0 and k_drop is not None:
        keep = jax.random.bernoulli(k_drop, 1.0 - dropout, h.shape)
        h = jnp.where(keep, h / (1.0 - dropout), 0.0)
    return h @ params["readout"]["w"] + params["readout"]["b"], out
