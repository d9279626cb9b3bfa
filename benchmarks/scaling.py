"""Scaling out: training steps per second on 1, 2, 4, ... devices, side by side in one process.

The step is the trainer's own (:func:`skip_rnn.experiments.steps.make_steps`, the adding task
at the paper's sizes: Skip LSTM, H=110, T=50, batch 256 per member), each step with its batch
built on the host and placed on the mesh as the trainer does
(:func:`skip_rnn.experiments.sharding.train_batch`).
Device counts use the first N of ``jax.devices()``; on a CPU the process makes
``max(--devices)`` host devices (``jax_num_cpu_devices``), which share the machine's cores:
more devices than cores cannot go faster. Every count is compiled and warmed up, then the
counts are timed in alternation, ``--repeats`` blocks of ``--steps`` steps; medians quoted.
``--members=4 --member_sharding`` times a population with its members split over devices.

    python -m benchmarks.scaling [--devices=1,2,4] [--members=1] [--member_sharding]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from configs import adding
from skip_rnn.experiments import allocator, configuration, data, models, population, sharding
from skip_rnn.experiments.steps import make_steps


def timed_steps(config, devices: list, steps: int):
    """A function running ``steps`` training steps on ``devices`` from a given step, and the
    state after a first (compiling) call."""
    configuration.check_config(config, len(devices))
    mesh = sharding.make_mesh(config, devices)
    task, cell = data.load(config), models.make_cell(config.model)
    members = population.population(config)
    tx, train_step, _ = make_steps(cell, config, task, members, mesh)
    params = population.init_population(cell, task, members)
    state = sharding.place_members(population.initial_train_state(tx, params), mesh)
    layout = NamedSharding(mesh, PartitionSpec("member", "batch"))
    seeds = [m.seed for m in members]

    def run(state, start: int):
        for step in range(start, start + steps):
            state, metrics = train_step(state, sharding.train_batch(
                task, seeds, step, config.batch_size, layout))
        return jax.block_until_ready((state, metrics))[0]

    return run, run(state, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="device counts to compare")
    parser.add_argument("--members", type=int, default=1, help="population size")
    parser.add_argument("--member_sharding", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    args = parser.parse_args()
    counts = [int(n) for n in args.devices.split(",")]
    if args.steps < 1 or args.repeats < 1 or args.members < 1 or min(counts) < 1:
        parser.error("--steps, --repeats, --members and every --devices must be >= 1")
    jax.config.update("jax_num_cpu_devices", max(counts))  # before JAX starts; CPU only
    counts = [n for n in counts if n <= jax.device_count()]
    config = adding.get_config()
    config.num_seeds, config.member_sharding = args.members, args.member_sharding
    config.data.num_eval = 1
    print(f"# {platform.machine()}, {os.cpu_count()} cores, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}; {config.model.cell} H={config.model.hidden_size}, "
          f"T={config.data.seq_length}, batch {config.batch_size} x {args.members} member(s)")
    print("| devices | mesh (member x batch) | ms / step | steps / s | vs 1st row |")
    print("|---|---|---|---|---|")
    runners = {n: timed_steps(config, jax.devices()[:n], args.steps) for n in counts}
    states = {n: state for n, (_, state) in runners.items()}
    times = {n: [] for n in counts}
    for r in range(args.repeats):  # alternate the device counts
        for n, (run, _) in runners.items():
            start = time.perf_counter()
            states[n] = run(states[n], (r + 1) * args.steps)
            times[n].append((time.perf_counter() - start) / args.steps)
    medians = {n: float(np.median(times[n])) for n in counts}
    for n, seconds in medians.items():
        member, batch = configuration.mesh_shape(config, n)
        print(f"| {n} | {member} x {batch} | {1e3 * seconds:.1f} | {1 / seconds:.2f} "
              f"| {medians[counts[0]] / seconds:.2f}x |", flush=True)


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
