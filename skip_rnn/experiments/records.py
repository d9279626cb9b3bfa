"""A run's bookkeeping, typed, and the decisions it records: what each member reached (its best
evaluation, when it solved the task, when it settled) and the config the run was made with.
Saved as JSON with every checkpoint (:mod:`skip_rnn.experiments.checkpoints`) and written to
``results.json``.

"Best" is the best validation metric, except where the task has the paper's "solved" rule
(adding, frequency): there a solved evaluation with the fewest state updates is best, as the
paper reports solved models by the updates they use (:func:`rank`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from skip_rnn.experiments.configuration import ConfigError
from skip_rnn.experiments.data import TaskData

# 1: a free-form dict (no saved config); 2: parameters held NamedTuples and tuples; both refused.
VERSION = 3


class Evaluation(NamedTuple):
    """What the settled rule reads of one validation: the step, the % of steps updated and the
    update gate's mean ``Δũ`` over valid steps."""

    step: int
    updates_percent: float
    delta_u_mean: float


@dataclasses.dataclass
class MemberRecord:
    """One population member: its seed and λ, its best evaluation (``{"step", "validation",
    "test"}``, metrics dicts), when it first solved the task, the step at which it settled
    (``None`` while it is not settled now: :func:`observe`), and the validations the settled
    rule reads."""

    seed: int
    cost_per_sample: float
    best: dict[str, Any] | None = None
    solved_step: int | None = None
    solved_seconds: float | None = None
    settled_step: int | None = None
    validations: list[Evaluation] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunRecord:
    """A run: its resolved config (``config.to_dict()``), its members, the seconds trained by
    all its sessions up to the last save, and the stop rule that ended it early
    (``"stop_when_solved"`` or ``"stop_when_settled"``; ``None`` while it may train on)."""

    config: dict[str, Any]
    members: list[MemberRecord]
    seconds: float = 0.0
    stopped: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, saved: dict[str, Any], where: str) -> RunRecord:
        """The record saved by :meth:`to_json`; a workdir of an earlier version (whose record
        has no config to check a resume against) is refused, naming ``where``."""
        if saved.get("version") != VERSION:
            raise ConfigError(
                f"{where} was written by an earlier version of skip-rnn, whose checkpoints this "
                "version does not read: use another --workdir.")
        members = [MemberRecord(**{**m, "validations": [Evaluation(*e) for e in
                                                        m["validations"]]})
                   for m in saved["members"]]
        return cls(saved["config"], members, saved["seconds"], saved.get("stopped"))


def settled(member: MemberRecord, solved: bool, has_gate: bool,
            config: ml_collections.ConfigDict) -> bool:
    """Whether a member has settled: it solved the task (where the task has the paper's rule)
    and, for a learned update gate, the gate has stopped moving and, under a budget (λ > 0),
    has started to skip: over the last ``config.settle_evals`` validations its mean ``Δũ``
    moved less than ``config.settle_delta_u``, its % updates less than
    ``config.settle_points``, and with λ > 0 every one of them skipped more than
    ``settle_points`` % of the steps.

    Stillness alone is not enough. A Skip LSTM on the adding task (paper settings) solves it at
    ≈1.5k steps and then updates at 100% with its gate nearly still (mean ``Δũ`` 0.790 at 2k
    and 3k steps) until the task's gradient has shrunk enough for λ's to move it, at ≈6k; only
    then does its rate fall, to settle at ≈50%. A Skip RNN under a budget is reported by the
    updates it uses, so one that has not yet skipped has not settled. A model without a learned
    gate (a plain or randomly skipping cell) settles once solved.
    """
    if not solved:
        return False
    if not has_gate:
        return True
    recent = member.validations[-config.settle_evals:]
    if len(recent) < config.settle_evals:
        return False
    rates = [e.updates_percent for e in recent]
    gates = [e.delta_u_mean for e in recent]
    skipping = member.cost_per_sample == 0 or max(rates) < 100 - config.settle_points
    return (skipping and max(rates) - min(rates) < config.settle_points
            and max(gates) - min(gates) < config.settle_delta_u)


def rank(metrics: dict, task: TaskData) -> tuple:
    """Orders evaluations, higher is better. Where the task has the paper's "solved" rule, a
    solved model with fewer updates beats one with a better metric: the paper's trade-off."""
    metric = -metrics["metric"] if task.num_outputs == 1 else metrics["metric"]  # MSE: lower
    if metrics.get("solved"):
        return (1, -metrics["updates_mean"], metric)
    return (0, metric, 0.0)


def improved(members: list[MemberRecord], validation: list[dict], task: TaskData) -> np.ndarray:
    """``[M]`` bool: whether each member's ``validation`` ranks above its best so far
    (:func:`rank`; a member without a best: yes)."""
    return np.array([m.best is None or rank(v, task) > rank(m.best["validation"], task)
                     for m, v in zip(members, validation, strict=True)])


def observe(member: MemberRecord, step: int, values: dict, seconds: float, has_gate: bool,
            config: ml_collections.ConfigDict) -> tuple[bool, bool, bool]:
    """Records a validation of ``member`` after ``step`` steps and ``seconds`` of training:
    when it first solved the task, the :class:`Evaluation` the settled rule reads, and whether
    it is settled now (:func:`settled`): ``settled_step`` is the step at which its current
    settled stretch began, ``None`` while it is not settled. A member that leaves its plateau
    (a Skip RNN under a budget can drift on, lose the task and recover at another rate) is
    unsettled again, so that a run stops only while every member is settled at once. Returns
    whether it solved, settled, and left its settled rate, at this step."""
    solved_now = bool(values.get("solved")) and member.solved_step is None
    if solved_now:
        member.solved_step, member.solved_seconds = step, seconds
    member.validations.append(
        Evaluation(step, values["updates_percent"], values["delta_u_mean"]))
    solved = values.get("solved", True)  # tasks without the paper's rule: always
    is_settled = settled(member, solved, has_gate, config)
    settled_now = is_settled and member.settled_step is None
    left_now = not is_settled and member.settled_step is not None
    if settled_now:
        member.settled_step = step
    elif left_now:
        member.settled_step = None
    return solved_now, settled_now, left_now


def summarize(members: list[MemberRecord]) -> list[dict]:
    """Mean ± std over seeds of each λ's best test metric and updates (the paper's form), how
    many of its members settled (:func:`settled`), and the % updates of each member's last
    validation (``last_updates_percent``: where the rate ended, beside the best checkpoint's)."""
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
        last = np.array([m.validations[-1].updates_percent for m in runs if m.validations])
        if last.size:
            row["last_updates_percent"] = {"mean": float(last.mean()), "std": float(last.std())}
        rows.append(row)
    return rows
