"""The caching allocator against glibc's ``malloc``: the same benchmark, one process per run.

Runs ``benchmarks/train_step.py`` (its arguments after ``--``) once per allocator and round,
with ``SKIP_RNN_MALLOC`` set to each (:mod:`skip_rnn.experiments.allocator`), the order of the
allocators reversed every other round; prints each row's median ms per step under each
allocator and its speed-up over glibc's.

    python benchmarks/allocator.py [--allocators=system,mimalloc,tcmalloc,jemalloc] \\
        [--rounds=4] -- --shapes=adding --repeats=5
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import defaultdict

import numpy as np

from skip_rnn.experiments import allocator

TRAIN_STEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_step.py")
ROW = re.compile(r"^\| (?P<shape>[^|]+) \| (?P<model>[^|]+) \| (?P<ms>[\d.]+) \|")


def run(name: str, arguments: list[str]) -> dict[tuple[str, str], float]:
    """ms per step of every row that ``train_step.py arguments`` prints, under ``name``."""
    env = {**os.environ, allocator.CHOICE: name}
    env.pop("SKIP_RNN_MALLOC_IN_USE", None)
    env.pop("LD_PRELOAD", None)
    output = subprocess.run([sys.executable, TRAIN_STEP, *arguments], env=env, check=True,
                            capture_output=True, text=True).stdout
    print(output.splitlines()[0], flush=True)
    return {(m["shape"], m["model"]): float(m["ms"])
            for m in map(ROW.match, output.splitlines()) if m}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocators", default="system," + ",".join(allocator.ALLOCATORS))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("arguments", nargs="*", help="train_step.py's, after --")
    args = parser.parse_args()
    names = args.allocators.split(",")
    missing = [n for n in names if n != "system" and allocator.library_path(n) is None]
    if missing:
        raise SystemExit(f"allocator.py: not found on this machine: {', '.join(missing)}.")
    times = defaultdict(list)  # (row, allocator) -> ms
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            for row, ms in run(name, args.arguments).items():
                times[row, name].append(ms)
    rows = dict.fromkeys(row for row, _ in times)
    print(f"| shape | model | {' | '.join(f'{n} ms' for n in names)} | "
          f"{' | '.join(f'{n} speed-up' for n in names if n != 'system')} |")
    print("|---|---|" + "---|" * (2 * len(names) - 1))
    for shape, model in rows:
        medians = {n: float(np.median(times[(shape, model), n])) for n in names}
        cells = [f"{medians[n]:.1f}" for n in names]
        cells += [f"{medians['system'] / medians[n]:.2f}x" for n in names if n != "system"]
        print(f"| {shape} | {model} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
