"""What pacing the training loop costs: waiting for step n before dispatching step n + 2.

The trainer's loop (:class:`skip_rnn.experiments.trainer._TrainLoop`) keeps at most two steps
on the device, so that its progress bar, time limit and Ctrl-C act within one step. Against it,
the loop of earlier versions: dispatch freely, wait only every ``log_every`` (100) steps. Both
run the trainer's own jitted step (:func:`skip_rnn.experiments.steps.make_steps`, one member)
on the trainer's own batches (:func:`skip_rnn.experiments.sharding.train_batch`, made on the
host each step), alternating, ``--repeats`` rounds of ``--steps`` steps; medians quoted.

    python -m benchmarks.loop_sync [--configs=adding,mnist] [--steps=100] [--repeats=5]
"""

from __future__ import annotations

import argparse
import importlib
import platform
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from skip_rnn.experiments import allocator, data, models, population, sharding
from skip_rnn.experiments.steps import make_optimizer, make_steps

MNIST_STEPS = 10  # sequential MNIST takes ≈1.3 s a step on a 2-core CPU


def loops(config):
    """``{"paced": run, "ahead": run}``: each ``run(state, first_step, steps) -> state``."""
    task = data.load(config)
    cell = models.make_cell(config.model)
    members = population.population(config)
    mesh = sharding.make_mesh(config, jax.devices())
    _, train_step, _ = make_steps(cell, config, task, members, mesh)
    layout = NamedSharding(mesh, PartitionSpec("member", "batch"))

    def dispatch(state, step):
        return train_step(state, sharding.train_batch(task, [config.seed], step,
                                                      config.batch_size, layout))

    def paced(state, first, steps):
        previous = None
        for step in range(first, first + steps):
            state, metrics = dispatch(state, step)
            if previous is not None:
                jax.device_get(previous)  # the wait of the trainer's loop
            previous = metrics
        return jax.block_until_ready(state)

    def ahead(state, first, steps):
        for step in range(first, first + steps):
            state, metrics = dispatch(state, step)
            if (step + 1) % config.log_every == 0:
                jax.device_get(metrics)
        return jax.block_until_ready(state)

    params = population.init_population(cell, task, members)
    tx = make_optimizer(config, config.num_train_steps)
    state = sharding.place_members(population.initial_train_state(tx, params), mesh)
    return {"paced": paced, "ahead": ahead}, paced(state, 0, 2)  # compiled, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="adding,mnist", help="configs/ files")
    parser.add_argument("--steps", type=int, default=100, help="steps per timed block "
                        f"(mnist: {MNIST_STEPS})")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mnist_dir", default="", help="MNIST IDX files (default: the cache)")
    args = parser.parse_args()
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")
    print(f"# {platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print("| config | steps a block | paced s / step | ahead s / step | paced / ahead |")
    print("|---|---|---|---|---|")
    for name in args.configs.split(","):
        config = importlib.import_module(f"configs.{name}").get_config()
        if name.startswith("mnist") and args.mnist_dir:
            config.data.dir = args.mnist_dir
        steps = MNIST_STEPS if name.startswith("mnist") else args.steps
        runners, state = loops(config)
        times = {mode: [] for mode in runners}
        first = 2
        for _ in range(args.repeats):  # alternate A and B
            for mode, run in runners.items():
                start = time.perf_counter()
                state = run(state, first, steps)
                times[mode].append((time.perf_counter() - start) / steps)
                first += steps
        paced, ahead = (float(np.median(times[m])) for m in ("paced", "ahead"))
        print(f"| {name} | {steps} | {paced:.4f} | {ahead:.4f} | {paced / ahead:.3f} |",
              flush=True)


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
