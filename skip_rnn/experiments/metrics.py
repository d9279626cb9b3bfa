"""What a run reports: ``metrics.jsonl`` and TensorBoard events, and the console (a start-up
banner, progress with an honest time estimate, a final summary)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import jax
import numpy as np
import tqdm

from skip_rnn.experiments import allocator


class LogError(OSError):
    """Writing ``metrics.jsonl`` failed (a full disk); the message says how to go on."""


def read_metrics(path: str) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``, in order. A line that is not JSON (a write cut short by
    a kill or a full disk) is left out, with a one-line warning on stderr naming the file."""
    rows, bad = [], 0
    with open(path) as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    if bad:
        print(f"{path}: left out {bad} line(s) that are not JSON (a write cut short)",
              file=sys.stderr)
    return rows


class MetricWriter:
    """``metrics.jsonl`` (one JSON object per step, split and member) and TensorBoard events.

    A resumed run first drops the rows written after its checkpoint (a killed run logged
    steps it is about to replay) and any line cut short (:func:`read_metrics`), so every
    (step, split, member) appears once; in TensorBoard
    it marks the events of those steps as purged (``purge_step``), which TensorBoard hides.
    """

    def __init__(self, workdir: str, task: str, resume_step: int):
        from tensorboardX import SummaryWriter

        self.task = task
        self.path = path = os.path.join(workdir, "metrics.jsonl")
        if os.path.exists(path):
            kept = [row for row in read_metrics(path) if row["step"] <= resume_step]
            with open(path + ".tmp", "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in kept)
            os.replace(path + ".tmp", path)
        self.jsonl = open(path, "a")  # noqa: SIM115
        events = os.path.join(workdir, "tensorboard")
        self.tensorboard = SummaryWriter(
            events, purge_step=resume_step + 1 if os.path.isdir(events) else None)

    def write(self, step: int, split: str, members: list, metrics: list[dict[str, Any]]) -> None:
        """One line per member; TensorBoard tags ``[member<m>/]<split>/<name>``. Raises
        :class:`LogError` when the file cannot be written."""
        try:
            for m, (member, values) in enumerate(zip(members, metrics, strict=True)):
                record = {"step": step, "split": split, "task": self.task, "member": m,
                          **member._asdict(), **values}
                self.jsonl.write(json.dumps(record) + "\n")
                prefix = f"member{m}/" if len(members) > 1 else ""
                for name, value in values.items():
                    self.tensorboard.add_scalar(f"{prefix}{split}/{name}", float(value), step)
            self.jsonl.flush()
        except OSError as e:
            raise LogError(f"{self.path}: writing step {step}'s {split} metrics failed ({e}); "
                           "the last checkpoint is kept: make room and rerun the same command "
                           "to resume from it.") from e

    def close(self) -> None:
        self.jsonl.close()
        self.tensorboard.close()


class NullWriter:
    """:class:`MetricWriter`'s interface writing nothing: processes other than 0 of a
    multi-process run."""

    def write(self, step: int, split: str, members: list, metrics: list[dict]) -> None:
        del step, split, members, metrics

    def close(self) -> None:
        pass


class Console:
    """Progress on the terminal: a banner, a tqdm bar, one time estimate, a summary.
    ``quiet``: print nothing (processes other than 0 of a multi-process run); ``stops_early``:
    the run may end before ``total_steps`` (``stop_when_solved``, ``stop_when_settled``)."""

    TIMED_STEPS = 10  # measured after the first (compiling) step, before the estimate

    def __init__(self, total_steps: int, start_step: int, desc: str, quiet: bool = False,
                 stops_early: bool = False):
        self.total_steps, self.start_step, self.quiet = total_steps, start_step, quiet
        self.stops_early = stops_early
        self.progress = tqdm.tqdm(total=total_steps, initial=start_step, desc=desc,
                                  dynamic_ncols=True, mininterval=5.0, disable=quiet)
        self.timer: float | None = None

    def write(self, message: str) -> None:
        if not self.quiet:
            self.progress.write(message)

    def step_done(self, step: int, state) -> None:
        """Advances the bar; times steps ``start + 1 .. start + 1 + TIMED_STEPS`` (blocking on
        the device twice) and prints how long the rest of training will take."""
        self.progress.update(1)
        if step == self.start_step + 1 or step == self.start_step + 1 + self.TIMED_STEPS:
            jax.block_until_ready(state)
            if self.timer is None:
                self.timer = time.time()
                return
            per_step = (time.time() - self.timer) / self.TIMED_STEPS
            remaining = self.total_steps - step
            at_most = " at most" if self.stops_early else ""
            self.write(f"{per_step:.3g} s a step: about {_duration(per_step * remaining)} for "
                       f"the{at_most} {remaining:,} steps left (evaluations not included).")

    def close(self) -> None:
        self.progress.close()


def banner(config, members: list, total_steps: int, start_step: int, workdir: str,
           mesh: jax.sharding.Mesh, seconds_trained: float = 0.0) -> str:
    """What is about to run, in a few lines; ``mesh``: the devices, ``("member", "batch")``;
    ``seconds_trained``: by the earlier runs of a resumed one."""
    model = config.model
    cell = model.cell + (f" (p_skip = {model.p_skip:g})" if model.p_skip else "")
    layers = f"{model.num_layers} x {model.hidden_size}" if model.num_layers > 1 \
        else f"{model.hidden_size}"
    costs = sorted({m.cost_per_sample for m in members})
    seeds = sorted({m.seed for m in members})
    devices = list(mesh.devices.flat)
    kinds = sorted({d.platform for d in devices})
    processes = len({d.process_index for d in devices})
    layout = (f" in {processes} processes" if processes > 1 else "") + (
        f", members split over {mesh.shape['member']}" if mesh.shape["member"] > 1 else "")
    lines = [
        f"Task {config.task}: {cell}, {layers} units, λ in {{{', '.join(f'{c:g}' for c in costs)}}}"
        f" x seeds {seeds} = {len(members)} member{'s' * (len(members) > 1)}.",
        f"Steps {start_step:,} -> {total_steps:,} ({'resuming' if start_step else 'new run'}), "
        f"batch {config.batch_size}, learning rate {config.learning_rate:g}, on "
        f"{len(devices)} {'/'.join(kinds)} device{'s' * (len(devices) > 1)}{layout}"
        + (f"; host memory: {allocator.describe()}." if "cpu" in kinds else "."),
        f"Workdir {workdir}",
    ]
    if config.max_train_seconds:
        left = max(config.max_train_seconds - seconds_trained, 0.0)
        lines.append(f"Stops after {_duration(config.max_train_seconds)} of training in all "
                     f"(config.max_train_seconds): {_duration(left)} left.")
    return "\n".join(lines)


def metric_name(task) -> str:
    """What a task's metric is (a :class:`~skip_rnn.experiments.data.TaskData`): ``"MSE"`` for
    regression, ``"mAP"`` for per-step labels (Charades), ``"accuracy"`` otherwise."""
    return "MSE" if task.num_outputs == 1 else "mAP" if task.per_step else "accuracy"


def summary(results: dict, name: str, paths: list[str]) -> str:
    """The final report: each member's best (validation and test ``name``, :func:`metric_name`),
    and where the files are."""
    lines = [f"Done: {results['steps']:,} steps in {_duration(results['seconds'])}."]
    for m, member in enumerate(results["members"]):
        who = f"member {m} (seed {member['seed']}, λ={member['cost_per_sample']:g})"
        best = member["best"]
        if best is None:
            lines.append(f"  {who}: not evaluated.")
            continue
        test = best["test"]
        solved = ("" if member.get("solved_step") is None
                  else f", solved at step {member['solved_step']:,}")
        lines.append(
            f"  {who}: best at step {best['step']:,}: validation {name} "
            f"{best['validation']['metric']:.4g}, test {name} {test['metric']:.4g}, "
            f"{test['updates_percent']:.1f}% updates ({test['updates_mean']:.1f} ± "
            f"{test['updates_std']:.1f} per sequence){solved}.")
    lines += [f"  {os.path.basename(p)}: {p}" for p in paths]
    return "\n".join(lines)


def mean(metrics: list[dict], key: str) -> str:
    return f"{np.mean([m[key] for m in metrics]):.4g}"


def one_line(metrics: list[dict]) -> str:
    """Each member's metrics as ``name=value``, members separated by ``|``."""
    return " | ".join(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in member.items()) for member in metrics)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
