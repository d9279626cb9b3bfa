"""The package's public face: a core install (jax, numpy) imports and runs the library without
the harness's packages; ``__version__`` from a source tree; ``py.typed`` shipped."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

import skip_rnn
from skip_rnn._src import version as version_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYPROJECT = os.path.join(ROOT, "pyproject.toml")
tomllib = pytest.importorskip("tomllib")  # Python 3.11+

HARNESS = ("flax", "optax", "orbax", "ml_collections", "absl", "matplotlib", "tqdm",
           "tensorflow_datasets", "tensorboardX", "chex")

CORE_ONLY = textwrap.dedent(f"""
    import importlib.abc, sys

    BLOCKED = {HARNESS!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{{name}} is not installed (core-only test)")

    sys.meta_path.insert(0, Block())

    import jax, jax.numpy as jnp
    import skip_rnn as sr

    cell = sr.skip(sr.lstm(4))
    params = cell.init(jax.random.key(0), input_size=2)
    xs = jnp.ones((3, 6, 2))
    state, out = sr.unroll(cell, params, xs, lengths=jnp.array([6, 4, 1]))
    assert out.h.shape == (3, 6, 4) and out.u.shape == (3, 6)
    loss = sr.budget_loss(out.u, 1e-4)
    _, jumped, info = sr.jump_unroll(cell, params, xs, lengths=jnp.array([6, 4, 1]))
    assert (jumped.u == out.u).all()
    loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set(BLOCKED))
    assert loaded == [], loaded
    print("core ok", sr.__version__)
""")


def test_core_install_imports_and_runs_without_the_harness_packages():
    run = subprocess.run([sys.executable, "-c", CORE_ONLY], cwd=ROOT, capture_output=True,
                         text=True, timeout=300,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": ROOT})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("core ok"), run.stdout


def _project() -> dict:
    with open(PYPROJECT, "rb") as f:
        return tomllib.load(f)["project"]


def test_core_dependencies_are_jax_and_numpy_and_the_harness_an_extra():
    project = _project()
    core = {re.split(r"[<>=;\s\[]", d, maxsplit=1)[0] for d in project["dependencies"]}
    assert core == {"jax", "numpy", "flatbuffers"}, core
    extras = project["optional-dependencies"]
    experiments = {re.split(r"[<>=;\s\[]", d, maxsplit=1)[0].lower().replace("_", "-")
                   for d in extras["experiments"]}
    for package in ("flax", "optax", "orbax-checkpoint", "ml-collections", "absl-py",
                    "matplotlib", "tqdm", "tensorflow-datasets", "tensorboardx"):
        assert package in experiments, package
    assert "skip-rnn[experiments]" in extras["test"]
    assert set(extras) >= {"flax", "experiments", "test", "docs"}


def test_version_is_pyproject_tomls_installed_or_not():
    assert skip_rnn.__version__ == _project()["version"]
    text = open(PYPROJECT).read()
    assert version_module._from_pyproject(text) == _project()["version"]
    assert version_module._from_pyproject(text.replace('name = "skip-rnn"', 'name = "x"')) is None


def test_py_typed_is_shipped():
    assert os.path.isfile(os.path.join(ROOT, "skip_rnn", "py.typed"))
    with open(PYPROJECT, "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["skip_rnn"]
