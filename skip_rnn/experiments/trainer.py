"""Training and evaluation for every experiment of the paper (§4): ``train_and_evaluate``.

A run trains a *population*: ``num_seeds`` seeds x the budgets in ``costs_per_sample`` (or
the one ``cost_per_sample``), all in one jitted train step, ``jax.vmap`` over the member axis
of parameters, optimizer state, RNG and λ. A single model is a population of one. The step is
``value_and_grad`` of task loss + budget loss with Optax clip + Adam; the eval step is jitted
too. Both run on a ``("member", "batch")`` mesh of every device of every process
(:func:`make_mesh`): each member's batch is split over the batch axis, and with
``config.member_sharding`` the members (parameters, optimizer state, data) over the member axis.
The workdir holds orbax checkpoints (``latest/`` to resume, ``best/`` with each member's
best-validation parameters), ``metrics.jsonl``, TensorBoard events, ``results.json`` and
figures; rerunning the same command resumes from ``latest/``.

Precision: with ``model.dtype="bfloat16"`` the RNN computes and carries its state in bfloat16
(its update gate in float32); the predictions are cast to float32 for the loss, and the
parameters, their gradients and Adam's state are in ``model.param_dtype`` (float32 by default).

In a multi-process run (``jax.distributed``) every process runs this same program: it builds
its own part of each batch, and all take part in every step, evaluation and orbax save or
restore; process 0 alone prints and writes the plain files (metrics, results, figures).

"Best" is the best validation metric, except where the task has the paper's "solved" rule
(adding, frequency): there a solved evaluation with the fewest state updates is best, as the
paper reports solved models by the updates they use. The test set is evaluated at each new best.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from skip_rnn import budget, flops
from skip_rnn.base import Array, Cell, Params
from skip_rnn.experiments import data, figures, localization, models, records
from skip_rnn.experiments.checkpoints import Checkpoints
from skip_rnn.experiments.configuration import ConfigError, as_json, check_config, resolve
from skip_rnn.experiments.data import Batch, TaskData
from skip_rnn.experiments.metrics import (
    Console,
    MetricWriter,
    NullWriter,
    banner,
    mean,
    one_line,
    summary,
)
from skip_rnn.experiments.records import Evaluation, MemberRecord, RunRecord
from skip_rnn.experiments.sharding import global_batch, make_mesh, place_members, train_batch


class TrainState(NamedTuple):
    """``step`` (shared); ``params`` and ``opt_state`` with a leading member axis ``[M, ...]``."""

    step: Array
    params: Params
    opt_state: optax.OptState


class Member(NamedTuple):
    """One model of a population: its seed (initialisation, data order, dropout) and λ."""

    seed: int
    cost_per_sample: float


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
                                        scan_unroll=config.model.scan_unroll)
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

    def member_eval(params, batch: Batch, batch_index):
        # Random gates draw from a fixed key per evaluation batch: repeatable numbers.
        key = jax.random.fold_in(jax.random.key(config.seed + 2), batch_index)
        predictions, out = models.apply(cell, params, batch.inputs, batch.lengths,
                                        key=key if models.stochastic(config.model) else None,
                                        per_step=task.per_step,
                                        scan_unroll=config.model.scan_unroll)
        predictions = predictions.astype(jnp.float32)
        per_example = per_example_metrics(predictions, batch.targets, regression,
                                          config.regression_loss, batch.lengths)
        scores = {"scores": predictions} if task.per_step else {}  # scored on the host
        return {**per_example, **scores, "updates": jnp.sum(out.u, axis=1),
                "delta_u": jnp.sum(out.delta_u, axis=1)}

    eval_step = jax.jit(jax.vmap(member_eval, in_axes=(0, None, None)),
                        out_shardings=replicated)
    return tx, train_step, eval_step


def evaluate(eval_step, params: Params, eval_set, batch_size: int, shard, task: TaskData,
             flops_per_update: float = 0.0, num_eval_frames: int = 100
             ) -> list[dict[str, float]]:
    """Per member: loss, task metric, state updates (mean, std, % of steps), the update gate's
    mean ``Δũ`` over valid steps (``delta_u_mean``: 1 for plain cells) and inference FLOPs
    (the mean over sequences of updates x ``flops_per_update``) on a held-out set. Per-step
    tasks score the localization mAP on ``num_eval_frames`` equally spaced frames a sequence
    (:func:`skip_rnn.experiments.localization.localization_map`)."""
    values: dict[str, list] = {}
    steps = 0
    for start in range(0, eval_set.num_examples, batch_size):
        batch = eval_set.slice(start, start + batch_size)
        n = batch.num_examples
        padded = Batch(*(None if a is None else _pad(a, batch_size) for a in batch))
        outputs = jax.device_get(eval_step(params, shard(padded), start // batch_size))
        outputs = {k: v[:, :n] for k, v in outputs.items()}
        lengths = batch.lengths if batch.lengths is not None else batch.inputs.shape[1]
        lengths = np.broadcast_to(lengths, (n,))
        if task.per_step:  # keep the sampled frames only: [M, n, F, C]
            frames = localization.sample_frames(lengths, num_eval_frames)[..., None]
            outputs["scores"] = np.take_along_axis(outputs["scores"], frames[None], axis=2)
            outputs["labels"] = np.take_along_axis(batch.targets, frames, axis=1)[None]
        for k, v in outputs.items():
            values.setdefault(k, []).append(v)
        steps += int(np.sum(lengths))
    values = {k: np.concatenate(v, axis=1) for k, v in values.items()}
    results = []
    for m in range(len(values["loss"])):
        if task.per_step:
            scores = values["scores"][m]
            metric = localization.localization_map(
                scores, values["labels"][0], np.full(len(scores), num_eval_frames),
                num_eval_frames)
        else:
            metric = float(np.mean(values["metric"][m]))
        weights = values["weight"][m] if "weight" in values else None  # per-step: by frames
        metrics = {
            "loss": float(np.average(values["loss"][m], weights=weights)),
            "metric": float(metric),
            "updates_mean": float(np.mean(values["updates"][m])),
            "updates_std": float(np.std(values["updates"][m])),
            "updates_percent": 100.0 * float(np.sum(values["updates"][m])) / steps,
            "delta_u_mean": float(np.sum(values["delta_u"][m])) / steps,
            "inference_flops": flops_per_update * float(np.mean(values["updates"][m])),
        }
        if task.solved is not None:
            metrics["solved"] = bool(task.solved(metrics["metric"]))
        results.append(metrics)
    return results


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    """Pads the batch axis to ``size`` by repeating the last row (results are cut off)."""
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), 0)])


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


class Interrupted(Exception):
    """Training was stopped by a signal (Ctrl-C, ``kill``) after saving ``latest/``."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted at step {step}; rerun the same command to resume.")
        self.step, self.exit_code = step, 128 + signum


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config``'s population on its task, evaluating and checkpointing into ``workdir``.

    Returns the results (also written to ``workdir/results.json``): for every member, the
    validation and test metrics at its best validation step and when it first solved the task;
    a summary, mean ± std over seeds for each λ; the wall-clock time. Figures are drawn from
    member 0's best checkpoint. Raises :class:`Interrupted` after saving on SIGINT / SIGTERM.
    """
    workdir = os.path.abspath(workdir)  # orbax needs absolute paths
    config = resolve(config)
    check_config(config, jax.device_count())
    mesh = make_mesh(config, jax.devices())
    _check_workdir(workdir)
    task = data.load(config)
    cell = models.make_cell(config.model)
    members = population(config)
    rnn_input_size = config.model.embedding_size if task.tokens else task.input_size
    update_flops = (flops.flops_per_update(cell, rnn_input_size)
                    + config.data.get("encoder_flops_per_frame", 0.0))
    tx, train_step, eval_step = make_steps(cell, config, task, members, mesh)
    seeds = [config.seed if config.same_data else m.seed for m in members]
    train_sharding = NamedSharding(mesh, PartitionSpec("member", "batch"))
    shard_eval = functools.partial(global_batch, sharding=NamedSharding(
        mesh, PartitionSpec("batch")), shape=(config.eval_batch_size,))

    def train_step_at(state: TrainState, step: int):
        return train_step(state, train_batch(task, seeds, step, config.batch_size,
                                             train_sharding))

    def evaluate_split(params: Params, split: str) -> list[dict]:
        return evaluate(eval_step, params, task.eval_sets[split], config.eval_batch_size,
                        shard_eval, task, update_flops, config.data.get("num_eval_frames", 100))

    params = init_population(cell, task, members, config.model.init, config.model.param_dtype)
    # Global arrays before the restore: orbax restores into their layout.
    tree = place_members({"state": initial_train_state(tx, params), "best_params": params}, mesh)
    record = RunRecord(as_json(config), [MemberRecord(*m) for m in members])
    checkpoints = Checkpoints(workdir)
    try:
        restored = checkpoints.resume(config, tree)
    except ConfigError:
        checkpoints.close()
        raise
    if restored is not None:
        tree, record = restored
        tree["state"] = TrainState(*tree["state"])
    total_steps, start_step = num_train_steps(config, task), int(tree["state"].step)
    primary = jax.process_index() == 0  # the one process that prints and writes plain files
    if primary:
        print(banner(config, members, total_steps, start_step, workdir, mesh, record.seconds))
    # Only now: a refused resume leaves the workdir as it was.
    writer = MetricWriter(workdir, config.task, start_step) if primary else NullWriter()
    try:  # closing waits for pending asynchronous saves: the last good checkpoint lands
        loop = _TrainLoop(config, task, members, checkpoints, writer, evaluate_split, record,
                          tree["best_params"])
        state = loop.run(tree["state"], train_step_at, total_steps)
    finally:
        checkpoints.close()
        writer.close()
    results = {**loop.record.to_json(), "steps": int(state.step),
               "summary": summarize(loop.record.members)}
    best = multihost_utils.process_allgather(loop.best_params, tiled=True)  # every process
    if primary:
        _write_results(workdir, config, task, cell, results, _best_title(loop.record, 0),
                       jax.tree.map(lambda leaf: leaf[0], best))
    return results


def _write_results(workdir: str, config: ml_collections.ConfigDict, task: TaskData, cell: Cell,
                   results: dict, title: str, best: Params) -> None:
    """``results.json``, the figures of member 0's ``best`` parameters, the summary."""
    path = os.path.join(workdir, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=str)
    paths = figures.write_all(workdir, config, task, cell, best, title)
    print(summary(results, task.num_outputs == 1, [path, *paths]))


