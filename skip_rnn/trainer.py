"""Training and evaluation for every experiment of the paper (§4): ``train_and_evaluate``.

One jitted train step (task loss + budget loss, ``value_and_grad``, Optax clip + Adam) and one
jitted eval step. The batch is sharded over all local devices with ``jax.sharding`` (a mesh
over the batch axis; parameters replicated). The workdir holds orbax checkpoints (``latest/``,
``best/``), ``metrics.jsonl``, TensorBoard events, ``results.json`` and figures; rerunning the
same command resumes from ``latest/``.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from skip_rnn import budget, data, figures, models
from skip_rnn.base import Array, Cell, Params
from skip_rnn.data import Batch, TaskData

BUDGET_LOSSES = ("cost_per_sample", "l1", "l2", "time_weighted")


class TrainState(NamedTuple):
    step: Array
    params: Params
    opt_state: optax.OptState


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Rejects nonsensical values before any data is read, naming the field."""
    checks = [
        ("task", config.task in data.base.TASKS, f"one of {data.base.TASKS}"),
        ("model.cell", config.model.cell in models.CELLS, f"one of {models.CELLS}"),
        ("model.binarize", config.model.binarize in ("round", "bernoulli"), "round | bernoulli"),
        ("budget_loss", config.budget_loss in BUDGET_LOSSES, f"one of {BUDGET_LOSSES}"),
        ("cost_per_sample", config.cost_per_sample >= 0, ">= 0"),
        ("learning_rate", config.learning_rate > 0, "> 0"),
        ("clip_norm", config.clip_norm > 0, "> 0"),
        ("model.hidden_size", config.model.hidden_size > 0, "> 0"),
        ("model.num_layers", config.model.num_layers > 0, "> 0"),
        ("model.max_updates", config.model.max_updates >= 0, ">= 0 (0: no hard budget)"),
        ("model.dropout", 0 <= config.model.dropout < 1, "in [0, 1)"),
        ("batch_size", config.batch_size > 0 and config.batch_size % num_devices == 0,
         f"> 0 and divisible by the {num_devices} devices"),
        ("eval_batch_size", config.eval_batch_size > 0
         and config.eval_batch_size % num_devices == 0,
         f"> 0 and divisible by the {num_devices} devices"),
        ("num_train_steps", config.num_train_steps > 0 or config.num_epochs > 0,
         "> 0, or num_epochs > 0"),
        ("eval_every", config.eval_every > 0, "> 0"),
        ("checkpoint_every", config.checkpoint_every > 0, "> 0"),
        ("log_every", config.log_every > 0, "> 0"),
    ]
    for key in ("seq_length", "num_eval", "duration_ms", "sampling_period_ms", "vocab_size"):
        if key in config.data:
            checks.append((f"data.{key}", config.data[key] > 0, "> 0"))
    for field, ok, allowed in checks:
        if not ok:
            value = config
            for part in field.split("."):
                value = value[part]
            raise ValueError(f"config.{field}={value!r} is invalid: must be {allowed}.")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(config.clip_norm),
        optax.adam(config.learning_rate, b1=config.b1, b2=config.b2, eps=config.eps),
    )


def budget_loss(u: Array, config: ml_collections.ConfigDict) -> Array:
    """The configured budget loss of the update gates ``u`` ``[B, T]``."""
    kind, lam = config.budget_loss, config.cost_per_sample
    if kind == "cost_per_sample":
        return budget.budget_loss(u, lam)
    if kind == "time_weighted":
        return budget.time_weighted_budget_loss(u, budget.rising_costs(u.shape[1], lam))
    loss = budget.l1_budget_loss if kind == "l1" else budget.l2_budget_loss
    return loss(u, config.target_updates, lam)


def per_example_metrics(predictions: Array, targets: Array, regression: bool) -> dict:
    """Task loss and task metric per example: squared error (both), or CE and correctness."""
    if regression:
        error = jnp.square(predictions[:, 0] - targets)
        return {"loss": error, "metric": error}
    loss = optax.softmax_cross_entropy_with_integer_labels(predictions, targets)
    return {"loss": loss, "metric": (jnp.argmax(predictions, -1) == targets).astype(jnp.float32)}


