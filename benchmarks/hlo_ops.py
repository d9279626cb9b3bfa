"""Compiled ops per iteration of the training step's scans: plain cells against skip cells.

The gradient of a loss (mean squared last output, plus the budget loss for skip cells) at a
training shape of ``benchmarks/train_step.py`` (the adding task's ``[256, 50, 2]`` by default),
H = 110, compiled for this machine; for each of the two
``while`` loops of the optimized HLO (the forward and the backward scan, in the order the HLO
text lists them), its body's instructions. An op is
an XLA kernel launched per time step: what the skip wrapper adds to a step, beside the FLOPs.

    python benchmarks/hlo_ops.py [--shape=smnist]
"""

from __future__ import annotations

import argparse
import re

import jax
import jax.numpy as jnp
from train_step import LAYERS, SHAPES

import skip_rnn as sr
from skip_rnn.experiments import allocator

KINDS = ("lstm", "gru", "from_linen(OptimizedLSTMCell)")  # train_step's layers, H = 110


def loop_body_ops(cell: sr.Cell, xs: jax.Array) -> list[int]:
    """Instructions in the body of each ``while`` of ``cell``'s compiled loss gradient."""
    params = cell.init(jax.random.key(0), xs.shape[-1])

    def loss(p):
        state, out = sr.unroll(cell, p, xs)
        return jnp.mean(cell.output(state) ** 2) + sr.budget_loss(out.u, 1e-4)

    text = jax.jit(jax.grad(loss)).lower(params).compile().as_text()
    counts = []
    for body in re.findall(r"body=%?([\w.\-]+)", text):
        match = re.search(r"\n%?" + re.escape(body) + r" [^\n]*\{\n(.*?)\n\}", text, re.S)
        if match:
            counts.append(sum("=" in line for line in match.group(1).splitlines()))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="adding", choices=["adding", "smnist"])
    args = parser.parse_args()
    B, T, F, _, _ = SHAPES[args.shape]
    xs = jnp.ones((B, T, F))
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, {args.shape} {xs.shape}")
    print("| cell | first loop: ops / step | second loop: ops / step |")
    print("|---|---|---|")
    for kind in KINDS:
        for skip in (False, True):
            cell = LAYERS[kind](110, jnp.float32)
            first, second = loop_body_ops(sr.skip(cell) if skip else cell, xs)[:2]
            print(f"| {f'skip({kind})' if skip else kind} | {first} | {second} |")


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