def redraw_figures(config: ml_collections.ConfigDict, workdir: str, member: int = 0
                   ) -> list[str]:
    """Draws the figures of ``workdir``'s best checkpoint (of one population member), e.g. of
    a run that was stopped before its end, and the training curves so far; before the run's
    first ``best/``, its ``latest/`` (said in the figures' titles)."""
    workdir = os.path.abspath(workdir)
    config = resolve(config)
    task = data.load(config)
    cell = models.make_cell(config.model)
    members = population(config)
    if not 0 <= member < len(members):
        raise ConfigError(f"--member={member} is invalid: the run has members 0 .. "
                          f"{len(members) - 1}.")
    like = init_population(cell, task, members, config.model.init, config.model.param_dtype)
    checkpoints = Checkpoints(workdir)
    try:
        checkpoints.check(config, like)
        restored = checkpoints.restore(checkpoints.best, {"params": like})
        if restored is None:
            state = initial_train_state(make_optimizer(config, 1), like)
            restored = checkpoints.restore(checkpoints.latest,
                                           {"state": state, "best_params": like})
    finally:
        checkpoints.close()
    if restored is None:
        raise FileNotFoundError(f"{workdir} holds no checkpoint to draw (neither best/ nor "
                                "latest/): train first.")
    tree, record = restored
    if "params" in tree:
        params, title = tree["params"], _best_title(record, member)
    else:
        params = TrainState(*tree["state"]).params
        title = f"latest checkpoint, step {int(TrainState(*tree['state']).step):,} (no best yet)"
    chosen = jax.tree.map(lambda leaf: leaf[member], params)
    return figures.write_all(workdir, config, task, cell, chosen, title)


