"""Where a training step's time goes: XLA's ops per call, from a ``jax.profiler`` trace.

The gradient of the adding task's loss (mean squared last output, plus the budget loss for
skip cells) at ``[256, 50, 2]``, H = 110, for each ``--cells``; warmed up, then ``--calls``
calls traced. Prints, per cell, the ops run once per time step (those of the two scans), each
with its milliseconds per call summed over the steps, grouped by the kind of op (the name XLA
gave it, without its number), and their total.

    python benchmarks/profile_step.py [--cells=gru,skip(gru)] [--calls=5]
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import re
import tempfile

import jax
import jax.numpy as jnp

import skip_rnn as sr
from skip_rnn.experiments import allocator

CELLS = {"lstm": lambda: sr.lstm(110), "skip(lstm)": lambda: sr.skip(sr.lstm(110)),
         "gru": lambda: sr.gru(110), "skip(gru)": lambda: sr.skip(sr.gru(110))}
STEPS = 50


def op_milliseconds(cell: sr.Cell, calls: int) -> dict[str, float]:
    """Milliseconds per call of each op that runs once per time step, by op name."""
    xs = jax.random.normal(jax.random.key(1), (256, STEPS, 2))
    params = cell.init(jax.random.key(0), xs.shape[-1])
    skips = isinstance(cell, sr.SkipCell)

    def loss(p):
        state, out = sr.unroll(cell, p, xs)
        task = jnp.mean(jnp.square(cell.output(state)))
        return task + (sr.budget_loss(out.u, 1e-4) if skips else 0.0)

    step = jax.jit(jax.value_and_grad(loss))
    for _ in range(3):
        jax.block_until_ready(step(params))
    for _ in range(2):  # the first trace of a process is slower throughout: the second is kept
        with tempfile.TemporaryDirectory() as logdir:
            with jax.profiler.trace(logdir, create_perfetto_trace=True):
                for _ in range(calls):
                    jax.block_until_ready(step(params))
            path = glob.glob(f"{logdir}/**/*.trace.json.gz", recursive=True)[0]
            with gzip.open(path) as f:
                events = json.load(f)["traceEvents"]
    total, count = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("ph") == "X" and "dur" in event and not event["name"].startswith("end:"):
            total[event["name"]] += event["dur"]
            count[event["name"]] += 1
    return {name: total[name] / calls / 1e3 for name in total if count[name] == calls * STEPS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", default="gru,skip(gru)", help=f"of {', '.join(CELLS)}")
    parser.add_argument("--calls", type=int, default=5, help="calls traced")
    args = parser.parse_args()
    print(f"# {jax.devices()[0].device_kind}, jax {jax.__version__}, {allocator.describe()}")
    for name in args.cells.split(","):
        if name not in CELLS:
            parser.error(f"--cells: unknown cell {name!r}; known: {', '.join(CELLS)}")
        ops = op_milliseconds(CELLS[name](), args.calls)
        groups, counts = collections.Counter(), collections.Counter()
        for op, ms in ops.items():
            kind = re.sub(r"\.\d+$", "", op)
            groups[kind] += ms
            counts[kind] += 1
        print(f"\n{name}: {sum(ops.values()):.2f} ms per call in {len(ops)} per-step ops")
        print("| op | count | ms / call |\n|---|---|---|")
        for kind, ms in groups.most_common():
            print(f"| {kind} | {counts[kind]} | {ms:.3f} |")


if __name__ == "__main__":
    allocator.reexec()  # under a caching allocator on a Linux CPU
    main()
