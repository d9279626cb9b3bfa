"""Runs one can trust: the settled rule waits for the update gate, a resume refuses another
experiment, the loop never runs ahead of the device, TensorBoard shows replayed steps once."""

from __future__ import annotations

import json
import os
import re
import signal
import struct
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from skip_rnn.experiments import configuration, data, evaluation, figures, records, trainer
from skip_rnn.experiments.checkpoints import Checkpoints
from skip_rnn.experiments.data import Batch
from tests.test_reliability import _tree_digest
from tests.test_training import ROOT, tiny_config

RECORDED_RUN = os.path.join(ROOT, "results", "logs", "settle_eq5_metrics.jsonl")


def _member(rates, gates) -> records.MemberRecord:
    member = records.MemberRecord(seed=0, cost_per_sample=1e-5)
    member.validations = [records.Evaluation(500 * (i + 1), r, g)
                          for i, (r, g) in enumerate(zip(rates, gates, strict=True))]
    return member


def test_settled_rule_waits_for_the_gate_to_stop_moving():
    config = tiny_config("adding")
    config.settle_evals, config.settle_points, config.settle_delta_u = 3, 2.0, 0.01
    falling = _member([100.0] * 4, [0.74, 0.70, 0.66, 0.62])  # updates all, gate falling
    assert not records.settled(falling, solved=True, has_gate=True, config=config)
    plateau = _member([100.0] * 4, [0.790, 0.791, 0.790, 0.790])  # still, not yet skipping
    assert not records.settled(plateau, solved=True, has_gate=True, config=config)
    plateau.cost_per_sample = 0.0  # no budget: nothing will push it down
    assert records.settled(plateau, solved=True, has_gate=True, config=config)
    still = _member([90.0, 52.0, 51.0, 52.9], [0.6, 0.401, 0.405, 0.409])
    assert records.settled(still, solved=True, has_gate=True, config=config)
    assert not records.settled(still, solved=False, has_gate=True, config=config)
    moving_rate = _member([52.0, 51.0, 53.5], [0.4, 0.4, 0.4])  # moved 2.5 points
    assert not records.settled(moving_rate, solved=True, has_gate=True, config=config)
    assert not records.settled(_member([51.0, 51.0], [0.4, 0.4]), True, True, config)  # 2 < 3
    # No learned gate (a plain or randomly skipping cell): settled once solved.
    assert records.settled(_member([], []), solved=True, has_gate=False, config=config)
    assert not records.settled(_member([], []), solved=False, has_gate=False, config=config)


def test_a_member_that_leaves_its_settled_rate_is_unsettled_until_it_settles_again():
    """Skip LSTMs at λ = 1e-5 on the adding task (Table 1, RESULTS.md) settle near 50%, skip on
    to 27-44%, lose the task and recover at ≈90%: settled, then not, then settled anew."""
    config = tiny_config("adding")
    config.settle_evals, config.settle_points, config.settle_delta_u = 3, 2.0, 0.01
    member = records.MemberRecord(seed=0, cost_per_sample=1e-5)
    history = [(52.0, 0.33, True), (51.5, 0.33, True), (51.0, 0.33, True),  # settles
               (44.0, 0.30, False),  # drifts on and loses the task
               (80.0, 0.60, True), (90.0, 0.64, True), (90.5, 0.645, True), (90.8, 0.645, True)]
    changes = []
    for i, (rate, gate, solved) in enumerate(history):
        values = {"solved": solved, "updates_percent": rate, "delta_u_mean": gate}
        _, settled_now, left_now = records.observe(member, 500 * (i + 1), values, 0.0, True,
                                                   config)
        changes.append((settled_now, left_now, member.settled_step))
    assert changes[2] == (True, False, 1500)
    assert changes[3] == (False, True, None)
    assert [c[2] for c in changes[4:]] == [None, None, None, 4000]  # the new stretch


