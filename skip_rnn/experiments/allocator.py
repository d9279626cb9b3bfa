"""The command-line entry points run under a caching allocator on a Linux CPU.

XLA's CPU runtime allocates its temporaries (tens of MB a training step: the backward pass's
stacked activations) afresh at every call; glibc's ``malloc`` hands such blocks back to the
kernel and maps them again, a page fault per 4 KiB page. A caching allocator keeps them: the
adding task's training step runs ≈1.3x faster on a 2-core CPU (BENCHMARKS.md, "Allocator").
Like PyTorch's ``torch.backends.xeon.run_cpu`` launcher, :func:`reexec` restarts the command
with the allocator in ``LD_PRELOAD`` (a library cannot replace ``malloc`` once the process
runs). ``train.py``, ``python -m skip_rnn.experiments.reproduce``, ``examples/quickstart.py``
and ``benchmarks/*.py`` call it first; the library itself never does.

``SKIP_RNN_MALLOC`` chooses: unset or ``auto``, the first found of :data:`ALLOCATORS` (in the
order measured fastest: tcmalloc, jemalloc, mimalloc); ``system`` keeps glibc's; ``tcmalloc``,
``jemalloc`` or ``mimalloc`` asks for that one. mimalloc comes with the ``experiments``
extra (the ``cmeel-mimalloc`` wheel), so the README's set-up installs it; tcmalloc and
jemalloc are system packages (Debian: ``libtcmalloc-minimal4``, ``libjemalloc2``). Where
none is found, or on another OS, or when JAX will run on a GPU, the command runs as it is.
"""

from __future__ import annotations

import ctypes.util
import importlib.metadata
import importlib.util
import os
import sys
from typing import NamedTuple

CHOICE = "SKIP_RNN_MALLOC"
_IN_USE = "SKIP_RNN_MALLOC_IN_USE"  # set by reexec in the restarted process


class Allocator(NamedTuple):
    """A ``malloc`` to preload: where its shared library is found, and its settings."""

    wheel: str | None  # the PyPI distribution that ships the library, if any
    library: str  # its file name (wheel) or ldconfig name (system)
    env: dict[str, str]  # settings, as environment variables


# Fastest first (BENCHMARKS.md, "Allocator": the adding training step on a 2-core CPU, 1.64x,
# 1.43x and 1.33x glibc's); mimalloc is the one the set-up installs everywhere.
ALLOCATORS = {
    "tcmalloc": Allocator(None, "tcmalloc_minimal", {}),
    # jemalloc's defaults return memory to the kernel within 10 s, as glibc does: no gain.
    "jemalloc": Allocator(None, "jemalloc", {"MALLOC_CONF": "dirty_decay_ms:-1,muzzy_decay_ms:-1"}),
    "mimalloc": Allocator("cmeel-mimalloc", "libmimalloc.so", {}),
}


def library_path(name: str) -> str | None:
    """The shared library of allocator ``name`` on this machine, or ``None``."""
    allocator = ALLOCATORS[name]
    if allocator.wheel is None:
        return ctypes.util.find_library(allocator.library)
    try:
        files = importlib.metadata.files(allocator.wheel) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    paths = [f.locate() for f in files if f.name == allocator.library]
    return str(paths[0]) if paths else None


def choose(environ: os._Environ | dict[str, str] = os.environ) -> tuple[str, str] | None:
    """``(name, library path)`` of the allocator to preload, or ``None`` for glibc's."""
    choice = environ.get(CHOICE, "auto")
    if choice not in ("auto", "system", *ALLOCATORS):
        raise SystemExit(f"{CHOICE}={choice!r} is invalid: must be one of auto, system, "
                         f"{', '.join(ALLOCATORS)}.")
    if choice == "system" or not sys.platform.startswith("linux") or _gpu_run(environ):
        return None
    for name in ALLOCATORS if choice == "auto" else (choice,):
        path = library_path(name)
        if path is not None:
            return name, path
    return None


def environment() -> dict[str, str] | None:
    """The environment variables that start a process under :func:`choose`'s allocator
    (``LD_PRELOAD`` and its settings), or ``None``: none found, or this process runs under it
    already."""
    chosen = None if _IN_USE in os.environ else choose()
    if chosen is None:
        return None
    name, path = chosen
    preload = ":".join(p for p in (path, os.environ.get("LD_PRELOAD")) if p)
    return {**ALLOCATORS[name].env, _IN_USE: name, "LD_PRELOAD": preload}


def reexec() -> None:
    """Restarts this process's command under :func:`choose`'s allocator; returns at once if
    there is none, or if it already runs under it."""
    env = environment()
    if env is not None:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **env})


def describe() -> str:
    """The allocator this process runs under, for start-up banners."""
    name = os.environ.get(_IN_USE)
    if name is not None:
        return f"{name} (preloaded; {CHOICE}=system for glibc's)"
    if os.environ.get(CHOICE) == "system":
        return f"glibc malloc ({CHOICE}=system)"
    return "glibc malloc (no caching allocator found: pip install cmeel-mimalloc)"


def _gpu_run(environ: os._Environ | dict[str, str]) -> bool:
    """Whether JAX will run on an accelerator: a CUDA or ROCm plugin is installed and
    ``JAX_PLATFORMS`` does not say ``cpu``. Decided without starting JAX's backends."""
    if environ.get("JAX_PLATFORMS", "").split(",")[0] == "cpu":
        return False
    return any(importlib.util.find_spec(p) is not None
               for p in ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin"))