def _best_title(record: RunRecord, member: int) -> str:
    best = record.members[member].best
    return "initial parameters" if best is None else f"best checkpoint, step {best['step']:,}"


def summarize(members: list[MemberRecord]) -> list[dict]:
    """Mean ± std over seeds of each λ's best test metric and updates (the paper's form), and
    how many of its members settled (:func:`skip_rnn.experiments.records.settled`)."""
    rows = []
    for cost in dict.fromkeys(m.cost_per_sample for m in members):
        runs = [m for m in members if m.cost_per_sample == cost and m.best is not None]
        if not runs:
            continue
        group = [m.best["test"] for m in runs]
        row = {"cost_per_sample": cost, "runs": len(group),
               "settled": sum(m.settled_step is not None for m in runs)}
        for key in ("metric", "updates_mean", "updates_percent", "inference_flops"):
            values = np.array([g[key] for g in group])
            row[key] = {"mean": float(values.mean()), "std": float(values.std())}
        if "solved" in group[0]:
            row["solved"] = sum(bool(g["solved"]) for g in group)
        rows.append(row)
    return rows


class _TrainLoop:
    """The training loop's bookkeeping: logging, evaluation, best/latest checkpoints.

    The loop keeps at most two steps on the device: it dispatches step ``n + 1``, then waits for
    step ``n`` (checking its loss), so that the host prepares the next batch while the device
    computes, and the progress bar, the time limit and a signal act within one step time.
    Every way the loop ends (the last step, ``max_train_seconds``, ``stop_when_solved`` or
    ``stop_when_settled``, a signal) goes through one path: the step is checked, saved, and (but
    for a signal, which should stop promptly) evaluated.
    """

    def __init__(self, config, task: TaskData, members: list[Member], checkpoints: Checkpoints,
                 writer: MetricWriter, evaluate_split, record: RunRecord, best_params: Params):
        self.config, self.task, self.members = config, task, members
        self.checkpoints, self.writer, self.evaluate_split = checkpoints, writer, evaluate_split
        self.record, self.best_params = record, best_params
        self.start_time = time.time() - record.seconds
        self.signal: int | None = None

    def run(self, state: TrainState, train_step, total_steps: int) -> TrainState:
        # Several processes leave SIGTERM to JAX's preemption notifier (stop_requested).
        signums = (signal.SIGINT,) if jax.process_count() > 1 else (signal.SIGINT, signal.SIGTERM)
        previous = {s: signal.signal(s, self._on_signal) for s in signums}
        try:
            return self._run(state, train_step, total_steps)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame) -> None:
        del frame
        self.signal = signum
        if jax.process_count() > 1:
            os.kill(os.getpid(), signal.SIGTERM)  # JAX's preemption notice, shared with all

    def stop_requested(self, step: int) -> bool:
        """Whether a signal ends training after ``step``. Several processes must all stop at one
        step (or the others would wait forever in the next step): a signal to any of them stops
        every one at the step that JAX's preemption sync agrees on."""
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.signal is not None

    def _run(self, state: TrainState, train_step, total_steps: int) -> TrainState:
        config = self.config
        step = int(state.step)
        validate_every = eval_every(config, self.task)
        console = Console(total_steps, step, config.task, quiet=jax.process_index() > 0,
                          stops_early=config.stop_when_solved or config.stop_when_settled)
        stopped = False
        in_flight = None  # (step, metrics) of the step the device may still be computing
        out_of_time = self.out_of_time()
        if out_of_time and step < total_steps:
            console.write(f"config.max_train_seconds={config.max_train_seconds:g} is spent "
                          f"({self.record.seconds:.0f} s trained): nothing to train. Raise "
                          f"it to go on from step {step}.")
        while step < total_steps and not out_of_time:
            state, metrics = train_step(state, step)
            step += 1
            if in_flight is not None:
                self.check_finite(*in_flight)  # waits for the step before: two at most queued
            in_flight = (step, metrics)
            console.step_done(step, state)
            out_of_time = self.out_of_time()  # read once a step: the loop ends only via done
            stopped = self.stop_requested(step)
            done = step == total_steps or out_of_time or stopped
            validate = (step % validate_every == 0 or done) and not stopped
            save = step % config.checkpoint_every == 0 or done
            if not (step % config.log_every == 0 or validate or save):
                continue
            metrics, in_flight = self.check_finite(*in_flight), None
            if step % config.log_every == 0:
                self.writer.write(step, "train", self.members, metrics)
                console.progress.set_postfix(loss=mean(metrics, "loss"),
                                             metric=mean(metrics, "metric"),
                                             updates=mean(metrics, "updates"))
            if validate:
                all_solved, all_settled = self.validate(state, step, console)
                done = (done or (config.stop_when_solved and all_solved)
                        or (config.stop_when_settled and all_settled))
            if save or done:  # done: also when stop_when_solved just ended the run
                self.record.seconds = time.time() - self.start_time
                self.checkpoints.save(self.checkpoints.latest, step, {
                    "state": state, "best_params": self.best_params}, self.record)
            if done:
                break
        console.close()
        self.record.seconds = time.time() - self.start_time
        if stopped:
            self.checkpoints.latest.wait_until_finished()
            raise Interrupted(step, self.signal or signal.SIGTERM)
        return state

    def check_finite(self, step: int, metrics: dict[str, Array]) -> list[dict[str, float]]:
        """Waits for ``step``'s ``metrics`` (leaves ``[M]``) and raises if a loss or gradient
        norm is not finite, before anything of the step is logged or saved; returns them, one
        dict per member."""
        metrics = jax.device_get(metrics)
        for m, member in enumerate(self.members):
            loss, grad_norm = metrics["loss"][m], metrics["grad_norm"][m]
            if not (np.isfinite(loss) and np.isfinite(grad_norm)):
                raise FloatingPointError(
                    f"Non-finite loss ({loss}) or gradient norm ({grad_norm}) at step {step} "
                    f"(member {m}: {member}); stopping. The last good checkpoint in "
                    f"{self.checkpoints.latest.directory} is kept.")
        return [{k: float(v[m]) for k, v in metrics.items()} for m in range(len(self.members))]

    def out_of_time(self) -> bool:
        """True once training ran max_train_seconds: compiling, evaluating and checkpointing
        count, data loading does not; a resumed run adds its sessions up to their last saves.
        Several processes stop at one step: process 0's clock decides (a sync each step)."""
        limit = self.config.max_train_seconds
        spent = limit > 0 and time.time() - self.start_time >= limit
        if limit > 0 and jax.process_count() > 1:
            return bool(multihost_utils.broadcast_one_to_all(np.array(spent)))
        return spent

    def validate(self, state: TrainState, step: int, console: Console) -> tuple[bool, bool]:
        """Evaluates on validation (and on test where a member improved). Returns whether every
        member solved the task, and whether every member settled
        (:func:`skip_rnn.experiments.records.settled`)."""
        validation = self.evaluate_split(state.params, "validation")
        self.writer.write(step, "validation", self.members, validation)
        console.write(f"step {step}: validation {one_line(validation)}")
        members = self.record.members
        improved = np.array([m.best is None or _rank(v, self.task) > _rank(
            m.best["validation"], self.task) for m, v in zip(members, validation, strict=True)])
        if improved.any():
            test = self.evaluate_split(state.params, "test")
            self.writer.write(step, "test", self.members, test)
            for m in np.flatnonzero(improved):
                members[m].best = {"step": step, "validation": validation[m], "test": test[m]}
            self.best_params = jax.tree.map(
                lambda new, old: jnp.where(improved.reshape((-1,) + (1,) * (new.ndim - 1)),
                                           new, old), state.params, self.best_params)
            self.checkpoints.save(self.checkpoints.best, step, {"params": self.best_params},
                                  self.record)
        has_gate = self.config.model.cell.startswith("skip_")
        for member, values in zip(members, validation, strict=True):
            who = f"seed {member.seed}, λ={member.cost_per_sample:g}"
            solved = values.get("solved", True)  # tasks without the paper's rule: always
            if values.get("solved") and member.solved_step is None:
                member.solved_step = step
                member.solved_seconds = time.time() - self.start_time
                console.write(f"{who}: solved at step {step} after "
                              f"{member.solved_seconds:.0f} s.")
            member.validations.append(
                Evaluation(step, values["updates_percent"], values["delta_u_mean"]))
            if member.settled_step is None and records.settled(member, solved, has_gate,
                                                               self.config):
                member.settled_step = step
                console.write(f"{who}: settled at step {step} ({values['updates_percent']:.1f}%"
                              f" updates, mean Δũ {values['delta_u_mean']:.3f}).")
        return (all(bool(v.get("solved")) for v in validation),
                all(m.settled_step is not None for m in members))


def _rank(metrics: dict, task: TaskData) -> tuple:
    """Orders evaluations, higher is better. Where the task has the paper's "solved" rule, a
    solved model with fewer updates beats one with a better metric: the paper's trade-off."""
    metric = -metrics["metric"] if task.num_outputs == 1 else metrics["metric"]  # MSE: lower
    if metrics.get("solved"):
        return (1, -metrics["updates_mean"], metric)
    return (0, metric, 0.0)


class WorkdirError(OSError):
    """The workdir cannot be used; the message says why."""


def _check_workdir(workdir: str) -> None:
    """Fails at start-up, not after an epoch, when the workdir cannot be written. Each process
    probes with its own file: every one writes its part of the checkpoints there."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
        with open(probe, "wb") as f:
            f.write(b"\0" * 1024 * 1024)  # room for at least a small checkpoint
        os.remove(probe)
    except OSError as e:
        raise WorkdirError(f"--workdir={workdir!r} is not writable: {e}.") from e