def settled_steps(rows: list[dict], config) -> dict[int, int | None]:
    """Replays the validation rows of a ``metrics.jsonl`` through the settled rule: the step
    at which each member settles (``None``: never)."""
    members: dict[int, records.MemberRecord] = {}
    steps: dict[int, int | None] = {}
    for row in rows:
        if row["split"] != "validation":
            continue
        member = members.setdefault(row["member"], records.MemberRecord(row["seed"],
                                                                        row["cost_per_sample"]))
        member.validations.append(records.Evaluation(row["step"], row["updates_percent"],
                                                     row["delta_u_mean"]))
        steps.setdefault(row["member"], None)
        if steps[row["member"]] is None and records.settled(member, row["solved"], True, config):
            steps[row["member"]] = row["step"]
    return steps


@pytest.mark.skipif(not os.path.exists(RECORDED_RUN), reason="recorded run not committed")
def test_settled_rule_on_a_recorded_run_waits_for_skipping():
    """The adding task at the paper's settings, Skip LSTM λ ∈ {0, 1e-5} (RESULTS.md: the
    command of the recorded run): the λ = 1e-5 member solves the task at 100% updates long
    before it skips; the rule does not settle it on that plateau, only once its rate has
    fallen and held still. The λ = 0 member (no budget) settles once its gate holds still."""
    rows = [json.loads(line) for line in open(RECORDED_RUN)]
    config = tiny_config("adding")  # the defaults of settle_*
    settled = settled_steps(rows, config)
    validation = [r for r in rows if r["split"] == "validation"]
    budget = [r for r in validation if r["cost_per_sample"] > 0]
    first_solved = min(r["step"] for r in budget if r["solved"])
    plateau_end = min(r["step"] for r in budget if r["updates_percent"] < 90)
    assert first_solved + 4000 < plateau_end  # the plateau a rule on stillness settles on
    member = budget[0]["member"]
    assert settled[member] is None or settled[member] > plateau_end
    if settled[member] is not None:
        at_settle = next(r for r in budget if r["step"] == settled[member])
        assert at_settle["updates_percent"] < 60
    no_budget = next(r["member"] for r in validation if r["cost_per_sample"] == 0)
    assert settled[no_budget] is not None


def test_stop_when_settled_stops_once_the_gate_holds_still(tmp_path, mnist_dir):
    config = tiny_config("mnist", dir=mnist_dir)
    config.num_train_steps, config.eval_every, config.stop_when_settled = 8, 1, True
    config.settle_evals, config.cost_per_sample = 3, 0.0
    # An untrained skip cell updates at every step and its gate barely moves in 3 steps.
    results = trainer.train_and_evaluate(config, str(tmp_path / "loose"))
    assert results["steps"] == 3 and results["members"][0]["settled_step"] == 3
    assert results["summary"][0]["settled"] == 1 and results["stopped"] == "stop_when_settled"
    again = trainer.train_and_evaluate(config, str(tmp_path / "loose"))  # the same command
    assert again == {**results, "seconds": again["seconds"]}  # stays stopped: nothing trained
    config.stop_when_settled = False  # ... unless the rule is lifted
    on = trainer.train_and_evaluate(config, str(tmp_path / "loose"))
    assert on["steps"] == 8 and on["stopped"] is None
    config.stop_when_settled = True
    config.settle_delta_u = 1e-9  # the gate does move: never still enough
    results = trainer.train_and_evaluate(config, str(tmp_path / "strict"))
    assert results["steps"] == 8 and results["members"][0]["settled_step"] is None
    config.settle_delta_u, config.cost_per_sample = 0.01, 1e-4  # a budget, not yet skipping
    results = trainer.train_and_evaluate(config, str(tmp_path / "budget"))
    assert results["steps"] == 8 and results["members"][0]["settled_step"] is None
    assert results["total_steps"] == 8  # the cap, which reproduce's "steps" column reads