def make_steps(cell: Cell, config: ml_collections.ConfigDict, task: TaskData, mesh: Mesh):
    """The jitted ``train_step(state, batch)`` and ``eval_step(params, batch)``."""
    tx = make_optimizer(config)
    regression = task.num_outputs == 1
    base_key = jax.random.key(config.seed + 1)
    replicated = NamedSharding(mesh, PartitionSpec())

    def loss_fn(params, batch: Batch, key):
        predictions, out = models.apply(cell, params, batch.inputs, batch.lengths,
                                        dropout=config.model.dropout, key=key)
        task_loss = jnp.mean(per_example_metrics(predictions, batch.targets, regression)["loss"])
        budget_value = budget_loss(out.u, config)
        return task_loss + budget_value, (task_loss, budget_value, predictions, out)

    @functools.partial(jax.jit, out_shardings=(replicated, replicated))
    def train_step(state: TrainState, batch: Batch):
        key = jax.random.fold_in(base_key, state.step)
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch, key)
        task_loss, budget_value, predictions, out = aux
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        metrics = {
            "loss": loss,
            "task_loss": task_loss,
            "budget_loss": budget_value,
            "metric": jnp.mean(per_example_metrics(predictions, batch.targets, regression)
                               ["metric"]),
            "updates": jnp.mean(jnp.sum(out.u, axis=1)),
            "grad_norm": optax.tree.norm(grads),
        }
        new_state = TrainState(state.step + 1, optax.apply_updates(state.params, updates),
                               opt_state)
        return new_state, metrics

    @jax.jit
    def eval_step(params: Params, batch: Batch):
        key = jax.random.key(config.seed + 2)  # only Bernoulli gates use it
        predictions, out = models.apply(cell, params, batch.inputs, batch.lengths,
                                        key=key if config.model.binarize == "bernoulli" else None)
        per_example = per_example_metrics(predictions, batch.targets, regression)
        return {**per_example, "updates": jnp.sum(out.u, axis=1)}, out.u

    return tx, train_step, eval_step


def evaluate(eval_step, params: Params, eval_set, batch_size: int, shard, task: TaskData
             ) -> dict[str, float]:
    """Loss, task metric and state updates (mean, std, % of the steps) over a held-out set."""
    values: dict[str, list] = {}
    steps = 0
    for start in range(0, eval_set.num_examples, batch_size):
        batch = eval_set.slice(start, start + batch_size)
        n = batch.num_examples
        padded = Batch(*(None if a is None else _pad(a, batch_size) for a in batch))
        per_example, _ = eval_step(params, shard(padded))
        for k, v in per_example.items():
            values.setdefault(k, []).append(np.asarray(v)[:n])
        lengths = batch.lengths if batch.lengths is not None else batch.inputs.shape[1]
        steps += int(np.sum(np.broadcast_to(lengths, (n,))))
    values = {k: np.concatenate(v) for k, v in values.items()}
    metrics = {
        "loss": float(np.mean(values["loss"])),
        "metric": float(np.mean(values["metric"])),
        "updates_mean": float(np.mean(values["updates"])),
        "updates_std": float(np.std(values["updates"])),
        "updates_percent": 100.0 * float(np.sum(values["updates"])) / steps,
    }
    if task.solved is not None:
        metrics["solved"] = bool(task.solved(metrics["metric"]))
    return metrics


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Pads the batch axis to ``size`` by repeating the last row (results are cut off)."""
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), 0)])


class Checkpoints:
    """``latest/`` (resume) and ``best/`` (best validation) orbax checkpoints in a workdir."""

    def __init__(self, workdir: str):
        options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
        self.latest = ocp.CheckpointManager(os.path.join(workdir, "latest"), options=options)
        self.best = ocp.CheckpointManager(os.path.join(workdir, "best"), options=options)

    def save(self, manager: ocp.CheckpointManager, state: TrainState, meta: dict) -> None:
        manager.save(int(state.step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

    def restore_latest(self, like: TrainState) -> tuple[TrainState, dict] | None:
        step = self.latest.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self.latest.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except (ValueError, KeyError) as e:
            raise ValueError(
                f"{self.latest.directory} holds a checkpoint of a different model (shapes or "
                f"structure differ): {e}. Use a new --workdir, or the config it was made with."
            ) from e
        return TrainState(*restored.state), restored.meta

    def close(self) -> None:
        for manager in (self.latest, self.best):
            manager.wait_until_finished()
            manager.close()


class MetricWriter:
    """``metrics.jsonl`` (one JSON object per line) and TensorBoard events in the workdir."""

    def __init__(self, workdir: str):
        from tensorboardX import SummaryWriter

        self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")  # noqa: SIM115
        self.tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        self.jsonl.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            self.tensorboard.add_scalar(f"{split}/{name}", float(value), step)

    def close(self) -> None:
        self.jsonl.close()
        self.tensorboard.close()


def num_train_steps(config: ml_collections.ConfigDict, task: TaskData) -> int:
    if config.num_train_steps > 0:
        return config.num_train_steps
    if task.steps_per_epoch is None:
        raise ValueError(f"config.num_train_steps must be > 0 for the synthetic task "
                         f"{config.task!r} (it has no epochs).")
    return config.num_epochs * task.steps_per_epoch


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config``'s model on its task, evaluating and checkpointing into ``workdir``.

    Returns the final results (also written to ``workdir/results.json``): validation and test
    metrics at the best validation step, wall-clock time, and when the task was first solved.
    """
    workdir = os.path.abspath(workdir)  # orbax needs absolute paths
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    check_config(config, mesh.size)
    _check_workdir(workdir)
    task = data.load(config)
    cell = models.make_cell(config.model)
    tx, train_step, eval_step = make_steps(cell, config, task, mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sharding = NamedSharding(mesh, PartitionSpec("batch"))

    def shard(batch: Batch) -> Batch:
        return Batch(*(None if a is None else jax.device_put(a, batch_sharding) for a in batch))

    def train_step_at(state: TrainState, step: int):
        return train_step(state, shard(task.train_batch(step)))

    def evaluate_split(params: Params, split: str) -> dict:
        return evaluate(eval_step, params, task.eval_sets[split], config.eval_batch_size,
                        shard, task)

    params = models.init_params(jax.random.key(config.seed), cell, task.input_size,
                                task.num_outputs, task.embedding)
    state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
    checkpoints = Checkpoints(workdir)
    meta = {"best": None, "solved_step": None, "solved_seconds": None, "seconds": 0.0}
    try:
        restored = checkpoints.restore_latest(state)
    except ValueError:
        checkpoints.close()
        raise
    if restored is not None:
        state, meta = restored
        print(f"Resuming {workdir} from step {int(state.step)}.")
    writer = MetricWriter(workdir)  # only now: a refused resume leaves the workdir as it was
    try:  # closing waits for pending asynchronous saves: the last good checkpoint lands
        loop = _TrainLoop(config, task, checkpoints, writer, evaluate_split, meta)
        state = loop.run(jax.device_put(state, replicated), train_step_at,
                         num_train_steps(config, task))
    finally:
        checkpoints.close()
        writer.close()
    results = {"config": config.to_dict(), "steps": int(state.step), **loop.meta}
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=2, default=str)
    figures.write_all(workdir, config, task, cell, state.params)
    return results


