"""A run's bookkeeping, typed: what each member reached (best, solved, settled) and the config
the run was made with. Saved as JSON with every checkpoint
(:mod:`skip_rnn.experiments.checkpoints`) and written to ``results.json``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import ml_collections

from skip_rnn.experiments.configuration import ConfigError

VERSION = 2  # 1: the free-form dict of earlier versions (no saved config), refused


class Evaluation(NamedTuple):
    """What the settled rule reads of one validation: the step, the % of steps updated and the
    update gate's mean ``Δũ`` over valid steps."""

    step: int
    updates_percent: float
    delta_u_mean: float


@dataclasses.dataclass
class MemberRecord:
    """One population member: its seed and λ, its best evaluation (``{"step", "validation",
    "test"}``, metrics dicts), when it first solved the task and when it settled, and the
    validations the settled rule reads."""

    seed: int
    cost_per_sample: float
    best: dict[str, Any] | None = None
    solved_step: int | None = None
    solved_seconds: float | None = None
    settled_step: int | None = None
    validations: list[Evaluation] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class RunRecord:
    """A run: its resolved config (``config.to_dict()``), its members, and the seconds trained
    by all its sessions up to the last save."""

    config: dict[str, Any]
    members: list[MemberRecord]
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, saved: dict[str, Any], where: str) -> RunRecord:
        """The record saved by :meth:`to_json`; a workdir of an earlier version (whose record
        has no config to check a resume against) is refused, naming ``where``."""
        if saved.get("version") != VERSION:
            raise ConfigError(
                f"{where} was written by an earlier version of skip-rnn, which saved no config "
                "to check a resume against: use another --workdir.")
        members = [MemberRecord(**{**m, "validations": [Evaluation(*e) for e in
                                                        m["validations"]]})
                   for m in saved["members"]]
        return cls(saved["config"], members, saved["seconds"])


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
