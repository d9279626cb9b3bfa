"""Failure behaviour: bad input is refused up front, NaN stops loudly, kills resume exactly."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from skip_rnn.experiments import configuration, data, models, population, trainer
from skip_rnn.experiments.checkpoints import Checkpoints
from skip_rnn.experiments.configuration import ConfigError
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


def _config_of_trained_workdir():
    """Checkpoints ``latest/`` and ``best/`` at steps 2 and 4."""
    config = tiny_config("adding")
    config.num_train_steps = 4
    config.num_figure_examples = 0
    return config


@pytest.fixture(scope="module")
def trained_workdir(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("trained")
    trainer.train_and_evaluate(_config_of_trained_workdir(), str(workdir))
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


@pytest.mark.parametrize("field, value, message", [
    # what a malformed tuple flag gives: --config.costs_per_sample='(0.0' parses to ('(0.0',)
    ("costs_per_sample", ("(0.0",), "config.costs_per_sample=('(0.0',) is invalid: must be "
                                    "numbers, all >= 0"),
    ("eval_every", 0, "config.eval_every=0 is invalid: must be > 0, or 0 for once per epoch "
                      "of a dataset (the synthetic tasks have no epochs)"),
    ("num_train_steps", 0, "config.num_train_steps=0 is invalid: must be > 0, or num_epochs > 0 "
                           "with a dataset"),
    ("seed", -1, "config.seed=-1 is invalid: must be an integer >= 0"),
    ("target_updates", -1.0, "config.target_updates=-1.0 is invalid: must be >= 0"),
    ("model.gate_layers", (1,), "config.model.gate_layers=(1,) is invalid: must be layer "
                                "indices in [-1, 1) (model.num_layers)"),
    ("model.gate_layers", (), "config.model.gate_layers=() is invalid"),
    ("data.seq_length", 1, "config.data.seq_length=1 is invalid: must be >= 2 (the adding task "
                           "marks two different steps)"),
])
def test_values_a_synthetic_task_cannot_use_are_refused_before_training(field, value, message):
    config = tiny_config("adding")
    config.num_epochs = 3
    _set(config, field, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        configuration.check_config(config, num_devices=1)


@pytest.mark.parametrize("field, value, message", [
    ("model.max_updates", 3, "config.model.max_updates=3 is invalid: must be >= 0 (0: no hard "
                             "budget), and 0 for a plain cell"),
    ("model.binarize", "bernoulli", "config.model.binarize='bernoulli' is invalid: must be "
                                    "round | bernoulli, and round for a plain cell"),
])
def test_skip_settings_on_a_plain_cell_are_refused(field, value, message):
    config = tiny_config("adding")
    config.model.cell = "lstm"
    _set(config, field, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        configuration.check_config(config, num_devices=1)
    config.model.cell = "skip_lstm"  # where they mean something
    configuration.check_config(config, num_devices=1)


def test_batch_not_divisible_by_devices_is_refused():
    config = tiny_config("adding")
    config.batch_size = 6
    with pytest.raises(ValueError, match=re.escape(
            "batch_size=6 is invalid: must be > 0 and divisible by the number of devices (4)")):
        configuration.check_config(config, num_devices=4)


def test_user_errors_print_one_line_and_touch_nothing(tmp_path, trained_workdir,
                                                      tmp_path_factory):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    corrupt = _copy_with_damage(trained_workdir, tmp_path_factory.mktemp("corrupt"),
                                ["latest/4", "latest/2"])
    before = _tree_digest(corrupt)
    cases = {  # flags -> what the line says
        ("--config.model.hiden_size=8",): 'unknown config key \'hiden_size\'. Did you mean "hid',
        ("--config.batch_size=0",): "config.batch_size=0 is invalid: must be > 0",
        ("--config=configs/nope.py",): "--config=configs/nope.py: no such file. The configs are",
        (f"--workdir={blocker}",): "is not writable",
        (f"--workdir={corrupt}",): f"{corrupt}/latest holds no intact checkpoint: latest/4 is "
                                   "corrupt (checksum of tree/",
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
    assert _tree_digest(corrupt) == before


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
    with pytest.raises(FloatingPointError, match="at step 5") as stop:
        trainer.train_and_evaluate(config, str(tmp_path))
    assert str(stop.value).endswith(
        f"stopping: the last verified checkpoint, {tmp_path}/latest/4, is kept.")
    assert "\n" not in str(stop.value)
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
    steps = 200
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


def _largest_file(directory) -> str:
    """The largest file under ``directory`` (an orbax data file), relative to it."""
    files = [os.path.join(root, name) for root, _, names in os.walk(directory) for name in names]
    return os.path.relpath(max(sorted(files), key=os.path.getsize), directory)


def _flip(path, count: int = 64) -> None:
    """Flips ``count`` bytes in the middle of the file ``path``."""
    data = bytearray(open(path, "rb").read())
    middle = max(len(data) // 2 - count // 2, 0)
    data[middle:middle + count] = bytes(b ^ 0xFF for b in data[middle:middle + count])
    open(path, "wb").write(bytes(data))


def _copy_with_damage(workdir, into, steps: list[str], damage: str = "flip"):
    """A copy of ``workdir`` in ``into`` with each of ``steps`` (e.g. ``"latest/4"``) damaged:
    ``"flip"``, 64 bytes of its largest file flipped; a file name, that file garbled (invalid
    JSON); ``"unchecked"``, its checksums removed (a workdir of an earlier version)."""
    import shutil

    copy = into / "workdir"
    shutil.copytree(workdir, copy)
    for step in steps:
        directory = copy / step
        if damage == "flip":
            _flip(directory / _largest_file(directory))
        elif damage == "unchecked":
            (directory / "checksums.json").unlink()
        else:
            (directory / damage).write_text("{not json")
    return copy


@pytest.mark.parametrize("damage, says", [
    ("flip", "latest/4 is corrupt (checksum of tree/"),
    ("tree/_sharding", "latest/4 is corrupt (checksum of tree/_sharding)"),
    ("_CHECKPOINT_METADATA", "latest/4 is corrupt (checksum of _CHECKPOINT_METADATA)"),
    ("checksums.json", "latest/4 is corrupt (checksums.json cannot be read: "),
])
def test_a_corrupt_checkpoint_is_skipped_in_one_line_for_the_previous_one(
        trained_workdir, tmp_path, capsys, damage, says):
    workdir = _copy_with_damage(trained_workdir, tmp_path, ["latest/4"], damage)
    checkpoints = Checkpoints(str(workdir))
    assert checkpoints.intact_step(checkpoints.latest) == 2
    assert checkpoints.intact_step(checkpoints.best) == 4
    checkpoints.close()
    err = capsys.readouterr().err
    assert err.startswith(says) and err.endswith("; resuming from latest/2\n"), err
    assert err.count("\n") == 1


def test_a_run_resumes_exactly_from_the_last_intact_checkpoint(trained_workdir, tmp_path,
                                                              capsys):
    workdir = _copy_with_damage(trained_workdir, tmp_path, ["latest/4"])
    results = trainer.train_and_evaluate(_config_of_trained_workdir(), str(workdir))
    captured = capsys.readouterr()
    assert "latest/4 is corrupt (checksum of tree/" in captured.err
    assert "Steps 2 -> 4 (resuming)" in captured.out and results["steps"] == 4
    for a, b in zip(_leaves(trained_workdir), _leaves(workdir), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("damage, says", [
    ("flip", "latest/4 is corrupt (checksum of tree/"),
    ("unchecked", "latest/4 is incomplete (no checksums.json: its save was cut short, or an "
                  "earlier version of skip-rnn wrote it)"),
])
def test_with_no_intact_checkpoint_the_run_is_refused_and_nothing_is_overwritten(
        trained_workdir, tmp_path, damage, says):
    workdir = _copy_with_damage(trained_workdir, tmp_path, ["latest/4", "latest/2"], damage)
    before = _tree_digest(workdir)
    with pytest.raises(configuration.ConfigError, match=re.escape(
            f"{workdir}/latest holds no intact checkpoint: {says}")) as refused:
        trainer.train_and_evaluate(_config_of_trained_workdir(), str(workdir))
    assert "latest/2 is" in str(refused.value) and "\n" not in str(refused.value)
    assert _tree_digest(workdir) == before


def test_a_corrupt_best_checkpoint_is_reported_and_the_previous_best_used(
        trained_workdir, tmp_path, capsys):
    workdir = _copy_with_damage(trained_workdir, tmp_path, ["best/4"])
    config = _config_of_trained_workdir()
    like = population.init_population(models.make_cell(config.model), data.load(config),
                                      population.population(config))
    checkpoints = Checkpoints(str(workdir))
    tree, record = checkpoints.restore(checkpoints.best, {"params": like})
    checkpoints.close()
    assert record.members[0].best["step"] == 2
    assert re.fullmatch(r"best/4 is corrupt \(checksum of tree/\S+\); using best/2\n",
                        capsys.readouterr().err)


def _fail_saving(monkeypatch, step_directory: str) -> None:
    """A full disk while orbax writes the run record of ``step_directory`` (``"latest/4"``),
    in its background thread."""
    import errno

    import orbax.checkpoint as ocp

    save = ocp.JsonCheckpointHandler._save_fn
    name, step = step_directory.split("/")

    async def full_disk(self, x, directory):
        temporary = directory.parent  # <name>/<step>.orbax-checkpoint-tmp-<time>/meta
        if temporary.parent.name == name and temporary.name.startswith(f"{step}."):
            raise OSError(errno.ENOSPC, "No space left on device")
        await save(self, x, directory)

    monkeypatch.setattr(ocp.JsonCheckpointHandler, "_save_fn", full_disk)


def test_a_failed_write_of_the_checksums_names_the_intact_checkpoint_and_the_rerun_resumes(
        tmp_path, monkeypatch, capsys):
    import errno

    from skip_rnn.experiments import checkpoints
    from skip_rnn.experiments.checkpoints import SaveError

    write = checkpoints.write_checksums

    def full_disk(directory):
        if directory.endswith("latest/4"):
            raise OSError(errno.ENOSPC, "No space left on device")
        write(directory)

    monkeypatch.setattr(checkpoints, "write_checksums", full_disk)
    with pytest.raises(SaveError) as failed:
        trainer.train_and_evaluate(_config_of_trained_workdir(), str(tmp_path))
    assert str(failed.value) == (
        f"saving {tmp_path}/latest/4 failed: [Errno 28] No space left on device. "
        f"{tmp_path}/latest/2 is intact: free space and rerun the same command to resume "
        "from it.")
    monkeypatch.undo()
    capsys.readouterr()
    results = trainer.train_and_evaluate(_config_of_trained_workdir(), str(tmp_path))
    captured = capsys.readouterr()
    assert "latest/4 is incomplete (no checksums.json" in captured.err
    assert "Steps 2 -> 4 (resuming)" in captured.out and results["steps"] == 4


def test_a_full_disk_in_orbax_is_one_line_and_exit_1_and_the_same_command_resumes(tmp_path):
    script = (  # train.py, with the disk full when orbax writes latest/4
        "import sys, pytest; from absl import app; import train; "
        "from tests.test_reliability import _fail_saving; "
        "patch = pytest.MonkeyPatch(); _fail_saving(patch, 'latest/4'); "
        "app.run(train.main, flags_parser=train.parse_flags)")
    flags = ["--config=configs/adding.py", f"--workdir={tmp_path}", "--config.num_train_steps=4",
             "--config.checkpoint_every=2", *TINY_FLAGS]
    run = subprocess.run([sys.executable, "-c", script, *flags], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr  # the progress bar's lines, then this one
    assert run.stderr.splitlines()[-1] == (
        f"train.py: saving {tmp_path}/latest/4 failed: [Errno 28] No space left on device. "
        f"{tmp_path}/latest/2 is intact: free space and rerun the same command to resume from "
        "it.")
    rerun = subprocess.run([sys.executable, "train.py", *flags], cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "Steps 2 -> 4 (resuming)" in rerun.stdout
    assert sorted(os.listdir(tmp_path / "latest")) == ["2", "4"]  # the temporary one removed


def test_reproduce_refuses_a_row_whose_workdir_holds_another_run_before_any_row_trains(
        trained_workdir, tmp_path, monkeypatch, capsys):
    from skip_rnn.experiments import reproduce

    shutil.copytree(trained_workdir, tmp_path / "skip_lstm")  # a run of another config
    trained = []
    monkeypatch.setattr(trainer, "train_and_evaluate", lambda config, workdir: trained.append(1))
    monkeypatch.setattr(sys, "argv", ["reproduce", "--table=1", f"--workdir={tmp_path}",
                                      "--models=lstm,skip_lstm"])  # lstm would train first
    with pytest.raises(SystemExit) as exit_:
        reproduce.main()
    error = capsys.readouterr().err
    assert exit_.value.code == 2 and not trained
    assert f"{tmp_path / 'skip_lstm'} holds a run made with another config" in error


def test_a_metrics_line_cut_short_is_left_out_on_resume_and_in_the_figures(tmp_path, capsys):
    import errno

    from skip_rnn.experiments import figures
    from skip_rnn.experiments.metrics import LogError, MetricWriter
    from skip_rnn.experiments.population import Member

    rows = [{"step": s, "split": "validation", "member": 0, "seed": 0, "cost_per_sample": 0.0,
             "metric": 0.1, "updates_percent": 100.0} for s in (2, 4)]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "split": "tr')
    figures.curves_figure(str(path), "MSE")  # draws what is whole
    assert "left out 1 line(s) that are not JSON" in capsys.readouterr().err
    writer = MetricWriter(str(tmp_path), "adding", resume_step=4)  # a resume from step 4
    assert [json.loads(line) for line in open(path)] == rows

    class FullDisk:
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    writer.jsonl.close()
    writer.jsonl = FullDisk()
    with pytest.raises(LogError, match=r"metrics.jsonl: writing step 5's train metrics failed "
                       r"\(\[Errno 28\] No space left on device\); the last checkpoint is kept"):
        writer.write(5, "train", [Member(0, 0.0)], [{"loss": 1.0}])
    assert issubclass(LogError, trainer.RUN_ERRORS)  # train.py: one line, exit 1
    writer.tensorboard.close()