class _TrainLoop:
    """The training loop's bookkeeping: logging, evaluation, best/latest checkpoints."""

    def __init__(self, config, task: TaskData, checkpoints: Checkpoints, writer: MetricWriter,
                 evaluate_split, meta: dict):
        self.config, self.task, self.checkpoints, self.writer = config, task, checkpoints, writer
        self.evaluate_split, self.meta = evaluate_split, meta
        self.start_time = time.time() - meta["seconds"]

    def run(self, state: TrainState, train_step, total_steps: int) -> TrainState:
        config = self.config
        step = int(state.step)
        progress = tqdm.tqdm(total=total_steps, initial=step, desc=config.task,
                             dynamic_ncols=True, mininterval=5.0)
        while step < total_steps:
            state, metrics = train_step(state, step)
            step += 1
            metrics = {k: float(v) for k, v in metrics.items()}
            if not (math.isfinite(metrics["loss"]) and math.isfinite(metrics["grad_norm"])):
                raise FloatingPointError(
                    f"Non-finite loss ({metrics['loss']}) or gradient norm "
                    f"({metrics['grad_norm']}) at step {step}; stopping. The last good "
                    f"checkpoint in {self.checkpoints.latest.directory} is kept."
                )
            progress.update(1)
            if step % config.log_every == 0:
                self.writer.write(step, "train", metrics)
                progress.set_postfix(loss=f"{metrics['loss']:.4g}",
                                     metric=f"{metrics['metric']:.4g}",
                                     updates=f"{metrics['updates']:.1f}")
            done = step == total_steps
            if step % config.eval_every == 0 or done:
                solved = self.validate(state, step, progress)
                done = done or (config.stop_when_solved and solved)
            if step % config.checkpoint_every == 0 or done:
                self.meta["seconds"] = time.time() - self.start_time
                self.checkpoints.save(self.checkpoints.latest, state, self.meta)
            if done:
                break
        progress.close()
        self.meta["seconds"] = time.time() - self.start_time
        return state

    def validate(self, state: TrainState, step: int, progress) -> bool:
        """Evaluates on validation (and on test when validation improves); True if solved."""
        validation = self.evaluate_split(state.params, "validation")
        self.writer.write(step, "validation", validation)
        progress.write(f"step {step}: validation {_summary(validation)}")
        best = self.meta["best"]
        sign = -1.0 if self.task.num_outputs == 1 else 1.0  # MSE: lower is better
        if best is None or sign * validation["metric"] > sign * best["validation"]["metric"]:
            test = self.evaluate_split(state.params, "test")
            self.writer.write(step, "test", test)
            self.meta["best"] = {"step": step, "validation": validation, "test": test}
            self.checkpoints.save(self.checkpoints.best, state, self.meta)
        solved = bool(validation.get("solved"))
        if solved and self.meta["solved_step"] is None:
            self.meta["solved_step"] = step
            self.meta["solved_seconds"] = time.time() - self.start_time
            progress.write(f"Solved at step {step} after {self.meta['solved_seconds']:.0f} s.")
        return solved


def _summary(metrics: dict) -> str:
    parts = [f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()]
    return ", ".join(parts)


def _check_workdir(workdir: str) -> None:
    """Fails at start-up, not after an epoch, when the workdir cannot be written."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, ".write_test")
        with open(probe, "wb") as f:
            f.write(b"\0" * 1024 * 1024)  # room for at least a small checkpoint
        os.remove(probe)
    except OSError as e:
        raise OSError(f"--workdir={workdir!r} is not writable: {e}.") from e
