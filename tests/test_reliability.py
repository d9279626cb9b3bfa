"""Failure behaviour: bad input is refused up front, NaN stops loudly, kills resume exactly."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from skip_rnn.experiments import configuration, data, models, population, trainer
from skip_rnn.experiments.checkpoints import Checkpoints
from skip_rnn.experiments.records import RunRecord
from tests.test_training import ROOT, _leaves, tiny_config

TINY_FLAGS = [
    "--config.model.hidden_size=4", "--config.batch_size=8", "--config.eval_batch_size=8",
    "--config.data.seq_length=10", "--config.data.num_eval=8", "--config.log_every=1",
    "--config.num_figure_examples=0",
]


def _tree_digest(directory) -> str:
    digest = hashlib.sha256()
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(path.encode())
            digest.update(open(path, "rb").read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")
    trainer.train_and_evaluate(tiny_config("adding"), str(workdir))
    return workdir


def _set(config, field, value):
    *parents, last = field.split(".")
    for p in parents:
        config = config[p]
    config[last] = value


@pytest.mark.parametrize("field, value, message", [
    ("cost_per_sample", -1e-4, "config.cost_per_sample=-0.0001 is invalid: must be >= 0"),
    ("batch_size", 0, "config.batch_size=0 is invalid"),
    ("data.seq_length", 0, "config.data.seq_length=0 is invalid"),
    ("model.hidden_size", -3, "config.model.hidden_size=-3 is invalid"),
    ("model.cell", "skip_rnn", "config.model.cell='skip_rnn' is invalid: must be one of"),
    ("task", "addition", "config.task='addition' is invalid: must be one of"),
    ("budget_loss", "l3", "config.budget_loss='l3' is invalid"),
    ("model.binarize", "sample", "config.model.binarize='sample' is invalid"),
    ("model.gradient", "eq6", "config.model.gradient='eq6' is invalid: must be "),
    ("model.p_skip", 0.5, "config.model.p_skip=0.5 is invalid: must be in [0, 1), and 0 for"),
    ("regression_loss", "l1", "config.regression_loss='l1' is invalid"),
    ("model.hidden_size", 5, "model.hidden_size: 4 -> 5"),
])
def test_bad_config_is_refused_and_checkpoints_are_untouched(trained_workdir, field, value,
                                                             message):
    config = tiny_config("adding")
    _set(config, field, value)
    before = _tree_digest(trained_workdir)
    with pytest.raises(ValueError, match=re.escape(message)):
        trainer.train_and_evaluate(config, str(trained_workdir))
    assert _tree_digest(trained_workdir) == before


def test_batch_not_divisible_by_devices_is_refused():
    config = tiny_config("adding")
    config.batch_size = 6
    with pytest.raises(ValueError, match=re.escape(
            "batch_size=6 is invalid: must be > 0 and divisible by the number of devices (4)")):
        configuration.check_config(config, num_devices=4)


def test_user_errors_print_one_line_and_touch_nothing(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases = {  # flags -> what the line says
        ("--config.model.hiden_size=8",): 'unknown config key \'hiden_size\'. Did you mean "hid',
        ("--config.batch_size=0",): "config.batch_size=0 is invalid: must be > 0",
        ("--config=configs/nope.py",): "--config=configs/nope.py: no such file. The configs are",
        (f"--workdir={blocker}",): "is not writable",
    }
    runs = {flags: subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), "--config=configs/adding.py",
         f"--workdir={tmp_path / 'work'}", *flags], cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True) for flags in cases}
    for flags, run in runs.items():
        out, err = run.communicate(timeout=120)
        assert run.returncode == 2, (flags, err)
        assert err.count("\n") == 1 and err.startswith("train.py: ") and "Traceback" not in err
        assert cases[flags] in err, (flags, err)
    assert sorted(os.listdir(tmp_path)) == ["a_file"]


def test_ctrl_c_saves_and_says_how_to_resume(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "train.py"), "--config=configs/adding.py",
               "--config.num_train_steps=100000", "--config.checkpoint_every=100000",
               "--config.eval_every=100000", *TINY_FLAGS]
    run = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "workdirs" / "adding" / "metrics.jsonl"  # the config's default workdir
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") > 2):
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    err = run.communicate(timeout=60)[1]
    assert run.returncode == 130, err
    assert "Traceback" not in err
    step = int(re.search(r"interrupted at step (\d+); rerun the same command to resume", err)[1])
    checkpoints = Checkpoints(str(tmp_path / "workdirs" / "adding"))
    assert checkpoints.latest.latest_step() == step > 2
    checkpoints.close()


def test_unwritable_workdir_fails_at_start_up(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match="not writable"):
        trainer.train_and_evaluate(tiny_config("adding"), str(blocker / "workdir"))


def test_non_finite_loss_stops_at_its_step_and_keeps_last_checkpoint(tmp_path, monkeypatch):
    config = tiny_config("adding")
    config.num_train_steps = 6
    config.log_every = 100  # metrics are fetched only at the step-2/4/6 evaluations and saves
    load = data.load

    def poisoned(config):
        task = load(config)
        def train_batch(seed, step, rows=None):
            batch = task.train_batch(seed, step, rows)
            return batch._replace(targets=batch.targets * np.nan) if step == 4 else batch
        return task._replace(train_batch=train_batch)

    monkeypatch.setattr(data, "load", poisoned)
    with pytest.raises(FloatingPointError, match="at step 5"):
        trainer.train_and_evaluate(config, str(tmp_path))
    checkpoints = Checkpoints(str(tmp_path))
    assert checkpoints.latest.latest_step() == 4
    checkpoints.close()
    assert all(np.all(np.isfinite(leaf)) for leaf in _leaves(tmp_path))


def test_same_command_twice_gives_identical_metrics(tmp_path):
    for run in ("a", "b"):
        trainer.train_and_evaluate(tiny_config("frequency"), str(tmp_path / run))
    a, b = (open(tmp_path / run / "metrics.jsonl").read() for run in ("a", "b"))
    assert a == b and len(a.splitlines()) > 3


def _train(workdir, steps: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "train.py", "--config=configs/adding.py", f"--workdir={workdir}",
         f"--config.num_train_steps={steps}", "--config.checkpoint_every=3",
         "--config.eval_every=1000", *TINY_FLAGS],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_sigkilled_run_resumes_bit_identically(tmp_path):
    steps = 400
    straight = _train(tmp_path / "straight", steps)
    killed = _train(tmp_path / "killed", steps)
    latest = tmp_path / "killed" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it somewhere in the middle of training
        done = [d for d in (os.listdir(latest) if latest.exists() else []) if d.isdigit()]
        if done and int(done[0]) >= 30:
            break
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    lines = [json.loads(x) for x in open(tmp_path / "killed" / "metrics.jsonl")]
    assert lines[-1]["step"] < steps, "the kill must land before the end"
    resumed = _train(tmp_path / "killed", steps)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    for a, b in zip(_leaves(tmp_path / "straight"), _leaves(tmp_path / "killed"), strict=True):
        np.testing.assert_array_equal(a, b)
    # The steps logged after the last checkpoint and replayed on resume appear once.
    metrics = [(tmp_path / run / "metrics.jsonl").read_text() for run in ("straight", "killed")]
    assert metrics[0] == metrics[1]


def test_a_save_cut_short_leaves_the_previous_checkpoint_usable(tmp_path, capsys):
    config = tiny_config("adding")
    trainer.train_and_evaluate(config, str(tmp_path))  # checkpoint at step 2
    # What a kill in the middle of saving step 4 leaves: orbax's temporary directory.
    partial = tmp_path / "latest" / "4.orbax-checkpoint-tmp-1234567"
    (partial / "tree").mkdir(parents=True)
    (partial / "tree" / "garbage").write_bytes(b"\0" * 100)
    config.num_train_steps = 4
    results = trainer.train_and_evaluate(config, str(tmp_path))
    assert "Steps 2 -> 4 (resuming)" in capsys.readouterr().out
    assert results["steps"] == 4


def test_a_workdir_whose_best_checkpoint_is_another_model_is_refused(trained_workdir,
                                                                    tmp_path):
    import shutil

    workdir = tmp_path / "only_best"
    shutil.copytree(trained_workdir, workdir)
    shutil.rmtree(workdir / "latest")
    config = tiny_config("adding")
    config.model.hidden_size = 5
    with pytest.raises(ValueError, match=re.escape("model.hidden_size: 4 -> 5")):
        trainer.train_and_evaluate(config, str(workdir))
    with pytest.raises(ValueError, match=re.escape("model.hidden_size: 4 -> 5")):
        trainer.redraw_figures(config, str(workdir))
    # The same config, other arrays (a change of the code): refused from the saved shapes.
    other = population.init_population(models.make_cell(config.model), data.load(config),
                                       population.population(config))
    checkpoints = Checkpoints(str(workdir))
    with pytest.raises(ValueError, match="best holds a checkpoint of a different model"):
        checkpoints.check_model(other)
    checkpoints.close()


def test_a_replayed_step_overwrites_the_checkpoint_a_kill_left_behind(tmp_path):
    # A run killed after saving best/ at step s but before latest/ at step s replays step s
    # on resume and saves best/ at step s again.
    checkpoints = Checkpoints(str(tmp_path))
    for value in (1.0, 2.0):
        checkpoints.save(checkpoints.best, 3, {"params": {"w": np.full(2, value)}},
                         RunRecord({}, [], seconds=value))
    checkpoints.best.wait_until_finished()
    restored = checkpoints.best.restore(3)
    checkpoints.close()
    assert restored["meta"]["seconds"] == 2.0
    np.testing.assert_array_equal(restored["tree"]["params"]["w"], [2.0, 2.0])
