"""What a population costs: the trainer's jitted step with M members vs one model.

The step is :func:`skip_rnn.experiments.steps.make_steps`'s (Skip LSTM, the adding task's
loss, budget loss, clip + Adam, ``jax.vmap`` over members), each member with its own batch of
the paper's size 256. Every M is compiled and warmed up, then the M are timed in alternation,
``--repeats`` rounds of ``--steps`` back-to-back steps; medians quoted. A ratio near 1 for
M = 4 means four seeds cost barely more than one (a GPU's spare parallelism); near 4, that
they cost four runs (a small CPU).

    python -m benchmarks.population [--lengths=50,784] [--members=1,4,8] [--repeats=5]
    python -m benchmarks.population --members=4 --scan_unroll=1,2  # the step at each unroll
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

from configs import adding
from skip_rnn.experiments import allocator, data, models, population, sharding
from skip_rnn.experiments.steps import make_steps


def timed_steps(config, num_members: int, steps: int):
    """A function running ``steps`` training steps of an M-member population, and its state."""
    config.num_seeds = num_members
    task = data.load(config)
    cell = models.make_cell(config.model)
    members = population.population(config)
    mesh = sharding.make_mesh(config, jax.devices()[:1])
    tx, train_step, _ = make_steps(cell, config, task, members, mesh)
    params = population.init_population(cell, task, members)
    state = population.initial_train_state(tx, params)
    batch = jax.device_put(sharding.stack_members([task.train_batch(m.seed, 0) for m in members]))

    def run(state):
        for _ in range(steps):
            state, metrics = train_step(state, batch)
        return jax.block_until_ready((state, metrics))[0]

    return run, run(state)  # the first call compiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="50,784", help="sequence lengths T")
    parser.add_argument("--members", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed block")
    parser.add_argument("--scan_unroll", default="1",
                        help="config.model.scan_unroll values, e.g. 1,2: each timed beside the "
                             "first")
    args = parser.parse_args()
    sizes = [int(m) for m in args.members.split(",")]
    unrolls = [int(k) for k in args.scan_unroll.split(",")]
    if args.steps < 1 or args.repeats < 1 or min(sizes) < 1:
        parser.error("--steps, --repeats and every --members must be >= 1")
    config = adding.get_config()
    print(f"# {platform.machine()}, {jax.devices()[0].device_kind}, jax {jax.__version__}; "
          f"{config.model.cell} H={config.model.hidden_size}, batch {config.batch_size} "
          f"per member")
    print(f"| T | members | scan_unroll | ms / step | vs {sizes[0]} member(s), "
          f"scan_unroll={unrolls[0]} | ms / member-step |")
    print("|---|---|---|---|---|---|")
    for length in [int(t) for t in args.lengths.split(",")]:
        config.data.seq_length = length
        config.data.num_eval = 1
        runners = {}
        for m in sizes:
            for k in unrolls:
                config.model.scan_unroll = k
                runners[m, k] = timed_steps(config, m, args.steps)
        states = {key: state for key, (_, state) in runners.items()}
        times = {key: [] for key in runners}
        for _ in range(args.repeats):  # alternate the population sizes and unrolls
            for key, (run, _) in runners.items():
                start = time.perf_counter()
                states[key] = run(states[key])
                times[key].append((time.perf_counter() - start) / args.steps)
        medians = {key: float(np.median(times[key])) for key in runners}
        first = medians[sizes[0], unrolls[0]]
        for (m, k), seconds in medians.items():
            print(f"| {length} | {m} | {k} | {1e3 * seconds:.2f} | {seconds / first:.2f} "
                  f"| {1e3 * seconds / m:.2f} |", flush=True)


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
