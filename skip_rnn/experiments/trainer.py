"""Training and evaluation for every experiment of the paper (§4): ``train_and_evaluate``.

A run trains a *population* (:mod:`skip_rnn.experiments.population`): ``num_seeds`` seeds x
the budgets in ``costs_per_sample`` (or the one ``cost_per_sample``), all in one jitted train
step (:mod:`skip_rnn.experiments.steps`). It reads top to bottom: config -> data -> model ->
state (restored or initialised) -> loop (train, evaluate, checkpoint) -> results. Both steps
run on a ``("member", "batch")`` mesh of every device of every process
(:mod:`skip_rnn.experiments.sharding`). The workdir holds orbax checkpoints (``latest/`` to
resume, ``best/`` with each member's best-validation parameters), ``metrics.jsonl``,
TensorBoard events, ``results.json`` and figures; rerunning the same command resumes from
``latest/``.

In a multi-process run (``jax.distributed``) every process runs this same program: it builds
its own part of each batch, and all take part in every step, evaluation and orbax save or
restore; process 0 alone prints and writes the plain files (metrics, results, figures).

What is best, solved and settled is decided by :mod:`skip_rnn.experiments.records`; the test
set is evaluated at each new best.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from typing import NoReturn

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec

from skip_rnn._src import flops
from skip_rnn._src.base import Array, Cell, Params, where_rows
from skip_rnn.experiments import data, figures, models, records
from skip_rnn.experiments.checkpoints import Checkpoints, SaveError
from skip_rnn.experiments.configuration import ConfigError, as_json, check_config, resolve
from skip_rnn.experiments.data import TaskData
from skip_rnn.experiments.evaluation import evaluate
from skip_rnn.experiments.metrics import (
    Console,
    LogError,
    MetricWriter,
    NullWriter,
    banner,
    mean,
    metric_name,
    one_line,
    summary,
)
from skip_rnn.experiments.population import (
    Member,
    TrainState,
    init_population,
    initial_train_state,
    population,
)
from skip_rnn.experiments.records import MemberRecord, RunRecord
from skip_rnn.experiments.sharding import global_batch, make_mesh, place_members, train_batch
from skip_rnn.experiments.steps import eval_every, make_optimizer, make_steps, num_train_steps


class Interrupted(Exception):
    """Training was stopped by a signal (Ctrl-C, ``kill``) after saving ``latest/``."""

    def __init__(self, step: int, signum: int):
        super().__init__(f"interrupted at step {step}; rerun the same command to resume.")
        self.step, self.exit_code = step, 128 + signum


# Errors of the run itself, not of what was asked: a loss that is not finite, a failed save or
# metrics write.
RUN_ERRORS = (FloatingPointError, SaveError, LogError)


def exit_on_run_error(prog: str, error: Exception) -> NoReturn:
    """Stops the process for one of :data:`RUN_ERRORS`: ``prog: <error>`` on stderr, exit 1.

    After a failed save it exits at once (``os._exit``): orbax's writer threads may still be
    failing in the background, and an interpreter shutdown would race them and print their
    tracebacks under the one line."""
    print(f"{prog}: {error}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    if isinstance(error, SaveError):
        os._exit(1)
    sys.exit(1)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains ``config``'s population on its task, evaluating and checkpointing into ``workdir``.

    Returns the results (also written to ``workdir/results.json``): for every member, the
    validation and test metrics at its best validation step and when it first solved the task;
    a summary, mean ± std over seeds for each λ; the wall-clock time. Figures are drawn from
    the best checkpoint of the first seed of the largest λ (:func:`figure_member`). Raises
    :class:`Interrupted` after saving on SIGINT / SIGTERM.
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
    try:
        loop = _TrainLoop(config, task, members, checkpoints, writer, evaluate_split, record,
                          tree["best_params"])
        state = loop.run(tree["state"], train_step_at, total_steps)
    finally:
        checkpoints.close()
        writer.close()
    results = {**loop.record.to_json(), "steps": int(state.step), "total_steps": total_steps,
               "summary": records.summarize(loop.record.members)}
    best = multihost_utils.process_allgather(loop.best_params, tiled=True)  # every process
    if primary:
        shown = figure_member(loop.record)
        _write_results(workdir, config, task, cell, results, _best_title(loop.record, shown),
                       jax.tree.map(lambda leaf: leaf[shown], best),
                       loop.record.members[shown].seed)
    return results


def _write_results(workdir: str, config: ml_collections.ConfigDict, task: TaskData, cell: Cell,
                   results: dict, title: str, best: Params, seed: int) -> None:
    """``results.json``, the figures of one member's ``best`` parameters
    (:func:`figure_member`, of ``seed``), the summary."""
    path = os.path.join(workdir, "results.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2, default=str)
    paths = figures.write_all(workdir, config, task, cell, best, title, seed)
    print(summary(results, metric_name(task), [path, *paths]))


def redraw_figures(config: ml_collections.ConfigDict, workdir: str, member: int | None = None
                   ) -> list[str]:
    """Draws the figures of ``workdir``'s best checkpoint (of one population member: ``None``,
    the one training draws, :func:`figure_member`), e.g. of a run that was stopped before its
    end, and the training curves so far; before the run's first ``best/``, its ``latest/``
    (said in the figures' titles)."""
    workdir = os.path.abspath(workdir)
    config = resolve(config)
    task = data.load(config)
    cell = models.make_cell(config.model)
    members = population(config)
    if member is not None and not 0 <= member < len(members):
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
    member = figure_member(record) if member is None else member
    if "params" in tree:
        params, title = tree["params"], _best_title(record, member)
    else:
        state = TrainState(*tree["state"])
        m = record.members[member]
        params, title = state.params, (f"latest checkpoint, step {int(state.step):,} (no best "
                                       f"yet), seed {m.seed}, λ={m.cost_per_sample:g}")
    chosen = jax.tree.map(lambda leaf: leaf[member], params)
    return figures.write_all(workdir, config, task, cell, chosen, title,
                             record.members[member].seed)


def figure_member(record: RunRecord) -> int:
    """The member whose figures a run draws: the first seed of its largest λ (a Table 1 skip
    row's λ = 1e-5, whose skips the paper's figures show, not its λ = 0)."""
    members = record.members
    return max(range(len(members)), key=lambda i: (members[i].cost_per_sample, -members[i].seed))


def _best_title(record: RunRecord, member: int) -> str:
    """Which parameters drew a figure: the member's best checkpoint, with its seed and λ."""
    m = record.members[member]
    source = ("initial parameters" if m.best is None
              else f"best checkpoint, step {m.best['step']:,}")
    return f"{source}, seed {m.seed}, λ={m.cost_per_sample:g}"


class _TrainLoop:
    """The training loop's bookkeeping: logging, evaluation, best/latest checkpoints.

    The loop keeps at most two steps on the device: it dispatches step ``n + 1``, then waits for
    step ``n`` (checking its loss), so that the host prepares the next batch while the device
    computes, and the progress bar, the time limit and a signal act within one step time.
    Every way the loop ends (the last step, ``max_train_seconds``, ``stop_when_solved`` or
    ``stop_when_settled``, a signal) goes through one path: the step is checked and saved; it
    is evaluated where an uninterrupted run evaluates it (every ``eval_every`` steps and the
    last), so that a run cut into sessions keeps an uninterrupted run's record. A run ended by
    a stop rule records it (``RunRecord.stopped``) and stays ended when rerun while that rule
    is on.
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
        rule = self.record.stopped
        finished = bool(rule) and bool(config[rule])  # a rule still in force keeps it finished
        if finished and step < total_steps:
            console.write(f"The run stopped at step {step} under config.{rule}: nothing to "
                          f"train. Set --config.{rule}=False to train on.")
        elif out_of_time and step < total_steps:
            console.write(f"config.max_train_seconds={config.max_train_seconds:g} is spent "
                          f"({self.record.seconds:.0f} s trained): nothing to train. Raise "
                          f"it to go on from step {step}.")
        if not finished:
            self.record.stopped = None
        try:  # a run that stops on an error leaves the terminal to its message
            while step < total_steps and not out_of_time and not finished:
                state, metrics = train_step(state, step)
                step += 1
                if in_flight is not None:
                    self.check_finite(*in_flight)  # waits for the step before: two at most queued
                in_flight = (step, metrics)
                console.step_done(step, state)
                out_of_time = self.out_of_time()  # read once a step: the loop ends only via done
                stopped = self.stop_requested(step)
                done = step == total_steps or out_of_time or stopped
                # Validations on schedule and at the last step only: a session cut short by the
                # time limit leaves the record as an uninterrupted run's (the settled rule reads
                # the last validations).
                validate = (step % validate_every == 0 or step == total_steps) and not stopped
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
                    rule = next((r for r, hit in (("stop_when_solved", all_solved),
                                                  ("stop_when_settled", all_settled))
                                 if hit and config[r]), None)
                    if rule:
                        self.record.stopped, done = rule, True
                if save or done:  # done: also when stop_when_solved just ended the run
                    self.record.seconds = time.time() - self.start_time
                    self.checkpoints.save(self.checkpoints.latest, step, {
                        "state": state, "best_params": self.best_params}, self.record)
                if done:
                    break
        finally:
            console.close()
        self.record.seconds = time.time() - self.start_time
        if stopped:
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
                intact = self.checkpoints.last_intact()
                kept = ("no checkpoint is saved yet" if intact is None
                        else f"the last verified checkpoint, {intact}, is kept")
                raise FloatingPointError(
                    f"non-finite loss ({loss}) or gradient norm ({grad_norm}) at step {step} "
                    f"(member {m}: {member}); stopping: {kept}.")
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
        """Evaluates on validation (and on test where a member improved,
        :func:`skip_rnn.experiments.records.improved`) and records what each member reached
        (:func:`skip_rnn.experiments.records.observe`). Returns whether every member solved
        the task, and whether every member is settled now."""
        validation = self.evaluate_split(state.params, "validation")
        self.writer.write(step, "validation", self.members, validation)
        console.write(f"step {step}: validation {one_line(validation)}")
        members = self.record.members
        improved = records.improved(members, validation, self.task)
        if improved.any():
            test = self.evaluate_split(state.params, "test")
            self.writer.write(step, "test", self.members, test)
            for m in np.flatnonzero(improved):
                members[m].best = {"step": step, "validation": validation[m], "test": test[m]}
            self.best_params = jax.tree.map(lambda new, old: where_rows(improved, new, old),
                                            state.params, self.best_params)
            self.checkpoints.save(self.checkpoints.best, step, {"params": self.best_params},
                                  self.record)
        has_gate = self.config.model.cell.startswith("skip_")
        seconds = time.time() - self.start_time
        for member, values in zip(members, validation, strict=True):
            solved, settled, left = records.observe(member, step, values, seconds, has_gate,
                                                    self.config)
            who = f"seed {member.seed}, λ={member.cost_per_sample:g}"
            if solved:
                console.write(f"{who}: solved at step {step} after {seconds:.0f} s.")
            if settled:
                console.write(f"{who}: settled at step {step} ({values['updates_percent']:.1f}%"
                              f" updates, mean Δũ {values['delta_u_mean']:.3f}).")
            if left:
                console.write(f"{who}: no longer settled at step {step} ("
                              f"{values['updates_percent']:.1f}% updates, solved: "
                              f"{bool(values.get('solved', True))}).")
        return (all(bool(v.get("solved")) for v in validation),
                all(m.settled_step is not None for m in members))


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
