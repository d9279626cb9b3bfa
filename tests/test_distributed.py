"""Past one machine: two processes (``jax.distributed``, CPU collectives over gloo on 127.0.0.1)
and populations sharded over devices give the numbers of one process on one device."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from skip_rnn.experiments import configuration, trainer
from skip_rnn.experiments.checkpoints import Checkpoints
from tests.test_reliability import TINY_FLAGS
from tests.test_training import ROOT, tiny_config

ADDING = ["--config=configs/adding.py", "--config.eval_every=10", "--config.checkpoint_every=10",
          *TINY_FLAGS]


def adding_config(steps: int, **values):
    """The config that ``ADDING`` and ``--config.num_train_steps=steps`` give ``train.py``."""
    config = tiny_config("adding", num_eval=8)
    config.num_figure_examples = 0
    config.num_train_steps, config.eval_every, config.checkpoint_every = steps, 10, 10
    for key, value in values.items():
        config[key] = value
    return config


def _launch(workdir, flags: list[str], devices: int, processes: int = 1
            ) -> list[subprocess.Popen]:
    """``train.py`` as ``processes`` processes with ``devices`` CPU devices each; what each
    prints goes to ``<workdir>.<process>.log``."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    ranks = [[f"--coordinator_address={address}", f"--num_processes={processes}",
              f"--process_id={i}"] for i in range(processes)] if processes > 1 else [[]]
    return [subprocess.Popen(
        [sys.executable, "train.py", f"--workdir={workdir}", *flags, *rank], cwd=ROOT, env=env,
        stdout=open(f"{workdir}.{i}.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
        for i, rank in enumerate(ranks)]


def _wait(runs: list[subprocess.Popen], timeout: float = 240) -> list[int]:
    """The exit codes; every run is killed once ``timeout`` seconds have passed."""
    deadline = time.time() + timeout
    try:
        return [run.wait(timeout=max(deadline - time.time(), 1)) for run in runs]
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()


def _log(workdir, process: int = 0) -> str:
    return open(f"{workdir}.{process}.log").read()


def _params(workdir) -> list[np.ndarray]:
    """The parameters in ``workdir/latest``, as NumPy arrays whatever devices saved them."""
    checkpoints = Checkpoints(str(workdir))
    step = checkpoints.latest.latest_step()
    saved = checkpoints.latest.item_metadata(step)["tree"].tree
    like = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), saved,
                        is_leaf=lambda a: hasattr(a, "shape"))
    restored = checkpoints.latest.restore(step, args=ocp.args.Composite(
        tree=ocp.args.StandardRestore(like)))
    checkpoints.close()
    return jax.tree.leaves(restored.tree["state"]["params"])


