"""Dense ``sr.unroll`` vs the jumping runner ``sr.jump_unroll``, side by side in one process.

Skip LSTM, T=784, H=110, F=1 (the sequential-MNIST shape), in two modes: ``final`` returns
the final state only (what a classifier reads; XLA drops the unused per-step outputs) and
``all`` also returns the per-step outputs ``out`` (``h`` is ``[B, T, H]``). The update rate
is set with ``W_p = 0`` and ``b_p = logit(Δũ)``, so every sequence updates once every
``N_skip + 1`` steps (eq. 6). Reports the median ms per sequence over ``--repeats``
alternating timed runs after a warm-up (each a block of back-to-back calls lasting >= 20 ms),
the measured speedup and the ideal one, ``T / max_b(updates_b)``.

    python benchmarks/inference.py [--batch_sizes=1,256] [--repeats=7]
    python benchmarks/inference.py --chunks=1,2,4,8  # jump_unroll(chunk=k), vs the first k
"""

from __future__ import annotations

import argparse
import itertools
import math
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

import skip_rnn as sr
from skip_rnn.experiments import allocator

T, H, F = 784, 110, 1
# Δũ for each target update rate: N_skip = ceil(0.5 / Δũ) - 1 skips after every update.
DELTA_U = {100: 0.9, 50: 0.3, 25: 0.14, 10: 0.052, 5: 0.0255}


def _time(fn, *args, number: int = 1) -> float:
    """Seconds per call over ``number`` back-to-back calls (amortises the ~0.3 ms wake-up that
    a call from idle pays on this machine, whatever it runs)."""
    start = time.perf_counter()
    for _ in range(number):
        result = fn(*args)
    jax.block_until_ready(result)
    return (time.perf_counter() - start) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="1,256")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chunks", default="",
                        help="e.g. 1,2,4,8: time jump_unroll(chunk=k) for each, vs the first")
    args = parser.parse_args()
    if args.chunks:
        return chunk_table(args)
    cell = sr.skip(sr.lstm(H))
    runners = {
        "final": (jax.jit(lambda p, xs: sr.unroll(cell, p, xs)[0]),
                  jax.jit(lambda p, xs: sr.jump_unroll(cell, p, xs)[::2])),
        "all": (jax.jit(lambda p, xs: sr.unroll(cell, p, xs)),
                jax.jit(lambda p, xs: sr.jump_unroll(cell, p, xs))),
    }
    print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}, T={T}, H={H}, F={F}")
    print("| batch | outputs | update rate | updates (max_b) | dense ms/seq | jump ms/seq "
          "| speedup | ideal | speedup / ideal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        xs = jax.random.uniform(jax.random.key(0), (batch, T, F))
        base = cell.init(jax.random.key(1), F)
        for (mode, (dense, jump)), (rate, delta_u) in itertools.product(
            runners.items(), DELTA_U.items()
        ):
            params = {**base, "w_p": jnp.zeros_like(base["w_p"]),
                      "b_p": jnp.asarray(math.log(delta_u / (1 - delta_u)))}
            info = jump(params, xs)[-1]  # warm-up (compiles) and the update count
            # Calls per timed block: enough for >= 20 ms of the faster runner.
            number = max(1, math.ceil(0.02 / min(_time(jump, params, xs),
                                                 _time(dense, params, xs))))
            times = {"dense": [], "jump": []}
            for _ in range(args.repeats):  # alternate A/B
                times["dense"].append(_time(dense, params, xs, number=number))
                times["jump"].append(_time(jump, params, xs, number=number))
            d, j = (1e3 * float(np.median(times[k])) / batch for k in ("dense", "jump"))
            updates = int(info.num_iterations)
            ideal = T / updates
            print(f"| {batch} | {mode} | {rate}% | {updates} | {d:.3f} | {j:.3f} | {d / j:.2f}x "
                  f"| {ideal:.2f}x | {d / j / ideal:.2f} |", flush=True)


def chunk_table(args: argparse.Namespace) -> None:
    """``jump_unroll(..., chunk=k)`` (final state only) for each ``k`` of ``--chunks``, timed in
    alternation at each batch size and update rate; ratios to the first ``k``."""
    cell = sr.skip(sr.lstm(H))
    chunks = [int(k) for k in args.chunks.split(",")]
    jumps = {k: jax.jit(lambda p, xs, k=k: sr.jump_unroll(cell, p, xs, chunk=k)[0])
             for k in chunks}
    print(f"# {platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
          f"jax {jax.__version__}, T={T}, H={H}, F={F}, {allocator.describe()}")
    print(f"| batch | update rate | {' | '.join(f'chunk={k} ms/seq' for k in chunks)} | "
          f"{' | '.join(f'chunk={k} / chunk={chunks[0]}' for k in chunks[1:])} |")
    print("|---|---|" + "---|" * (2 * len(chunks) - 1))
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        xs = jax.random.uniform(jax.random.key(0), (batch, T, F))
        base = cell.init(jax.random.key(1), F)
        for rate, delta_u in DELTA_U.items():
            params = {**base, "w_p": jnp.zeros_like(base["w_p"]),
                      "b_p": jnp.asarray(math.log(delta_u / (1 - delta_u)))}
            number = max(1, math.ceil(0.02 / _time(jumps[chunks[0]], params, xs)))
            times = {k: [] for k in chunks}
            for _ in range(args.repeats):  # alternate
                for k in chunks:
                    times[k].append(_time(jumps[k], params, xs, number=number))
            ms = {k: 1e3 * float(np.median(times[k])) / batch for k in chunks}
            ratios = [f"{ms[k] / ms[chunks[0]]:.2f}" for k in chunks[1:]]
            print(f"| {batch} | {rate}% | {' | '.join(f'{ms[k]:.3f}' for k in chunks)} | "
                  f"{' | '.join(ratios)} |", flush=True)


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
