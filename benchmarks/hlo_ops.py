"""Compiled ops per iteration of the training step's scans: plain cells against skip cells.

The gradient of the adding task's loss (mean squared last output, plus the budget loss for
skip cells) at ``[256, 50, 2]``, H = 110, compiled for this machine; for each of the two
``while`` loops of the optimized HLO (the forward and the backward scan, in the order the HLO
text lists them), its body's instructions. An op is
an XLA kernel launched per time step: what the skip wrapper adds to a step, beside the FLOPs.

    python benchmarks/hlo_ops.py
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

import skip_rnn as sr
from skip_rnn.experiments import allocator

CELLS = {"lstm": lambda: sr.lstm(110), "skip(lstm)": lambda: sr.skip(sr.lstm(110)),
         "gru": lambda: sr.gru(110), "skip(gru)": lambda: sr.skip(sr.gru(110))}


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
    xs = jnp.ones((256, 50, 2))
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}")
    print("| cell | first loop: ops / step | second loop: ops / step |")
    print("|---|---|---|")
    for name, make in CELLS.items():
        first, second = loop_body_ops(make(), xs)[:2]
        print(f"| {name} | {first} | {second} |")


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
