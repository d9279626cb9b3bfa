"""What a step minimizes and scores, per task: each example's task loss and task metric
(regression, classification, or every frame of a per-frame task) and the configured budget
loss on the update gates."""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import optax

from skip_rnn._src import budget
from skip_rnn._src.base import Array


def budget_loss(u: Array, config: ml_collections.ConfigDict, cost_per_sample: Array) -> Array:
    """The configured budget loss of the update gates ``u`` ``[B, T]`` with λ."""
    kind, lam = config.budget_loss, cost_per_sample
    if kind == "cost_per_sample":
        return budget.budget_loss(u, lam)
    if kind == "time_weighted":
        return budget.time_weighted_budget_loss(u, budget.rising_costs(u.shape[1], lam))
    loss = budget.l1_budget_loss if kind == "l1" else budget.l2_budget_loss
    return loss(u, config.target_updates, lam)


def per_example_metrics(predictions: Array, targets: Array, regression: bool,
                        regression_loss: str = "mse", lengths: Array | None = None) -> dict:
    """Task loss and task metric per example: squared error (``"half_mse"``: its half, as the
    authors' ``tf.nn.l2_loss``) and squared error, or CE and correctness; for per-step
    predictions ``[B, T, C]`` against multi-hot ``targets`` (:func:`per_step_metrics`), the
    binary cross-entropy."""
    if predictions.ndim == 3:
        return per_step_metrics(predictions, targets, lengths)
    if regression:
        error = jnp.square(predictions[:, 0] - targets)
        return {"loss": 0.5 * error if regression_loss == "half_mse" else error, "metric": error}
    loss = optax.softmax_cross_entropy_with_integer_labels(predictions, targets)
    return {"loss": loss, "metric": (jnp.argmax(predictions, -1) == targets).astype(jnp.float32)}


def per_step_metrics(logits: Array, targets: Array, lengths: Array | None) -> dict:
    """Element-wise binary cross-entropy of ``logits`` ``[B, T, C]`` against multi-hot
    ``targets`` ``[B, T, C]``, averaged over classes and each sequence's valid steps
    (``"loss"``, ``"metric"``: ``[B]``), with the number of valid steps as ``"weight"``, so
    that the batch's loss averages over every valid step."""
    valid = jnp.ones(logits.shape[:2]) if lengths is None else (
        jnp.arange(logits.shape[1])[None, :] < lengths[:, None]).astype(logits.dtype)
    bce = jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets), axis=-1)
    steps = jnp.sum(valid, axis=1)
    loss = jnp.sum(bce * valid, axis=1) / jnp.maximum(steps, 1)
    return {"loss": loss, "metric": loss, "weight": steps}
