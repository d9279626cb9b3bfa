"""The entry points' caching allocator: chosen as documented, preloaded by a restart, opted out
with ``SKIP_RNN_MALLOC=system``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from skip_rnn.experiments import allocator

PROBE = """
from skip_rnn.experiments import allocator
allocator.reexec()
import os
maps = open("/proc/self/maps").read()
print(os.environ.get("SKIP_RNN_MALLOC_IN_USE"), "libmimalloc" in maps, allocator.describe())
"""

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def _probe(choice: str) -> list[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "SKIP_RNN_MALLOC_IN_USE")}
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                         check=True, env={**env, "SKIP_RNN_MALLOC": choice})
    return run.stdout.split(maxsplit=2)


def test_the_command_restarts_under_the_allocator_asked_for_or_none():
    assert allocator.library_path("mimalloc").endswith("libmimalloc.so")  # the set-up's wheel
    name, loaded, banner = _probe("mimalloc")
    assert (name, loaded) == ("mimalloc", "True") and banner.startswith("mimalloc (preloaded")
    name, loaded, banner = _probe("system")
    assert (name, loaded) == ("None", "False") and "SKIP_RNN_MALLOC=system" in banner


def test_auto_takes_the_fastest_found_and_bad_choices_are_refused():
    found = [n for n in allocator.ALLOCATORS if allocator.library_path(n)]
    assert allocator.choose({"SKIP_RNN_MALLOC": "auto"})[0] == found[0]
    assert allocator.choose({"SKIP_RNN_MALLOC": "system"}) is None
    with pytest.raises(SystemExit, match="SKIP_RNN_MALLOC='glibc' is invalid: must be one of"):
        allocator.choose({"SKIP_RNN_MALLOC": "glibc"})
