"""Quickstart: train a small Skip LSTM until it skips, then run it without reading what it skips.

    python examples/quickstart.py [--out=workdirs/quickstart.png] [--max_seconds=280]

The adding task (§4.1): sequences of 50 (value, marker) pairs, the target is the sum of the two
marked values. A Skip LSTM of 32 units learns it with plain library calls (``sr.skip``,
``sr.unroll``, ``sr.budget_loss``, an Optax step under ``jax.jit``) at a larger learning rate
and budget weight λ than the paper's (1e-3 and 3e-4 against 1e-4 and 1e-5), so that it is soon
both solved (held-out MSE below 1% of the target's variance) and skipping: it stops at the
first evaluation where both hold. Then it draws the samples it used on 4 test sequences
(Fig. 2: red used, blue skipped, dotted lines the markers) and runs them through
``sr.jump_stream``, which reads only the inputs the model uses, and counts the others.

Expected on a 2-core CPU: solved with about half the updates after 1,000-2,000 steps (seeds
0-3), under a minute in all. The model reads around the first marker, skips most of the first
half, reads up to the second marker and skips much of what follows; jump_stream never reads
about half of the inputs.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import skip_rnn as sr
from skip_rnn.experiments import allocator, figures
from skip_rnn.experiments.data import adding

SOLVED_MSE = 0.01 * adding.TARGET_VARIANCE  # 1.67e-3, as the paper counts "solved"


def init_params(cell: sr.SkipCell, key: jax.Array, hidden_size: int) -> dict:
    """The skip cell's parameters and a linear readout of its last output."""
    cell_key, readout_key = jax.random.split(key)
    w = jax.random.normal(readout_key, (hidden_size,)) / jnp.sqrt(hidden_size)
    return {"cell": cell.init(cell_key, input_size=2), "w": w, "b": jnp.zeros(())}


def predict(cell: sr.SkipCell, params: dict, xs: jax.Array) -> tuple[jax.Array, sr.Output]:
    """Predicted sums ``[B]`` of ``xs`` ``[B, T, 2]``, and the per-step outputs."""
    final_state, out = sr.unroll(cell, params["cell"], xs)
    return cell.output(final_state) @ params["w"] + params["b"], out


def make_train_step(cell: sr.SkipCell, optimizer: optax.GradientTransformation, cost: float):
    def loss_fn(params, xs, targets):
        predictions, out = predict(cell, params, xs)
        mse = jnp.mean((predictions - targets) ** 2)
        return mse + sr.budget_loss(out.u, cost), mse

    @jax.jit
    def train_step(params, opt_state, xs, targets):
        (_, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, xs, targets)
        changes, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, changes), opt_state, mse

    return train_step


def count_unread(cell: sr.SkipCell, params: dict, xs: np.ndarray) -> list[int]:
    """Feeds each sequence of ``xs`` ``[B, T, 2]`` to ``sr.jump_stream`` one sample at a time,
    reading a sample only when the model asks for it; the number of samples never read."""
    runner = sr.jump_stream(cell)
    start, push = jax.jit(runner.start), jax.jit(runner.push)
    unread = []
    for sequence in xs:
        state, t, reads = start(params["cell"]), 0, 0
        while t < len(sequence):
            state, _, skips = push(params["cell"], state, sequence[t][None])
            t, reads = t + 1 + int(skips[0]), reads + 1
        unread.append(len(sequence) - reads)
    return unread


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("workdirs", "quickstart.png"),
                        help="the used-samples figure; its folder is created")
    parser.add_argument("--max_seconds", type=float, default=280.0, help="training time limit")
    parser.add_argument("--max_steps", type=int, default=20_000, help="training step limit")
    parser.add_argument("--hidden_size", type=int, default=32, help="LSTM units (paper: 110)")
    parser.add_argument("--seq_length", type=int, default=50, help="steps per sequence")
    parser.add_argument("--batch_size", type=int, default=128, help="paper: 256")
    parser.add_argument("--learning_rate", type=float, default=1e-3, help="paper: 1e-4")
    parser.add_argument("--cost_per_sample", type=float, default=3e-4,
                        help="λ of eq. 8 (paper: 1e-5)")
    parser.add_argument("--target_updates", type=float, default=0.6,
                        help="stop once solved with at most this fraction of updates")
    parser.add_argument("--eval_every", type=int, default=100,
                        help="training steps between held-out evaluations")
    parser.add_argument("--seed", type=int, default=0,
                        help="initialisation and training data; seed + 1 and + 2: held-out and "
                        "drawn sequences")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)

    cell = sr.skip(sr.lstm(args.hidden_size))
    params = jax.jit(lambda key: init_params(cell, key, args.hidden_size))(
        jax.random.key(args.seed))
    optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(args.learning_rate))
    opt_state = jax.jit(optimizer.init)(params)
    train_step = make_train_step(cell, optimizer, args.cost_per_sample)
    evaluate = jax.jit(lambda params, xs: predict(cell, params, xs))
    rng = np.random.default_rng(args.seed)
    held_out = adding.sample(np.random.default_rng(args.seed + 1), 1000, args.seq_length)

    start, step, solved = time.perf_counter(), 0, False
    while not solved and step < args.max_steps:
        if time.perf_counter() - start > args.max_seconds:
            print(f"time limit of {args.max_seconds:.0f} s reached")
            break
        batch = adding.sample(rng, args.batch_size, args.seq_length)
        params, opt_state, mse = train_step(params, opt_state, batch.inputs, batch.targets)
        step += 1
        if step % args.eval_every == 0 or step == args.max_steps:
            predictions, out = evaluate(params, held_out.inputs)
            held_out_mse = float(np.mean((np.asarray(predictions) - held_out.targets) ** 2))
            updates = float(np.mean(out.u))
            solved = held_out_mse < SOLVED_MSE and updates <= args.target_updates
            print(f"step {step:5d}  {time.perf_counter() - start:5.0f} s  train MSE "
                  f"{float(mse):.2e}  held-out MSE {held_out_mse:.2e}  updates "
                  f"{100 * updates:5.1f}%")
    seconds = time.perf_counter() - start
    print(f"{'solved and skipping' if solved else 'stopped'} after {step} steps, {seconds:.0f} s")

    xs = adding.sample(np.random.default_rng(args.seed + 2), 4, args.seq_length).inputs
    _, out = evaluate(params, xs)
    u = np.asarray(out.u)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    figures.used_samples(args.out, xs[..., 0], u, markers=xs[..., 1], title="Skip LSTM")
    print(f"used samples (red used, blue skipped): {args.out}")
    unread = count_unread(cell, params, xs)
    if unread != [int(v) for v in args.seq_length - u.sum(axis=1)]:
        raise RuntimeError("jump_stream read other inputs than sr.unroll used")
    print(f"jump_stream never read {sum(unread)} of {xs.shape[0] * xs.shape[1]} inputs "
          f"({', '.join(map(str, unread))} of {args.seq_length} per sequence; "
          "sr.unroll skips the same steps)")
    return {"solved": solved, "steps": step, "seconds": seconds, "unread": unread,
            "updates": float(u.mean())}


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
