"""Packs the runs under a directory for the next machine, small enough to carry.

    python scripts/pack_runs.py SOURCE OUTDIR

Writes ``OUTDIR/workdirs_<part>.tar.gz`` for each subdirectory ``<part>`` of ``SOURCE`` (a part
of ``scripts/gpu_run.sh``: ``table1``, ``mnist_fast`` ...), with paths as given in ``SOURCE``, so
that ``tar xzf`` from the same directory puts every run back. Each holds every file of its runs
but what a resume does not read: TensorBoard events, all but the newest step of ``latest/`` and
of ``best/``, and ``latest/`` itself for a run that has ended (its ``results.json`` says it was
stopped by a rule or trained every step: it needs only its results, metrics and best
parameters). A checkpoint of a run that may train on is ≈1 MB a member at the adding shape.
"""

from __future__ import annotations

import json
import os
import sys
import tarfile


def ended(run: str) -> bool:
    """Whether the run in directory ``run`` has nothing left to train."""
    path = os.path.join(run, "results.json")
    if not os.path.isfile(path):
        return False
    with open(path) as f:
        results = json.load(f)
    return bool(results.get("stopped")) or results["steps"] >= results.get("total_steps", 0) > 0


def kept(path: str) -> bool:
    """Whether the file or directory ``path`` goes into the pack."""
    parent, name = os.path.split(path)
    if name == "tensorboard":
        return False
    run, manager = os.path.split(parent)
    if manager == "latest" and ended(run):
        return False
    if manager in ("latest", "best") and name.isdigit():
        steps = [int(s) for s in os.listdir(parent) if s.isdigit()]
        return int(name) == max(steps)
    return True


def pack(source: str, outdir: str) -> list[str]:
    """The packs written, one per part (subdirectory of ``source``)."""
    os.makedirs(outdir, exist_ok=True)
    root = os.sep if os.path.isabs(source) else ""  # tarfile drops a leading "/"

    def only_kept(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return info if kept(root + info.name) else None

    written = []
    for part in sorted(os.listdir(source)):
        if not os.path.isdir(os.path.join(source, part)):
            continue
        out = os.path.join(outdir, f"workdirs_{part}.tar.gz")
        with tarfile.open(out, "w:gz") as tar:
            tar.add(os.path.join(source, part), filter=only_kept)
        written.append(out)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__.split("\n\n")[1].strip())
    for written in pack(*sys.argv[1:]):
        print(f"{written}: {os.path.getsize(written) / 2**20:.1f} MiB")
