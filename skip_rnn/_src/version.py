"""``skip_rnn.__version__``: the version in the source tree's ``pyproject.toml`` when the package
is imported from one (uninstalled, or installed in editable mode, whose recorded metadata goes
stale when the file changes), else the installed distribution's."""

from __future__ import annotations

import importlib.metadata
import pathlib
import re
import sys

_PYPROJECT = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"


def _from_pyproject(text: str) -> str | None:
    if sys.version_info >= (3, 11):
        import tomllib

        project = tomllib.loads(text).get("project", {})
        return project.get("version") if project.get("name") == "skip-rnn" else None
    # Python 3.10 has no TOML parser: the two lines of [project] that matter, as written there.
    name = re.search(r'^name = "([^"]*)"$', text, re.M)
    version = re.search(r'^version = "([^"]*)"$', text, re.M)
    return version[1] if name and version and name[1] == "skip-rnn" else None


def _version() -> str:
    if _PYPROJECT.is_file():
        version = _from_pyproject(_PYPROJECT.read_text(encoding="utf-8"))
        if version:
            return version
    try:
        return importlib.metadata.version("skip-rnn")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


__version__ = _version()
