"""A bfloat16 LSTM over the sequential-MNIST length: the carry in bfloat16 against float32.

``sr.lstm(H, dtype=jnp.bfloat16)`` carries ``(c, h)`` in bfloat16; Flax's
``nn.LSTMCell(dtype=jnp.bfloat16)`` multiplies in bfloat16 and keeps its float32 carry (the
products promote to it). Both forms, with the same float32 parameters (``b`` perturbed so that
the gates differ from 0.5), against the float64 ``sr.lstm``: mean and max ``|h - h64|`` over
every step and at the last.

    python benchmarks/carry_dtype.py [--batch=64] [--steps=784]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import skip_rnn as sr
from skip_rnn.experiments import allocator

H, F = 110, 1


def float32_carry(params, xs: jax.Array) -> jax.Array:
    """``h`` ``[B, T, H]`` of an LSTM whose products run in bfloat16 and whose carry stays
    float32 (Flax's ``nn.LSTMCell(dtype=jnp.bfloat16)``)."""
    low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)

    def step(state, x):
        c, h = state
        z = x.astype(jnp.bfloat16) @ low["w_x"] + h.astype(jnp.bfloat16) @ low["w_h"] + low["b"]
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)  # promotes to float32
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    zeros = jnp.zeros((xs.shape[0], H), jnp.float32)
    return jnp.swapaxes(jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(xs, 0, 1))[1], 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=784)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    params = sr.lstm(H).init(jax.random.key(0), F)
    params = {**params, "b": params["b"] + jnp.asarray(0.1 * rng.normal(size=4 * H), jnp.float32)}
    xs = jnp.asarray(rng.uniform(size=(args.batch, args.steps, F)), jnp.float32)
    runs = {"carry bfloat16 (sr.lstm(dtype=bfloat16))":
            sr.unroll(sr.lstm(H, dtype=jnp.bfloat16), params, xs)[1].h,
            "carry float32 (Flax's nn.LSTMCell(dtype=bfloat16))": float32_carry(params, xs)}
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        cell64 = sr.lstm(H, dtype=jnp.float64, param_dtype=jnp.float64)
        reference = np.asarray(sr.unroll(cell64, params64, jnp.asarray(xs, jnp.float64))[1].h)
    print(f"| B = {args.batch}, T = {args.steps}, H = {H} | mean over steps | max over steps "
          "| mean at the last step | max at the last step |")
    print("|---|---|---|---|---|")
    for name, h in runs.items():
        error = np.abs(np.asarray(h, np.float64) - reference)
        print(f"| {name} | {error.mean():.2e} | {error.max():.2e} | {error[:, -1].mean():.2e} "
              f"| {error[:, -1].max():.2e} |")


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
