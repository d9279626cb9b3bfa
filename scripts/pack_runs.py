"""Packs runs for the next machine, small enough to carry or to commit.

    python scripts/pack_runs.py SOURCE OUTDIR
    python scripts/pack_runs.py --row WORKDIR/ROW OUTDIR

The first writes ``OUTDIR/workdirs_<part>.tar.gz`` for each subdirectory ``<part>`` of
``SOURCE`` (a part of ``scripts/gpu_run.sh``: ``table1``, ``mnist_fast`` ...), with paths as
given in ``SOURCE``, so that ``tar xzf`` from the same directory puts every run back. The
second packs one row of a ``reproduce`` workdir into ``OUTDIR/checkpoint_<step>.tar.gz``, its
paths starting at ``ROW/``, so that ``tar xzf PACK -C WORKDIR`` resumes it: the layout of the
unfinished rows under ``results/`` that ``scripts/gpu_run.sh`` resumes from.

A pack holds every file of its runs but what a resume does not read: TensorBoard events, all
but the newest finished step of ``latest/`` and of ``best/`` (a step orbax is still writing
is left out), and ``latest/`` itself for a run that has ended (its ``results.json`` says it was
stopped by a rule or trained every step: it needs only its results, metrics and best
parameters). A checkpoint of a run that may train on is ≈1 MB a member at the adding shape.
Pack a run that is training while it is paused (``kill -STOP``, then ``-CONT``): orbax
deletes the step before the one it has just finished.
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
    if manager in ("latest", "best"):
        steps = [int(s) for s in os.listdir(parent) if s.isdigit()]
        return name.isdigit() and int(name) == max(steps)
    return True


def _write(out: str, directory: str, arcname: str) -> str:
    """Packs ``directory`` as ``arcname`` into the tarball ``out``, only what :func:`kept`."""
    def only_kept(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        path = os.path.normpath(os.path.join(directory, os.path.relpath(info.name, arcname)))
        return info if kept(path) else None

    with tarfile.open(out, "w:gz") as tar:
        tar.add(directory, arcname=arcname, filter=only_kept)
    return out


def pack(source: str, outdir: str) -> list[str]:
    """The packs written, one per part (subdirectory of ``source``)."""
    os.makedirs(outdir, exist_ok=True)
    return [_write(os.path.join(outdir, f"workdirs_{part}.tar.gz"), os.path.join(source, part),
                   os.path.join(source, part).lstrip(os.sep))  # as tarfile stores a path
            for part in sorted(os.listdir(source)) if os.path.isdir(os.path.join(source, part))]


def pack_row(row: str, outdir: str) -> str:
    """The pack of the ``reproduce`` row in directory ``row``, named by its newest step."""
    latest = os.path.join(row, "latest")
    steps = [int(s) for s in os.listdir(latest) if s.isdigit()] if os.path.isdir(latest) else []
    if not steps:
        raise SystemExit(f"{row}/latest holds no finished checkpoint: nothing to resume from")
    os.makedirs(outdir, exist_ok=True)
    row = os.path.normpath(row)
    return _write(os.path.join(outdir, f"checkpoint_{max(steps)}.tar.gz"), row,
                  os.path.basename(row))


if __name__ == "__main__":
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--row":
        written = [pack_row(*args[1:])]
    elif len(args) == 2 and not args[0].startswith("-"):
        written = pack(*args)
    else:
        sys.exit("usage:\n" + __doc__.split("\n\n")[1])
    for out in written:
        print(f"{out}: {os.path.getsize(out) / 2**20:.1f} MiB")