def _assert_same_training(a, b) -> None:
    """The same saved parameters (rtol 1e-5) and the same ``metrics.jsonl`` rows."""
    for x, y in zip(_params(a), _params(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    rows = [[json.loads(line) for line in open(w / "metrics.jsonl")] for w in (a, b)]
    assert len(rows[0]) == len(rows[1])
    for x, y in zip(*rows, strict=True):
        numbers = [k for k, v in y.items() if isinstance(v, float)]
        assert {k: v for k, v in x.items() if k not in numbers} == {
            k: v for k, v in y.items() if k not in numbers}
        np.testing.assert_allclose([x[k] for k in numbers], [y[k] for k in numbers], rtol=1e-5,
                                   atol=1e-7, err_msg=str(y))


def test_two_processes_equal_one_process_on_four_devices_and_on_one(tmp_path):
    flags = [*ADDING, "--config.num_train_steps=20"]
    two = _launch(tmp_path / "two", flags, devices=2, processes=2)
    four = _launch(tmp_path / "four", flags, devices=4)
    trainer.train_and_evaluate(adding_config(20), str(tmp_path / "one"))
    assert _wait(two + four) == [0, 0, 0], _log(tmp_path / "two") + _log(tmp_path / "two", 1)
    assert "on 4 cpu devices in 2 processes" in _log(tmp_path / "two")  # the banner: process 0
    _assert_same_training(tmp_path / "two", tmp_path / "four")
    _assert_same_training(tmp_path / "two", tmp_path / "one")
    assert sorted(os.listdir(tmp_path / "two")) == [  # plain files written once, by process 0
        "best", "latest", "metrics.jsonl", "results.json", "tensorboard"]


def test_a_signal_to_one_process_stops_both_at_one_step_and_they_resume(tmp_path):
    workdir = tmp_path / "run"
    runs = _launch(workdir, [*ADDING, "--config.num_train_steps=100000",
                             "--config.eval_every=100000", "--config.checkpoint_every=100000"],
                   devices=2, processes=2)
    metrics, deadline = workdir / "metrics.jsonl", time.time() + 180
    while time.time() < deadline and not (metrics.exists() and metrics.read_text().count("\n") > 2):
        time.sleep(0.05)
    runs[1].send_signal(signal.SIGINT)  # Ctrl-C in the second process only
    assert _wait(runs) == [143, 130], _log(workdir) + _log(workdir, 1)
    steps = {int(re.search(r"interrupted at step (\d+); rerun", _log(workdir, i))[1])
             for i in range(2)}
    assert len(steps) == 1, "both stop at the same step"
    step = steps.pop()
    resumed = _launch(workdir, [*ADDING, f"--config.num_train_steps={step + 3}",
                                "--config.eval_every=100000"], devices=2, processes=2)
    config = adding_config(step + 3, eval_every=100000)
    trainer.train_and_evaluate(config, str(tmp_path / "straight"))
    assert _wait(resumed) == [0, 0], _log(workdir) + _log(workdir, 1)
    assert f"Steps {step} -> {step + 3} (resuming)" in _log(workdir)
    _assert_same_training(workdir, tmp_path / "straight")


_MEMBER_SHARDED = """
import json, sys
sys.path.insert(0, {root!r})
import jax
from skip_rnn.experiments import trainer
from tests.test_distributed import population_config

run = trainer._TrainLoop.run

def run_and_report(self, state, *args):
    state = run(self, state, *args)
    shards = {{s.data.shape[0] for leaf in jax.tree.leaves(state.params)
              for s in leaf.addressable_shards}}
    print(json.dumps({{"devices": jax.device_count(), "members_per_device": sorted(shards)}}))
    return state

trainer._TrainLoop.run = run_and_report
trainer.train_and_evaluate(population_config(member_sharding=True), {workdir!r})
"""


def population_config(member_sharding: bool):
    """4 members (2 seeds x 2 λ) of 20 adding steps."""
    return adding_config(20, num_seeds=2, costs_per_sample=(0.0, 1e-2),
                         member_sharding=member_sharding)


def test_members_sharded_over_four_devices_equal_the_population_on_one(tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    script = _MEMBER_SHARDED.format(root=ROOT, workdir=str(tmp_path / "sharded"))
    sharded = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    trainer.train_and_evaluate(population_config(member_sharding=False), str(tmp_path / "one"))
    out, err = sharded.communicate(timeout=240)
    assert sharded.returncode == 0, err
    report = next(line for line in out.splitlines() if line.startswith('{"devices"'))
    assert json.loads(report) == {"devices": 4, "members_per_device": [1]}
    _assert_same_training(tmp_path / "sharded", tmp_path / "one")


def test_members_that_do_not_split_over_the_devices_are_refused():
    config = population_config(member_sharding=True)
    config.num_seeds = 3  # 6 members on 4 devices
    with pytest.raises(configuration.ConfigError, match=re.escape(
            "config.member_sharding=True is invalid: must be False, or used with a population "
            "whose 6 members")):
        configuration.check_config(config, num_devices=4)
    config.num_seeds = 4  # 8 members: 2 a device
    configuration.check_config(config, num_devices=4)
    assert configuration.mesh_shape(config, 4) == (4, 1)
    assert configuration.mesh_shape(config, 16) == (8, 2)
