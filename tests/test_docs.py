"""The documentation: every ```python block of docs/*.md and README.md runs as written (the blocks
of a page in order, in one fresh namespace, in a process of its own with 4 host devices for the
mesh examples), and the API reference names every public name."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

import skip_rnn

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = sorted(ROOT.glob("docs/*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: pathlib.Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


RUNNER = """
import sys
blocks = {blocks!r}
namespace = {{"__name__": "__docs__"}}
for number, block in enumerate(blocks, 1):
    try:
        exec(compile(block, f"{page} block {{number}}", "exec"), namespace)
    except BaseException:
        print(f"{page}: block {{number}} failed:\\n{{block}}", file=sys.stderr)
        raise
print("ran", len(blocks))
"""


@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_the_pages_python_examples_run_as_written(page):
    blocks = python_blocks(page)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT),
           "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    code = RUNNER.format(blocks=blocks, page=page.relative_to(ROOT))
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"ran {len(blocks)}" in run.stdout


def test_the_api_page_documents_every_public_name():
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto(?:function|class|data):: skip_rnn\.(\w+)$", api, re.M))
    missing = sorted(set(skip_rnn.__all__) - documented)
    assert missing == [], f"docs/api.md lacks {missing}"
    for module in ("skip_rnn.linen", "skip_rnn.nnx", "skip_rnn.experiments"):
        assert f".. automodule:: {module}\n" in api, module
    assert ".. autofunction:: skip_rnn.experiments.trainer.train_and_evaluate" in api


def test_the_docs_pages_name_no_private_module():
    for page in sorted(ROOT.glob("docs/*.md")):
        assert "skip_rnn._src" not in page.read_text(encoding="utf-8"), page