def test_reproduce_says_settled_cap_or_neither():
    from skip_rnn.experiments.reproduce import _steps

    # total_steps: the trainer's cap, config.num_train_steps or num_epochs x steps per epoch
    result = {"steps": 30000, "stop_when_settled": True, "total_steps": 30000}
    assert _steps({**result, "steps": 14500}, {"settled": 4, "runs": 4}) == "14,500, settled"
    assert _steps(result, {"settled": 3, "runs": 4}) == "30,000, cap"
    assert _steps({**result, "steps": 9000}, {"settled": 3, "runs": 4}) == (
        "9,000, not settled yet")  # stopped by a time limit
    assert _steps({**result, "stop_when_settled": False}, {"settled": 0, "runs": 4}) == "30,000"
    # without the rule, a row is not called settled (a plain cell on a task without a solved
    # rule counts as settled at its first evaluation)
    assert _steps({**result, "stop_when_settled": False}, {"settled": 4, "runs": 4}) == "30,000"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")
    trainer.train_and_evaluate(tiny_config("adding"), str(workdir))
    return workdir


def test_a_resume_with_another_config_is_refused_naming_every_change(trained):
    config = tiny_config("adding")
    config.cost_per_sample, config.learning_rate = 1e-4, 1e-3
    before = _tree_digest(trained)
    with pytest.raises(configuration.ConfigError) as error:
        trainer.train_and_evaluate(config, str(trained))
    message = str(error.value)
    assert "cost_per_sample: 1e-05 -> 0.0001" in message
    assert "learning_rate: 0.0001 -> 0.001" in message
    assert "use another --workdir" in message and "\n" not in message
    assert _tree_digest(trained) == before
    # The command line: one line, exit 2, nothing written.
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), "--config=configs/adding.py",
         f"--workdir={trained}", "--config.model.hidden_size=4", "--config.batch_size=8",
         "--config.eval_batch_size=8", "--config.data.seq_length=10",
         "--config.data.num_eval=12", "--config.model.cell=skip_gru"],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "model.cell: 'skip_lstm' -> 'skip_gru'" in run.stderr
    assert _tree_digest(trained) == before


def test_run_length_and_reporting_keys_may_change_on_resume():
    config = tiny_config("adding")
    saved = configuration.as_json(config)
    for key, value in [("num_train_steps", 9), ("eval_every", 7), ("max_train_seconds", 5.0),
                       ("log_every", 3), ("stop_when_settled", True), ("settle_evals", 9),
                       ("num_figure_examples", 0)]:
        configuration.assign(config, key, value)
    assert configuration.changes_on_resume(saved, config) == []
    config.lr_schedule, saved["lr_schedule"] = "cosine", "cosine"  # ends at the last step:
    assert configuration.changes_on_resume(saved, config) == ["num_train_steps: 2 -> 9"]
    config.decay_steps = saved["decay_steps"] = 100  # ends at a fixed step
    assert configuration.changes_on_resume(saved, config) == []


def test_keys_added_after_a_run_started_take_their_defaults_on_resume():
    config = tiny_config("adding")
    saved = configuration.as_json(config)
    del saved["model"]["dropout"], saved["batch_size"]  # a run saved before they existed
    assert configuration.changes_on_resume(saved, config) == []
    saved["model"]["cell"] = "skip_gru"
    assert configuration.changes_on_resume(saved, config) == ["model.cell: 'skip_gru' -> "
                                                              "'skip_lstm'"]


def test_a_workdir_of_an_earlier_version_is_refused(tmp_path):
    checkpoints = Checkpoints(str(tmp_path))
    old = {"members": [{"seed": 0, "cost_per_sample": 1e-5, "best": None}], "seconds": 1.0}
    checkpoints.latest.save(2, args=ocp.args.Composite(
        tree=ocp.args.StandardSave({"w": np.zeros(2)}), meta=ocp.args.JsonSave(old)))
    checkpoints.close()
    with pytest.raises(configuration.ConfigError, match="earlier version of skip-rnn.*another "
                                                        "--workdir"):
        trainer.train_and_evaluate(tiny_config("adding"), str(tmp_path))


