"""The library stands apart from the paper's harness: ``import skip_rnn`` loads none of the
harness (``skip_rnn.experiments``) and none of the packages only the harness needs, and no
library module imports from the harness."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import skip_rnn as sr

LIBRARY = pathlib.Path(sr.__file__).parent
HARNESS_ONLY = ("optax", "orbax", "ml_collections", "absl", "tqdm", "matplotlib",
                "tensorflow_datasets", "tensorboardX")


def test_importing_the_library_loads_no_harness_package():
    code = "import json, sys, skip_rnn; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    loaded = json.loads(run.stdout)
    heavy = sorted({m.split(".")[0] for m in loaded} & set(HARNESS_ONLY))
    assert heavy == [], f"import skip_rnn loads {heavy}"
    assert not [m for m in loaded if m.startswith("skip_rnn.experiments")]


def test_no_library_module_imports_the_harness_or_its_packages():
    statements = re.compile(r"^\s*(?:from\s+([\w.]+)\s+)?import\s+([\w., ]+)", re.M)
    for path in sorted(p for p in LIBRARY.rglob("*.py") if "experiments" not in p.parts):
        for source, names in statements.findall(path.read_text()):
            modules = [source] if source else [n.split(" as ")[0].strip() for n in names.split(",")]
            for module in modules:
                assert module.split(".")[0] not in HARNESS_ONLY, (path.name, module)
            assert "experiments" not in f"{source} {names}", (path.name, source, names)


def test_sr_from_linen_is_the_linen_adapter():
    import skip_rnn.linen

    assert sr.from_linen is skip_rnn.linen.from_linen and "from_linen" in dir(sr)


def test_the_public_surface_is_the_package_and_its_documented_submodules():
    submodules = sorted(p.stem for p in LIBRARY.glob("*.py") if p.stem != "__init__")
    assert submodules == ["linen", "nnx"]  # the implementation lives in skip_rnn._src
    assert sorted(p.name for p in LIBRARY.iterdir() if p.is_dir() and p.name != "__pycache__"
                  ) == ["_src", "experiments"]
    for name in sr.__all__:  # no public name is a module, nor shadows one
        assert not isinstance(getattr(sr, name), type(sr)), name
