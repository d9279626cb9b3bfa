"""Downloading and unpacking datasets: downloads are untrusted input until verified.

A download is written under a temporary name next to its destination and renamed only once its
SHA-256 matches, so a file under its final name is either a verified download or one put there
by hand. Archives are unpacked only when every member is a plain file or folder inside the
target folder. Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from typing import BinaryIO

from skip_rnn.experiments.data.sources import DataError

TIMEOUT_S = 2.0  # per connection attempt and per read: offline or a dead mirror fails in seconds
ATTEMPTS = 2  # a damaged download is deleted and retried once


def cache_dir(name: str) -> str:
    """``$XDG_CACHE_HOME/skip_rnn/<name>``, by default ``~/.cache/skip_rnn/<name>``."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "skip_rnn", name)


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(url: str, file: BinaryIO, timeout: float, how_to: str) -> str:
    """Write the body at ``url`` into ``file``; ``""``, or why the transfer broke off.

    Raises :class:`DataError` when the server cannot be reached (nothing to retry)."""
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (OSError, http.client.HTTPException) as e:  # URLError, HTTPError, timeouts
        raise DataError(f"Cannot download {url} ({getattr(e, 'reason', e)}). {how_to}") from e
    announced = response.headers.get("Content-Length")
    try:
        with response:
            shutil.copyfileobj(response, file, 1 << 20)
    except (OSError, http.client.HTTPException) as e:  # reset or timed out mid-transfer
        return f"; the transfer broke off ({e})"
    if announced is not None and file.tell() != int(announced):  # the server hung up early
        return f"; the transfer broke off after {file.tell()} of {announced} bytes"
    return ""


def fetch(url: str, sha256: str, destination: str, how_to: str = "",
          timeout: float = TIMEOUT_S) -> str:
    """Download ``url`` to ``destination``, which it reaches only with SHA-256 ``sha256``.

    A damaged download (truncated, corrupt, cut off) is deleted and retried once.

    Args:
      url: where the file is.
      sha256: its published SHA-256 (hex).
      destination: the file to write; its folder is created.
      how_to: how to provide the file by hand, ends every error message (default: put it at
        ``destination``).
      timeout: seconds allowed to connect, and for each read.

    Returns:
      ``destination``.

    Raises:
      DataError: at once when ``url`` cannot be reached (offline), else after two downloads
        that do not match, naming the expected and actual SHA-256: "bytes differ" when both
        arrived whole with the same other bytes (``url`` serves another file, e.g. a
        recompressed copy), "damaged" otherwise; nothing is left behind.
    """
    how_to = how_to or f"Download it by hand and put it at {destination}."
    folder = os.path.dirname(os.path.abspath(destination))
    os.makedirs(folder, exist_ok=True)
    whole = []  # SHA-256 of the downloads that arrived whole but did not match
    for _ in range(ATTEMPTS):
        fd, part = tempfile.mkstemp(prefix=f".{os.path.basename(destination)}.", suffix=".part",
                                    dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                broken = _copy(url, f, timeout, how_to)
            actual = sha256_of(part)
            if not broken and actual == sha256:
                os.replace(part, destination)
                return destination
            got = f"got {os.path.getsize(part)} bytes with sha256 {actual}{broken}"
            whole += [] if broken else [actual]
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.remove(part)
    if len(whole) == ATTEMPTS and len(set(whole)) == 1:  # the same bytes each time
        raise DataError(f"{url}: its bytes differ from the expected file's (SHA-256), the same "
                        f"twice, deleted: expected sha256 {sha256}, {got}. {how_to}")
    raise DataError(f"{url}: damaged download, deleted (tried {ATTEMPTS} times): expected sha256 "
                    f"{sha256}, {got}. {how_to}")


def _is_safe(member: tarfile.TarInfo) -> bool:
    """A plain file or folder whose relative path stays below the extraction folder."""
    return ((member.isfile() or member.isdir()) and not member.name.startswith("/")
            and ".." not in member.name.split("/"))


def _members(archive: str, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member of ``tar``; refuses the whole archive if it is corrupt or one is unsafe."""
    try:
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{archive}: cannot read it as a tar archive ({e}); the file is corrupt: "
                        "delete it and run again.") from e
    unsafe = [m.name for m in members if not _is_safe(m)]
    if unsafe:
        raise DataError(f"{archive}: refused, nothing extracted: it holds {len(unsafe)} links, "
                        f"special files or paths outside its folder, e.g. {unsafe[:3]}.")
    return members


def extract_tar(archive: str, directory: str) -> None:
    """Unpack the tar archive ``archive`` (compressed or not) into ``directory``.

    Every member is checked before anything is written: absolute paths, ``..``, links and
    special files refuse the whole archive (:class:`DataError`). The members are unpacked into
    a temporary folder inside ``directory`` (with tarfile's ``data`` filter too, where this
    Python has it) and each top-level entry is then renamed into place, so an interrupted run
    leaves no half-unpacked entry under its final name.
    """
    try:
        tar = tarfile.open(archive)
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"{archive}: cannot open it as a tar archive ({e}); the file is corrupt: "
                        "delete it and run again.") from e
    with tar:
        members = _members(archive, tar)
        os.makedirs(directory, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".unpacking-", dir=directory)
        try:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # 3.10.12+
            tar.extractall(staging, members, **safe)
            for name in os.listdir(staging):
                os.replace(os.path.join(staging, name), os.path.join(directory, name))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