@jax.jit
def _slow_copy(metrics):
    """``metrics`` unchanged, after ≈10 ms of device work: a device slower than the host."""
    def body(_, m):
        return jnp.tanh(m @ m) / 64.0
    work = jax.lax.fori_loop(0, 20, body, jnp.eye(256) + metrics["loss"].sum())
    return jax.tree.map(lambda v: v + 0.0 * work[0, 0], metrics)


def _instrumented(monkeypatch, on_step):
    """Makes every train step's metrics slow to compute and calls ``on_step(calls)`` before
    each step is dispatched, ``calls`` holding the metrics of the steps dispatched so far."""
    make_steps, calls = trainer.make_steps, []

    def instrumented(*args, **kwargs):
        tx, train_step, eval_step = make_steps(*args, **kwargs)

        def step(state, batch):
            on_step(calls)
            state, metrics = train_step(state, batch)
            calls.append(_slow_copy(metrics))
            return state, calls[-1]
        return tx, step, eval_step

    monkeypatch.setattr(trainer, "make_steps", instrumented)
    return calls


def test_the_loop_keeps_at_most_two_steps_on_the_device(tmp_path, monkeypatch):
    """Step n + 1 is dispatched only once step n - 1 is done: the progress bar, the time limit
    (read every step) and a signal act within one step time."""
    late = []

    def check(calls):
        if len(calls) >= 2 and not calls[-2]["loss"].is_ready():
            late.append(len(calls))

    config = tiny_config("adding")
    config.num_train_steps = 30
    config.log_every = config.eval_every = config.checkpoint_every = 100  # no wait but ours
    calls = _instrumented(monkeypatch, check)
    trainer.train_and_evaluate(config, str(tmp_path))
    assert len(calls) == 30 and late == []


def test_a_signal_stops_at_the_next_step_after_saving(tmp_path, monkeypatch):
    def interrupt(calls):
        if len(calls) == 3:  # while step 4 is being dispatched
            os.kill(os.getpid(), signal.SIGINT)

    config = tiny_config("adding")
    config.num_train_steps, config.checkpoint_every = 100, 1000
    _instrumented(monkeypatch, interrupt)
    with pytest.raises(trainer.Interrupted) as stop:
        trainer.train_and_evaluate(config, str(tmp_path))
    assert stop.value.step == 4 and stop.value.exit_code == 130
    checkpoints = Checkpoints(str(tmp_path))
    assert checkpoints.latest.latest_step() == 4
    checkpoints.close()


