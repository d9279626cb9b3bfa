"""A population's jitted steps: ``train_step`` (task loss + budget loss, Optax clip + Adam,
``jax.vmap`` over the members) and ``eval_step``, laid out on the ``("member", "batch")`` mesh;
the optimizer and its schedule; how many steps a run trains and between evaluations.

Precision: with ``model.dtype="bfloat16"`` the RNN computes and carries its state in bfloat16
(its update gate in float32); the predictions are cast to float32 for the loss, and the
parameters, their gradients and Adam's state are in ``model.param_dtype`` (float32 by default).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from skip_rnn._src.base import Cell
from skip_rnn.experiments import models
from skip_rnn.experiments.data import Batch, TaskData
from skip_rnn.experiments.losses import budget_loss, per_example_metrics
from skip_rnn.experiments.population import Member, TrainState


def make_optimizer(config: ml_collections.ConfigDict, total_steps: int
                   ) -> optax.GradientTransformation:
    """Global-norm clipping, then Adam at ``learning_rate_schedule``."""
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adam(learning_rate_schedule(config, total_steps), b1=config.b1, b2=config.b2,
                   eps=config.eps),
    )


def learning_rate_schedule(config: ml_collections.ConfigDict, total_steps: int
                           ) -> optax.Schedule | float:
    """``config.learning_rate`` (``lr_schedule="constant"``, the paper's), or a linear warm-up
    over ``warmup_steps`` then a cosine decay to 0 at ``decay_steps`` (0: ``total_steps``)."""
    if config.lr_schedule == "constant":
        return config.learning_rate
    end = config.decay_steps or total_steps
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps, max(end, config.warmup_steps + 1))


def make_steps(cell: Cell, config: ml_collections.ConfigDict, task: TaskData,
               members: list[Member], mesh: Mesh):
    """The jitted ``train_step(state, batch)`` (batch leaves ``[M, B, ...]``) and
    ``eval_step(params, batch)`` (batch leaves ``[B, ...]``, shared by all members)."""
    tx = make_optimizer(config, num_train_steps(config, task))
    regression = task.num_outputs == 1
    seeds = jnp.asarray([m.seed for m in members])
    costs = jnp.asarray([m.cost_per_sample for m in members])
    replicated = NamedSharding(mesh, PartitionSpec())
    by_member = NamedSharding(mesh, PartitionSpec("member"))

    def loss_fn(params, batch: Batch, key, cost_per_sample):
        predictions, out = models.apply(cell, params, batch.inputs, batch.lengths,
                                        dropout=config.model.dropout, key=key,
                                        per_step=task.per_step,
                                        scan_unroll=models.scan_unroll(config.model))
        predictions = predictions.astype(jnp.float32)  # the loss in float32, any model.dtype
        per_example = per_example_metrics(predictions, batch.targets, regression,
                                          config.regression_loss, batch.lengths)
        task_loss = jnp.average(per_example["loss"], weights=per_example.get("weight"))
        budget_value = budget_loss(out.u, config, cost_per_sample)
        return task_loss + budget_value, {
            "task_loss": task_loss,
            "budget_loss": budget_value,
            "metric": jnp.mean(per_example["metric"]),
            "updates": jnp.mean(jnp.sum(out.u, axis=1)),
        }

    def member_step(params, opt_state, batch: Batch, seed, cost_per_sample, step):
        key = jax.random.fold_in(jax.random.key(seed + 1), step)
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, batch, key, cost_per_sample)
        updates, opt_state = tx.update(grads, opt_state, params)
        metrics = {"loss": loss, **metrics, "grad_norm": optax.tree.norm(grads)}
        return optax.apply_updates(params, updates), opt_state, metrics

    # Metrics and evaluation outputs replicated: every process can read them.
    @functools.partial(jax.jit, out_shardings=(TrainState(replicated, by_member, by_member),
                                               replicated))
    def train_step(state: TrainState, batch: Batch):
        params, opt_state, metrics = jax.vmap(member_step, in_axes=(0, 0, 0, 0, 0, None))(
            state.params, state.opt_state, batch, seeds, costs, state.step)
        return TrainState(state.step + 1, params, opt_state), metrics

    def member_eval(params, batch: Batch, batch_index, seed):
        key = eval_key(seed, batch_index) if models.stochastic(config.model) else None
        predictions, out = models.apply(cell, params, batch.inputs, batch.lengths, key=key,
                                        per_step=task.per_step,
                                        scan_unroll=models.scan_unroll(config.model))
        predictions = predictions.astype(jnp.float32)
        per_example = per_example_metrics(predictions, batch.targets, regression,
                                          config.regression_loss, batch.lengths)
        scores = {"scores": predictions} if task.per_step else {}  # scored on the host
        return {**per_example, **scores, "updates": jnp.sum(out.u, axis=1),
                "delta_u": jnp.sum(out.delta_u, axis=1)}

    eval_members = jax.vmap(member_eval, in_axes=(0, None, None, 0))
    eval_step = jax.jit(lambda params, batch, batch_index: eval_members(params, batch,
                                                                        batch_index, seeds),
                        out_shardings=replicated)
    return tx, train_step, eval_step


def eval_key(seed, batch_index) -> jax.Array:
    """The key that random gates (``p_skip``, ``binarize="bernoulli"``) draw from at evaluation
    batch ``batch_index`` of the member of ``seed``: fixed, so that evaluations repeat, and the
    member's own, so that each seed draws its own masks, as a lone run of that seed does."""
    return jax.random.fold_in(jax.random.key(seed + 2), batch_index)


def num_train_steps(config: ml_collections.ConfigDict, task: TaskData) -> int:
    if config.num_train_steps > 0:
        return config.num_train_steps
    return config.num_epochs * _steps_per_epoch(config, task, "num_train_steps")


def eval_every(config: ml_collections.ConfigDict, task: TaskData) -> int:
    """Steps between evaluations: ``config.eval_every``, or one epoch when it is 0."""
    return config.eval_every or _steps_per_epoch(config, task, "eval_every")


def _steps_per_epoch(config: ml_collections.ConfigDict, task: TaskData, field: str) -> int:
    if task.steps_per_epoch is None:
        raise ValueError(f"config.{field} must be > 0 for the synthetic task {config.task!r} "
                         "(it has no epochs).")
    return task.steps_per_epoch