def _events(directory):
    """Every event of the TensorBoard files in ``directory``, in writing order (TFRecord
    framing: length, its CRC, the event, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    for name in sorted(os.listdir(directory)):
        blob = open(os.path.join(directory, name), "rb").read()
        at = 0
        while at < len(blob):
            (length,) = struct.unpack("<Q", blob[at:at + 8])
            yield Event.FromString(blob[at + 12:at + 12 + length])
            at += 12 + length + 4


def _as_tensorboard_shows(directory) -> list[tuple[str, int]]:
    """The (tag, step) scalars TensorBoard shows: a session start at step s purges the
    scalars at steps >= s written before it."""
    from tensorboardX.proto.event_pb2 import SessionLog

    shown = []
    for event in _events(directory):
        if event.HasField("session_log") and event.session_log.status == SessionLog.START:
            shown = [(tag, step) for tag, step in shown if step < event.step]
        for value in event.summary.value:
            shown.append((value.tag, event.step))
    return shown


def test_tensorboard_shows_replayed_steps_once(tmp_path, monkeypatch):
    def crash(calls):
        if len(calls) == 3:  # steps 1-3 logged, latest/ saved at step 2
            raise RuntimeError("killed")

    config = tiny_config("adding")
    config.num_train_steps = 4
    with monkeypatch.context() as patch:
        _instrumented(patch, crash)
        with pytest.raises(RuntimeError, match="killed"):
            trainer.train_and_evaluate(config, str(tmp_path))
    trainer.train_and_evaluate(config, str(tmp_path))  # resumes at 2, replays 3
    shown = _as_tensorboard_shows(tmp_path / "tensorboard")
    assert ("train/loss", 3) in shown and len(shown) == len(set(shown))
    assert sorted(step for tag, step in shown if tag == "train/loss") == [1, 2, 3, 4]


@pytest.mark.parametrize("name, key, value", [
    ("imdb", "split", (0.9, 0.0, 0.1)),
    ("ucf101", "validation_fraction", 0.0),
    ("charades", "validation_fraction", 1.0),
])
def test_an_empty_held_out_split_is_refused_up_front(name, key, value):
    config = tiny_config(name)
    config.data[key] = value
    with pytest.raises(configuration.ConfigError, match=re.escape(f"config.data.{key}=")):
        configuration.check_config(config, 1)


def test_the_evaluation_loss_weighs_examples_as_training_does():
    """Per-frame tasks average the loss over valid frames, in training and evaluation alike:
    sequences of 1 and 3 frames with losses 1 and 3 give (1·1 + 3·3) / 4, not (1 + 3) / 2."""
    def eval_step(params, batch, index):
        ones = np.ones((1, 2))
        return {"loss": np.array([[1.0, 3.0]]), "metric": ones, "weight": np.array([[1, 3]]),
                "updates": ones, "delta_u": ones}

    task = data.TaskData(None, {}, 1, 1)
    held_out = Batch(np.zeros((2, 3, 1)), np.zeros(2), np.array([1, 3]))
    [metrics] = evaluation.evaluate(eval_step, None, held_out, 2, lambda b: b, task)
    assert metrics["loss"] == pytest.approx(2.5)


def test_a_process_reads_only_its_rows_of_a_disk_backed_set():
    class OnDisk:
        num_examples, read = 20, []

        def take(self, index):
            self.read.extend(index.tolist())
            return Batch(np.asarray(index)[:, None, None] * np.ones((1, 2, 1)), index)

    train_batch, _ = data.base.epoch_batches(OnDisk(), batch_size=8)
    whole = train_batch(3, 5)
    OnDisk.read.clear()
    mine = train_batch(3, 5, np.array([2, 6]))
    assert len(OnDisk.read) == 2
    for a, b in zip(mine, whole.take(np.array([2, 6])), strict=True):
        np.testing.assert_array_equal(a, b)



def test_figures_of_a_run_stopped_before_its_first_best_come_from_latest(tmp_path,
                                                                        monkeypatch):
    def crash(calls):
        if len(calls) == 3:  # latest/ saved at step 2, no evaluation yet
            raise RuntimeError("killed")

    config = tiny_config("adding")
    config.num_train_steps, config.eval_every = 10, 100
    with monkeypatch.context() as patch:
        _instrumented(patch, crash)
        with pytest.raises(RuntimeError, match="killed"):
            trainer.train_and_evaluate(config, str(tmp_path))
    assert not (tmp_path / "best").exists() or not os.listdir(tmp_path / "best")
    titles = []
    write_all = figures.write_all
    # write_all(workdir, config, task, cell, params, source, seed): the title is source.
    monkeypatch.setattr(figures, "write_all",
                        lambda *args: titles.append(args[5]) or write_all(*args))
    paths = trainer.redraw_figures(config, str(tmp_path))
    assert titles == ["latest checkpoint, step 2 (no best yet), seed 0, λ=1e-05"]
    assert paths and all(os.path.getsize(p) > 0 for p in paths)


def test_figures_show_the_first_seed_of_the_largest_cost():
    """A Table 1 skip row, λ in (0, 1e-5) x seeds (0, 1): its figures are of seed 0 at 1e-5,
    the member whose skips the paper's figures show, not member 0 (λ = 0)."""
    from skip_rnn.experiments.records import MemberRecord, RunRecord

    members = [MemberRecord(seed, cost) for cost in (0.0, 1e-5) for seed in (0, 1)]
    record = RunRecord({}, members, 0.0)
    assert trainer.figure_member(record) == 2
    assert trainer._best_title(record, 2) == "initial parameters, seed 0, λ=1e-05"

